"""What the real benchmarks' worlds (MLLMU-Bench, CLEAR) share: the World surface over files.

A :class:`DataWorld` presents a benchmark folder through the same small surface as the synthetic
:class:`~mmu_bench.tasks.synthetic.world.World`, so the zoo, the protocols and the evaluator take
either: :class:`mmu_bench.surfaces.WorldSurface`::

    name, config (frozen dataclass: asdict(), .fingerprint(), .train_renders),
    forget_splits, forget_ids, split_names, retain_split(f), split_items(s), split_entities(s),
    validation_items(entity_ids, renders), corpus()

Items are plain dicts with the World's fields (:class:`mmu_bench.surfaces.Item`: ``id, entity_id,
image, modality, render, kind, fact, question, answer, options, answer_index``); splits are read
on first use and kept.

Also here: the deterministic augmentation behind validation (and CLEAR's test) images, the
data-file fingerprint, multiple-choice option building, and resolving a hub id to a local folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from mmu_bench.errors import MMUError
from mmu_bench.surfaces import ITEM_FIELDS, Item

ROLE_SPLITS = ("full", "test", "holdout", "real", "utility")
DATAWORLD_VERSION = 1


# ---------------------------------------------------------------- small deterministic helpers
def stable_int(*parts: Any) -> int:
    """A 64-bit integer from the parts' text (the same on every machine and Python run)."""
    blob = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little")


def short_hash(data: bytes | str, n: int = 12) -> str:
    return hashlib.sha1(data.encode() if isinstance(data, str) else data).hexdigest()[:n]


def augment(image: Image.Image, *key: Any) -> Image.Image:
    """A deterministic transformed copy of ``image`` (seeded by ``key``, e.g. entity + render).

    Horizontal flip (half the keys), a crop keeping 78-92 % of each side resized back to the
    original size, and brightness / contrast / colour jitter in [0.8, 1.2]. The crop guarantees
    the pixels differ from the source; the content (the person) is kept.
    """
    rng = np.random.default_rng(stable_int("augment", *key))
    out = image.convert("RGB")
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    w, h = out.size
    scale = float(rng.uniform(0.78, 0.92))
    cw, ch = max(1, round(w * scale)), max(1, round(h * scale))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = out.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.Resampling.BICUBIC)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        out = enhancer(out).enhance(float(rng.uniform(0.8, 1.2)))
    return out


def mcq_options(gold: str, candidates: Iterable[str], key: Any, where: str,
                pool: Sequence[str] = ()) -> tuple[list[str], int]:
    """Four options: ``gold`` at a position drawn from ``key`` among three distractors.

    Distractors are the first three distinct ``candidates`` that differ from ``gold``
    (case-insensitively); if fewer than three, the rest are drawn (seeded by ``key``) from
    ``pool``. Fewer than three in all raises an MMUError naming ``where``.
    """
    gold = str(gold)
    seen = {gold.strip().lower()}
    distractors: list[str] = []
    for c in candidates:
        c = str(c)
        if c.strip() and c.strip().lower() not in seen:
            seen.add(c.strip().lower())
            distractors.append(c)
        if len(distractors) == 3:
            break
    if len(distractors) < 3:
        extra = sorted({str(p) for p in pool if str(p).strip() and str(p).strip().lower() not in seen})
        rng = np.random.default_rng(stable_int("fill", key))
        for i in rng.permutation(len(extra))[: 3 - len(distractors)]:
            distractors.append(extra[int(i)])
    if len(distractors) < 3:
        raise MMUError(f"{where}: multiple choice needs 3 distractors besides the answer {gold!r}; "
                       f"found {len(distractors)}")
    pos = stable_int("position", key) % 4
    return distractors[:pos] + [gold] + distractors[pos:], pos


# ---------------------------------------------------------------- data files
_FILE_HASHES: dict[tuple[str, int, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file's content, cached per (path, size, mtime, inode): a changed file re-hashes."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]


def parquet_shards(folder: Path) -> list[Path]:
    """A config folder's parquet shards in name order (``train-*`` / ``test-*`` ...)."""
    return sorted(p for p in folder.glob("*.parquet") if p.is_file())


@dataclass(frozen=True)
class DataConfig:
    """What a DataWorld is a function of: the data folder's files plus the reading options.

    Args:
        source: what the user gave (a folder or a hub id).
        data_dir: the local folder read (absolute); not part of the fingerprint.
        train_renders: copies of each qa item per vqa rendering when the zoo balances training
            data. Real benchmarks have one picture per row, so 1.
    """

    source: str
    data_dir: str
    train_renders: int = 1

    # Config folders whose parquet files make the fingerprint (set by subclasses).
    def data_configs(self) -> tuple[str, ...]:  # pragma: no cover - overridden
        raise NotImplementedError

    def data_files(self) -> list[Path]:
        root = Path(self.data_dir)
        return [p for c in self.data_configs() if (root / c).is_dir() for p in parquet_shards(root / c)]

    def fingerprint(self) -> str:
        """sha256 over every data file's relative path, size and content hash, plus the reading
        options (not the folder's location: the same files anywhere give the same fingerprint).
        Content hashes are cached per file (path, size, mtime), so this is cheap after the first call."""
        root = Path(self.data_dir)
        files = [[p.relative_to(root).as_posix(), p.stat().st_size, file_sha256(p)] for p in self.data_files()]
        options = {k: v for k, v in asdict(self).items() if k not in ("source", "data_dir")}
        blob = json.dumps({"benchmark": type(self).__name__, "options": options, "files": files,
                           "version": DATAWORLD_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def resolve_source(source: str | os.PathLike[str], kind: str, hub_id: str, configs: Sequence[str],
                   revision: str | None = None) -> Path:
    """A local folder for ``source``: an existing folder as is, else a Hugging Face dataset id
    fetched (or found in the local hub cache) with ``huggingface_hub.snapshot_download``, limited
    to the config folders read. The snapshot has the hub's layout, so one reader serves both."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve()
    text = str(source)
    parts = text.split("/")
    if len(parts) != 2 or not all(parts) or path.exists():
        raise MMUError(f"{kind} data folder {text} not found; pass the folder of a local copy (one "
                       f"sub-folder per config: {', '.join(configs)}) or a hub id such as {hub_id!r}")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(repo_id=text, repo_type="dataset", revision=revision,
                                  allow_patterns=[f"{c}/*" for c in configs] + ["README.md"])
    except Exception as exc:  # offline and not cached, unknown id, no network ...
        raise MMUError(f"{kind} data {text!r}: not a local folder, and the Hugging Face dataset could not "
                       f"be fetched or found in the local hub cache ({type(exc).__name__}: {exc}). "
                       f"Download it once with network access (unset HF_HUB_OFFLINE), or pass a local "
                       f"folder") from exc
    return Path(local).resolve()


def require_configs(root: Path, kind: str, configs: Sequence[str], alternatives: dict[str, str] | None = None) -> None:
    """MMUError naming every missing config folder (and its shards) under ``root``."""
    alternatives = alternatives or {}
    missing = []
    for c in configs:
        folders = [root / c] + ([root / alternatives[c]] if c in alternatives else [])
        if not any(f.is_dir() and parquet_shards(f) for f in folders):
            missing.append(c)
    if missing:
        shown = ", ".join(str(root / c) + (f" (or {root / alternatives[c]})" if c in alternatives else "")
                          for c in missing)
        raise MMUError(f"{kind} data folder {root} lacks config folder(s) with parquet shards: {shown}; "
                       f"expected one folder per config: {', '.join(configs)}")


# ---------------------------------------------------------------- the surface
class DataWorld:
    """Base of the real benchmarks' worlds. Subclasses set ``name``, ``config``,
    ``forget_splits``, ``forget_ids``, ``_retain_of`` (forget split -> retain split) and
    implement :meth:`_load_split` (and may override :meth:`_entities`)."""

    name: str = "data"
    config: DataConfig
    forget_splits: tuple[str, ...] = ()
    forget_ids: dict[str, list[str]]
    _retain_of: dict[str, str] = {}

    def __init__(self) -> None:
        self._splits: dict[str, list[Item]] = {}
        self._val_index: dict[str, list[tuple[Image.Image, list[Item]]]] | None = None

    # ------------------------------------------------------------ names
    @property
    def split_names(self) -> tuple[str, ...]:
        return ("full", *self.forget_splits, *(self._retain_of[f] for f in self.forget_splits),
                "test", "holdout", "real", "utility")

    def retain_split(self, forget_split: str) -> str:
        """The retain split that complements ``forget_split`` (e.g. forget_10 -> retain_90)."""
        if forget_split not in self._retain_of:
            raise MMUError(f"unknown forget split {forget_split!r} for {self.name}; expected one of "
                           f"{', '.join(self.forget_splits)}")
        return self._retain_of[forget_split]

    def _check_split(self, split: str) -> None:
        if split not in self.split_names:
            raise MMUError(f"unknown split {split!r} for {self.name}; expected one of {', '.join(self.split_names)}")

    # ------------------------------------------------------------ items
    def split_items(self, split: str) -> list[Item]:
        """Items of a split, read once per world (treat them as read-only; copy to change)."""
        self._check_split(split)
        if split not in self._splits:
            items = self._load_split(split)
            check_items(items, f"{self.name} split {split!r} ({self.config.data_dir})")
            self._splits[split] = items
        return list(self._splits[split])

    def split_entities(self, split: str) -> list[str]:
        self._check_split(split)
        return self._entities(split)

    def _entities(self, split: str) -> list[str]:
        return list(dict.fromkeys(it["entity_id"] for it in self.split_items(split)))

    def _load_split(self, split: str) -> list[Item]:  # pragma: no cover - overridden
        raise NotImplementedError

    # ------------------------------------------------------------ validation
    def _validation_sources(self) -> dict[str, list[tuple[Image.Image, list[Item]]]]:
        """entity -> [(training image, its vqa mcq items)], from the full and real splits."""
        if self._val_index is None:
            index: dict[str, dict[int, tuple[Image.Image, list[Item]]]] = {}
            for split in ("full", "real"):
                for it in self.split_items(split):
                    if it["modality"] == "vqa" and it["kind"] == "mcq":
                        groups = index.setdefault(it["entity_id"], {})
                        groups.setdefault(id(it["image"]), (it["image"], []))[1].append(it)
            self._val_index = {e: list(g.values()) for e, g in index.items()}
        return self._val_index

    def validation_items(self, entity_ids: list[str], renders: int = 2) -> list[Item]:
        """vqa mcq items of these entities on deterministic augmented copies of their training
        images (:func:`augment`, seeded by benchmark, entity and render index): for methods'
        stopping rules, never reported. Render ``r`` uses the entity's training image number
        ``perm[r]`` (a seeded permutation, cycling when it has fewer images than renders)."""
        sources = self._validation_sources()
        items: list[Item] = []
        for eid in entity_ids:
            groups = sources.get(eid)
            if not groups:
                raise MMUError(f"{self.name}: no vqa multiple-choice items for entity {eid!r} in the full or "
                               f"real split, so no validation items can be made")
            perm = np.random.default_rng(stable_int(self.name, "val-pick", eid)).permutation(len(groups))
            for r in range(renders):
                image, group = groups[int(perm[r % len(groups)])]
                aug = augment(image, self.name, "val", eid, r)
                items += [dict(it, id=f"{it['id']}.val{r}", image=aug, render=r) for it in group]
        return items

    # ------------------------------------------------------------ text
    def corpus(self) -> list[str]:
        """Every question / answer / option text of every split (tokenizer training data)."""
        texts: dict[str, None] = dict.fromkeys(self._extra_corpus())
        for split in self.split_names:
            for it in self.split_items(split):
                texts[it["question"]] = None
                texts[it["answer"]] = None
                for o in it["options"]:
                    texts[o] = None
        return [t for t in texts if t]

    def _extra_corpus(self) -> list[str]:
        return []


def check_items(items: list[Item], where: str) -> None:
    """Raise MMUError unless every item is well formed (the invariants the evaluator relies on)."""
    seen: set[str] = set()
    for it in items:
        missing = [f for f in ITEM_FIELDS if f not in it]
        if missing:
            raise MMUError(f"{where}: item {it.get('id')!r} lacks field(s) {', '.join(missing)}")
        if it["id"] in seen:
            raise MMUError(f"{where}: duplicate item id {it['id']!r}")
        seen.add(it["id"])
        if it["modality"] == "vqa":
            if not isinstance(it["image"], Image.Image) or it["image"].mode != "RGB":
                raise MMUError(f"{where}: vqa item {it['id']!r} needs an RGB PIL image")
        elif it["modality"] != "qa" or it["image"] is not None:
            raise MMUError(f"{where}: item {it['id']!r}: modality {it['modality']!r} with image "
                           f"{type(it['image']).__name__}; expected vqa with an image or qa without")
        if it["kind"] == "mcq":
            opts, idx = it["options"], it["answer_index"]
            if len(opts) != 4 or not 0 <= idx < 4 or opts[idx] != it["answer"]:
                raise MMUError(f"{where}: mcq item {it['id']!r} needs 4 options with options[answer_index] "
                               f"== answer; got options={opts!r}, answer_index={idx!r}, answer={it['answer']!r}")
        elif it["kind"] not in ("gen", "cloze"):
            raise MMUError(f"{where}: item {it['id']!r} has kind {it['kind']!r}; expected mcq, gen or cloze")
