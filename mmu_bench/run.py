"""The run pipeline: resolve plugins, unlearn under a protocol, evaluate, store, report.

Python API::

    from mmu_bench.run import RunSpec, run
    outcome = run(RunSpec(method="ga", forget_split="forget_10", seed=0, out="runs"))
    outcome.metrics["forget.vqa.mcq.acc"]
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import MMUError
from .evaluate import EvalConfig
from .plugins import get_registry
from .cache import ensure_writable
from .results import environment, finished, run_dir, write_run


@dataclass
class RunSpec:
    """Everything a run is a function of (plus where it goes)."""

    method: str
    setting: str = "visual"
    benchmark: str = "synthetic"
    model: str = "tiny-llava"
    protocol: str = "static"
    forget_split: str = "forget_10"
    seed: int = 0
    hyper: dict[str, Any] = field(default_factory=dict)
    out: str = "runs"
    overwrite: bool = False
    world_size: int = 100
    world_seed: int = 0
    zoo: dict[str, Any] = field(default_factory=dict)
    zoo_weights: str = "pinned"  # pinned: the shipped canonical zoo where it matches; local: train it
    cache_dir: str | None = None
    device: str | None = None
    dtype: str | None = None
    data: str | None = None
    utility: str | None = None
    gradient_checkpointing: bool = False
    protocol_options: dict[str, Any] = field(default_factory=dict)
    mcq_mode: str = "loglik"
    max_new_tokens: int = 50
    progress: bool = True
    eval_protocol: str = "loglik"  # or "official" (mllmu, clear): the benchmark's released prompts
    shots: int | None = None  # few-shot profiles of the official protocol (None: the protocol's)
    label: str | None = None  # names the row: runs/<...>/<method>-<label>/ (e.g. "tuned"), not a hyper hash
    stop_at: str | None = None  # the shared stopping rule, e.g. "forget=0.3,every=5,budget=200" (stopping.py)


@dataclass
class RunOutcome:
    path: Path
    metrics: dict[str, float]
    reference: dict[str, dict[str, float]]
    diverged: dict | None
    reused: bool
    doc: dict


def resolve(spec: RunSpec):
    """Look up every named plugin and validate hyper-parameters before anything is built."""
    from .settings import check_method_setting

    reg = get_registry()
    setting = reg.get("settings", spec.setting)
    method_cls = reg.get("methods", spec.method)
    check_method_setting(method_cls, setting)
    bench_cls = reg.get("benchmarks", spec.benchmark)
    if not spec.model.startswith("hf:"):  # hf:<id or folder> loads any transformers model
        reg.get("models", spec.model)
    protocol_cls = reg.get("protocols", spec.protocol)
    models = getattr(bench_cls, "models", (spec.model,))
    if spec.model not in models and not (spec.model.startswith("hf:") and any(m.startswith("hf:") for m in models)):
        raise MMUError(f"benchmark {spec.benchmark!r} runs models {', '.join(models)}; got {spec.model!r}")
    splits = getattr(bench_cls, "forget_splits", None)  # a real benchmark's come with its data
    if isinstance(splits, (tuple, list)) and spec.forget_split not in splits:
        raise MMUError(f"unknown forget split {spec.forget_split!r} for benchmark {spec.benchmark!r}; "
                       f"expected one of {', '.join(splits)}")
    if spec.label is not None and not re.fullmatch(r"[A-Za-z0-9_.]+", spec.label):
        raise MMUError(f"run label {spec.label!r}: expected letters, digits, '_' or '.' (it names a directory)")
    stop_rule_of(spec)  # a malformed --stop-at is an error now, not after the zoo is loaded
    from .method import build_method

    method = build_method(method_cls, spec.hyper)
    return method, bench_cls, protocol_cls, setting


def _setup(spec: RunSpec):
    """(method, benchmark class, protocol, eval config, run directory, setting) of a spec,
    validated before anything is built."""
    from .method import changed_hyper

    method, bench_cls, protocol_cls, setting = resolve(spec)
    from .official import protocol_id

    eval_cfg = EvalConfig(mcq_mode=spec.mcq_mode, max_new_tokens=spec.max_new_tokens,
                          protocol=protocol_id(spec.benchmark, spec.eval_protocol), shots=spec.shots)
    try:
        protocol = protocol_cls(**spec.protocol_options)
    except TypeError as e:
        raise MMUError(f"protocol {spec.protocol!r} does not take options "
                       f"{', '.join(spec.protocol_options)}: {e}") from None
    # The directory is named by the RESOLVED hyper-parameters that differ from the defaults, so
    # `--set steps=40` (the default) and `steps: 40` in a file land in the same place.
    rule = stop_rule_of(spec)
    # a stopping rule changes what the run measures (matched forgetting): its own directory
    options = spec.protocol_options | ({"stop": rule.tag} if rule is not None else {})
    path = run_dir(spec.out, spec.benchmark, spec.model, spec.method, spec.protocol, spec.forget_split,
                   spec.seed, changed_hyper(method), options, setting=setting.name, label=spec.label)
    return method, bench_cls, protocol, eval_cfg, path, setting


def stop_rule_of(spec: RunSpec):
    """The spec's shared stopping rule (``stop_at``), or None."""
    from .stopping import StopRule

    return StopRule.parse(spec.stop_at) if spec.stop_at else None


def _reference_names() -> tuple[str, ...]:
    from .leaderboard import REFERENCE_NAMES

    return REFERENCE_NAMES


def _stop_record(spec: RunSpec, method, logs: dict) -> dict | None:
    """What config.json / metrics.json say about the stopping rule; warns when a method ignored it
    (one that overrides ``unlearn`` without using ``context.stopper``)."""
    rule = stop_rule_of(spec)
    if rule is None:
        return None

    def found(d) -> bool:
        return isinstance(d, dict) and ("stop_rule" in d or any(found(v) for v in d.values()))

    def values(d, key) -> list:  # every request's log (continual logs nest per request)
        if not isinstance(d, dict):
            return []
        return ([d[key]] if key in d else []) + [x for v in d.values() for x in values(v, key)]

    honoured = found(logs) or getattr(method, "name", "") in _reference_names()  # those unlearn nothing
    if not honoured:
        import sys

        print(f"mmu-bench: method {spec.method!r} did not apply the stopping rule (--stop-at {spec.stop_at}); "
              f"its row is not at matched forgetting", file=sys.stderr)
    reached = values(logs, "stop_target_reached")
    return rule.as_dict() | {"rule": rule.describe(), "honoured": honoured,
                             "reached": bool(reached) and all(reached), "steps": sum(values(logs, "steps"))}


def _benchmark_for(bench_cls, spec: RunSpec, setting):
    bench = make_benchmark(bench_cls, spec)  # the spec's zoo recipe overrides applied there
    bench.setting = setting  # what the benchmark's forget request hands a method
    bench.stop_rule = stop_rule_of(spec)  # the shared stopping rule every method's context carries
    if hasattr(bench, "check_split"):
        bench.check_split(spec.forget_split)
    return bench


def run(spec: RunSpec) -> RunOutcome:
    method, bench_cls, protocol, eval_cfg, path, setting = _setup(spec)
    ensure_writable(path, "output directory")
    done = _reusable(path, spec, method)
    if done is not None:
        return RunOutcome(path, done["metrics"], done.get("reference", {}), done.get("divergence"), True, done)

    bench = _benchmark_for(bench_cls, spec, setting)
    t0 = time.time()
    reference = bench.reference_metrics(spec.forget_split, eval_cfg)
    t_ref = time.time() - t0
    result = protocol.run(method, bench, spec.forget_split, spec.seed, eval_cfg, progress=spec.progress)
    if spec.utility:
        result.metrics = dict(sorted((result.metrics | _extra_utility(spec, bench, result)).items()))
    if hasattr(bench, "reference_forget_statistics"):
        from .forget_quality import forget_quality_metrics

        stats = bench.reference_forget_statistics(spec.forget_split, eval_cfg)
        result.metrics = dict(sorted((result.metrics | forget_quality_metrics(
            result.samples, stats["retrain"], stats["retrain_visual"])).items()))
    stop = _stop_record(spec, method, result.method_logs)
    if stop is not None and stop["honoured"] and method.name not in _reference_names():
        # matched-forgetting tables show whether each run got there, and in how many steps
        result.metrics = dict(sorted((result.metrics | {"stop.reached": float(stop["reached"]),
                                                        "stop.steps": float(stop["steps"])}).items()))
    config = {
        "spec": dataclasses.asdict(spec) | {"overwrite": None, "progress": None},
        "method": {"name": method.name, "class": f"{type(method).__module__}.{type(method).__qualname__}",
                   "hyper": _hyper_dict(method)},
        "setting": {"name": setting.name, "oracle": setting.oracle,
                    "forget_modalities": list(setting.forget_modalities)},
        "benchmark": bench.identity(),
        "eval": dataclasses.asdict(eval_cfg),
        "environment": environment(),
    }
    doc = {
        "status": "diverged" if result.diverged else "finished",
        "diverged": bool(result.diverged),
        "divergence": result.diverged,
        "metrics": result.metrics,
        "reference": reference,
        "method": result.method_logs,
        "protocol": result.details,
        "timings": result.timings | {"reference": round(t_ref, 2)},
        "stop_rule": stop,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    from . import distributed

    if distributed.is_main_process():  # under accelerate launch, one process writes
        write_run(path, config, doc, result.samples, result.plots)
    distributed.barrier()
    return RunOutcome(path, result.metrics, reference, result.diverged, False, doc)


def _reusable(path: Path, spec: RunSpec, method) -> dict | None:
    """The stored result of a finished run that this spec may reuse, else None."""
    done = finished(path)
    if done is None or spec.overwrite:
        return None
    if not _same_hyper(path, method):
        import sys

        print(f"mmu-bench: the finished run at {path} used other hyper-parameters (the method's "
              f"defaults changed since); redoing it", file=sys.stderr)
        return None
    _check_same_settings(path, spec)
    return done


def prepare(spec: RunSpec) -> bool:
    """Build what a run needs from the shared cache (zoo models, reference tables, a protocol's
    oracle numbers) without running it; returns False when the run is finished already. Parallel
    sweeps call this first, once per split, so workers never train the same oracle twice."""
    method, bench_cls, protocol, eval_cfg, path, setting = _setup(spec)
    if _reusable(path, spec, method) is not None:
        return False
    bench = _benchmark_for(bench_cls, spec, setting)
    bench.reference_metrics(spec.forget_split, eval_cfg)  # cached together with the forget statistics
    if hasattr(protocol, "prepare"):
        protocol.prepare(bench, spec.forget_split)
    return True


def make_benchmark(bench_cls, spec: RunSpec, recipe=None):
    """Instantiate a benchmark class for a run spec (world, data, model, device, zoo recipe:
    ``recipe``, else the spec's ``zoo`` overrides of the default recipe)."""
    if recipe is None and spec.zoo:
        from .config import apply_overrides
        from .zoo import ZooRecipe

        recipe = apply_overrides(ZooRecipe, spec.zoo, "zoo recipe")
    kwargs: dict[str, Any] = dict(cache_dir=spec.cache_dir, progress=spec.progress, device=spec.device,
                                  recipe=recipe)
    if spec.data is not None:
        kwargs["data"] = spec.data
    else:
        kwargs.update(size=spec.world_size, seed=spec.world_seed)
    if spec.model != "tiny-llava" or spec.dtype is not None:  # older third-party classes lack these
        kwargs.update(model=spec.model, dtype=spec.dtype)
    if spec.gradient_checkpointing:
        kwargs["gradient_checkpointing"] = True
    if spec.zoo_weights != "pinned":  # older third-party classes lack it
        kwargs["zoo_weights"] = spec.zoo_weights
    try:
        return bench_cls(**kwargs)
    except TypeError as e:
        raise MMUError(f"benchmark {spec.benchmark!r} does not take {', '.join(sorted(kwargs))}: {e}") from None


def _extra_utility(spec: RunSpec, bench, result) -> dict[str, float]:
    """``--utility lmeval:<tasks>``: text utility of the unlearned model through lm-eval."""
    from .lmeval import lmeval_utility

    model = getattr(result, "model", None)
    if model is None:
        raise MMUError(f"protocol {spec.protocol!r} does not return its final model; --utility needs it")
    workdir = Path(spec.out) / ".lmeval"
    return lmeval_utility(model, spec.utility, world=getattr(bench, "world", None), workdir=workdir,
                          max_gen_toks=spec.max_new_tokens)


_SETTINGS = ("world_size", "world_seed", "zoo", "zoo_weights", "mcq_mode", "max_new_tokens", "data", "dtype",
             "utility")


_NEW_SETTINGS = {"eval_protocol": "loglik", "shots": None}  # absent from older runs' config.json


def settings_of(spec: RunSpec) -> dict:
    """Settings outside the directory name that change the numbers."""
    return {k: getattr(spec, k) for k in _SETTINGS + tuple(_NEW_SETTINGS)}


def _check_same_settings(path: Path, spec: RunSpec) -> None:
    import json

    try:
        stored = json.loads((path / "config.json").read_text())["spec"]
    except (OSError, ValueError, KeyError):
        return
    diff = {k: (stored.get(k, _NEW_SETTINGS.get(k)), v) for k, v in settings_of(spec).items()
            if stored.get(k, _NEW_SETTINGS.get(k)) != v}
    if diff:
        what = ", ".join(f"{k}={old!r} there vs {new!r} now" for k, (old, new) in diff.items())
        raise MMUError(f"a finished run at {path} used other settings ({what}); "
                       f"pass --overwrite to redo it or choose another --out")


def _same_hyper(path: Path, method) -> bool:
    """Whether a finished run used the same resolved hyper-parameters. Directories are named by
    the values that differ from the defaults, so a change of defaults would otherwise reuse stale
    results under the new defaults' name."""
    import json

    try:
        stored = json.loads((path / "config.json").read_text())["method"]["hyper"]
    except (OSError, ValueError, KeyError):
        return True  # nothing to compare against (older or foreign layout): trust the name
    return json.loads(json.dumps(_hyper_dict(method))) == stored


def _hyper_dict(method) -> dict:
    h = getattr(method, "hyper", None)
    return dataclasses.asdict(h) if h is not None and dataclasses.is_dataclass(h) else {}
