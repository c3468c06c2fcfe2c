"""Read CLEAR's on-disk configs (a local clone of the hub dataset ``therem/CLEAR``) into plain rows.

Layout (one folder per config, parquet shards ``train-0000k-of-0000n.parquet``; ``real_world``
has been published with a ``test-*`` shard too, so any ``*.parquet`` in the folder is read)::

    full/  (or data/, the hub's default config)   image, caption, name        every image row
    forget01/ forget05/ forget10/                  image, caption, name        the forget persons
    retain99/ retain95/ retain90/                  image, caption, name        their complements
    <image config>+tofu/                           image, caption, question, answer
                                                   image rows (empty question) + TOFU text rows
    forget01_perturbed/ forget05_perturbed/ forget10_perturbed/ retain_perturbed/
                                                   image, caption, name, perturbed_names
                                                   (+ perturbed_captions, paraphrased_caption)
    real_faces/                                    image, answer, options      (real people)
    real_world/                                    image, question, answer, options (+ prompt)

Rows come back as dicts of their text fields (``None`` text -> ``""``, ``None`` lists -> ``[]``,
``name`` stripped of surrounding spaces)
plus ``image`` (an RGB PIL image), ``image_sha`` (sha1 of the image bytes) and ``where`` (the
shard and row number, for error messages). ``+tofu`` configs give only their TOFU text rows
(non-empty ``question``), read without the image column: their image rows repeat the plain config.
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

from ..dataworld import parquet_shards

IMAGE_CONFIGS = ("full", "forget01", "forget05", "forget10", "retain99", "retain95", "retain90")
TOFU_CONFIGS = tuple(f"{c}+tofu" for c in IMAGE_CONFIGS)
PERTURBED_CONFIGS = ("forget01_perturbed", "forget05_perturbed", "forget10_perturbed", "retain_perturbed")
REAL_CONFIGS = ("real_faces", "real_world")
CONFIGS = IMAGE_CONFIGS + TOFU_CONFIGS + PERTURBED_CONFIGS + REAL_CONFIGS
# config -> a folder read in its place when its own is missing (the hub's `default` config in
# data/ holds the same rows as full/).
ALTERNATIVES = {"full": "data"}

REQUIRED: dict[str, tuple[str, ...]] = {
    "image": ("image", "caption", "name"),
    "tofu": ("question", "answer"),
    "perturbed": ("image", "caption", "name", "perturbed_names"),
    "real_faces": ("image", "answer", "options"),
    "real_world": ("image", "question", "answer", "options"),
}
OPTIONAL: dict[str, tuple[str, ...]] = {
    "image": (),
    "tofu": ("perturbed_answer",),  # TOFU's own perturbed configs have it; CLEAR's +tofu do not
    "perturbed": ("perturbed_captions", "paraphrased_caption"),
    "real_faces": (),
    "real_world": ("prompt",),
}
LIST_FIELDS = {"perturbed_names", "perturbed_captions", "options", "perturbed_answer"}


def config_kind(config: str) -> str:
    """image | tofu | perturbed | real_faces | real_world."""
    if config in IMAGE_CONFIGS or config == "data":
        return "image"
    if config in TOFU_CONFIGS:
        return "tofu"
    if config in PERTURBED_CONFIGS:
        return "perturbed"
    if config in REAL_CONFIGS:
        return config
    raise MMUError(f"unknown CLEAR config {config!r}; expected one of {', '.join(CONFIGS)}")


def config_folder(root: Path, config: str) -> Path:
    """The folder a config is read from (``data/`` stands in for a missing ``full/``)."""
    folder = root / config
    alt = ALTERNATIVES.get(config)
    if alt and not (folder.is_dir() and parquet_shards(folder)) and (root / alt).is_dir():
        return root / alt
    return folder


def _shards(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise MMUError(f"CLEAR config folder {folder} not found; expected one folder per config: "
                       f"{', '.join(CONFIGS)}")
    shards = parquet_shards(folder)
    if not shards:
        raise MMUError(f"CLEAR config folder {folder} has no *.parquet shards")
    return shards


def _check_fields(shard: Path, needed: Sequence[str], config: str) -> list[str]:
    names = pq.read_schema(shard).names
    for name in needed:
        if name not in names:
            raise MMUError(f"{shard}: missing field {name!r} (CLEAR config {config} needs: {', '.join(needed)})")
    return names


def decode_image(cell: Any, shard: Path, where: str,
                 image_cache: dict[str, Image.Image] | None = None) -> tuple[Image.Image, str]:
    """(RGB image, sha1 of its bytes) from an image cell: ``{bytes, path}`` (the Hugging Face
    ``Image`` feature) or raw bytes; a ``path`` without bytes is read relative to the shard."""
    data = cell.get("bytes") if isinstance(cell, dict) else cell if isinstance(cell, (bytes, bytearray)) else None
    try:
        if data is None:
            path = cell.get("path") if isinstance(cell, dict) else None
            if not path:
                raise ValueError("no image bytes and no path")
            source = Path(path) if Path(path).is_absolute() else shard.parent / path
            data = source.read_bytes()
        digest = hashlib.sha1(data).hexdigest()
        if image_cache is not None and digest in image_cache:
            return image_cache[digest], digest
        with Image.open(io.BytesIO(data)) as im:
            image = im.convert("RGB")
    except Exception as exc:
        raise MMUError(f"{where}: field 'image': image does not decode: {exc}") from exc
    if image_cache is not None:
        image_cache[digest] = image
    return image, digest


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def read_clear_config(folder: str | os.PathLike[str], config: str, *,
                      image_cache: dict[str, Image.Image] | None = None) -> list[dict[str, Any]]:
    """Rows of one CLEAR config folder (all its shards, in name order); see the module doc."""
    folder = Path(folder)
    kind = config_kind(config)
    needed, optional = REQUIRED[kind], OPTIONAL[kind]
    rows: list[dict[str, Any]] = []
    n = 0
    for shard in _shards(folder):
        names = _check_fields(shard, needed, config)
        columns = list(needed) + [c for c in optional if c in names]
        for row in pq.read_table(shard, columns=columns).to_pylist():
            where = f"{shard}: row {n}"
            n += 1
            out: dict[str, Any] = {}
            for key in columns:
                if key == "image":
                    continue
                if key in LIST_FIELDS:
                    out[key] = [_text(v) for v in (row[key] or [])]
                else:
                    out[key] = _text(row[key]).strip() if key == "name" else _text(row[key])
            if kind == "tofu" and not out["question"].strip():
                continue  # an image row of a +tofu config: the plain config has it
            if "name" in out and not out["name"]:
                raise MMUError(f"{where}: field 'name' is empty (every image row names its person)")
            if "image" in columns:
                label = out.get("name") or out.get("answer")
                out["image"], out["image_sha"] = decode_image(
                    row["image"], shard, where + (f" ({label!r})" if label else ""), image_cache)
            out["where"] = where
            rows.append(out)
    return rows


def read_clear_names(folder: str | os.PathLike[str], config: str) -> list[str]:
    """The ``name`` column of an image or perturbed config (no images read), in row order."""
    out: list[str] = []
    for shard in _shards(Path(folder)):
        _check_fields(shard, ("name",), config)
        names = [_text(v).strip() for v in pq.read_table(shard, columns=["name"]).column("name").to_pylist()]
        if not all(names):
            raise MMUError(f"{shard}: row {len(out) + names.index('')}: field 'name' is empty "
                           f"(every image row names its person)")
        out += names
    return out


def read_clear(data_dir: str | os.PathLike[str], configs: Sequence[str] | None = None, *,
               image_cache: dict[str, Image.Image] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Read a local CLEAR copy into ``{config: [row, ...]}``.

    ``configs`` defaults to every config in :data:`CONFIGS`; each must be a folder of
    ``data_dir`` with parquet shards (``data/`` may stand in for ``full/``). Errors name the
    folder, shard, row and field: a missing config folder, a shard without a needed field, an
    image that does not decode.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise MMUError(f"CLEAR data folder {root} not found (expected config folders: {', '.join(CONFIGS)})")
    wanted = list(CONFIGS) if configs is None else list(configs)
    return {c: read_clear_config(config_folder(root, c), c, image_cache=image_cache) for c in wanted}
