"""Export the synthetic world in MLLMU-Bench's on-disk layout, and read that layout back.

Why: methods and evaluation scripts written for MLLMU-Bench (Liu et al., 2024) expect its
Hugging Face layout -- one folder per config holding ``train-*.parquet`` shards, one row per
profile with the questions nested inside. Exporting the world in that layout lets those
scripts run on our controlled world unchanged; :func:`read_mllmu` reads the layout back into
our item dicts so the same harness can score either source.

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

import hashlib
import io
import os
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from mmu_bench.cache import atomic_dir
from mmu_bench.errors import MMUError

from .world import World

# MLLMU config name -> world split it is built from.
CONFIGS: dict[str, str] = {
    "Full_Set": "full",
    "forget_5": "forget_5",
    "forget_10": "forget_10",
    "forget_15": "forget_15",
    "retain_95": "retain_95",
    "retain_90": "retain_90",
    "retain_85": "retain_85",
    "Retain_Set": "real",
    "Test_Set": "test",
}
TEST_CONFIG = "Test_Set"
SHARD_NAME = "train-00000-of-00001.parquet"
LETTERS = ("A", "B", "C", "D")
MLLMU_BLANK = "__"
WORLD_BLANK = "[Blank]"
# MLLMU `Type` / question-list key <-> our modality.
TYPE_OF_MODALITY = {"vqa": "Image_Textual", "qa": "Pure_Text"}
MODALITY_OF_TYPE = {v: k for k, v in TYPE_OF_MODALITY.items()}
CLASSIFICATION_KEYS = {"vqa": "Image_Textual_Questions", "qa": "Pure_Text_Questions"}
# Top-level fields read_mllmu needs (the rest -- Directory, biography, question, answer -- are
# carried for MLLMU scripts but not turned into items).
_TASK_FIELDS = ("ID", "Classification_Task", "Generation_Task", "Mask_Task")


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


# ---------------------------------------------------------------- read
def _get(obj: Any, key: str, where: str) -> Any:
    """``obj[key]`` or an MMUError naming where the field was expected."""
    if not isinstance(obj, dict) or key not in obj:
        raise MMUError(f"{where}: missing field {key!r}")
    return obj[key]


def _decode(cell: Any, shard: Path, row_id: str, field: str,
            image_cache: dict[str, Image.Image] | None = None) -> Image.Image:
    """Decode an image cell ({bytes, path}) to RGB; ``path`` is tried relative to the shard.

    With ``image_cache`` (sha1 of the bytes -> image), identical bytes decode once and every
    item asking about them shares one (read-only) image.
    """
    where = f"{shard}: row ID {row_id!r}: field {field!r}"
    data = cell.get("bytes") if isinstance(cell, dict) else None
    digest = hashlib.sha1(data).hexdigest() if image_cache is not None and data is not None else None
    if digest is not None and digest in image_cache:
        return image_cache[digest]
    try:
        if data is None:
            path = cell.get("path") if isinstance(cell, dict) else None
            if not path:
                raise ValueError("no image bytes and no path")
            source: Any = Path(path) if Path(path).is_absolute() else shard.parent / path
        else:
            source = io.BytesIO(data)
        with Image.open(source) as im:
            image = im.convert("RGB")
    except Exception as exc:
        raise MMUError(f"{where}: image does not decode: {exc}") from exc
    if digest is not None:
        image_cache[digest] = image
    return image


def _row_items(row: dict[str, Any], shard: Path, test: bool,
               image_cache: dict[str, Image.Image] | None = None) -> list[dict[str, Any]]:
    """Turn one MLLMU row back into world-style items (vqa items first, as the world orders them)."""
    row_id = str(row["ID"])
    where = f"{shard}: row ID {row_id!r}"
    per_modality: dict[str, list[dict[str, Any]]] = {"vqa": [], "qa": []}

    cls = _get(row, "Classification_Task", where)
    for modality, key in CLASSIFICATION_KEYS.items():
        questions = [] if cls is None else _get(cls, key, f"{where}: Classification_Task")
        for n, q in enumerate(questions or []):
            w = f"{where}: Classification_Task.{key}[{n}]"
            opts = _get(q, "Options", w) or {}
            letter = str(_get(q, "Correct_Answer", w)).strip().upper()
            if letter not in LETTERS:
                raise MMUError(f"{w}: Correct_Answer {letter!r} is not one of {', '.join(LETTERS)}")
            options = [str(_get(opts, k, f"{w}.Options")) for k in LETTERS]
            per_modality[modality].append(dict(kind="mcq", question=str(_get(q, "Question", w)),
                                               answer=options[LETTERS.index(letter)],
                                               options=options, answer_index=LETTERS.index(letter)))
    for task, kind in (("Generation_Task", "gen"), ("Mask_Task", "cloze")):
        for n, q in enumerate(_get(row, task, where) or []):
            w = f"{where}: {task}[{n}]"
            typ = _get(q, "Type", w)
            if typ not in MODALITY_OF_TYPE:
                raise MMUError(f"{w}: Type {typ!r} is not one of {', '.join(MODALITY_OF_TYPE)}")
            question = str(_get(q, "Question", w))
            if kind == "cloze":
                question = question.replace(MLLMU_BLANK, WORLD_BLANK)
            per_modality[MODALITY_OF_TYPE[typ]].append(dict(
                kind=kind, question=question, answer=str(_get(q, "Ground_Truth", w)),
                options=[], answer_index=-1))

    # Keep the world's order within a modality: mcq, gen, cloze.
    order = {"mcq": 0, "gen": 1, "cloze": 2}
    for modality in per_modality:
        per_modality[modality].sort(key=lambda it: order[it["kind"]])

    def build(modality: str, image: Image.Image | None, render: int, suffix: str) -> list[dict[str, Any]]:
        out, counters = [], {k: 0 for k in order}
        for it in per_modality[modality]:
            idx = counters[it["kind"]]
            counters[it["kind"]] += 1
            out.append(dict(it, id=f"{row_id}.{modality}.{it['kind']}.{idx}{suffix}", entity_id=row_id,
                            image=image, modality=modality, fact="", render=render))
        return out

    items: list[dict[str, Any]] = []
    if test:
        cells = _get(row, "images", where) or []
        for r, cell in enumerate(cells):
            items += build("vqa", _decode(cell, shard, row_id, f"images[{r}]", image_cache), r, f".test{r}")
    elif per_modality["vqa"]:
        items += build("vqa", _decode(_get(row, "image", where), shard, row_id, "image", image_cache), 0, "")
    items += build("qa", None, -1, "")
    return items


def read_config(config_dir: str | os.PathLike[str], *,
                image_cache: dict[str, Image.Image] | None = None) -> list[dict[str, Any]]:
    """Items of one MLLMU config folder (all its ``train-*.parquet`` shards, in name order).

    ``image_cache`` (optional, sha1 of image bytes -> decoded image) is shared between calls so
    an image stored in several configs is decoded and held once.
    """
    folder = Path(config_dir)
    shards = sorted(folder.glob("train-*.parquet"))
    if not shards:
        raise MMUError(f"MLLMU config folder {folder} has no train-*.parquet shards")
    test = "images" in pq.read_schema(shards[0]).names
    needed = (*_TASK_FIELDS, "images" if test else "image")
    items: list[dict[str, Any]] = []
    for shard in shards:
        names = pq.read_schema(shard).names
        for name in needed:
            if name not in names:
                raise MMUError(f"{shard}: missing field {name!r} (expected fields: {', '.join(needed)})")
        for row in pq.read_table(shard, columns=list(needed)).to_pylist():
            items += _row_items(row, shard, test, image_cache)
    return items


def read_mllmu(data_dir: str | os.PathLike[str],
               configs: Sequence[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Read an MLLMU-layout dataset into ``{config: [item, ...]}`` with World item fields.

    ``configs`` defaults to every config in :data:`CONFIGS`; each must be a folder of
    ``data_dir``. A config is read as a test set when its shards have an ``images`` column.

    Item rules (deterministic, documented because MLLMU rows carry less than world items):

    - ``id`` is ``f"{ID}.{modality}.{kind}.{index}"``, ``index`` counting within the row's
      (modality, kind); ``entity_id`` is ``ID``; ``fact`` is ``""``.
    - ``Image_Textual`` / ``Image_Textual_Questions`` -> ``modality="vqa"`` asked about ``image``
      (``render=0``); ``Pure_Text`` -> ``modality="qa"`` with ``image=None`` (``render=-1``).
    - Test rows: every vqa question is expanded once per entry of ``images``: image ``r`` gets
      ``render=r`` and ids suffixed ``.test{r}`` (the world's test split asks every question
      about every test rendering); ``image`` is ignored.
    - mcq: ``Options`` A-D in letter order, ``answer_index`` from ``Correct_Answer``; cloze
      questions get ``"__"`` back as ``"[Blank]"``.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise MMUError(f"MLLMU data folder {root} not found (expected config folders: "
                       f"{', '.join(CONFIGS)})")
    wanted = list(CONFIGS) if configs is None else list(configs)
    out: dict[str, list[dict[str, Any]]] = {}
    for config in wanted:
        folder = root / config
        if not folder.is_dir():
            raise MMUError(f"MLLMU config folder {folder} not found; expected config folders: "
                           f"{', '.join(CONFIGS)}")
        out[config] = read_config(folder)
    return out
