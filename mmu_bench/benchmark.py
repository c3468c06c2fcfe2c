"""A benchmark = a world of items (synthetic or a real dataset) + the zoo of models trained on it.

:class:`WorldBenchmark` is everything a protocol needs from a benchmark -- the forget request,
retain and validation items, the evaluation tasks, the zoo's models and their reference
metrics -- written once over the *World surface* (:class:`mmu_bench.surfaces.WorldSurface`:
``forget_splits``, ``forget_ids``, ``retain_split``, ``split_items``, ``split_entities``,
``validation_items``, ``corpus``, ``config.fingerprint()``) and implementing the Benchmark
surface (:class:`mmu_bench.surfaces.BenchmarkSurface`). The built-in synthetic benchmark and
the MLLMU-Bench / CLEAR loaders differ only in how they make their world.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from .cache import write_json_atomic
from .errors import MMUError
from .method import UnlearnRequest
from .surfaces import Item, WordingWorld, WorldSurface

TINY_MODEL = "tiny-llava"
#: The evaluation roles of a forget split (the keys of :func:`eval_tasks`).
EVAL_SPLITS = ("forget", "retain", "test", "holdout", "real", "utility")


def eval_tasks(world: WorldSurface, forget_split: str = "forget_10",
               splits: Sequence[str] = EVAL_SPLITS) -> dict[str, list[Item]]:
    """{role: items}: forget / retain (train renderings), test (forget entities in unseen
    renderings), holdout, real, utility, written over the World surface (the synthetic World or
    a real benchmark's DataWorld)."""
    forget_ids = set(world.forget_ids[forget_split])
    out = {}
    for role in splits:
        if role == "forget":
            out[role] = world.split_items(forget_split)
        elif role == "retain":
            out[role] = world.split_items(world.retain_split(forget_split))
        elif role == "test":
            out[role] = [it for it in world.split_items("test") if it["entity_id"] in forget_ids]
        else:
            out[role] = world.split_items(role)
    return out


class WorldBenchmark:
    """Base class: subclasses set ``name``, ``description`` and build ``self.world`` in
    :meth:`make_world`. ``model`` is ``tiny-llava`` (trained from scratch by the zoo) or
    ``hf:<hub id or folder>`` (a pretrained base)."""

    name = "world"
    description = ""
    models: tuple[str, ...] = (TINY_MODEL, "hf:<id or folder>")
    #: the unlearning setting (mmu_bench/settings.py) a run sets: it decides what request() hands out
    setting = None
    world: WorldSurface  # made by make_world

    def __init__(self, *, model: str = TINY_MODEL, cache_dir=None, progress: bool = True,
                 device: str | None = None, dtype: str | None = None, recipe=None,
                 gradient_checkpointing: bool = False, zoo_weights: str = "pinned", **world_args: Any):
        from .zoo import Zoo

        self.world = self.make_world(**world_args)
        self.model_name = model
        if model != TINY_MODEL and not model.startswith("hf:"):
            raise MMUError(f"model {model!r} unknown for benchmark {self.name!r}; expected {TINY_MODEL} "
                           f"or hf:<hub id or local folder>")
        self.zoo = Zoo(self.world, model=None if model == TINY_MODEL else model, recipe=recipe,
                       cache_dir=cache_dir, progress=progress, device=device, dtype=dtype,
                       gradient_checkpointing=gradient_checkpointing, weights=zoo_weights)

    def make_world(self, **world_args: Any) -> WorldSurface:
        raise NotImplementedError

    @property
    def forget_splits(self) -> tuple[str, ...]:
        return tuple(self.world.forget_splits)

    def check_split(self, split: str) -> None:
        if split not in self.world.forget_splits:
            raise MMUError(f"unknown forget split {split!r} for benchmark {self.name!r}; expected one of "
                           f"{', '.join(self.world.forget_splits)}")

    def identity(self) -> dict:
        return {"benchmark": self.name, "world": asdict(self.world.config), "zoo": self.zoo.key,
                "zoo_weights": self.zoo.weights}

    def request(self, split: str) -> UnlearnRequest:
        """The forget request of ``split``: the items the setting lets a method see."""
        from .settings import VISUAL

        self.check_split(split)
        setting = self.setting or VISUAL
        return UnlearnRequest(forget=setting.forget_items(self.world.split_items(split)),
                              forget_entities=list(self.world.forget_ids[split]), setting=setting.name)

    def retain_items(self, split: str) -> list[Item]:
        self.check_split(split)
        return self.world.split_items(self.world.retain_split(split))

    def validation(self, split: str) -> dict[str, list[Item]]:
        """Held-out items for stopping rules, never reported: fresh renderings of every forget
        entity (``forget``) and of up to 20 retain entities (``retain``); where the world has other
        trained wordings, the forget entities' text mcq questions in them (``forget_text``, what
        the full setting's rule also waits for)."""
        self.check_split(split)
        forget = self.world.forget_ids[split]
        retain = list(self.world.split_entities(self.world.retain_split(split)))[:20]
        out = {"forget": self.world.validation_items(forget, renders=2),
               "retain": self.world.validation_items(retain, renders=1)}
        if isinstance(self.world, WordingWorld):
            keep = set(forget)
            qa = [it for it in self.world.split_items(split) if it["modality"] == "qa" and it["kind"] == "mcq"
                  and it["entity_id"] in keep]
            out["forget_text"] = self.world.wording_items(qa, "train")
        return out

    def tasks(self, split: str) -> dict[str, list[Item]]:
        self.check_split(split)
        return eval_tasks(self.world, split)

    def load(self, zoo_model: str, split: str):
        return self.zoo.load(zoo_model, split if zoo_model.startswith("retrain") else None)

    def reference_metrics(self, split: str, eval_cfg) -> dict[str, dict[str, float]]:
        """Metrics of finetuned / retrain / retrain_visual on this split's tasks, cached per zoo."""
        return self._reference(split, eval_cfg)["metrics"]

    def reference_forget_statistics(self, split: str, eval_cfg) -> dict[str, dict[str, float]]:
        """Per-item forget statistics (truth ratios) of the reference models, for forget quality."""
        return self._reference(split, eval_cfg)["forget_statistics"]

    def _reference(self, split: str, eval_cfg) -> dict:
        from .evaluate import evaluate
        from .forget_quality import forget_statistics

        fp = eval_cfg.fingerprint() if hasattr(eval_cfg, "fingerprint") else asdict(eval_cfg) | {"progress": None}
        tag = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:10]
        path = self.zoo.root / "reference" / f"{split}-{tag}-v2.json"
        if path.exists():
            try:
                return json.loads(path.read_text())
            except ValueError:
                pass  # half-written or corrupt: recompute
        tasks = self.tasks(split)
        out: dict = {"metrics": {}, "forget_statistics": {}}
        for name in ("finetuned", "retrain", "retrain_visual"):
            metrics, samples = evaluate(self.load(name, split), tasks, eval_cfg)
            out["metrics"][name] = metrics
            out["forget_statistics"][name] = forget_statistics(samples)
        write_json_atomic(path, out)
        return out
