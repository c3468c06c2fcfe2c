"""Budgeted hyper-parameter tuning on validation items only (``mmu-bench tune``), with Optuna.

Each method declares its search space next to its hyper-parameters::

    lr: float = hp(2e-4, "peak learning rate", gt=0, search=LogUniform(2e-5, 2e-3))

A trial unlearns with sampled values under the shared stopping rule (mmu_bench/stopping.py: the
same forget target, check interval and step budget for every method) and is scored on held-out
validation items only: the objective is the retain entities' validation mcq accuracy at the
target forgetting level; a trial that misses the target within its budget scores that accuracy
minus 1, so any trial that reached it ranks above every one that did not. The reported evaluation
items are never looked at. The search is seeded (TPE), resumable (an Optuna journal file in the
output folder) and writes the chosen configuration as YAML that ``run --config`` and sweep specs
take, plus every trial's validation point for trade-off fronts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .errors import MMUError
from .stopping import StopRule


# ----------------------------------------------------------------------------- search spaces
@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=True)

    def __str__(self) -> str:
        return f"log-uniform[{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high)

    def __str__(self) -> str:
        return f"uniform[{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int

    def suggest(self, trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high)

    def __str__(self) -> str:
        return f"int[{self.low}, {self.high}]"


@dataclass(frozen=True)
class Choice:
    values: tuple

    def suggest(self, trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.values))

    def __str__(self) -> str:
        return "{" + ", ".join(map(str, self.values)) + "}"


def search_space(method_cls: type) -> dict[str, Any]:
    """{hyper-parameter: distribution} from the ``search=`` metadata of a method's Hyper fields."""
    hyper_cls = getattr(method_cls, "Hyper", None)
    if hyper_cls is None or not dataclasses.is_dataclass(hyper_cls):
        return {}
    return {f.name: f.metadata["search"] for f in dataclasses.fields(hyper_cls) if f.metadata.get("search")}


# ----------------------------------------------------------------------------- one trial
def validation_trial(method, bench, split: str, seed: int, rule: StopRule) -> dict[str, Any]:
    """Unlearn once under ``rule`` and score validation items only: forget (the groups the rule
    waits for) and retain (fresh renderings of retain entities)."""
    from .engine import Diverged
    from .evaluate import mcq_accuracy
    from .protocols import forget_request, make_context
    from .stopping import validation_groups

    bench.stop_rule = rule
    model = bench.load(getattr(method, "zoo_model", "finetuned"), split)
    ctx = make_context(bench, split, seed, progress=False, device=model.device)
    t0 = time.time()
    try:
        method.unlearn(model, forget_request(bench, split), ctx)
    except Diverged as e:
        return {"diverged": True, "step": e.step, "seconds": round(time.time() - t0, 2)}
    finally:
        bench.stop_rule = None
    model.model.eval()
    forget = [mcq_accuracy(model, g) for g in validation_groups(ctx.validation, ctx.setting)]
    retain = mcq_accuracy(model, ctx.validation["retain"])
    return {"diverged": False, "forget_val_acc": round(max(forget), 6), "retain_val_acc": round(retain, 6),
            "reached": max(forget) <= rule.target, "steps": ctx.logs.get("steps"),
            "seconds": round(time.time() - t0, 2)}


def reference_points(bench, split: str, setting) -> dict[str, dict[str, float]]:
    """The finetuned model's and the setting's oracle's validation point (for fronts)."""
    from .evaluate import mcq_accuracy
    from .protocols import make_context
    from .stopping import validation_groups

    ctx = make_context(bench, split, 0, progress=False)
    out = {}
    for name in ("finetuned", setting.oracle):
        model = bench.load(name, split)
        model.model.eval()
        forget = [mcq_accuracy(model, g) for g in validation_groups(ctx.validation, setting.name)]
        out[name] = {"forget_val_acc": round(max(forget), 6), "retain_val_acc": round(mcq_accuracy(model, ctx.validation["retain"]), 6)}
    return out


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated points (both coordinates higher is better), by x ascending."""
    front = []
    for x, y in sorted(set(points), key=lambda p: (-p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return sorted(front)


def front_area(front: Sequence[tuple[float, float]]) -> float:
    """The area the front dominates in [0, 1]^2 from (0, 0) (hypervolume; larger is better)."""
    # sweep from the right: each point covers [previous x, its x] at the best y to its right
    pts = sorted(front, key=lambda p: -p[0])
    area, best_y, prev_x = 0.0, 0.0, None
    for x, y in pts:
        if prev_x is not None:
            area += (prev_x - x) * best_y
        best_y, prev_x = max(best_y, y), x
    if prev_x is not None:
        area += prev_x * best_y
    return area


def efficacy(forget_acc: float, chance: float = 0.25) -> float:
    """Validation forget efficacy, on the leaderboard's scale: clip((1 - acc) / (1 - chance), 0, 1)."""
    return min(1.0, max(0.0, (1.0 - forget_acc) / (1.0 - chance)))


def objective_value(result: dict[str, Any]) -> float:
    """Retain validation accuracy; minus 1 when the target was missed; -2 for a diverged trial."""
    if result.get("diverged"):
        return -2.0
    return result["retain_val_acc"] - (0.0 if result["reached"] else 1.0)


# ----------------------------------------------------------------------------- the search
@dataclass
class TuneResult:
    method: str
    setting: str
    best: dict[str, Any]
    trials: list[dict[str, Any]]
    config_path: Path
    trials_path: Path


def tune(method: str, setting: str = "visual", trials: int = 8, seed: int = 0, stop: StopRule | None = None,
         out: str | Path = "tuning", split: str = "forget_10", benchmark_kwargs: dict | None = None,
         progress: bool = True) -> TuneResult:
    """Seeded TPE search over the method's declared space, ``trials`` trials (resumed from the
    journal in ``out``), scored on validation items only (see the module docstring)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from tqdm.auto import tqdm

    from .method import build_method
    from .plugins import get_registry
    from .settings import check_method_setting

    if trials < 1:
        raise MMUError(f"tune: --trials must be >= 1, got {trials}")
    reg = get_registry()
    cls = reg.get("methods", method)
    st = reg.get("settings", setting)
    check_method_setting(cls, st)
    space = search_space(cls)
    if not space:
        raise MMUError(f"method {method!r} declares no search space (hp(..., search=LogUniform(...)) on its "
                       f"Hyper fields); nothing to tune")
    stop = stop or StopRule()
    bench = _benchmark(benchmark_kwargs or {}, st, split)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{method}-{setting}-{split}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(out / f"{stem}.optuna.log")))
    study = optuna.create_study(study_name=stem, storage=storage, direction="maximize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(4, trials)))
    _check_same_search(study, space, stop, seed)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]

    def objective(trial) -> float:
        params = {name: dist.suggest(trial, name) for name, dist in space.items()}
        result = validation_trial(build_method(cls, params), bench, split, seed, stop)
        for k, v in result.items():
            trial.set_user_attr(k, v)
        return objective_value(result)

    left = trials - len(done)
    if left > 0:
        study.set_user_attr("search", {k: str(v) for k, v in space.items()})
        study.set_user_attr("stop_rule", stop.as_dict())
        study.set_user_attr("seed", seed)
        bar = tqdm(total=left, desc=f"tune {method}", disable=not progress)
        study.optimize(objective, n_trials=left, callbacks=[lambda s, t: bar.update(1)])
        bar.close()
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE][:trials]
    rows = [{"number": t.number, "params": t.params, "value": t.value, **t.user_attrs} for t in complete]
    best = max(rows, key=lambda r: (r["value"], -r["number"]))
    doc = {"method": method, "setting": setting, "split": split, "trials": trials, "seed": seed,
           "search": {k: str(v) for k, v in space.items()}, "stop_rule": stop.as_dict(),
           "objective": "retain validation mcq acc at the forget target (minus 1 if missed)",
           "best": best, "all": rows, "reference": reference_points(bench, split, st)}
    from .cache import write_json_atomic, write_text_atomic

    trials_path = out / f"{stem}.trials.json"
    write_json_atomic(trials_path, doc)
    config_path = out / f"{stem}.yaml"
    write_text_atomic(config_path, _config_yaml(doc))
    return TuneResult(method, setting, best, rows, config_path, trials_path)


def tune_many(methods: Sequence[str], jobs: int = 1, log=print, **kwargs: Any) -> list[TuneResult]:
    """``tune`` for each method, in ``jobs`` worker processes (one study per method: a study's
    trials stay sequential, so the results are those of a serial run). ``kwargs`` go to ``tune``."""
    if jobs < 1:
        raise MMUError(f"tune: --jobs must be at least 1, got {jobs}")
    if jobs == 1 or len(methods) == 1:
        return [tune(m, **kwargs) for m in methods]
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    from .sweep import _init_worker

    # the world, the zoo and its reference rows are built once here, not raced for by the workers
    _benchmark(kwargs.get("benchmark_kwargs") or {}, _setting(kwargs.get("setting", "visual")),
               kwargs.get("split", "forget_10"))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads,)) as pool:
        futures = [pool.submit(tune, m, **(kwargs | {"progress": False})) for m in methods]
        out = []
        for m, f in zip(methods, futures):
            out.append(f.result())
            log(f"tune: {m} done")
        return out


def _setting(name: str):
    from .plugins import get_registry

    return get_registry().get("settings", name)


def _check_same_search(study, space: dict, stop: StopRule, seed: int) -> None:
    """A resumed study must be the same search (space, rule, seed), else its trials mean other things."""
    old = study.user_attrs
    if not old:
        return
    now = {"search": {k: str(v) for k, v in space.items()}, "stop_rule": stop.as_dict(), "seed": seed}
    diff = [k for k in now if k in old and old[k] != now[k]]
    if diff:
        raise MMUError(f"the tuning journal for {study.study_name!r} was made with another {', '.join(diff)} "
                       f"({', '.join(f'{k}={old[k]!r}' for k in diff)}); use another --out or delete it")


def _config_yaml(doc: dict) -> str:
    import yaml

    b = doc["best"]
    head = [f"# tuned by mmu-bench tune: {doc['method']}, setting {doc['setting']}, {doc['split']}, "
            f"{doc['trials']} trials (TPE, seed {doc['seed']})",
            f"# objective: {doc['objective']}; stop rule {doc['stop_rule']}",
            f"# space: {doc['search']}",
            f"# best trial {b['number']}: retain_val_acc {b.get('retain_val_acc')}, forget_val_acc "
            f"{b.get('forget_val_acc')}, reached {b.get('reached')}, steps {b.get('steps')}"]
    params = {k: (float(f"{v:.4g}") if isinstance(v, float) and math.isfinite(v) else v)
              for k, v in b["params"].items()}
    return "\n".join(head) + "\n" + yaml.safe_dump(params, sort_keys=True)


def _benchmark(kwargs: dict, setting, split: str):
    from .plugins import get_registry
    from .run import RunSpec, make_benchmark

    spec = RunSpec(method="finetuned", **kwargs)
    bench = make_benchmark(get_registry().get("benchmarks", spec.benchmark), spec)
    bench.setting = setting
    if hasattr(bench, "check_split"):
        bench.check_split(split)
    if not hasattr(bench, "validation"):
        raise MMUError(f"benchmark {spec.benchmark!r} has no validation items; tuning needs them")
    return bench


def load_trials(paths: Sequence[str | Path]) -> list[dict]:
    """Every ``*.trials.json`` under ``paths`` (for fronts)."""
    docs = []
    for p in paths:
        p = Path(p)
        files = [p] if p.is_file() else sorted(p.rglob("*.trials.json"))
        for f in files:
            docs.append(json.loads(f.read_text()))
    return docs
