"""CVF step time vs a GA step, and the one-off null-space build as a share of a CVF run.

    python benchmarks/cvf_step_timing.py [--steps 50] [--cache-dir DIR] [--variant nll_batch_size=32 ...]

Both methods run `--steps` steps without stopping rules on the default world's forget_10 from the
same finetuned model, in this one process; ratios are measured in one run (noisy machines).
Each ``--variant`` (comma-separated CVF hyper-parameters) adds a CVF row timed in the same run.
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--variant", action="append", default=[],
                    help="CVF hyper-parameters for an extra row, e.g. nll_batch_size=32,nll_every=1")
    args = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))

    import mmu_bench.engine as engine
    import mmu_bench.methods.cvf as cvf_mod
    import mmu_bench.method as method_mod
    from mmu_bench.methods.cvf import CVF
    from mmu_bench.methods.ga import GA
    from mmu_bench.protocols import make_context
    from mmu_bench.tasks.synthetic.plugin import SyntheticBenchmark

    spent: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0
        return wrapper

    cvf_mod.train = timed("train", engine.train)
    method_mod.train = timed("train", engine.train)
    cvf_mod.collect_moments = timed("null_space", cvf_mod.collect_moments)
    cvf_mod.build_projection = timed("null_space", cvf_mod.build_projection)

    bench = SyntheticBenchmark(cache_dir=args.cache_dir, progress=False)
    results = {}
    from mmu_bench.config import parse_pairs

    runs = [("ga", GA(steps=args.steps)), ("cvf", CVF(steps=args.steps, stop_rule=False))]
    runs += [(f"cvf {v}", CVF(steps=args.steps, stop_rule=False, **parse_pairs(v.split(","), "cvf")))
             for v in args.variant]
    for name, method in runs:
        model = bench.load("finetuned", "forget_10")
        ctx = make_context(bench, "forget_10", 0, progress=False)
        ctx.reference("finetuned")  # load references outside the timed region
        spent.clear()
        t0 = time.perf_counter()
        method.unlearn(model, bench.request("forget_10"), ctx)
        total = time.perf_counter() - t0
        results[name] = dict(total=total, train=spent.get("train", 0.0), null_space=spent.get("null_space", 0.0))
    ga_step = results["ga"]["train"] / args.steps
    # the last null-space accumulation (forgotten images join the protected set) runs after training
    cvf_step = results["cvf"]["train"] / args.steps
    print(f"GA  : {ga_step * 1000:6.1f} ms/step ({args.steps} steps, total unlearn {results['ga']['total']:.2f} s)")
    print(f"CVF : {cvf_step * 1000:6.1f} ms/step ({args.steps} steps, total unlearn {results['cvf']['total']:.2f} s)")
    print(f"CVF step / GA step = {cvf_step / ga_step:.2f}  (defaults)")
    for name, r in results.items():
        if name.startswith("cvf "):
            print(f"{name}: {r['train'] / args.steps * 1000:6.1f} ms/step, / GA step = "
                  f"{r['train'] / args.steps / ga_step:.2f}")
    share = results["cvf"]["null_space"] / results["cvf"]["total"]
    print(f"null-space build (covariances + eigendecompositions): {results['cvf']['null_space']:.2f} s = "
          f"{share:.1%} of the CVF run (goal <= 10 %)")


if __name__ == "__main__":
    main()
