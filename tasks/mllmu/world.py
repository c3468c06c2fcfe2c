"""MLLMU-Bench as a World-shaped benchmark (the DataWorld surface over its parquet folders).

Rows are read with :func:`mmu_bench.tasks.mllmu.reader.read_config` (the same reader that
round-trips the synthetic world's MLLMU-layout export), one config folder per split, on first use::

    Full_Set -> full          forget_5 / forget_10 / forget_15 -> forget splits
    Test_Set -> test          retain_95 / retain_90 / retain_85 -> their retain splits
    Retain_Set -> real        (the real celebrities)       holdout, utility -> []

``ft_Data`` (the vanilla model's fine-tuning data) is not read: the zoo fine-tunes on ``full``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq

from mmu_bench.errors import MMUError
from mmu_bench.surfaces import Item

from ..dataworld import DataConfig, DataWorld, require_configs, resolve_source, stable_int
from .reader import read_config

HUB_ID = "MLLMMU/MLLMU-Bench"
KIND = "MLLMU-Bench"
FORGET_SPLITS = ("forget_5", "forget_10", "forget_15")
RETAIN_OF = {"forget_5": "retain_95", "forget_10": "retain_90", "forget_15": "retain_85"}
# split -> the config folder it is read from
SPLIT_CONFIGS: dict[str, str] = {
    "full": "Full_Set",
    **{f: f for f in FORGET_SPLITS},
    **{r: r for r in RETAIN_OF.values()},
    "test": "Test_Set",
    "real": "Retain_Set",
}
TEST_IMAGES = ("one", "all")


@dataclass(frozen=True)
class MLLMUConfig(DataConfig):
    """MLLMU-Bench reading options.

    Args:
        test_images: "one" (default; the official protocol asks each Test_Set question about one
            of the row's transformed images: we pick image ``sha256(ID) mod len(images)`` instead
            of a random one) or "all" (every question about every transformed image).
    """

    test_images: str = "one"

    def data_configs(self) -> tuple[str, ...]:
        return tuple(SPLIT_CONFIGS.values())


class MLLMUWorld(DataWorld):
    """MLLMU-Bench from a local copy (``data_dir``: one folder per config) or a hub id.

    Args:
        data_dir: a folder laid out like the hub dataset (``Full_Set/train-*.parquet``, ...), or a
            Hugging Face dataset id (e.g. ``"MLLMMU/MLLMU-Bench"``), fetched with
            ``huggingface_hub.snapshot_download`` (or found in the hub cache when offline).
        test_images: see :class:`MLLMUConfig`.
        revision: hub revision (hub ids only).
    """

    name = "mllmu"
    forget_splits = FORGET_SPLITS
    _retain_of = RETAIN_OF

    def __init__(self, data_dir: str | os.PathLike[str], *, test_images: str = "one",
                 revision: str | None = None):
        super().__init__()
        if test_images not in TEST_IMAGES:
            raise MMUError(f"MLLMU-Bench test_images {test_images!r}; expected one of {', '.join(TEST_IMAGES)}")
        configs = tuple(SPLIT_CONFIGS.values())
        root = resolve_source(data_dir, KIND, HUB_ID, configs, revision)
        require_configs(root, KIND, configs)
        self.config = MLLMUConfig(source=str(data_dir), data_dir=str(root), test_images=test_images)
        self.root = root
        self._images: dict[str, Any] = {}  # sha1 of image bytes -> decoded image, shared by all splits
        self._ids: dict[str, list[str]] = {}
        self.forget_ids = {f: self._config_ids(f) for f in FORGET_SPLITS}
        for f, r in RETAIN_OF.items():
            both = sorted(set(self.forget_ids[f]) & set(self._config_ids(r)))
            if both:
                raise MMUError(f"MLLMU-Bench data {root}: config {f} and its complement {r} share profile "
                               f"ID(s) {', '.join(both[:5])}{' ...' if len(both) > 5 else ''}")

    def _config_ids(self, split: str) -> list[str]:
        """The ``ID`` column of a split's config (cheap: no images are read)."""
        if split not in self._ids:
            folder = self.root / SPLIT_CONFIGS[split]
            shards = sorted(folder.glob("train-*.parquet"))
            if not shards:
                raise MMUError(f"MLLMU config folder {folder} has no train-*.parquet shards")
            ids: list[str] = []
            for shard in shards:
                if "ID" not in pq.read_schema(shard).names:
                    raise MMUError(f"{shard}: missing field 'ID' (every MLLMU row names its profile)")
                ids += [str(v) for v in pq.read_table(shard, columns=["ID"]).column("ID").to_pylist()]
            self._ids[split] = ids
        return self._ids[split]

    def _entities(self, split: str) -> list[str]:
        if split in ("holdout", "utility"):
            return []
        return list(dict.fromkeys(self._config_ids(split)))

    def _load_split(self, split: str) -> list[Item]:
        if split in ("holdout", "utility"):
            return []
        items = read_config(self.root / SPLIT_CONFIGS[split], image_cache=self._images)
        if split == "test" and self.config.test_images == "one":
            items = self._one_test_image(items)
        return items

    @staticmethod
    def _one_test_image(items: list[Item]) -> list[Item]:
        """Keep, per profile, the vqa items of one transformed image: number sha256(ID) mod n."""
        n: dict[str, int] = {}
        for it in items:
            if it["modality"] == "vqa":
                n[it["entity_id"]] = max(n.get(it["entity_id"], 0), it["render"] + 1)
        pick = {eid: stable_int("mllmu", "test-image", eid) % k for eid, k in n.items()}
        return [it for it in items if it["modality"] != "vqa" or it["render"] == pick[it["entity_id"]]]

