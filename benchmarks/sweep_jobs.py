"""Sweep throughput: one process using every core vs `--jobs N` single-purpose worker processes.

    python benchmarks/sweep_jobs.py [--methods ga,ga_diff,kl_min,npo] [--seeds 0] [--jobs 2] [--cache-dir DIR]

Runs the same grid (static, forget_10, default world; the zoo must be cached or it is built first,
outside the timing) twice into fresh directories: once serially in this process (torch's default
thread count), once with `--jobs` workers sharing the cores. Prints both wall times, the ratio
measured in this one run (noisy machines), and whether every metric came out identical.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="ga,ga_diff,kl_min,npo")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()

    import torch

    from mmu_bench.sweep import SweepSpec, prepare_grid, sweep

    def spec(out: Path) -> SweepSpec:
        return SweepSpec(methods=args.methods.split(","), seeds=[int(s) for s in args.seeds.split(",")],
                         common={"out": str(out), "cache_dir": args.cache_dir, "progress": False})

    with tempfile.TemporaryDirectory() as tmp:
        serial_out, parallel_out = Path(tmp) / "serial", Path(tmp) / "parallel"
        prepare_grid(spec(serial_out).runs(), log=lambda m: None)  # zoo + references outside the timing
        t0 = time.perf_counter()
        serial = sweep(spec(serial_out), log=lambda m: None)
        t_serial = time.perf_counter() - t0
        t0 = time.perf_counter()
        parallel = sweep(spec(parallel_out), jobs=args.jobs, log=lambda m: None)
        t_parallel = time.perf_counter() - t0
        same = all(
            json.loads((serial_out / Path(r["path"]).relative_to(parallel_out) / "metrics.json").read_text())["metrics"]
            == json.loads((Path(r["path"]) / "metrics.json").read_text())["metrics"]
            for r in parallel["results"] if r["status"] == "ran")
    n = len(serial["results"])
    print(f"grid: {n} runs ({args.methods}; seeds {args.seeds}; static forget_10)")
    print(f"serial, 1 process x {torch.get_num_threads()} threads: {t_serial:6.1f} s")
    print(f"--jobs {args.jobs} worker processes:          {t_parallel:6.1f} s (includes worker start-up)")
    print(f"speed-up serial / jobs = {t_serial / t_parallel:.2f}; metrics identical: {same}")


if __name__ == "__main__":
    main()
