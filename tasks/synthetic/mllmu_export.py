"""Export the synthetic world in MLLMU-Bench's on-disk layout.

Why: methods and evaluation scripts written for MLLMU-Bench (Liu et al., 2024) expect its
Hugging Face layout -- one folder per config holding ``train-*.parquet`` shards, one row per
profile with the questions nested inside. Exporting the world in that layout lets those
scripts run on our controlled world unchanged. Reading the layout is MLLMU-Bench's plugin's job:
:mod:`mmu_bench.tasks.mllmu.reader` (whose names this module writes with; ``read_mllmu`` and
``read_config`` are re-exported here) reads an export back into our item dicts, so the same
harness can score either source.

Layout written by :func:`export_mllmu` (one shard per config)::

    out_dir/
      README.md
      Full_Set/train-00000-of-00001.parquet     all fictitious profiles   (world split "full")
      forget_5/ forget_10/ forget_15/           forget splits             (nested)
      retain_95/ retain_90/ retain_85/          their complements
      Retain_Set/                               public figures            (world split "real")
      Test_Set/                                 fictitious profiles, unseen renderings ("test")

Lossy on purpose: MLLMU rows have no ``fact`` field, so read-back items carry ``fact=""``,
and item ids are rebuilt (see :func:`read_mllmu`). Holdout and utility splits have no MLLMU
counterpart and are not exported.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from mmu_bench.cache import atomic_dir

from ..mllmu.reader import (  # noqa: F401  (MODALITY_OF_TYPE, read_config, read_mllmu re-exported)
    CLASSIFICATION_KEYS, CONFIGS, LETTERS, MLLMU_BLANK, MODALITY_OF_TYPE, TYPE_OF_MODALITY, WORLD_BLANK,
    read_config, read_mllmu)
from .world import World

# CONFIGS: MLLMU config name -> the world split it is built from.
TEST_CONFIG = "Test_Set"
SHARD_NAME = "train-00000-of-00001.parquet"


# ---------------------------------------------------------------- schema
def _schema(test: bool) -> pa.Schema:
    """The explicit Arrow schema (so empty lists keep their types), with Hugging Face feature
    metadata so ``datasets.load_dataset("parquet", ...)`` decodes ``image``/``images`` as images."""
    from datasets import Features, Image as HFImage, List, Value

    s = Value("string")
    mcq = {"Question": s, "Options": {k: s for k in LETTERS}, "Correct_Answer": s}
    open_q = {"Question": s, "Ground_Truth": s, "Type": s}
    features: dict[str, Any] = {
        "image": HFImage(),
        "ID": s,
        "Directory": s,
        "biography": s,
        "question": s,
        "answer": s,
        "Classification_Task": {"Image_Textual_Questions": List(mcq), "Pure_Text_Questions": List(mcq)},
        "Generation_Task": List(open_q),
        "Mask_Task": List(open_q),
    }
    if test:
        features["images"] = List(HFImage())
    return Features(features).arrow_schema


# ---------------------------------------------------------------- export
def _png(image: Image.Image, path: str | None) -> dict[str, Any]:
    """An MLLMU/HF image cell: PNG bytes (lossless, so pixels round-trip exactly) plus a name."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": path}


def _biography(facts: dict[str, str]) -> str:
    return (f"{facts['name']} lives in {facts['home']} and works as a {facts['job']}. "
            f"Their favourite food is {facts['food']} and their hobby is {facts['hobby']}.")


def _row(world: World, entity_id: str, test: bool) -> dict[str, Any]:
    """One MLLMU row for one profile: rendering-0 vqa questions (one copy) plus the qa ones."""
    profile = world.by_id[entity_id]
    train_items = world.entity_items(entity_id, "train")
    train_image = next(it["image"] for it in train_items if it["render"] == 0)
    if test:
        test_items = world.entity_items(entity_id, "test")
        task_items = [it for it in test_items if it["render"] == 0]
        renders: dict[int, Image.Image] = {}
        for it in test_items:
            renders.setdefault(it["render"], it["image"])
    else:
        task_items = [it for it in train_items if it["render"] in (0, -1)]
        renders = {}
    name_q = next((it for it in train_items if it["modality"] == "vqa" and it["fact"] == "name"),
                  train_items[0])

    classification: dict[str, list[dict[str, Any]]] = {k: [] for k in CLASSIFICATION_KEYS.values()}
    generation: list[dict[str, str]] = []
    mask: list[dict[str, str]] = []
    for it in task_items:
        kind, modality = it["kind"], it["modality"]
        if kind == "mcq":
            classification[CLASSIFICATION_KEYS[modality]].append({
                "Question": it["question"],
                "Options": dict(zip(LETTERS, it["options"], strict=True)),
                "Correct_Answer": LETTERS[it["answer_index"]],
            })
        elif kind == "gen":
            generation.append({"Question": it["question"], "Ground_Truth": it["answer"],
                               "Type": TYPE_OF_MODALITY[modality]})
        elif kind == "cloze":
            mask.append({"Question": it["question"].replace(WORLD_BLANK, MLLMU_BLANK),
                         "Ground_Truth": it["answer"], "Type": TYPE_OF_MODALITY[modality]})
        else:  # pragma: no cover - the world only makes these three kinds
            raise ValueError(f"unknown item kind {kind!r}")

    directory = f"{entity_id}.png"
    row: dict[str, Any] = {
        "image": _png(train_image, directory),
        "ID": entity_id,
        "Directory": directory,
        "biography": _biography(profile.facts),
        "question": name_q["question"],
        "answer": name_q["answer"],
        "Classification_Task": classification,
        "Generation_Task": generation,
        "Mask_Task": mask,
    }
    if test:
        row["images"] = [_png(renders[r], f"{entity_id}_test{r}.png") for r in sorted(renders)]
    return row


def _readme(world: World) -> str:
    c = world.config
    counts = "\n".join(f"| {cfg} | `{split}` | {len(world.split_entities(split))} |"
                       for cfg, split in CONFIGS.items())
    return f"""# Synthetic world in MLLMU-Bench layout

Exported by `mmu_bench.tasks.synthetic.mllmu_export.export_mllmu` from the synthetic world
(size={c.size}, seed={c.seed}, fingerprint `{c.fingerprint()}`), so that scripts written for
MLLMU-Bench can run on it. Every profile is invented (names, facts and pictures are drawn from
the seed); "Retain_Set" holds the world's *public figures*, standing in for MLLMU's celebrities.

One folder per config, each with `{SHARD_NAME}`; one row per profile.

| config | world split | rows |
|---|---|---|
{counts}

Row fields: `image` (PNG of training rendering 0), `ID`, `Directory`, `biography`, `question` /
`answer` (the name question), `Classification_Task` (`Image_Textual_Questions`,
`Pure_Text_Questions`: `Question`, `Options` A-D, `Correct_Answer` letter), `Generation_Task` and
`Mask_Task` (`Question`, `Ground_Truth`, `Type` = `Image_Textual` | `Pure_Text`; blanks are
written `{MLLMU_BLANK}`). `Test_Set` rows also have `images`: the {c.test_renders} unseen test
renderings, which every `Image_Textual` question of the row is asked about.
"""


def export_mllmu(world: World, out_dir: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``world`` to ``out_dir`` in MLLMU-Bench's layout and return ``out_dir``.

    Built in a sibling temporary folder and renamed into place, so a failed export never
    leaves a half-written dataset. Refuses a non-empty ``out_dir`` unless ``overwrite``.
    """
    out = Path(out_dir)
    with atomic_dir(out, overwrite=overwrite, what="MLLMU export target") as tmp:
        for config, split in CONFIGS.items():
            test = config == TEST_CONFIG
            rows = [_row(world, eid, test) for eid in world.split_entities(split)]
            (tmp / config).mkdir()
            table = pa.Table.from_pylist(rows, schema=_schema(test))
            pq.write_table(table, tmp / config / SHARD_NAME)
        (tmp / "README.md").write_text(_readme(world), encoding="utf-8")
    return out
