"""LoRA (peft) for gradient methods: only LLM weights change, adapters are merged away, the result
saves as safetensors and reloads to the same outputs; bad settings give clear errors."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, LlavaForConditionalGeneration

from mmu_bench.adapter import LlavaAdapter
from mmu_bench.errors import MMUError
from mmu_bench.method import UnlearnContext, UnlearnRequest
from mmu_bench.methods.ga import GA
from mmu_bench.tasks.synthetic.world import World, WorldConfig
from conftest import save_tiny_llava


@pytest.fixture(scope="module")
def world():
    return World(WorldConfig(size=20, seed=0))


@pytest.fixture(scope="module")
def tiny(world, tmp_path_factory):
    return save_tiny_llava(world, tmp_path_factory.mktemp("tiny"))


def _load(path) -> LlavaAdapter:
    return LlavaAdapter(AutoModelForImageTextToText.from_pretrained(path), AutoProcessor.from_pretrained(path), "cpu")


def _state(adapter) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in adapter.model.state_dict().items()}


def _unlearn(adapter, world, setting="full", **hyper):
    # the full setting: trainable=auto is the LLM, where LoRA goes
    forget = world.split_items("forget_10")
    ctx = UnlearnContext(retain=[], seed=0, progress=False, setting=setting)
    GA(**hyper).unlearn(adapter, UnlearnRequest(forget=forget, forget_entities=world.forget_ids["forget_10"],
                                                setting=setting), ctx)
    return ctx


@pytest.mark.slow  # integration: trains or spawns processes (the fast tier skips it)
def test_lora_changes_only_llm_target_weights_and_merges_away(world, tiny, tmp_path):
    ad = _load(tiny)
    before = _state(ad)
    ctx = _unlearn(ad, world, lora=True, lora_rank=4, lora_alpha=8, steps=4, lr=5e-3, batch_size=8)
    assert ctx.logs["steps"] == 4

    # merged back: a plain transformers model, no peft module or lora weight left
    assert type(ad.model) is LlavaForConditionalGeneration
    assert not [n for n, m in ad.model.named_modules() if "lora" in n.lower() or "Lora" in type(m).__name__]
    after = _state(ad)
    assert after.keys() == before.keys()
    assert not any(p.requires_grad for p in ad.model.parameters())

    targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "LoRA training changed nothing"
    for k in changed:
        assert k.startswith("model.language_model.") and k.rsplit(".", 2)[-2] in targets, k
    # the vision tower, the projector, embeddings, norms and lm_head are bit-identical
    for k in before:
        if not k.startswith("model.language_model.layers.") or k.rsplit(".", 2)[-2] not in targets:
            assert torch.equal(before[k], after[k]), k
    # every target kind moved (rank-4 updates on all seven projections of every layer)
    assert {k.rsplit(".", 2)[-2] for k in changed} == set(targets)

    # safetensors round trip with identical outputs
    ad.model.save_pretrained(tmp_path)
    ad.processor.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    assert not (tmp_path / "adapter_config.json").exists()
    again = _load(tmp_path)
    items = world.split_items("forget_10")[:8]
    a = ad.token_logprobs(ad.encode(items))
    b = again.token_logprobs(again.encode(items))
    assert all(torch.equal(x["logprobs"], y["logprobs"]) for x, y in zip(a, b))

    # a second request (continual) attaches fresh adapters on the merged model
    _unlearn(ad, world, lora=True, lora_rank=4, steps=2, lr=5e-3, batch_size=8)
    assert type(ad.model) is LlavaForConditionalGeneration


def test_lora_on_a_mistyped_target_is_a_clear_error(world, tiny):
    ad = _load(tiny)
    before = _state(ad)
    with pytest.raises(MMUError, match=r"lora_targets 'q_prj' match no linear layer of the language model"):
        _unlearn(ad, world, lora=True, lora_targets="q_prj", steps=1)
    with pytest.raises(MMUError, match="lora_targets is empty"):
        _unlearn(ad, world, lora=True, lora_targets=" , ", steps=1)
    with pytest.raises(MMUError, match="lora=true needs the LLM to train"):
        _unlearn(ad, world, lora=True, trainable="vision", steps=1)
    with pytest.raises(MMUError, match="trainable='auto' in setting 'visual'"):
        _unlearn(ad, world, setting="visual", lora=True, steps=1)
    # the model is left as it was: not wrapped, not changed
    assert type(ad.model) is LlavaForConditionalGeneration
    assert all(torch.equal(v, before[k]) for k, v in _state(ad).items())


def test_lora_targets_never_reach_the_vision_tower(world, tiny):
    # CLIP's attention also has q_proj / k_proj / v_proj: adapters must stay on the LLM
    from mmu_bench.lora import attach_lora, merge_lora

    ad = _load(tiny)
    original = attach_lora(ad, 2, 4, "q_proj,v_proj")
    names = [n for n, _ in ad.model.named_modules() if n.endswith("lora_A")]
    assert names and all("language_model" in n for n in names)
    assert not any(p.requires_grad for n, p in ad.model.named_parameters() if "vision_tower" in n)
    merge_lora(ad, original)
    assert type(ad.model) is LlavaForConditionalGeneration
