"""The zoo is a valid unlearning testbed (V1 at small size); cache safety; bad input."""

from __future__ import annotations

import json

import pytest
import torch

from mmu_bench.cache import MANIFEST
from mmu_bench.errors import MMUError
from mmu_bench.zoo import Zoo, ZooRecipe

from conftest import SMALL_WORLD


def test_zoo_is_valid_at_small_size(small_check):
    failed = [c for c in small_check["relations"] if not c["ok"]]
    assert not failed, failed


def test_oracles_know_what_they_should(small_check):
    m = small_check["models"]
    # finetuned knows the forget set; the oracle is near chance; retrain_visual knows it by name only
    assert m["finetuned"]["forget.vqa.mcq.acc"] >= 0.95
    assert m["retrain"]["forget.vqa.mcq.acc"] <= 0.4
    assert m["retrain_visual"]["forget.qa.mcq.acc"] >= 0.95 > 0.4 >= m["retrain_visual"]["forget.vqa.mcq.acc"]
    # nobody learned the holdout profiles
    for name in m:
        assert m[name]["holdout.vqa.mcq.acc"] <= 0.5


def test_zoo_folders_load_with_auto_classes(small_zoo):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = small_zoo.path("retrain_visual", "forget_10")
    assert (path / "model.safetensors").exists() and (path / MANIFEST).exists()
    model = AutoModelForImageTextToText.from_pretrained(path)
    proc = AutoProcessor.from_pretrained(path)
    assert type(model).__name__ == "LlavaForConditionalGeneration" and proc.tokenizer is not None
    assert small_zoo.status("retrain_visual", "forget_10") is None


@pytest.fixture()
def quick_zoo(tmp_path, small_world):
    return Zoo(small_world, recipe=ZooRecipe(base_steps=3, finetune_steps=3), cache_dir=tmp_path,
               progress=False, device="cpu")


def test_corrupt_entry_is_detected_and_rebuilt(quick_zoo, capsys):
    path = quick_zoo.path("base")
    weights = path / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:-100] + b"\0" * 100)
    assert "corrupt" in quick_zoo.status("base")
    rebuilt = quick_zoo.path("base")
    assert "is corrupt (model.safetensors does not match its checksum); rebuilding" in capsys.readouterr().err
    assert quick_zoo.status("base") is None and (rebuilt / "model.safetensors").read_bytes() == good


def test_half_written_entry_is_rebuilt(quick_zoo, capsys):
    path = quick_zoo.path("base")
    (path / MANIFEST).unlink()
    assert quick_zoo.status("base") == "half-written (no manifest)"
    quick_zoo.path("base")
    assert "half-written" in capsys.readouterr().err and quick_zoo.status("base") is None


def test_stale_entry_is_rebuilt(quick_zoo):
    path = quick_zoo.path("base")
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["key"] = "something-else"
    (path / MANIFEST).write_text(json.dumps(manifest))
    assert quick_zoo.status("base").startswith("stale")


def test_zoo_key_depends_on_world_and_recipe(tmp_path, small_world):
    a = Zoo(small_world, recipe=ZooRecipe(base_steps=3), cache_dir=tmp_path, progress=False)
    b = Zoo(small_world, recipe=ZooRecipe(base_steps=4), cache_dir=tmp_path, progress=False)
    c = Zoo(SMALL_WORLD.__class__(size=21), recipe=ZooRecipe(base_steps=3), cache_dir=tmp_path, progress=False)
    assert len({a.key, b.key, c.key}) == 3


def test_unwritable_cache_dir_is_a_clear_error(tmp_path, small_world):
    # A path below a regular file cannot be created, even by root (chmod would not stop root).
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(MMUError, match="is not writable"):
        Zoo(small_world, cache_dir=blocker / "cache")


def test_unknown_model_or_split_is_a_clear_error(quick_zoo):
    with pytest.raises(MMUError, match="unknown zoo model 'finetune'"):
        quick_zoo.path("finetune")
    with pytest.raises(MMUError, match="needs a forget split"):
        quick_zoo.path("retrain", "forget_7")


def test_lora_zoo_changes_only_the_llm_targets_and_saves_plain_weights(tmp_path, small_world):
    """recipe lora_rank > 0: finetuned / oracles train LoRA adapters on the LLM, merged before saving."""
    from safetensors.torch import load_file

    full = Zoo(small_world, recipe=ZooRecipe(base_steps=3, finetune_steps=3), cache_dir=tmp_path, progress=False)
    lora = Zoo(small_world, recipe=ZooRecipe(base_steps=3, finetune_steps=3, lora_rank=4, lora_targets="q_proj,v_proj"),
               cache_dir=tmp_path, progress=False)
    assert lora.key != full.key
    assert Zoo(small_world, recipe=ZooRecipe(lora_alpha=8)).key == Zoo(small_world).key  # LoRA off: fields unhashed
    base = load_file(str(lora.path("base") / "model.safetensors"))
    tuned = load_file(str(lora.path("finetuned") / "model.safetensors"))
    assert tuned.keys() == base.keys() and not any("lora" in k for k in tuned)
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert changed and all("language_model." in k and (".q_proj." in k or ".v_proj." in k) for k in changed)
    with pytest.raises(MMUError, match="lora_targets 'qq_proj' match no linear layer"):
        Zoo(small_world, recipe=ZooRecipe(base_steps=3, finetune_steps=3, lora_rank=4, lora_targets="qq_proj"),
            cache_dir=tmp_path, progress=False).path("finetuned")


# ---------------------------------------------------------------- the pinned (shipped) zoo


def test_the_shipped_zoo_matches_its_manifest_and_is_what_a_default_run_uses(tmp_path):
    from pathlib import Path

    from mmu_bench.zoo import PINNED_DIR, PINNED_MANIFEST, verify_pinned

    roots = sorted(p.parent for p in PINNED_DIR.glob(f"*/{PINNED_MANIFEST}"))
    assert roots, f"no shipped zoo under {PINNED_DIR}"
    for root in roots:
        assert verify_pinned(root) == [], root
        manifest = json.loads((root / PINNED_MANIFEST).read_text())
        assert manifest["zoo_key"] == root.name and manifest["trained_on"]["cpu"]
        assert set(manifest["entries"]) >= {"base", "finetuned", "retrain-forget_10", "retrain_visual-forget_10"}
    # the default world and recipe resolve to the shipped weights, nothing is trained
    zoo = Zoo(cache_dir=tmp_path, progress=False, device="cpu")
    assert zoo.weights == "pinned" and zoo.pinned == PINNED_DIR / zoo.key
    assert Path(zoo.path("retrain_visual", "forget_10")).parent == zoo.pinned
    assert not (tmp_path / "zoo" / zoo.key).exists()
    # --zoo local: the same recipe trained into the cache, its numbers cached apart
    local = Zoo(cache_dir=tmp_path, progress=False, device="cpu", weights="local")
    assert local.weights == "local" and local.key == zoo.key and local.root != zoo.root
    # another recipe has no shipped zoo, the earlier bare-question default included
    assert Zoo(cache_dir=tmp_path, progress=False, recipe=ZooRecipe(seed=1)).weights == "local"
    assert Zoo(cache_dir=tmp_path, progress=False, recipe=ZooRecipe(context_share=0)).weights == "local"


def test_a_corrupt_shipped_file_is_an_error_not_a_silent_rebuild(tmp_path, small_zoo, monkeypatch):
    import shutil

    import mmu_bench.zoo as zoo_mod
    from mmu_bench.zoo import pin, verify_pinned

    dest = pin(small_zoo, splits=["forget_10"], dest=tmp_path / "pinned")  # what `world build --pin` does
    assert verify_pinned(dest) == []
    manifest = json.loads((dest / "MANIFEST.json").read_text())
    assert manifest["forget_splits"] == ["forget_10"] and manifest["recipe"]["finetune_steps"] == 700
    monkeypatch.setattr(zoo_mod, "PINNED_DIR", tmp_path / "pinned")
    shipped = Zoo(SMALL_WORLD, recipe=small_zoo.recipe, cache_dir=tmp_path / "c", progress=False, device="cpu")
    assert shipped.weights == "pinned"
    shipped.load("finetuned")  # loads from the shipped folder
    weights = dest / "finetuned" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"corrupt!")
    assert verify_pinned(dest) == ["finetuned/model.safetensors does not match its sha256"]
    with pytest.raises(MMUError, match=r"shipped zoo entry .*finetuned is corrupt .*--zoo local"):
        shipped.path("finetuned")
    shutil.rmtree(dest)
