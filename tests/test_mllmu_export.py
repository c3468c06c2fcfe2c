"""Round-trip tests for the MLLMU-Bench export: world -> parquet layout -> world-style items."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmu_bench.errors import MMUError
from mmu_bench.tasks.synthetic.mllmu_export import CONFIGS, SHARD_NAME, export_mllmu, read_mllmu
from mmu_bench.tasks.synthetic.world import World, WorldConfig

# Fields that survive the round trip unchanged (id and fact are rebuilt / dropped by design).
KEPT = ("entity_id", "modality", "kind", "render", "question", "answer", "options", "answer_index")


@pytest.fixture(scope="module")
def world() -> World:
    return World(WorldConfig(size=20, seed=0))


@pytest.fixture(scope="module")
def exported(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_mllmu(world, tmp_path_factory.mktemp("mllmu") / "data")


@pytest.fixture(scope="module")
def read_back(exported: Path) -> dict[str, list[dict[str, Any]]]:
    return read_mllmu(exported)


@pytest.fixture()
def copy(exported: Path, tmp_path: Path) -> Path:
    """A private copy of the export, for tests that damage it."""
    return Path(shutil.copytree(exported, tmp_path / "data"))


def key(item: dict[str, Any]) -> tuple:
    return tuple(tuple(item[k]) if k == "options" else item[k] for k in KEPT)


def same_pixels(a, b) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))


def world_items(world: World, split: str) -> list[dict[str, Any]]:
    """The world's items an MLLMU row carries: rendering 0 of each vqa question, and the qa ones."""
    if split == "test":
        return world.split_items("test")
    return [it for it in world.split_items(split) if it["render"] in (0, -1)]


def test_layout(exported: Path) -> None:
    assert (exported / "README.md").read_text().startswith("# Synthetic world in MLLMU-Bench layout")
    for config in CONFIGS:
        assert (exported / config / SHARD_NAME).is_file(), config
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")], "temp dir left behind"


def test_rows_are_profiles(world: World, exported: Path) -> None:
    for config, split in CONFIGS.items():
        ids = pq.read_table(exported / config / SHARD_NAME, columns=["ID"]).column("ID").to_pylist()
        assert ids == world.split_entities(split), config
    forget10 = pq.read_table(exported / "forget_10" / SHARD_NAME).to_pylist()
    assert [r["ID"] for r in forget10] == world.forget_ids["forget_10"]
    assert [r["Directory"] for r in forget10] == [f"{i}.png" for i in world.forget_ids["forget_10"]]
    for r in forget10:
        facts = world.by_id[r["ID"]].facts
        assert all(v in r["biography"] for v in facts.values())
        assert (r["question"], r["answer"]) == ("What is the name of the person in the image?", facts["name"])


def test_forget_10_vqa_mcq_round_trip(world: World, read_back: dict[str, list[dict[str, Any]]]) -> None:
    got = [it for it in read_back["forget_10"] if it["modality"] == "vqa" and it["kind"] == "mcq"]
    want = [it for it in world.split_items("forget_10")
            if it["modality"] == "vqa" and it["kind"] == "mcq" and it["render"] == 0]
    assert len(got) == len(want) == 5 * len(world.forget_ids["forget_10"])
    assert [(g["question"], g["options"], g["answer_index"], g["answer"]) for g in got] == \
        [(w["question"], w["options"], w["answer_index"], w["answer"]) for w in want]
    for g in got:
        assert g["image"].mode == "RGB"
        assert same_pixels(g["image"], world.render(g["entity_id"], "train", 0))


@pytest.mark.parametrize("config", [c for c in CONFIGS if c != "Test_Set"])
def test_items_round_trip(world: World, read_back: dict[str, list[dict[str, Any]]], config: str) -> None:
    got, want = read_back[config], world_items(world, CONFIGS[config])
    assert [key(g) for g in got] == [key(w) for w in want]
    qa = [g for g in got if g["modality"] == "qa"]
    assert qa and all(g["image"] is None and g["render"] == -1 for g in qa)
    assert len({g["id"] for g in got}) == len(got)
    assert all(g["fact"] == "" for g in got)


def test_cloze_blank_round_trip(exported: Path, read_back: dict[str, list[dict[str, Any]]]) -> None:
    raw = [q for r in pq.read_table(exported / "Full_Set" / SHARD_NAME, columns=["Mask_Task"]).to_pylist()
           for q in r["Mask_Task"]]
    assert raw and all("__" in q["Question"] and "[Blank]" not in q["Question"] for q in raw)
    assert {q["Type"] for q in raw} == {"Image_Textual", "Pure_Text"}
    cloze = [it for it in read_back["Full_Set"] if it["kind"] == "cloze"]
    assert len(cloze) == len(raw)
    assert all(it["question"].count("[Blank]") == 1 and "__" not in it["question"] for it in cloze)


def test_test_set(world: World, exported: Path, read_back: dict[str, list[dict[str, Any]]]) -> None:
    n = world.config.test_renders
    table = pq.read_table(exported / "Test_Set" / SHARD_NAME)
    # Test rows have no text-only questions; the empty list must keep its type.
    pure = table.schema.field("Classification_Task").type.field("Pure_Text_Questions").type
    assert pa.types.is_list(pure) and pa.types.is_struct(pure.value_type)
    for row in table.to_pylist():
        assert len(row["images"]) == n
        assert row["Classification_Task"]["Pure_Text_Questions"] == []
    got, want = read_back["Test_Set"], world.split_items("test")
    assert [key(g) for g in got] == [key(w) for w in want]
    assert len({g["id"] for g in got}) == len(got)
    for g in got:
        assert same_pixels(g["image"], world.render(g["entity_id"], "test", g["render"]))


def test_hf_datasets_decodes_images(exported: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_parquet(str(exported / "Test_Set" / SHARD_NAME), cache_dir=str(tmp_path))
    assert isinstance(ds.features["image"], datasets.Image)
    assert len(ds[0]["images"]) == 4 and hasattr(ds[0]["images"][0], "size")


def test_refuses_non_empty_target(world: World, copy: Path) -> None:
    with pytest.raises(MMUError, match=str(copy)):
        export_mllmu(world, copy)
    (copy / "stale.txt").write_text("x")
    assert export_mllmu(world, copy, overwrite=True) == copy
    assert not (copy / "stale.txt").exists()
    assert (copy / "Test_Set" / SHARD_NAME).is_file()


def test_missing_config_folder(copy: Path) -> None:
    shutil.rmtree(copy / "forget_10")
    with pytest.raises(MMUError) as err:
        read_mllmu(copy)
    msg = str(err.value)
    assert str(copy / "forget_10") in msg
    assert all(c in msg for c in CONFIGS)
    assert set(read_mllmu(copy, configs=["forget_5"])) == {"forget_5"}


def test_missing_field(copy: Path) -> None:
    shard = copy / "forget_5" / SHARD_NAME
    table = pq.read_table(shard)
    pq.write_table(table.drop_columns(["Classification_Task"]), shard)
    with pytest.raises(MMUError) as err:
        read_mllmu(copy, configs=["forget_5"])
    assert str(shard) in str(err.value) and "Classification_Task" in str(err.value)


def test_corrupt_image(copy: Path) -> None:
    shard = copy / "forget_5" / SHARD_NAME
    table = pq.read_table(shard)
    rows = table.to_pylist()
    rows[0]["image"]["bytes"] = b"not a png"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    with pytest.raises(MMUError) as err:
        read_mllmu(copy, configs=["forget_5"])
    msg = str(err.value)
    assert str(shard) in msg and repr(rows[0]["ID"]) in msg and "'image'" in msg
