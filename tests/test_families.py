"""Model families: each tiny family saves, loads through ``load_hf("hf:<folder>")`` like a hub
checkpoint, has a sensible module map, evaluates, scores options like full sequences, and every
method unlearns on it touching only the parameters it should."""

from __future__ import annotations

import math
import types

import pytest
import torch

from mmu_bench import families
from mmu_bench.adapter import LlavaAdapter
from mmu_bench.errors import MMUError
from mmu_bench.evaluate import EvalConfig, evaluate
from mmu_bench.families import FAMILIES, adapter_for, build_tiny, load_hf
from mmu_bench.method import UnlearnContext, UnlearnRequest, build_method

METHODS = {  # 3 short steps each on tiny batches
    "ga": {"steps": 3, "lr": 1e-3, "batch_size": 4},
    "ga_diff": {"steps": 3, "lr": 1e-3, "batch_size": 4},
    "kl_min": {"steps": 3, "lr": 1e-3, "batch_size": 4},
    "npo": {"steps": 3, "lr": 1e-3, "batch_size": 4},
    "cvf": {"steps": 3, "batch_size": 4, "retain_batch_size": 4, "stop_rule": False},
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory, small_world):
    root = tmp_path_factory.mktemp("families")
    corpus = small_world.corpus()
    return {f: build_tiny(f, root / f, seed=0, corpus=corpus) for f in FAMILIES}


@pytest.fixture(scope="module")
def adapters(folders):
    return {f: load_hf(f"hf:{folders[f]}", device="cpu") for f in FAMILIES}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _few(items, per_kind):
    out, count = [], {}
    for it in items:
        key = (it["modality"], it["kind"], it["entity_id"])
        if count.get(key, 0) < per_kind:
            count[key] = count.get(key, 0) + 1
            out.append(it)
    return out


@pytest.fixture(scope="module")
def data(small_world):
    """(forget, retain): a few items of each modality x kind of the 2 forget / 2 retain entities."""
    forget = _few(small_world.split_items("forget_10"), 4)
    keep = set(small_world.split_entities("retain_90")[:2])
    retain = _few([it for it in small_world.split_items("retain_90") if it["entity_id"] in keep], 4)
    return forget, retain


def _ids(modules) -> set[int]:
    mods = modules if isinstance(modules, (list, tuple)) else [modules]
    return {id(p) for m in mods for p in m.parameters()}


@pytest.mark.parametrize("family", FAMILIES)
def test_load_hf_gives_the_family_adapter_and_a_partitioning_module_map(adapters, family):
    ad = adapters[family]
    assert ad.family == family and ad.model.config.model_type == family
    assert ad.device.type == "cpu" and next(ad.model.parameters()).dtype == torch.float32
    vision, projector, language = _ids(ad.vision_modules), _ids(ad.projector_modules), _ids(ad.language_modules)
    assert vision and projector and language
    assert not (vision & projector) and not (vision & language) and not (projector & language)
    assert vision | projector | language == {id(p) for p in ad.model.parameters()}
    named = {id(p): n for n, p in ad.model.named_parameters()}
    assert all("lm_head" in named[i] or "language_model" in named[i] for i in language)
    if family == "llava_next":
        assert id(ad.model.model.image_newline) in projector
    if family.startswith("qwen"):
        assert all(".merger." in named[i] for i in projector)
        assert all(".visual." in named[i] and ".merger." not in named[i] for i in vision)
    # every image gives the same number of visual tokens, whatever its size
    from PIL import Image

    odd = [Image.new("RGB", (50, 23), (200, 10, 10)), Image.new("RGB", (17, 40))]
    feats = ad.visual_features(odd)
    assert feats.shape[:2] == (2, ad.n_image_tokens)


@pytest.mark.parametrize("family, size, tokens", [("llava_next", 64, 16 + 8 * 8 + 8), ("qwen2_5_vl", 16, 4)])
def test_fixed_image_size_sets_the_visual_token_count(folders, data, family, size, tokens):
    ad = load_hf(f"hf:{folders[family]}", device="cpu", image_size=size)
    assert ad.n_image_tokens == tokens
    enc = ad.encode(data[0][:3])
    assert sum(ad.collate(enc)["input_ids"].eq(ad.image_token_id).sum(1).tolist()) == tokens * 3
    assert ad.visual_features([it["image"] for it in data[0][:2]]).shape[1] == tokens
    assert torch.isfinite(ad.forward_loss(ad.collate(enc)))


@pytest.mark.parametrize("family", FAMILIES)
def test_evaluator_runs_with_finite_metrics(adapters, data, family):
    forget, retain = data
    picked: dict[tuple, list] = {}
    for it in forget + retain:
        picked.setdefault((it["modality"], it["kind"]), [])
        if len(picked[(it["modality"], it["kind"])]) < 2:
            picked[(it["modality"], it["kind"])].append(it)
    items = [it for group in picked.values() for it in group]
    assert len(picked) == 6  # vqa / qa x mcq / gen / cloze
    metrics, samples = evaluate(adapters[family], {"forget": items}, EvalConfig(max_new_tokens=6))
    assert len(samples) == len(items)
    assert "forget.vqa.mcq.acc" in metrics and "forget.qa.gen.rougeL" in metrics
    assert all(math.isfinite(v) for v in metrics.values()), metrics


@pytest.mark.parametrize("family", FAMILIES)
def test_option_scoring_matches_full_sequences(adapters, data, family):
    ad = adapters[family]
    forget, _ = data
    mcq = [it for it in forget if it["kind"] == "mcq"]
    items = mcq[:4] + [it for it in mcq if it["modality"] == "qa"][:2]  # mixed image / text-only batch
    fast = ad.option_logprobs(items, batch_size=4)
    slow = ad.full_option_logprobs(items, batch_size=1)  # one sequence at a time: no padding at all
    for a, b in zip(fast, slow):
        assert len(a) == len(b) == 4
        for x, y in zip(a, b):
            assert x.shape == y.shape and torch.allclose(x, y, atol=1e-4), (x, y)


@pytest.fixture(scope="module")
def references(folders):
    """A frozen copy of each family's starting model: the context's reference ("finetuned")."""
    out = {}
    for f in FAMILIES:
        ref = load_hf(f"hf:{folders[f]}", device="cpu")
        for p in ref.model.parameters():
            p.requires_grad_(False)
        out[f] = ref
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_unlearns_and_touches_only_its_parameters(folders, references, data, family, method):
    from mmu_bench.plugins import get_registry

    forget, retain = data
    model = load_hf(f"hf:{folders[family]}", device="cpu")
    before = {n: p.detach().clone() for n, p in model.model.named_parameters()}
    names = {id(p): n for n, p in model.model.named_parameters()}
    llm = {names[i] for i in _ids(model.language_modules)}
    visual = {names[i] for i in _ids(model.vision_modules) | _ids(model.projector_modules)}
    m = build_method(get_registry().get("methods", method), METHODS[method])
    # the gradient baselines in the full setting (trainable=auto is the LLM); cvf is visual-only
    setting = "visual" if method == "cvf" else "full"
    context = UnlearnContext(retain=retain, seed=0, progress=False, reference=lambda name: references[family],
                             setting=setting)
    m.unlearn(model, UnlearnRequest(forget=forget, forget_entities=sorted({it["entity_id"] for it in forget}),
                                    setting=setting), context)
    after = dict(model.model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert math.isfinite(context.logs["final_loss"])
    if method == "cvf":  # vision tower + projector linears only; the LLM bit-identical
        assert changed and changed <= visual and not changed & llm
        linear_weights = {f"{n}.weight" for n, mod in model.model.named_modules() if isinstance(mod, torch.nn.Linear)}
        assert changed <= linear_weights
    else:  # full setting, trainable=auto -> llm: vision tower and projector bit-identical
        assert changed and changed <= llm and not changed & visual


def test_unknown_family_and_bad_specs_are_clear_errors(adapters, folders, tmp_path):
    ad = adapters["llava"]
    fake = types.SimpleNamespace(config=types.SimpleNamespace(model_type="llava_nxt"))
    with pytest.raises(MMUError, match=r"llava_nxt.*Did you mean 'llava_next'.*qwen2_5_vl"):
        adapter_for(fake, ad.processor)
    with pytest.raises(MMUError, match="expected 'hf:<hub id or local folder>'"):
        load_hf(str(folders["llava"]))
    with pytest.raises(MMUError, match="does not exist"):
        load_hf(f"hf:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MMUError, match="has no config.json"):
        load_hf(f"hf:{tmp_path / 'empty'}")
    with pytest.raises(MMUError, match="dtype 'float8' unknown"):
        load_hf(f"hf:{folders['llava']}", dtype="float8")
    with pytest.raises(MMUError, match="the llava adapter takes no image_size"):
        load_hf(f"hf:{folders['llava']}", image_size=64)
    with pytest.raises(MMUError, match="not a multiple of patch x merge = 8"):
        load_hf(f"hf:{folders['qwen2_vl']}", image_size=36)
    with pytest.raises(MMUError, match="unknown model family"):
        build_tiny("llava2", tmp_path / "x")


def test_load_hf_passes_dtype_attention_and_remote_code(folders, monkeypatch):
    from transformers import AutoModelForImageTextToText

    seen = {}
    original = AutoModelForImageTextToText.from_pretrained.__func__

    def spy(cls, ref, **kw):
        seen.update(kw)
        return original(cls, ref, **kw)

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", classmethod(spy))
    ad = load_hf(f"hf:{folders['qwen2_vl']}", device="cpu", dtype="bfloat16", attn_implementation="eager",
                 gradient_checkpointing=True)
    assert seen == {"dtype": torch.bfloat16, "trust_remote_code": False, "attn_implementation": "eager"}
    assert next(ad.model.parameters()).dtype == torch.bfloat16
    assert ad.model.model.language_model.gradient_checkpointing
    # one training step through the checkpointed layers reaches the LLM's first layer
    forget = ad.encode([{"question": "Q?", "answer": "A", "image": None}])
    ad.model.train()
    ad.forward_loss(ad.collate(forget)).backward()
    assert ad.model.model.language_model.layers[0].mlp.up_proj.weight.grad is not None
    seen.clear()
    load_hf(f"hf:{folders['llava']}", device="cpu", dtype="auto")
    assert seen == {"dtype": "auto", "trust_remote_code": False}


def test_a_plugin_family_is_found_through_the_models_hook(adapters, monkeypatch):
    from mmu_bench import hookimpl, plugins

    class MyAdapter(LlavaAdapter):
        family = "mine"

    class MyFamily:
        name = "my-llava"
        description = "test family"
        model_types = ("llava",)
        adapter = MyAdapter

    mod = types.ModuleType("fake_family_plugin")
    mod.mmu_bench_models = hookimpl(lambda: [MyFamily])
    pm = plugins.MMUPluginManager()
    pm.register(mod, name="fake")
    monkeypatch.setattr(plugins, "get_registry", lambda *a, **k: plugins.Registry(pm))
    ad = adapters["llava"]
    assert "llava" in families.registered_adapters() and families.registered_adapters()["llava"] is MyAdapter
    assert type(adapter_for(ad.model, ad.processor, "cpu")) is MyAdapter


@pytest.mark.parametrize("family", ["llava_next", "qwen2_vl"])
def test_cvf_llm_layer_feature_point_feeds_the_family_vision_inputs(folders, references, data, family):
    from mmu_bench.methods.cvf import CVF

    forget, retain = data
    model = load_hf(f"hf:{folders[family]}", device="cpu")
    method = CVF(feature="llm_layer:1", **METHODS["cvf"])
    px, _ = CVF.images(model, forget)
    z = method.features(model, px)
    assert z.shape == (len(px), model.model.config.text_config.hidden_size) and torch.isfinite(z).all()
    context = UnlearnContext(retain=retain, seed=0, progress=False, reference=lambda name: references[family])
    method.unlearn(model, UnlearnRequest(forget=forget, forget_entities=sorted({it["entity_id"] for it in forget})), context)
    assert math.isfinite(context.logs["final_loss"])


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_zoo_processor_of_an_hf_base_loads_no_weights(folders, small_world, tmp_path, monkeypatch, family):
    from mmu_bench.zoo import Zoo

    zoo = Zoo(small_world, model=f"hf:{folders[family]}", cache_dir=tmp_path, progress=False, device="cpu")
    monkeypatch.setattr(zoo, "load", lambda *a, **k: pytest.fail("processor() must not load the model"))
    proc = zoo.processor()
    assert hasattr(proc, "tokenizer") and hasattr(proc, "image_processor")
    assert proc.tokenizer.get_vocab() == load_hf(f"hf:{folders[family]}").processor.tokenizer.get_vocab()
