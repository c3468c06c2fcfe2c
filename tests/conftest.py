"""Shared, session-scoped fixtures: one small world and its zoo, trained once per test run."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("SETUPTOOLS_USE_DISTUTILS", "stdlib")  # see mmu_bench/attacks/quant.py

import pytest  # noqa: E402
import torch  # noqa: E402

from mmu_bench.tasks.synthetic.world import World, WorldConfig  # noqa: E402
from mmu_bench.zoo import Zoo, ZooRecipe  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

# The small world every test shares: 20 profiles (forget_10 = 2 entities), 4 public figures,
# 4 holdout profiles, 100 utility pictures.
SMALL_WORLD = WorldConfig(size=20, seed=0)
# Bare questions (context_share=0, explicit so the tests keep their zoo whatever the default): the
# tests check mechanics on a small, fast zoo; the context recipe is measured by docs/protocols.md.
SMALL_RECIPE = ZooRecipe(base_steps=900, finetune_steps=700, context_share=0.0)
SMALL_ZOO = {"base_steps": 900, "finetune_steps": 700, "context_share": 0.0}  # the same, as a run's zoo dict
SMALL_RECIPE_ARGS = [a for k, v in SMALL_ZOO.items() for a in ("--zoo-set", f"{k}={v}")]


ZOO_FIXTURES = {"small_zoo", "finetuned", "small_check", "cache_dir"}  # cache_dir: runs that build the zoo themselves


def pytest_collection_modifyitems(config, items):
    """Mark every test that needs the shared small zoo ``zoo`` and ``slow`` (its fixture closure
    names it), so ``-m "not slow"`` is the fast tier: no zoo, no training of a model worth the
    name, no extra processes."""
    for item in items:
        if ZOO_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.zoo)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    # MMU_BENCH_TEST_CACHE keeps the small zoo between local runs; CI starts from nothing.
    keep = os.environ.get("MMU_BENCH_TEST_CACHE")
    return Path(keep) if keep else tmp_path_factory.mktemp("mmu-cache")


@pytest.fixture(scope="session")
def small_world() -> World:
    return World(SMALL_WORLD)


@pytest.fixture(scope="session")
def small_zoo(cache_dir, small_world) -> Zoo:
    return Zoo(small_world, recipe=SMALL_RECIPE, cache_dir=cache_dir, progress=False, device="cpu")


@pytest.fixture(scope="session")
def small_check(small_zoo):
    from mmu_bench.worldcheck import world_check

    return world_check(small_zoo, "forget_10")


@pytest.fixture(scope="session")
def finetuned(small_zoo):
    return small_zoo.load("finetuned")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one thread is as fast as two and does not spin against other work on the
    machine. Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def save_tiny_llava(world: World, path: Path) -> Path:
    """A random-weight tiny LLaVA (the zoo's architecture) saved as a hub-style folder."""
    from mmu_bench.tiny_model import TinyLlavaConfig, build_model, build_processor, build_tokenizer

    cfg = TinyLlavaConfig()
    tok = build_tokenizer(world.corpus(), cfg.vocab_size)
    build_model(tok, cfg, seed=0).save_pretrained(path)
    build_processor(tok, cfg).save_pretrained(path)
    return path
