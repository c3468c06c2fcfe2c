"""Write a small CLEAR-shaped dataset from a synthetic World (for tests and dry runs).

Writing CLEAR's layout from the synthetic world is the synthetic plugin's job (as the MLLMU-Bench
export is, :mod:`.mllmu_export`); reading it is CLEAR's (:mod:`mmu_bench.tasks.clear.reader`).
``mmu_bench.tasks.clear`` re-exports :func:`write_clear_fixture` and :data:`FIXTURE_SPLITS`.

The folders, shard names, field names and types are CLEAR's (see :mod:`mmu_bench.tasks.clear.reader`), with Hugging
Face feature metadata (``image`` decodes as an image in ``datasets``) and a README whose YAML
``configs`` block lets ``datasets.load_dataset(out_dir, "<config>")`` open any config.

How the world fills CLEAR's shape:

- persons = the world's fictitious profiles; each has ``train_renders`` images (the training
  renderings) with a caption naming the person and describing the picture;
- CLEAR's forget01 / forget05 / forget10 = the world's forget_5 / forget_10 / forget_15 (nested,
  like CLEAR's), retain99 / retain95 / retain90 = retain_95 / retain_90 / retain_85
  (:data:`FIXTURE_SPLITS`);
- ``*_perturbed``: one row per image of the forget persons (per forget config) and of every
  person outside the largest forget set (``retain_perturbed``); ``perturbed_names`` = the three
  wrong names of the world's own name question;
- ``+tofu``: the image rows (empty question), then the world's text questions about those persons
  as TOFU rows (question, answer; every one names its person). ``tofu_perturbed=True`` adds a
  ``perturbed_answer`` list (the world's wrong options) to text rows of multiple-choice questions;
- ``real_faces``: the world's public figures (rendering 0, name, three wrong names);
  ``real_world``: the multiple-choice questions about the first ``n_real_world`` utility pictures.
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

from ..clear.reader import CONFIGS, config_kind
from .world import World

SHARD_NAME = "train-00000-of-00001.parquet"
# CLEAR config -> the world split whose persons it holds
FIXTURE_SPLITS = {
    "full": "full",
    "forget01": "forget_5", "forget05": "forget_10", "forget10": "forget_15",
    "retain99": "retain_95", "retain95": "retain_90", "retain90": "retain_85",
}
_PERTURBED_OF = {"forget01_perturbed": "forget_5", "forget05_perturbed": "forget_10",
                 "forget10_perturbed": "forget_15", "retain_perturbed": "retain_85"}
_CAPTIONS = (
    "{name} appears as a {palette} {shape} with {texture}, wearing {accessory}, on a {backdrop} background.",
    "A picture of {name}: a {shape} in {palette} with {texture} and {accessory} in front of a {backdrop} wall.",
    "{name}, a {palette} {shape} patterned with {texture}, poses with {accessory} against {backdrop}.",
    "Here {name} is shown as a {shape} coloured {palette}, {texture}, {accessory}, backdrop {backdrop}.",
)
_TEXTURE_WORDS = {"solid": "no pattern", "stripes": "stripes", "dots": "dots", "checks": "checks"}
_ACCESSORY_WORDS = {"none": "nothing on top", "hat": "a hat", "band": "a band", "antenna": "an antenna"}


def _features(kind: str, tofu_perturbed: bool) -> Any:
    from datasets import Features, Image as HFImage, List, Value

    s = Value("string")
    fields: dict[str, Any] = {
        "image": {"image": HFImage(), "caption": s, "name": s},
        "tofu": {"image": HFImage(), "caption": s, "question": s, "answer": s},
        "perturbed": {"image": HFImage(), "caption": s, "name": s, "perturbed_captions": List(s),
                      "paraphrased_caption": s, "perturbed_names": List(s)},
        "real_faces": {"image": HFImage(), "answer": s, "options": List(s)},
        "real_world": {"question": s, "answer": s, "image": HFImage(), "prompt": s, "options": List(s)},
    }[kind]
    if kind == "tofu" and tofu_perturbed:
        fields["perturbed_answer"] = List(s)
    return Features(fields)


def _png(image: Image.Image, name: str) -> dict[str, Any]:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": name}


def _caption(world: World, entity_id: str, r: int, name: str | None = None) -> str:
    e = world.by_id[entity_id]
    look = e.look
    return _CAPTIONS[r % len(_CAPTIONS)].format(
        name=name or e.name, palette=look.palette, shape=look.shape, texture=_TEXTURE_WORDS[look.texture],
        accessory=_ACCESSORY_WORDS[look.accessory], backdrop=look.backdrop)


def _wrong_names(world: World, entity_id: str) -> list[str]:
    """The world's three wrong options of the entity's name question."""
    it = next(it for it in world.entity_items(entity_id, "train")
              if it["modality"] == "vqa" and it["kind"] == "mcq" and it["fact"] == "name" and it["render"] == 0)
    return [o for i, o in enumerate(it["options"]) if i != it["answer_index"]]


class _Writer:
    def __init__(self, world: World, tofu_perturbed: bool, n_real_world: int):
        self.world = world
        self.tofu_perturbed = tofu_perturbed
        self.n_real_world = n_real_world
        self._images: dict[tuple[str, int], dict[str, Any]] = {}

    def image(self, eid: str, r: int) -> dict[str, Any]:
        if (eid, r) not in self._images:
            self._images[(eid, r)] = _png(self.world.render(eid, "train", r), f"{eid}_{r}.png")
        return self._images[(eid, r)]

    def image_rows(self, split: str) -> list[dict[str, Any]]:
        return [{"image": self.image(eid, r), "caption": _caption(self.world, eid, r),
                 "name": self.world.by_id[eid].name}
                for eid in self.world.split_entities(split) for r in range(self.world.config.train_renders)]

    def tofu_rows(self, split: str) -> list[dict[str, Any]]:
        rows = [dict(row, question="", answer="") for row in self.image_rows(split)]
        for row in rows:
            del row["name"]
        for eid in self.world.split_entities(split):
            for it in self.world.entity_items(eid, "train"):
                if it["modality"] != "qa":
                    continue
                row = {"image": None, "caption": "", "question": it["question"], "answer": it["answer"]}
                if self.tofu_perturbed:
                    row["perturbed_answer"] = ([o for i, o in enumerate(it["options"]) if i != it["answer_index"]]
                                               if it["kind"] == "mcq" else [])
                rows.append(row)
        if self.tofu_perturbed:
            for row in rows:
                row.setdefault("perturbed_answer", [])
        return rows

    def perturbed_rows(self, split: str) -> list[dict[str, Any]]:
        w, rows = self.world, []
        for eid in w.split_entities(split):
            wrong = _wrong_names(w, eid)
            for r in range(w.config.train_renders):
                rows.append({"image": self.image(eid, r), "caption": _caption(w, eid, r), "name": w.by_id[eid].name,
                             "perturbed_captions": [_caption(w, eid, r, name=n) for n in wrong],
                             "paraphrased_caption": _caption(w, eid, r + 1),
                             "perturbed_names": wrong})
        return rows

    def real_faces_rows(self) -> list[dict[str, Any]]:
        return [{"image": self.image(eid, 0), "answer": self.world.by_id[eid].name,
                 "options": _wrong_names(self.world, eid)} for eid in self.world.split_entities("real")]

    def real_world_rows(self) -> list[dict[str, Any]]:
        rows, pngs = [], {}
        for it in self.world.split_items("utility"):
            if it["kind"] != "mcq" or int(it["entity_id"][1:]) >= self.n_real_world:
                continue
            if it["entity_id"] not in pngs:
                pngs[it["entity_id"]] = _png(it["image"], f"{it['entity_id']}.png")
            wrong = [o for i, o in enumerate(it["options"]) if i != it["answer_index"]]
            prompt = it["question"] + "\n" + "\n".join(f"{chr(65 + i)}. {o}" for i, o in enumerate(it["options"]))
            rows.append({"question": it["question"], "answer": it["answer"], "image": pngs[it["entity_id"]],
                         "prompt": prompt, "options": wrong})
        return rows

    def rows(self, config: str) -> list[dict[str, Any]]:
        kind = config_kind(config)
        if kind == "image":
            return self.image_rows(FIXTURE_SPLITS[config])
        if kind == "tofu":
            return self.tofu_rows(FIXTURE_SPLITS[config.removesuffix("+tofu")])
        if kind == "perturbed":
            return self.perturbed_rows(_PERTURBED_OF[config])
        return self.real_faces_rows() if kind == "real_faces" else self.real_world_rows()


def _readme(world: World, configs: list[str]) -> str:
    blocks = "\n".join(f"- config_name: {'default' if c == 'data' else c}\n  data_files:\n"
                       f"  - split: train\n    path: {c}/train-*" for c in configs)
    c = world.config
    return f"""---
configs:
{blocks}
---
# Synthetic world in CLEAR's layout

Written by `mmu_bench.tasks.synthetic.clear_export.write_clear_fixture` from the synthetic world (size={c.size},
seed={c.seed}, fingerprint `{c.fingerprint()}`): every person, picture and fact is invented.
Config folders and fields follow CLEAR (`therem/CLEAR`); `data/` is the `default` config (= `full`).
forget01 / forget05 / forget10 hold the world's forget_5 / forget_10 / forget_15 persons.
"""


def write_clear_fixture(world: World, out_dir: str | os.PathLike[str], *, overwrite: bool = False,
                        tofu_perturbed: bool = False, n_real_world: int = 10) -> Path:
    """Write ``world`` to ``out_dir`` in CLEAR's layout and return ``out_dir``.

    Built in a sibling temporary folder and renamed into place; refuses a non-empty ``out_dir``
    unless ``overwrite``. See the module doc for how the world fills each config.
    """
    out = Path(out_dir)
    writer = _Writer(world, tofu_perturbed, n_real_world)
    configs = ["data", *CONFIGS]
    with atomic_dir(out, overwrite=overwrite, what="CLEAR fixture target") as tmp:
        for config in configs:
            rows = writer.rows("full" if config == "data" else config)
            schema = _features(config_kind(config), tofu_perturbed).arrow_schema
            (tmp / config).mkdir()
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp / config / SHARD_NAME)
        (tmp / "README.md").write_text(_readme(world, configs), encoding="utf-8")
    return out
