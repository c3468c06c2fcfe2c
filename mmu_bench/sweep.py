"""Sweeps: a grid of runs (settings x methods x seeds x forget splits x protocols), resumable.

Finished runs are reused (a killed sweep resumes where it stopped: a run without its
metrics.json is redone); a run that fails or diverges is recorded and the sweep goes on.
Executors: ``local`` (in this process, or ``jobs`` worker processes sharing the machine's cores)
and ``ray`` (one Ray task per run with its CPU / GPU needs; ``ray_address`` joins an existing
cluster; ``pip install "mmu-bench[dist]"``).

With ``jobs > 1`` every zoo model, reference table and oracle number the grid needs is built
first, once, in this process (workers would otherwise train the same missing oracle side by
side); then the runs fan out to ``jobs`` spawned processes with ``cpus // jobs`` torch threads
each. Metrics are identical to a serial sweep's. On 2 cores the gain for the tiny default model
is small (1.08-1.11x, ``benchmarks/sweep_jobs.py``); on a many-core machine it is the way to fill
the cores without Ray.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cache import write_json_atomic
from .errors import MMUError


@dataclass
class SweepSpec:
    """The grid and the settings shared by every run (the fields of :class:`RunSpec`)."""

    methods: list[str]
    seeds: list[int] = field(default_factory=lambda: [0])
    forget_splits: list[str] = field(default_factory=lambda: ["forget_10"])
    protocols: list[str] = field(default_factory=lambda: ["static"])
    settings: list[str] = field(default_factory=lambda: ["visual"])
    hyper: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method
    common: dict[str, Any] = field(default_factory=dict)  # other RunSpec fields (out, world_size, ...)
    protocol_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per protocol
    # several grids in one spec: each entry overrides methods / seeds / forget_splits / protocols /
    # settings / hyper, and may set its own ``common`` fields (e.g. static on every split, continual
    # and mia on one; an ablation of one method with other hyper-parameters; a labelled variant
    # under a stopping rule); the union of their runs is swept
    grids: list[dict[str, Any]] = field(default_factory=list)
    # where relative paths in the spec point from (the spec file's folder; a hyper entry may be the
    # path of a YAML file of hyper-parameters, e.g. what ``mmu-bench tune`` wrote)
    base_dir: str = "."

    @classmethod
    def from_file(cls, path: str | Path) -> "SweepSpec":
        import yaml

        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise MMUError(f"sweep spec {str(p)!r} cannot be read: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise MMUError(f"sweep spec {str(p)!r} must be a mapping")
        known = {f.name for f in dataclasses.fields(cls)} - {"base_dir"}
        unknown = set(data) - known
        if unknown:
            raise MMUError(f"sweep spec {str(p)!r}: unknown keys {', '.join(sorted(unknown))}; "
                           f"valid: {', '.join(sorted(known))}")
        return cls(**data, base_dir=str(p.parent))

    def runs(self) -> list[dict[str, Any]]:
        axes = ("methods", "seeds", "forget_splits", "protocols", "settings")
        grids = self.grids or [{}]
        for i, g in enumerate(grids):
            if not isinstance(g, dict) or set(g) - set(axes) - {"hyper", "common"}:
                raise MMUError(f"sweep spec grids[{i}]: expected a mapping of {', '.join(axes)}, hyper, common; got {g!r}")
            if not isinstance(g.get("common", {}), dict):
                raise MMUError(f"sweep spec grids[{i}].common: expected a mapping of run fields, got {g['common']!r}")
        out: list[dict[str, Any]] = []
        seen: set[tuple] = set()
        for g in grids:
            for setting, method, protocol, split, seed in itertools.product(
                    g.get("settings", self.settings), g.get("methods", self.methods),
                    g.get("protocols", self.protocols), g.get("forget_splits", self.forget_splits),
                    g.get("seeds", self.seeds)):
                hyper = self._hyper(method, (g.get("hyper") or self.hyper).get(method, {}))
                common = g.get("common", {})
                key = (setting, method, protocol, split, seed, repr(sorted(hyper.items())), repr(sorted(common.items())))
                if key in seen:
                    continue
                seen.add(key)
                out.append(self._point(setting, method, protocol, split, seed, hyper, common))
        return out

    def _hyper(self, method: str, entry: Any) -> dict[str, Any]:
        """A method's hyper-parameters: a mapping, or the path of a YAML file holding one."""
        if isinstance(entry, dict):
            return dict(entry)
        if isinstance(entry, str):
            import yaml

            path = Path(self.base_dir) / entry
            try:
                data = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError) as e:
                raise MMUError(f"sweep spec: hyper-parameters of {method!r} from {str(path)!r} cannot be read "
                               f"({str(e).splitlines()[0]}); run mmu-bench tune first?") from None
            if not isinstance(data, dict):
                raise MMUError(f"sweep spec: {str(path)!r} must hold a mapping of hyper-parameters")
            return data
        raise MMUError(f"sweep spec: hyper of {method!r} must be a mapping or a YAML file path, got {entry!r}")

    def _point(self, setting: str, method: str, protocol: str, split: str, seed: int,
               hyper: dict[str, Any] | None = None, common: dict[str, Any] | None = None) -> dict[str, Any]:
        return dict(self.common, **(common or {}), setting=setting, method=method, protocol=protocol, forget_split=split, seed=seed,
                    hyper=self._hyper(method, self.hyper.get(method, {}) if hyper is None else hyper),
                    protocol_options=dict(self.protocol_options.get(protocol, {})))


def _label(kw: dict[str, Any]) -> str:
    hyper = ",".join(f"{k}={v}" for k, v in sorted((kw.get("hyper") or {}).items()))
    method = kw["method"] + (f"[{hyper}]" if hyper else "")
    return f"{kw.get('setting', 'visual')}/{method}/{kw['protocol']}/{kw['forget_split']}/seed{kw['seed']}"


def _progress_line(i: int, n: int, r: dict[str, Any]) -> str:
    return f"[{i}/{n}] {r['run']}: {r['status']}" + (f" ({r['error']})" if r["status"] == "failed" else "")


def _supported(grid: list[dict[str, Any]], log) -> list[dict[str, Any]]:
    """Check every grid point's names before anything runs (an unknown method, setting, protocol,
    split or hyper-parameter is a MMUError now, not one failed run per point), and leave out the
    (method, setting) pairs the method does not support (e.g. cvf in full), saying so once."""
    from .run import RunSpec, resolve
    from .settings import check_method_setting

    from .plugins import get_registry

    reg = get_registry()
    keep, told = [], set()
    for kw in grid:
        spec = RunSpec(**kw)
        try:
            method_cls, setting = reg.get("methods", spec.method), reg.get("settings", spec.setting)
        except MMUError as e:
            raise MMUError(f"sweep point {_label(kw)}: {e}") from None
        try:
            check_method_setting(method_cls, setting)
        except MMUError as e:
            if (spec.method, spec.setting) not in told:
                told.add((spec.method, spec.setting))
                log(f"sweep: leaving out {spec.method} in setting {spec.setting}: {e}")
            continue
        try:
            resolve(spec)
        except MMUError as e:
            raise MMUError(f"sweep point {_label(kw)}: {e}") from None
        keep.append(kw)
    return keep


def run_one(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run one grid point; never raises: returns {status, path, error, seconds}."""
    from .run import RunSpec, run

    t0 = time.time()
    label = _label(kwargs)
    try:
        outcome = run(RunSpec(**kwargs))
        status = "reused" if outcome.reused else ("diverged" if outcome.diverged else "ran")
        return {"run": label, "status": status, "path": str(outcome.path), "seconds": round(time.time() - t0, 2)}
    except Exception as e:  # a failed run is recorded; the sweep goes on
        return {"run": label, "status": "failed", "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(limit=5), "seconds": round(time.time() - t0, 2)}


def prepare_grid(grid: list[dict[str, Any]], log=print) -> None:
    """Build, once per split and setting, what the grid's unfinished runs share (zoo models,
    reference tables, protocol oracles). Errors are left for the runs themselves to record."""
    import json

    from .run import RunSpec, prepare

    seen: set[str] = set()
    for kw in grid:
        shared = {k: v for k, v in kw.items() if k not in ("method", "seed", "hyper", "out", "overwrite")}
        key = json.dumps(shared, sort_keys=True, default=str)
        if key in seen:
            continue
        try:
            if prepare(RunSpec(**kw)):  # False: this grid point is finished; a later one may not be
                seen.add(key)
                log(f"prepared {kw['forget_split']} / {kw['protocol']}")
        except Exception:  # noqa: BLE001 - the run will fail again and be recorded with its traceback
            seen.add(key)


def _init_worker(threads: int) -> None:
    import os

    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()  # workers' bars would interleave; the sweep logs each run


def _run_pool(grid: list[dict[str, Any]], jobs: int, log) -> list[dict[str, Any]]:
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // jobs)
    results: list[dict[str, Any] | None] = [None] * len(grid)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(run_one, kw): i for i, kw in enumerate(grid)}
        for done, fut in enumerate(as_completed(futures), 1):
            kw = grid[futures[fut]]
            try:
                r = fut.result()
            except Exception as e:  # noqa: BLE001 - a worker that died (killed, out of memory): recorded
                r = {"run": _label(kw),
                     "status": "failed", "error": f"worker process failed: {type(e).__name__}: {e}", "seconds": None}
            results[futures[fut]] = r
            log(_progress_line(done, len(grid), r))
    return results  # type: ignore[return-value]


def sweep(spec: SweepSpec, executor: str = "local", ray_address: str | None = None,
          num_cpus: float = 1, num_gpus: float = 0, jobs: int = 1, log=print) -> dict[str, Any]:
    """Run the grid; returns {"results": [...], "counts": {ran, reused, diverged, failed}, "seconds"}."""
    if jobs < 1:
        raise MMUError(f"jobs must be at least 1, got {jobs}")
    t0 = time.time()
    grid = _supported(spec.runs(), log)
    if executor == "local" and jobs > 1:
        prepare_grid(grid, log)
        results = _run_pool(grid, jobs, log)
    elif executor == "local":
        results = []
        for i, kw in enumerate(grid, 1):
            r = run_one(kw)
            log(_progress_line(i, len(grid), r))
            results.append(r)
    elif executor == "ray":
        try:
            import ray
        except ImportError:
            raise MMUError("executor 'ray' needs Ray: pip install 'mmu-bench[dist]'") from None
        if not ray.is_initialized():
            ray.init(address=ray_address, include_dashboard=False, log_to_driver=False,
                     **({} if ray_address else {"num_cpus": max(1, int(num_cpus * 2))}))
        task = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(run_one)
        refs = [task.remote(kw) for kw in grid]
        results = ray.get(refs)
        for i, r in enumerate(results, 1):
            log(_progress_line(i, len(grid), r))
    else:
        raise MMUError(f"unknown executor {executor!r}; expected local or ray")
    counts = {s: sum(r["status"] == s for r in results) for s in ("ran", "reused", "diverged", "failed")}
    seconds = round(time.time() - t0, 1)
    out_dir = Path(spec.common.get("out", "runs"))
    this = {"counts": counts, "executor": executor, "jobs": jobs, "seconds": seconds, "hardware": hardware(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        # the top level describes this invocation; `history` keeps every invocation into this
        # directory, so resuming (or re-running a finished sweep) does not hide what the runs cost
        write_json_atomic(out_dir / "sweep-summary.json", {
            "spec": dataclasses.asdict(spec), **this, "history": _history(out_dir) + [this], "results": results})
    except OSError:
        pass
    return {"results": results, "counts": counts, "seconds": seconds}


def _history(out_dir: Path) -> list[dict[str, Any]]:
    import json

    try:
        old = json.loads((out_dir / "sweep-summary.json").read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(old, dict):
        return []
    if isinstance(old.get("history"), list):
        return old["history"]
    return [{k: old[k] for k in ("counts", "executor", "jobs", "seconds", "hardware", "finished_at") if k in old}]


def hardware() -> dict[str, Any]:
    """What the sweep ran on, for the leaderboard's provenance line."""
    import os
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {"cpu": cpu, "cores": os.cpu_count(), "gpus": gpus, "platform": platform.platform()}


def summary_line(counts: dict[str, int], seconds: float | None = None) -> str:
    took = f" in {seconds / 60:.1f} min" if seconds is not None else ""
    return (f"sweep: {counts['ran']} ran, {counts['reused']} reused, {counts['diverged']} diverged, "
            f"{counts['failed']} failed{took}")

