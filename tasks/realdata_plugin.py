"""The real benchmarks (MLLMU-Bench, CLEAR) as benchmark plugins over their DataWorlds.

Both run the same zoo, protocols and metrics as the synthetic benchmark: ``--data`` points at
the dataset folder (or a hub id already in the local hub cache); ``--model`` is ``tiny-llava``
(trained from scratch on the data's own corpus: the offline default) or ``hf:<id or folder>``.
"""

from __future__ import annotations

from mmu_bench.benchmark import TINY_MODEL, WorldBenchmark
from mmu_bench.errors import MMUError
from mmu_bench.hookspecs import hookimpl


class _RealBenchmark(WorldBenchmark):
    world_cls_path = ""

    def __init__(self, data=None, cache_dir=None, progress: bool = True, device: str | None = None,
                 recipe=None, model: str = TINY_MODEL, dtype: str | None = None,
                 gradient_checkpointing: bool = False, size=None, seed=None,
                 **world_options):
        if data is None:
            raise MMUError(f"benchmark {self.name!r} needs --data <folder or hub id> (see docs/benchmarks.md)")
        super().__init__(model=model, cache_dir=cache_dir, progress=progress, device=device, dtype=dtype,
                         gradient_checkpointing=gradient_checkpointing, recipe=recipe, data=data, **world_options)


class MLLMUBenchmark(_RealBenchmark):
    name = "mllmu"
    description = "MLLMU-Bench (fictitious profiles + real celebrities; Full/forget/retain/Test/Retain_Set)"

    def make_world(self, data, **options):
        from .mllmu import MLLMUWorld

        return MLLMUWorld(data, **options)


class ClearBenchmark(_RealBenchmark):
    name = "clear"
    description = "CLEAR (TOFU authors with faces: name mcq, captions, text QA; forget 1/5/10 %)"

    def make_world(self, data, **options):
        from .clear import ClearWorld

        return ClearWorld(data, **options)


@hookimpl
def mmu_bench_benchmarks():
    return [MLLMUBenchmark, ClearBenchmark]
