"""Read MLLMU-Bench's on-disk layout (a local copy of the hub dataset ``MLLMMU/MLLMU-Bench``) into items.

MLLMU-Bench (Liu et al., 2024) keeps one folder per config holding ``train-*.parquet`` shards,
one row per profile with the questions nested inside::

    Full_Set/                                 all fictitious profiles   (split "full")
    forget_5/ forget_10/ forget_15/           forget splits             (nested)
    retain_95/ retain_90/ retain_85/          their complements
    Retain_Set/                               public figures / celebrities  (split "real")
    Test_Set/                                 the fictitious profiles in transformed images ("test")

Row fields: ``image``, ``ID``, ``Directory``, ``biography``, ``question`` / ``answer``,
``Classification_Task`` (``Image_Textual_Questions``, ``Pure_Text_Questions``: ``Question``,
``Options`` A-D, ``Correct_Answer`` letter), ``Generation_Task`` and ``Mask_Task``
(``Question``, ``Ground_Truth``, ``Type`` = ``Image_Textual`` | ``Pure_Text``; blanks are
written ``__``); ``Test_Set`` rows also have ``images``, which every ``Image_Textual`` question
of the row is asked about.

:class:`~mmu_bench.tasks.mllmu.MLLMUWorld` reads its splits with :func:`read_config`; the
synthetic world's exporter (``mmu_bench.tasks.synthetic.mllmu_export``) writes this layout with
the names defined here, and :func:`read_mllmu` reads an export back. Lossy on purpose: MLLMU
rows have no ``fact`` field, so items carry ``fact=""``, and item ids are rebuilt (see
:func:`read_mllmu`).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any, Sequence

import pyarrow.parquet as pq
from PIL import Image

from mmu_bench.errors import MMUError
from mmu_bench.surfaces import Item

# MLLMU config name -> the split it holds.
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
               image_cache: dict[str, Image.Image] | None = None) -> list[Item]:
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

    def build(modality: str, image: Image.Image | None, render: int, suffix: str) -> list[Item]:
        out, counters = [], {k: 0 for k in order}
        for it in per_modality[modality]:
            idx = counters[it["kind"]]
            counters[it["kind"]] += 1
            out.append(dict(it, id=f"{row_id}.{modality}.{it['kind']}.{idx}{suffix}", entity_id=row_id,
                            image=image, modality=modality, fact="", render=render))
        return out

    items: list[Item] = []
    if test:
        cells = _get(row, "images", where) or []
        for r, cell in enumerate(cells):
            items += build("vqa", _decode(cell, shard, row_id, f"images[{r}]", image_cache), r, f".test{r}")
    elif per_modality["vqa"]:
        items += build("vqa", _decode(_get(row, "image", where), shard, row_id, "image", image_cache), 0, "")
    items += build("qa", None, -1, "")
    return items


def read_config(config_dir: str | os.PathLike[str], *,
                image_cache: dict[str, Image.Image] | None = None) -> list[Item]:
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
    items: list[Item] = []
    for shard in shards:
        names = pq.read_schema(shard).names
        for name in needed:
            if name not in names:
                raise MMUError(f"{shard}: missing field {name!r} (expected fields: {', '.join(needed)})")
        for row in pq.read_table(shard, columns=list(needed)).to_pylist():
            items += _row_items(row, shard, test, image_cache)
    return items


def read_mllmu(data_dir: str | os.PathLike[str],
               configs: Sequence[str] | None = None) -> dict[str, list[Item]]:
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
    out: dict[str, list[Item]] = {}
    for config in wanted:
        folder = root / config
        if not folder.is_dir():
            raise MMUError(f"MLLMU config folder {folder} not found; expected config folders: "
                           f"{', '.join(CONFIGS)}")
        out[config] = read_config(folder)
    return out
