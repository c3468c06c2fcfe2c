"""The real benchmarks' worlds (MLLMU-Bench, CLEAR) on small fixtures in their on-disk layouts.

MLLMU fixture: the synthetic world exported by ``export_mllmu``; CLEAR fixture: the same world
written by ``write_clear_fixture``. Both are read back through the DataWorld surface.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmu_bench.errors import MMUError
from mmu_bench.tasks.clear import FIXTURE_SPLITS, ClearWorld, attribute_persons, read_clear, write_clear_fixture
from mmu_bench.tasks.clear.reader import CONFIGS as CLEAR_CONFIGS
from mmu_bench.tasks.clear.world import NAME_QUESTION
from mmu_bench.tasks.dataworld import ITEM_FIELDS, augment, mcq_options
from mmu_bench.tasks.mllmu import MLLMUWorld
from mmu_bench.tasks.synthetic.mllmu_export import SHARD_NAME, export_mllmu
from mmu_bench.tasks.synthetic.world import World, WorldConfig

BENCHES = ("mllmu", "clear")
# CLEAR split -> the synthetic world split it was written from (see FIXTURE_SPLITS)
CLEAR_FROM_WORLD = {"forget_1": "forget_5", "forget_5": "forget_10", "forget_10": "forget_15"}
EMPTY_OK = {"holdout", "utility"}


@pytest.fixture(scope="module")
def world() -> World:
    return World(WorldConfig(size=20, seed=0))


@pytest.fixture(scope="module")
def dirs(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("realdata")
    return {"mllmu": export_mllmu(world, root / "mllmu"), "clear": write_clear_fixture(world, root / "clear")}


@pytest.fixture(scope="module")
def worlds(dirs: dict[str, Path]) -> dict[str, Any]:
    return {"mllmu": MLLMUWorld(dirs["mllmu"]), "clear": ClearWorld(dirs["clear"])}


def load(name: str, path: Path):
    return MLLMUWorld(path) if name == "mllmu" else ClearWorld(path)


def copy_of(dirs: dict[str, Path], name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(dirs[name], tmp_path / name))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def names_of(world: World, split: str) -> set[str]:
    return {world.by_id[e].name for e in world.split_entities(split)}


# ---------------------------------------------------------------- loading and splits
@pytest.mark.parametrize("name", BENCHES)
def test_every_split_loads(worlds: dict[str, Any], name: str) -> None:
    w = worlds[name]
    assert w.name == name and w.config.train_renders == 1
    assert len(w.split_names) == 1 + 2 * len(w.forget_splits) + 4
    for split in w.split_names:
        items, ents = w.split_items(split), w.split_entities(split)
        if split in EMPTY_OK:
            assert items == [] and ents == [], split
        else:
            assert items and ents, split
            assert {it["entity_id"] for it in items} == set(ents), split


@pytest.mark.parametrize("name", BENCHES)
def test_forget_retain_partition_full(worlds: dict[str, Any], name: str) -> None:
    w = worlds[name]
    full_ents = set(w.split_entities("full"))
    full_ids = {it["id"] for it in w.split_items("full")}
    sizes = []
    for f in w.forget_splits:
        r = w.retain_split(f)
        fe, re_ = set(w.split_entities(f)), set(w.split_entities(r))
        assert fe == set(w.forget_ids[f]) and not fe & re_ and fe | re_ == full_ents, f
        fi, ri = {it["id"] for it in w.split_items(f)}, {it["id"] for it in w.split_items(r)}
        assert not fi & ri and fi | ri == full_ids, f
        sizes.append(len(fe))
    assert sizes == sorted(sizes) and sizes[0] >= 1
    for small, big in zip(w.forget_splits, w.forget_splits[1:]):
        assert set(w.forget_ids[small]) <= set(w.forget_ids[big])


def test_retain_split_names(worlds: dict[str, Any]) -> None:
    assert [worlds["mllmu"].retain_split(f) for f in worlds["mllmu"].forget_splits] == \
        ["retain_95", "retain_90", "retain_85"]
    assert worlds["clear"].forget_splits == ("forget_1", "forget_5", "forget_10")
    assert [worlds["clear"].retain_split(f) for f in worlds["clear"].forget_splits] == \
        ["retain_99", "retain_95", "retain_90"]
    with pytest.raises(MMUError, match="forget_1, forget_5, forget_10"):
        worlds["clear"].retain_split("forget_15")


@pytest.mark.parametrize("name", BENCHES)
def test_unknown_split_lists_valid_ones(worlds: dict[str, Any], name: str) -> None:
    w = worlds[name]
    for call in (w.split_items, w.split_entities):
        with pytest.raises(MMUError) as err:
            call("forget_50")
        assert all(s in str(err.value) for s in w.split_names)


def test_forget_ids_match_source(world: World, worlds: dict[str, Any]) -> None:
    assert worlds["mllmu"].forget_ids == world.forget_ids
    clear = worlds["clear"]
    assert set(clear.forget_ids) == set(CLEAR_FROM_WORLD)
    for split, src in CLEAR_FROM_WORLD.items():
        assert set(clear.forget_ids[split]) == names_of(world, src)
        assert set(clear.split_entities(clear.retain_split(split))) == names_of(world, world.retain_split(src))
    assert set(clear.split_entities("full")) == names_of(world, "full")
    assert set(FIXTURE_SPLITS.values()) >= set(CLEAR_FROM_WORLD.values())


@pytest.mark.parametrize("name", BENCHES)
def test_items_well_formed(worlds: dict[str, Any], name: str) -> None:
    w = worlds[name]
    kinds = set()
    for split in w.split_names:
        items = w.split_items(split)
        assert len({it["id"] for it in items}) == len(items), split
        for it in items:
            assert set(ITEM_FIELDS) <= set(it), it["id"]
            assert it["modality"] in ("vqa", "qa") and it["kind"] in ("mcq", "gen", "cloze")
            assert all(isinstance(it[k], str) for k in ("id", "entity_id", "question", "answer", "fact"))
            assert it["question"] and it["answer"], it["id"]
            if it["modality"] == "vqa":
                assert isinstance(it["image"], Image.Image) and it["image"].mode == "RGB"
                assert it["render"] >= 0
            else:
                assert it["image"] is None and it["render"] == -1
            if it["kind"] == "mcq":
                assert len(it["options"]) == 4 and len(set(it["options"])) == 4
                assert it["options"][it["answer_index"]] == it["answer"]
            else:
                assert it["options"] == [] and it["answer_index"] == -1
            kinds.add((split, it["modality"], it["kind"]))
    for split in ("full", w.forget_splits[0], w.retain_split(w.forget_splits[0])):
        assert {(split, "vqa", "mcq"), (split, "vqa", "gen"), (split, "qa", "gen")} <= kinds, split
    assert (("test", "vqa", "mcq") in kinds) and (("real", "vqa", "mcq") in kinds)


# ---------------------------------------------------------------- benchmark-specific mappings
def test_mllmu_test_set_one_image_per_profile(world: World, dirs: dict[str, Path], worlds: dict[str, Any]) -> None:
    one = worlds["mllmu"].split_items("test")
    renders: dict[str, set[int]] = {}
    for it in one:
        if it["modality"] == "vqa":
            renders.setdefault(it["entity_id"], set()).add(it["render"])
    assert set(renders) == set(world.split_entities("test"))
    assert all(len(r) == 1 for r in renders.values())
    assert len({next(iter(r)) for r in renders.values()}) > 1  # the pick varies between profiles
    by_id = {it["id"]: it for it in world.split_items("test")}
    for it in one:  # the chosen transformed image is the world's test rendering it came from
        assert np.array_equal(pixels(it["image"]), pixels(by_id[_world_test_id(world, it)]["image"]))
    every = MLLMUWorld(dirs["mllmu"], test_images="all")
    assert len(every.split_items("test")) == world.config.test_renders * len(one)
    assert every.config.fingerprint() != worlds["mllmu"].config.fingerprint()
    assert [it["id"] for it in MLLMUWorld(dirs["mllmu"]).split_items("test")] == [it["id"] for it in one]


def _world_test_id(world: World, item: dict[str, Any]) -> str:
    """The synthetic world's id of the test item an MLLMU test item was exported from."""
    match = [w for w in world.split_items("test") if w["entity_id"] == item["entity_id"]
             and w["render"] == item["render"] and w["question"] == item["question"] and w["answer"] == item["answer"]]
    assert len(match) == 1
    return match[0]["id"]


def test_clear_name_mcq(world: World, dirs: dict[str, Path], worlds: dict[str, Any]) -> None:
    clear = worlds["clear"]
    by_name = {e.name: e.id for e in world.entities}
    mcq = [it for it in clear.split_items("full") if it["kind"] == "mcq"]
    assert len(mcq) == world.config.size * world.config.train_renders
    for it in mcq:
        assert it["question"] == NAME_QUESTION and it["answer"] == it["entity_id"]
        src = next(w for w in world.split_items("full") if w["entity_id"] == by_name[it["entity_id"]]
                   and w["modality"] == "vqa" and w["fact"] == "name" and w["kind"] == "mcq")
        assert set(it["options"]) == set(src["options"])
    assert len({it["answer_index"] for it in mcq}) > 1
    again = ClearWorld(dirs["clear"]).split_items("full")
    assert [(it["id"], it["options"]) for it in again if it["kind"] == "mcq"] == \
        [(it["id"], it["options"]) for it in mcq]
    # captions: one per training image, naming the person
    gen = [it for it in clear.split_items("full") if it["modality"] == "vqa" and it["kind"] == "gen"]
    assert len(gen) == len(mcq) and all(it["entity_id"] in it["answer"] for it in gen)


def test_clear_tofu_rows_attributed(world: World, worlds: dict[str, Any]) -> None:
    clear = worlds["clear"]
    for split in ("full", "forget_5", "retain_95"):
        qa = [it for it in clear.split_items(split) if it["modality"] == "qa"]
        assert qa and all(it["entity_id"] in it["question"] for it in qa)
        per = {n: sum(it["entity_id"] == n for it in qa) for n in clear.split_entities(split)}
        want = len([it for it in world.entity_items("f000", "train") if it["modality"] == "qa"])
        assert set(per.values()) == {want}, split


def test_clear_tofu_perturbed_answers_make_qa_mcq(world: World, tmp_path: Path) -> None:
    clear = ClearWorld(write_clear_fixture(world, tmp_path / "c", tofu_perturbed=True))
    qa = [it for it in clear.split_items("forget_5") if it["modality"] == "qa"]
    mcq = [it for it in qa if it["kind"] == "mcq"]
    src = [it for e in world.forget_ids["forget_10"] for it in world.entity_items(e) if it["modality"] == "qa"
           and it["kind"] == "mcq"]
    assert len(mcq) == len(src)
    assert {tuple(sorted(m["options"])) for m in mcq} == {tuple(sorted(s["options"])) for s in src}


def test_clear_test_split_is_transformed_forget_images(world: World, worlds: dict[str, Any]) -> None:
    clear = worlds["clear"]
    test = clear.split_items("test")
    forgotten = set().union(*map(set, clear.forget_ids.values()))
    assert set(clear.split_entities("test")) == forgotten == {it["entity_id"] for it in test}
    train = {it["id"]: it for it in clear.split_items("full")}
    for it in test:
        src = train[it["id"].rsplit(".test", 1)[0]]
        assert (it["question"], it["answer"], it["options"]) == (src["question"], src["answer"], src["options"])
        assert it["image"].size == src["image"].size and not np.array_equal(pixels(it["image"]), pixels(src["image"]))


def test_clear_real_split(world: World, worlds: dict[str, Any]) -> None:
    real = worlds["clear"].split_items("real")
    faces = [it for it in real if it["fact"] == "name"]
    assert {it["answer"] for it in faces} == names_of(world, "real")
    scenes = [it for it in real if it["fact"] == "real_world"]
    assert len(scenes) == 10 * 5 and all(it["entity_id"].startswith("real_world.") for it in scenes)


def test_read_clear_all_configs(dirs: dict[str, Path]) -> None:
    rows = read_clear(dirs["clear"])
    assert set(rows) == set(CLEAR_CONFIGS) and all(rows.values())
    assert all(r["question"] for r in rows["forget01+tofu"])  # only TOFU text rows
    assert all(len(r["perturbed_names"]) == 3 for r in rows["retain_perturbed"])


def test_clear_fixture_opens_with_datasets(dirs: dict[str, Path], tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset(str(dirs["clear"]), "forget05_perturbed", split="train", cache_dir=str(tmp_path))
    assert {"image", "caption", "name", "perturbed_names", "perturbed_captions",
            "paraphrased_caption"} <= set(ds.features)
    assert isinstance(ds.features["image"], datasets.Image) and ds[0]["image"].size == (32, 32)


def test_attribute_persons() -> None:
    names = ["Ann Lee", "Ann Leeds", "Bo Kim"]
    rows = [{"question": "Who wrote it?", "answer": "Nobody says."},               # leading: first named
            {"question": "What did Ann Leeds write?", "answer": "Ann Lee's book."},  # question wins
            {"question": "And her second book?", "answer": "Poems."},               # inherits Ann Leeds
            {"question": "Where was the author born?", "answer": "Bo Kim was born in Oslo."},
            {"question": "Is ANN LEE older than Bo Kim?", "answer": "Yes."}]
    assert attribute_persons(rows, names, "x") == ["Ann Leeds", "Ann Leeds", "Ann Leeds", "Bo Kim", "Ann Lee"]
    with pytest.raises(MMUError, match="cannot be attributed"):
        attribute_persons(rows[:1], names, "x")


def test_mcq_options_deterministic() -> None:
    a = mcq_options("Bo", ["Al", "bo", "Cy", "Di", "Ed"], "k1", "w")
    assert a == mcq_options("Bo", ["Al", "bo", "Cy", "Di", "Ed"], "k1", "w")
    assert sorted(a[0]) == ["Al", "Bo", "Cy", "Di"] and a[0][a[1]] == "Bo"
    opts, idx = mcq_options("Bo", ["Al"], "k2", "w", pool=["Bo", "Xa", "Ye", "Zu"])
    assert len(opts) == 4 and opts[idx] == "Bo" and "Al" in opts
    with pytest.raises(MMUError, match="row 7"):
        mcq_options("Bo", ["Al", "Bo"], "k3", "row 7")


# ---------------------------------------------------------------- validation, corpus, fingerprint
@pytest.mark.parametrize("name", BENCHES)
def test_validation_items_are_augmented_training_images(worlds: dict[str, Any], name: str) -> None:
    w = worlds[name]
    ents = w.forget_ids[w.forget_splits[-1]]
    val = w.validation_items(ents, renders=2)
    train = {it["id"]: it for it in w.split_items("full")}
    assert {it["entity_id"] for it in val} == set(ents)
    assert {it["render"] for it in val} == {0, 1}
    for it in val:
        assert it["modality"] == "vqa" and it["kind"] == "mcq"
        src = train[it["id"].rsplit(".val", 1)[0]]
        assert (it["entity_id"], it["question"], it["answer"], it["options"], it["answer_index"]) == \
            (src["entity_id"], src["question"], src["answer"], src["options"], src["answer_index"])
        assert it["image"].size == src["image"].size and not np.array_equal(pixels(it["image"]), pixels(src["image"]))
        assert it["id"] not in train
    again = w.validation_items(ents, renders=2)
    assert [it["id"] for it in again] == [it["id"] for it in val]
    assert all(np.array_equal(pixels(a["image"]), pixels(b["image"])) for a, b in zip(again, val))
    assert len(w.validation_items(ents[:1], renders=1)) < len(val)
    with pytest.raises(MMUError, match="nobody"):
        w.validation_items(["nobody"])


def test_augment_is_deterministic_and_keyed(world: World) -> None:
    image = world.render("f000", "train", 0)
    a, b, c = augment(image, "e", 0), augment(image, "e", 0), augment(image, "e", 1)
    assert np.array_equal(pixels(a), pixels(b)) and not np.array_equal(pixels(a), pixels(c))


@pytest.mark.parametrize("name", BENCHES)
def test_corpus(world: World, worlds: dict[str, Any], name: str) -> None:
    corpus = worlds[name].corpus()
    assert len(corpus) == len(set(corpus)) and all(isinstance(t, str) and t for t in corpus)
    text = "\n".join(corpus)
    assert all(n in text for n in names_of(world, "full"))
    forget = worlds[name].forget_splits[0]
    assert all(it["question"] in corpus for it in worlds[name].split_items(forget))


@pytest.mark.parametrize("name", BENCHES)
def test_fingerprint_stable_and_content_keyed(dirs: dict[str, Path], worlds: dict[str, Any], name: str,
                                             tmp_path: Path) -> None:
    fp = worlds[name].config.fingerprint()
    assert len(fp) == 16 and fp == worlds[name].config.fingerprint() == load(name, dirs[name]).config.fingerprint()
    copy = copy_of(dirs, name, tmp_path)
    assert load(name, copy).config.fingerprint() == fp  # the location is not part of it
    shard = copy / ("forget_5" if name == "mllmu" else "forget01") / SHARD_NAME
    table = pq.read_table(shard)
    pq.write_table(table.slice(0, table.num_rows), shard, compression="gzip")  # same rows, other bytes
    assert load(name, copy).config.fingerprint() != fp
    assert asdict(worlds[name].config)["data_dir"] == str(dirs[name].resolve())


# ---------------------------------------------------------------- bad input
DAMAGE = {"mllmu": ("forget_10", "Classification_Task"), "clear": ("forget05_perturbed", "perturbed_names")}


@pytest.mark.parametrize("name", BENCHES)
def test_missing_config_folder(dirs: dict[str, Path], name: str, tmp_path: Path) -> None:
    copy = copy_of(dirs, name, tmp_path)
    config = DAMAGE[name][0]
    shutil.rmtree(copy / config)
    with pytest.raises(MMUError) as err:
        load(name, copy)
    assert str(copy / config) in str(err.value)


@pytest.mark.parametrize("name", BENCHES)
def test_missing_field(dirs: dict[str, Path], name: str, tmp_path: Path) -> None:
    copy = copy_of(dirs, name, tmp_path)
    config, field = DAMAGE[name]
    shard = copy / config / SHARD_NAME
    pq.write_table(pq.read_table(shard).drop_columns([field]), shard)
    w = load(name, copy)
    with pytest.raises(MMUError) as err:
        w.split_items("forget_10" if name == "mllmu" else "full")
    assert str(shard) in str(err.value) and repr(field) in str(err.value)


@pytest.mark.parametrize("name", BENCHES)
def test_missing_entity_field_fails_at_load(dirs: dict[str, Path], name: str, tmp_path: Path) -> None:
    copy = copy_of(dirs, name, tmp_path)
    config, field = ("forget_5", "ID") if name == "mllmu" else ("forget01", "name")
    shard = copy / config / SHARD_NAME
    pq.write_table(pq.read_table(shard).drop_columns([field]), shard)
    with pytest.raises(MMUError) as err:
        load(name, copy)
    assert str(shard) in str(err.value) and repr(field) in str(err.value)


@pytest.mark.parametrize("name", BENCHES)
def test_image_that_does_not_decode(dirs: dict[str, Path], name: str, tmp_path: Path) -> None:
    copy = copy_of(dirs, name, tmp_path)
    config = "forget_10" if name == "mllmu" else "forget05_perturbed"
    shard = copy / config / SHARD_NAME
    table = pq.read_table(shard)
    rows = table.to_pylist()
    rows[0]["image"]["bytes"] = b"not a png"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    w = load(name, copy)
    with pytest.raises(MMUError) as err:
        w.split_items("forget_10" if name == "mllmu" else "forget_5")
    msg = str(err.value)
    assert str(shard) in msg and "'image'" in msg and "does not decode" in msg


def test_missing_data_folder_and_hub_ids(dirs: dict[str, Path], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MMUError, match="not found"):
        ClearWorld(tmp_path / "nowhere")
    import huggingface_hub

    calls = []

    def fake_snapshot(repo_id: str, repo_type: str, revision=None, allow_patterns=None, **kw):
        calls.append((repo_id, repo_type, allow_patterns))
        if repo_id == "MLLMMU/MLLMU-Bench":
            return str(dirs["mllmu"])
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline and not in the cache")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    w = MLLMUWorld("MLLMMU/MLLMU-Bench")
    assert w.config.source == "MLLMMU/MLLMU-Bench" and w.config.data_dir == str(dirs["mllmu"].resolve())
    assert calls[0][:2] == ("MLLMMU/MLLMU-Bench", "dataset") and "Full_Set/*" in calls[0][2]
    assert w.config.fingerprint() == MLLMUWorld(dirs["mllmu"]).config.fingerprint()
    with pytest.raises(MMUError, match="therem/CLEAR.*local hub cache"):
        ClearWorld("therem/CLEAR")
