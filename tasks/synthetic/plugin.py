"""The built-in synthetic benchmark and the tiny LLaVA model, registered as a plugin."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from mmu_bench.cache import write_json_atomic
from mmu_bench.errors import MMUError
from mmu_bench.hookspecs import hookimpl
from mmu_bench.method import UnlearnRequest

from .benchmark import eval_tasks
from .world import FORGET_PERCENTS, WorldConfig

FORGET_SPLITS = tuple(f"forget_{k}" for k in FORGET_PERCENTS)


class SyntheticBenchmark:
    """The drawn world + its zoo. ``size`` / ``seed`` define the world (not the method's seed)."""

    name = "synthetic"
    description = "built-in drawn world of fictitious profiles (MLLMU-Bench shape) with a tiny LLaVA zoo"
    forget_splits = FORGET_SPLITS
    models = ("tiny-llava",)

    def __init__(self, size: int = 100, seed: int = 0, cache_dir=None, progress: bool = True,
                 device: str | None = None, recipe=None):
        from mmu_bench.zoo import Zoo

        try:
            cfg = WorldConfig(size=size, seed=seed).resolved()
        except ValueError as e:
            raise MMUError(str(e)) from None
        self.zoo = Zoo(cfg, recipe=recipe, cache_dir=cache_dir, progress=progress, device=device)
        self.world = self.zoo.world

    def check_split(self, split: str) -> None:
        if split not in self.forget_splits:
            raise MMUError(f"unknown forget split {split!r} for benchmark {self.name!r}; expected one of "
                           f"{', '.join(self.forget_splits)}")

    def identity(self) -> dict:
        return {"benchmark": self.name, "world": asdict(self.world.config), "zoo": self.zoo.key}

    def request(self, split: str) -> UnlearnRequest:
        self.check_split(split)
        return UnlearnRequest(forget=self.world.split_items(split), forget_entities=list(self.world.forget_ids[split]))

    def retain_items(self, split: str) -> list[dict]:
        self.check_split(split)
        return self.world.split_items(f"retain_{100 - int(split.split('_')[1])}")

    def validation(self, split: str) -> dict[str, list[dict]]:
        """Held-out renderings for stopping rules: every forget entity, up to 20 retain entities."""
        self.check_split(split)
        forget = self.world.forget_ids[split]
        retain = [e for e in self.world.split_entities(f"retain_{100 - int(split.split('_')[1])}")][:20]
        return {"forget": self.world.validation_items(forget, renders=2),
                "retain": self.world.validation_items(retain, renders=1)}

    def tasks(self, split: str) -> dict[str, list[dict]]:
        self.check_split(split)
        return eval_tasks(self.world, split)

    def load(self, zoo_model: str, split: str):
        return self.zoo.load(zoo_model, split if zoo_model.startswith("retrain") else None)

    def reference_metrics(self, split: str, eval_cfg) -> dict[str, dict[str, float]]:
        """Metrics of finetuned / retrain / retrain_visual on this split's tasks, cached per zoo."""
        from mmu_bench.evaluate import evaluate

        return self._reference(split, eval_cfg)["metrics"]

    def reference_forget_statistics(self, split: str, eval_cfg) -> dict[str, dict[str, float]]:
        """Per-item forget statistics (truth ratios) of the reference models, for forget quality."""
        return self._reference(split, eval_cfg)["forget_statistics"]

    def _reference(self, split: str, eval_cfg) -> dict:
        from mmu_bench.evaluate import evaluate
        from mmu_bench.forget_quality import forget_statistics

        tag = hashlib.sha256(json.dumps(asdict(eval_cfg) | {"progress": None}, sort_keys=True).encode()).hexdigest()[:10]
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


class TinyLlava:
    name = "tiny-llava"
    description = "real LlavaForConditionalGeneration at tiny size (CLIP 64x2, Llama 128x2), trained by the zoo"


@hookimpl
def mmu_bench_benchmarks():
    return [SyntheticBenchmark]


@hookimpl
def mmu_bench_models():
    return [TinyLlava]
