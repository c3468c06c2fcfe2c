"""The world as a ``datasets.DatasetDict`` (with an ``Image`` feature), cached on disk."""

from __future__ import annotations

import json
from pathlib import Path

from datasets import Dataset, DatasetDict, Features, Image, List, Value, load_from_disk

from mmu_bench.cache import build_entry, cache_root, entry_problem
from mmu_bench.errors import MMUError

from .world import SPLIT_NAMES, World, WorldConfig

FEATURES = Features({
    "id": Value("string"),
    "entity_id": Value("string"),
    "image": Image(),
    "question": Value("string"),
    "answer": Value("string"),
    "options": List(Value("string")),
    "answer_index": Value("int32"),
    "kind": Value("string"),
    "modality": Value("string"),
    "fact": Value("string"),
    "render": Value("int32"),
})
COLUMNS = list(FEATURES)


def to_dataset_dict(world: World) -> DatasetDict:
    """Every split of the world as one ``Dataset`` (text-only items have ``image=None``)."""
    out = {}
    for split in SPLIT_NAMES:
        items = world.split_items(split)
        out[split] = Dataset.from_dict({c: [it[c] for it in items] for c in COLUMNS}, features=FEATURES)
    return DatasetDict(out)


def world_dir(config: WorldConfig, cache_dir=None) -> Path:
    return cache_root(cache_dir) / "worlds" / config.resolved().fingerprint()


def build_world(config: WorldConfig, cache_dir=None) -> Path:
    """Write (or reuse) the world's DatasetDict and profiles under the cache; returns the folder."""
    path = world_dir(config, cache_dir)
    key = config.resolved().fingerprint()
    if entry_problem(path, key) is None:
        return path
    world = World(config)

    def write(tmp: Path) -> dict:
        to_dataset_dict(world).save_to_disk(str(tmp / "dataset"))
        (tmp / "world.json").write_text(json.dumps({
            "config": world.config.__dict__, "forget_ids": world.forget_ids,
            "profiles": world.profiles()}, indent=1))
        return {}

    return build_entry(path, key, write)


def load_split(path: Path, split: str) -> list[dict]:
    """Items of one split from a built world folder (images decoded to PIL)."""
    if split not in SPLIT_NAMES:
        raise MMUError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_NAMES)}")
    ds = load_from_disk(str(path / "dataset"))[split]
    return [dict(row) for row in ds]
