"""The typed surfaces (mmu_bench/surfaces.py) match what the shipped worlds and items have."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmu_bench.surfaces import ITEM_FIELDS, Item, WordingWorld, WorldSurface
from mmu_bench.tasks.dataworld import check_items
from mmu_bench.tasks.synthetic.world import World


def test_item_fields_are_the_required_keys() -> None:
    assert set(ITEM_FIELDS) == Item.__required_keys__
    assert {"wording", "official"} <= Item.__optional_keys__


def test_synthetic_world_has_the_world_surface(small_world: World) -> None:
    assert isinstance(small_world, WorldSurface)
    assert isinstance(small_world, WordingWorld)
    for split in small_world.split_names:
        check_items(small_world.split_items(split), f"synthetic {split}")


@pytest.mark.parametrize("kind", ["mllmu", "clear"])
def test_data_worlds_have_the_world_surface(small_world: World, tmp_path: Path, kind: str) -> None:
    if kind == "mllmu":
        from mmu_bench.tasks.mllmu import MLLMUWorld
        from mmu_bench.tasks.synthetic.mllmu_export import export_mllmu

        world = MLLMUWorld(export_mllmu(small_world, tmp_path / kind))
    else:
        from mmu_bench.tasks.clear import ClearWorld, write_clear_fixture

        world = ClearWorld(write_clear_fixture(small_world, tmp_path / kind))
    assert isinstance(world, WorldSurface)
    assert not isinstance(world, WordingWorld)  # no other wordings: the paraphrase attack says so


def test_a_mapping_is_not_a_world() -> None:
    assert not isinstance({"forget_10": []}, WorldSurface)
