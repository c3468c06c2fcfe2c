"""Sweeps: a grid of runs (methods x seeds x forget splits x protocols), resumable.

Finished runs are reused (a killed sweep resumes where it stopped: a run without its
metrics.json is redone); a run that fails or diverges is recorded and the sweep goes on.
Executors: ``local`` (sequential, in this process) and ``ray`` (one Ray task per run with its
CPU / GPU needs; ``ray_address`` joins an existing cluster; ``pip install "mmu-bench[dist]"``).
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
    hyper: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method
    common: dict[str, Any] = field(default_factory=dict)  # other RunSpec fields (out, world_size, ...)
    protocol_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per protocol

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
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise MMUError(f"sweep spec {str(p)!r}: unknown keys {', '.join(sorted(unknown))}; "
                           f"valid: {', '.join(sorted(known))}")
        return cls(**data)

    def runs(self) -> list[dict[str, Any]]:
        out = []
        for method, protocol, split, seed in itertools.product(self.methods, self.protocols, self.forget_splits,
                                                                self.seeds):
            out.append(dict(self.common, method=method, protocol=protocol, forget_split=split, seed=seed,
                            hyper=dict(self.hyper.get(method, {})),
                            protocol_options=dict(self.protocol_options.get(protocol, {}))))
        return out


def run_one(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run one grid point; never raises: returns {status, path, error, seconds}."""
    from .run import RunSpec, run

    t0 = time.time()
    label = f"{kwargs['method']}/{kwargs['protocol']}/{kwargs['forget_split']}/seed{kwargs['seed']}"
    try:
        outcome = run(RunSpec(**kwargs))
        status = "reused" if outcome.reused else ("diverged" if outcome.diverged else "ran")
        return {"run": label, "status": status, "path": str(outcome.path), "seconds": round(time.time() - t0, 2)}
    except Exception as e:  # a failed run is recorded; the sweep goes on
        return {"run": label, "status": "failed", "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(limit=5), "seconds": round(time.time() - t0, 2)}


def sweep(spec: SweepSpec, executor: str = "local", ray_address: str | None = None,
          num_cpus: float = 1, num_gpus: float = 0, log=print) -> dict[str, Any]:
    """Run the grid; returns {"results": [...], "counts": {ran, reused, diverged, failed}}."""
    grid = spec.runs()
    if executor == "local":
        results = []
        for i, kw in enumerate(grid, 1):
            r = run_one(kw)
            log(f"[{i}/{len(grid)}] {r['run']}: {r['status']}" + (f" ({r['error']})" if r["status"] == "failed" else ""))
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
            log(f"[{i}/{len(grid)}] {r['run']}: {r['status']}" + (f" ({r['error']})" if r["status"] == "failed" else ""))
    else:
        raise MMUError(f"unknown executor {executor!r}; expected local or ray")
    counts = {s: sum(r["status"] == s for r in results) for s in ("ran", "reused", "diverged", "failed")}
    out_dir = Path(spec.common.get("out", "runs"))
    try:
        write_json_atomic(out_dir / "sweep-summary.json", {"spec": dataclasses.asdict(spec), "counts": counts,
                                                           "results": results})
    except OSError:
        pass
    return {"results": results, "counts": counts}


def summary_line(counts: dict[str, int]) -> str:
    return (f"sweep: {counts['ran']} ran, {counts['reused']} reused, {counts['diverged']} diverged, "
            f"{counts['failed']} failed")

