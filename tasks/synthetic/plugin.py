"""The built-in synthetic benchmark and the tiny LLaVA model, registered as a plugin."""

from __future__ import annotations

import os
from pathlib import Path

from mmu_bench.benchmark import TINY_MODEL, WorldBenchmark
from mmu_bench.errors import MMUError
from mmu_bench.hookspecs import hookimpl

from .world import FORGET_PERCENTS, World, WorldConfig

FORGET_SPLITS = tuple(f"forget_{k}" for k in FORGET_PERCENTS)


class SyntheticBenchmark(WorldBenchmark):
    """The drawn world + its zoo. ``size`` / ``seed`` define the world (not the method's seed).

    The static methods are the ``mmu-bench world`` commands' (drawing, storing and exporting the
    world): the CLI reaches them through the plugin registry, as any benchmark."""

    name = "synthetic"
    description = "built-in drawn world of fictitious profiles (MLLMU-Bench shape) with a tiny LLaVA zoo"
    forget_splits = FORGET_SPLITS

    def __init__(self, size: int = 100, seed: int = 0, cache_dir=None, progress: bool = True,
                 device: str | None = None, recipe=None, model: str = TINY_MODEL, dtype: str | None = None,
                 gradient_checkpointing: bool = False, zoo_weights: str = "pinned",
                 data=None):
        if data is not None:
            raise MMUError("benchmark 'synthetic' draws its own world; --data is for real benchmarks "
                           "(mllmu, clear)")
        super().__init__(model=model, cache_dir=cache_dir, progress=progress, device=device, dtype=dtype,
                         gradient_checkpointing=gradient_checkpointing, recipe=recipe, zoo_weights=zoo_weights,
                         size=size, seed=seed)

    def make_world(self, size: int, seed: int) -> World:
        return self.draw_world(size, seed)

    @staticmethod
    def draw_world(size: int = 100, seed: int = 0) -> World:
        """The world of this size and seed (an MMUError says why one cannot be drawn)."""
        try:
            return World(WorldConfig(size=size, seed=seed).resolved())
        except ValueError as e:
            raise MMUError(str(e)) from None

    @staticmethod
    def build_dataset(world: World, cache_dir: str | os.PathLike[str] | None = None) -> Path:
        """Write (or reuse) the world's ``datasets.DatasetDict`` and profiles under the cache."""
        from .dataset import build_world

        return build_world(world.config, cache_dir)

    export_formats = ("mllmu",)

    @staticmethod
    def export(world: World, out_dir: str | os.PathLike[str], fmt: str = "mllmu", overwrite: bool = False) -> Path:
        """Write the world in another benchmark's layout (``mllmu``: MLLMU-Bench's parquet configs)."""
        if fmt != "mllmu":
            raise MMUError(f"world export format {fmt!r} unknown; expected one of {', '.join(SyntheticBenchmark.export_formats)}")
        from .mllmu_export import export_mllmu

        return export_mllmu(world, out_dir, overwrite=overwrite)


class TinyLlava:
    name = "tiny-llava"
    description = "real LlavaForConditionalGeneration at tiny size (CLIP 64x2, Llama 128x2), trained by the zoo"


@hookimpl
def mmu_bench_benchmarks():
    return [SyntheticBenchmark]


@hookimpl
def mmu_bench_models():
    return [TinyLlava]
