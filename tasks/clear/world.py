"""CLEAR as a World-shaped benchmark (the DataWorld surface over its parquet configs).

Splits (each read on first use; persons are identified by their ``name``, which is the entity id)::

    full       <- full (or data) + full+tofu           + name mcq of every perturbed config
    forget_1 / forget_5 / forget_10  <- forget01 / forget05 / forget10 (+ their +tofu)
    retain_99 / retain_95 / retain_90 <- retain99 / retain95 / retain90 (+ their +tofu)
    test       <- transformed copies of the forget persons' images (CLEAR has no unseen images)
    real       <- real_faces + real_world              holdout, utility -> []

Items of a person in full / forget / retain splits:

- vqa mcq ``What is the name of the person in the image?`` on each row of the ``*_perturbed``
  configs (pooled, deduplicated by person + image): options = the true name + the first three
  ``perturbed_names`` at a position drawn from the item id (CLEAR inserts it at random);
- vqa gen: the row's ``caption`` for each image of the split's image config, asked with one
  fixed question (scored by ROUGE);
- qa gen: each TOFU question / answer of the split's ``+tofu`` config, attributed to the person
  it names (see :func:`attribute_persons`); qa mcq too when the rows carry ``perturbed_answer``.

Item ids are content-based (``<name>.vqa.mcq.name.<sha1 of image bytes>``,
``<name>.qa.gen.<sha1 of question+answer>``), so an item has the same id in every split.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Sequence

from mmu_bench.errors import MMUError

from ..dataworld import DataConfig, DataWorld, augment, mcq_options, require_configs, resolve_source, short_hash
from .reader import ALTERNATIVES, CONFIGS, PERTURBED_CONFIGS, config_folder, read_clear_config, read_clear_names

HUB_ID = "therem/CLEAR"
KIND = "CLEAR"
FORGET_SPLITS = ("forget_1", "forget_5", "forget_10")
RETAIN_OF = {"forget_1": "retain_99", "forget_5": "retain_95", "forget_10": "retain_90"}
# split -> its image config (the +tofu config is "<image config>+tofu")
SPLIT_CONFIGS: dict[str, str] = {
    "full": "full",
    "forget_1": "forget01", "forget_5": "forget05", "forget_10": "forget10",
    "retain_99": "retain99", "retain_95": "retain95", "retain_90": "retain90",
}
NAME_QUESTION = "What is the name of the person in the image?"
CAPTION_QUESTION = "Write a caption for this image."
REAL_WORLD_PREFIX = "real_world."


@dataclass(frozen=True)
class ClearConfig(DataConfig):
    """CLEAR reading options.

    Args:
        test_renders: transformed copies of each forget-person image in the ``test`` split.
    """

    test_renders: int = 1

    def data_configs(self) -> tuple[str, ...]:
        return CONFIGS + tuple(ALTERNATIVES.values())


def attribute_persons(rows: Sequence[dict[str, Any]], names: Sequence[str], where: str) -> list[str]:
    """The person each TOFU text row is about (CLEAR's ``+tofu`` rows carry no name).

    A row belongs to the person whose full name occurs (case-insensitively, as whole words)
    earliest in its question, else earliest in its answer (the longer name wins a tie). A row
    naming nobody inherits the person of the row before it (TOFU lists each author's questions
    together); leading such rows take the first named person. No row naming anyone -> MMUError.
    """
    patterns = [(n, re.compile(r"(?<!\w)" + re.escape(n.lower()) + r"(?!\w)"))
                for n in sorted(set(names), key=lambda n: (-len(n), n)) if n.strip()]
    found: list[str | None] = []
    for row in rows:
        q, a = row["question"].lower(), row["answer"].lower()
        best: tuple[tuple[int, int, int], str] | None = None
        for name, pat in patterns:
            m = pat.search(q)
            score = (0, m.start(), -len(name)) if m else None
            if score is None:
                m = pat.search(a)
                score = (1, m.start(), -len(name)) if m else None
            if score is not None and (best is None or score < best[0]):
                best = (score, name)
        found.append(best[1] if best else None)
    named = [n for n in found if n is not None]
    if rows and not named:
        shown = ", ".join(repr(n) for n in list(names)[:5]) + (" ..." if len(names) > 5 else "")
        raise MMUError(f"{where}: none of its {len(rows)} TOFU questions or answers names a person of "
                       f"this split ({shown}), so they cannot be attributed to persons")
    out: list[str] = []
    current = named[0] if named else ""
    for n in found:
        current = n if n is not None else current
        out.append(current)
    return out


class ClearWorld(DataWorld):
    """CLEAR from a local copy (``data_dir``: one folder per config) or a hub id.

    Args:
        data_dir: a folder laid out like the hub dataset (``forget01/train-*.parquet``, ...), or
            a Hugging Face dataset id (e.g. ``"therem/CLEAR"``), fetched with
            ``huggingface_hub.snapshot_download`` (or found in the hub cache when offline).
        test_renders: see :class:`ClearConfig`.
        revision: hub revision (hub ids only).
    """

    name = "clear"
    forget_splits = FORGET_SPLITS
    _retain_of = RETAIN_OF

    def __init__(self, data_dir: str | os.PathLike[str], *, test_renders: int = 1, revision: str | None = None):
        super().__init__()
        if not isinstance(test_renders, int) or test_renders < 1:
            raise MMUError(f"CLEAR test_renders must be an integer >= 1, got {test_renders!r}")
        root = resolve_source(data_dir, KIND, HUB_ID, CONFIGS, revision)
        require_configs(root, KIND, CONFIGS, ALTERNATIVES)
        self.config = ClearConfig(source=str(data_dir), data_dir=str(root), test_renders=test_renders)
        self.root = root
        self._images: dict[str, Any] = {}  # sha1 of image bytes -> decoded image, shared by all configs
        self._rows: dict[str, list[dict[str, Any]]] = {}
        self._names: dict[str, list[str]] = {}
        self._pool: dict[str, list[dict[str, Any]]] | None = None
        self.forget_ids = {f: self._config_names(f) for f in FORGET_SPLITS}
        for f, r in RETAIN_OF.items():
            both = sorted(set(self.forget_ids[f]) & set(self._config_names(r)))
            if both:
                raise MMUError(f"CLEAR data {root}: config {SPLIT_CONFIGS[f]} and its complement "
                               f"{SPLIT_CONFIGS[r]} share person(s) {', '.join(both[:5])}"
                               f"{' ...' if len(both) > 5 else ''}")

    # ------------------------------------------------------------ raw rows
    def _read(self, config: str) -> list[dict[str, Any]]:
        if config not in self._rows:
            self._rows[config] = read_clear_config(config_folder(self.root, config), config,
                                                   image_cache=self._images)
        return self._rows[config]

    def _config_names(self, split: str) -> list[str]:
        """Persons of a full / forget / retain split: its image config's names, in row order."""
        if split not in self._names:
            config = SPLIT_CONFIGS[split]
            self._names[split] = list(dict.fromkeys(read_clear_names(config_folder(self.root, config), config)))
        return self._names[split]

    def _all_names(self) -> list[str]:
        return self._config_names("full")

    # ------------------------------------------------------------ item builders
    def _name_item(self, row: dict[str, Any]) -> dict[str, Any]:
        name = row["name"]
        iid = f"{name}.vqa.mcq.name.{row['image_sha'][:12]}"
        options, idx = mcq_options(name, row["perturbed_names"], ("clear", iid), row["where"],
                                   pool=self._all_names())
        return dict(id=iid, entity_id=name, image=row["image"], modality="vqa", render=0, kind="mcq",
                    fact="name", question=NAME_QUESTION, answer=name, options=options, answer_index=idx)

    @staticmethod
    def _caption_item(row: dict[str, Any]) -> dict[str, Any]:
        name = row["name"]
        return dict(id=f"{name}.vqa.gen.caption.{row['image_sha'][:12]}", entity_id=name, image=row["image"],
                    modality="vqa", render=0, kind="gen", fact="caption", question=CAPTION_QUESTION,
                    answer=row["caption"], options=[], answer_index=-1)

    def _mcq_pool(self) -> dict[str, list[dict[str, Any]]]:
        """person -> name-mcq items from every ``*_perturbed`` config (first row per image wins)."""
        if self._pool is None:
            pool: dict[str, dict[str, dict[str, Any]]] = {}
            for config in PERTURBED_CONFIGS:
                for row in self._read(config):
                    item = self._name_item(row)
                    pool.setdefault(row["name"], {}).setdefault(item["id"], dict(item, _row=row))
            self._pool = {name: list(items.values()) for name, items in pool.items()}
        return self._pool

    def _qa_items(self, split: str, names: list[str]) -> list[dict[str, Any]]:
        config = f"{SPLIT_CONFIGS[split]}+tofu"
        rows = self._read(config)
        where = str(config_folder(self.root, config))
        owners = attribute_persons(rows, names, where)
        items = []
        for row, name in zip(rows, owners):
            h = short_hash(row["question"] + "\n" + row["answer"])
            base = dict(entity_id=name, image=None, modality="qa", render=-1, fact="tofu", question=row["question"])
            items.append(dict(base, id=f"{name}.qa.gen.{h}", kind="gen", answer=row["answer"], options=[],
                              answer_index=-1))
            gold = row["answer"].strip().lower()
            wrong = [p for p in row.get("perturbed_answer", []) if p.strip() and p.strip().lower() != gold]
            if len({p.strip().lower() for p in wrong}) >= 3:
                iid = f"{name}.qa.mcq.{h}"
                options, idx = mcq_options(row["answer"], wrong, ("clear", iid), row["where"])
                items.append(dict(base, id=iid, kind="mcq", answer=row["answer"], options=options, answer_index=idx))
        return items

    # ------------------------------------------------------------ splits
    def _entities(self, split: str) -> list[str]:
        if split in SPLIT_CONFIGS:
            return self._config_names(split)
        if split == "test":
            return list(dict.fromkeys(n for f in reversed(FORGET_SPLITS) for n in self.forget_ids[f]))
        if split in ("holdout", "utility"):
            return []
        return super()._entities(split)

    def _load_split(self, split: str) -> list[dict[str, Any]]:
        if split in ("holdout", "utility"):
            return []
        if split == "real":
            return self._real_items()
        if split == "test":
            return self._test_items()
        names = self._config_names(split)
        pool = self._mcq_pool()
        per: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        # the perturbed config CLEAR's released eval reads for this split (its official protocol)
        official = (f"{SPLIT_CONFIGS[split]}_perturbed" if split in FORGET_SPLITS
                    else "retain_perturbed" if split in RETAIN_OF.values() else None)
        index = self._perturbed_index(official) if official else {}
        for n in names:
            for it in pool.get(n, []):
                item = {k: v for k, v in it.items() if k != "_row"}
                hit = index.get((n, it["_row"]["image_sha"]))
                if hit is not None:
                    item["official"] = _official_fields(official, *hit)
                per[n].append(item)
        for row in self._read(SPLIT_CONFIGS[split]):
            if row["caption"].strip():
                per[row["name"]].append(self._caption_item(row))
        for it in self._qa_items(split, names):
            per[it["entity_id"]].append(it)
        return _unique([it for n in names for it in per[n]])

    def _perturbed_index(self, config: str) -> dict[tuple[str, str], tuple[int, dict[str, Any]]]:
        """(name, image sha) -> (row number, row) of a ``*_perturbed`` config (first row wins)."""
        out: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        for i, row in enumerate(self._read(config)):
            out.setdefault((row["name"], row["image_sha"]), (i, row))
        return out

    def _test_items(self) -> list[dict[str, Any]]:
        """The forget persons' name-mcq and caption items on transformed copies of their images
        (:func:`~mmu_bench.tasks.dataworld.augment`, seeded by person, image and copy number)."""
        pool = self._mcq_pool()
        items = []
        for name in self._entities("test"):
            for it in pool.get(name, []):
                row = it["_row"]
                for r in range(self.config.test_renders):
                    image = augment(row["image"], "clear", "test", name, row["image_sha"], r)
                    mcq = {k: v for k, v in it.items() if k != "_row"}
                    items.append(dict(mcq, id=f"{mcq['id']}.test{r}", image=image, render=r))
                    if row["caption"].strip():
                        cap = self._caption_item(row)
                        items.append(dict(cap, id=f"{cap['id']}.test{r}", image=image, render=r))
        return _unique(items)

    def _real_items(self) -> list[dict[str, Any]]:
        items = []
        faces = self._read("real_faces")
        names = [r["answer"] for r in faces] + [o for r in faces for o in r["options"]]
        for i, row in enumerate(faces):
            name = row["answer"]
            iid = f"{name}.vqa.mcq.name.{row['image_sha'][:12]}"
            options, idx = mcq_options(name, row["options"], ("clear", iid), row["where"], pool=names)
            items.append(dict(id=iid, entity_id=name, image=row["image"], modality="vqa", render=0, kind="mcq",
                              fact="name", question=NAME_QUESTION, answer=name, options=options, answer_index=idx,
                              official=_official_fields("real_faces", i, row)))
        world = self._read("real_world")
        answers = [r["answer"] for r in world] + [o for r in world for o in r["options"]]
        for i, row in enumerate(world):
            question = row["question"].strip() or row.get("prompt", "").strip()
            if not question:
                raise MMUError(f"{row['where']}: field 'question' is empty (and no 'prompt')")
            eid = f"{REAL_WORLD_PREFIX}{row['image_sha'][:12]}"
            iid = f"{eid}.vqa.mcq.{short_hash(question + chr(10) + row['answer'])}"
            options, idx = mcq_options(row["answer"], row["options"], ("clear", iid), row["where"], pool=answers)
            items.append(dict(id=iid, entity_id=eid, image=row["image"], modality="vqa", render=0, kind="mcq",
                              fact="real_world", question=question, answer=row["answer"], options=options,
                              answer_index=idx, official=_official_fields("real_world", i, row)))
        return _unique(items)

    def _extra_corpus(self) -> list[str]:
        return [NAME_QUESTION, CAPTION_QUESTION]


def _unique(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """First item per id (a row repeated in a config would otherwise repeat its id)."""
    seen: dict[str, dict[str, Any]] = {}
    for it in items:
        seen.setdefault(it["id"], it)
    return list(seen.values())


# Text fields of a CLEAR row that its released evaluation (mm/eval.py) reads: question / answer
# keys and the base / perturbed answer keys of config/mm/eval.yaml.
_OFFICIAL_FIELDS = ("question", "answer", "options", "caption", "paraphrased_caption", "perturbed_captions",
                    "name", "perturbed_names")


def _official_fields(config: str, row_number: int, row: dict[str, Any]) -> dict[str, Any]:
    """What ``--eval-protocol official`` needs of an item's source row (mmu_bench/official_clear.py):
    the config, the row's number in it (the released eval keeps the first ``ds_size`` rows) and
    its raw text fields."""
    return {"config": config, "row": row_number, "where": row["where"],
            **{k: row[k] for k in _OFFICIAL_FIELDS if k in row}}
