"""Are the reference rows a function of the shipped weights alone?

The pinned zoo (mmu_bench/zoo_pinned) makes every user evaluate the same checkpoints. What can
still differ between machines is floating-point reduction order (another CPU's kernels, thread
count, batch composition). This script evaluates the reference models of one forget split under
several such conditions on this machine and reports (a) whether every metric is identical and
(b) how far the closest multiple-choice decision is from flipping: the smallest gap, in nats,
between the best and the second-best option's summed log-likelihood over every mcq item. A
reduction-order difference is of the order of 1e-6 relative (float32); a decision flips only if
it exceeds that gap.

    python benchmarks/reference_invariance.py [--split forget_10] [--models finetuned,retrain,retrain_visual]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="forget_10")
    ap.add_argument("--models", default="finetuned,retrain,retrain_visual")
    ap.add_argument("--tasks", default="forget,test,retain,utility", help="eval splits to compare")
    args = ap.parse_args()

    from mmu_bench.evaluate import EvalConfig, evaluate
    from mmu_bench.tasks.synthetic.benchmark import eval_tasks
    from mmu_bench.tasks.synthetic.world import World, WorldConfig
    from mmu_bench.zoo import Zoo

    world = World(WorldConfig())
    zoo = Zoo(world, progress=False, device="cpu")  # the shipped (pinned) zoo
    tasks = {k: v for k, v in eval_tasks(world, args.split).items() if k in args.tasks.split(",")}
    mcq = {k: [it for it in v if it["kind"] == "mcq"] for k, v in tasks.items()}
    conditions = [(1, 64), (2, 64), (1, 7), (2, 16)]  # (torch threads, batch size)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    print(f"machine: {cpu}, torch {torch.__version__}; zoo {zoo.key}; split {args.split}; "
          f"mcq items {sum(map(len, mcq.values()))}")
    for name in args.models.split(","):
        model = zoo.load(name, None if name in ("base", "finetuned") else args.split)
        seen, t0 = [], time.time()
        for threads, bs in conditions:
            torch.set_num_threads(threads)
            metrics, _ = evaluate(model, mcq, EvalConfig(batch_size=bs, progress=False))
            seen.append(metrics)
        same = all(m == seen[0] for m in seen[1:])
        diffs = max((abs(m[k] - seen[0][k]) for m in seen[1:] for k in seen[0]), default=0.0)
        torch.set_num_threads(1)
        items = [it for v in mcq.values() for it in v]
        gaps = []
        for lps in model.option_logprobs(items, batch_size=64):
            sums = np.sort([float(lp.sum()) for lp in lps])
            gaps.append(sums[-1] - sums[-2])
        gaps = np.array(gaps)
        print(f"{name:15s} identical under {len(conditions)} thread/batch conditions: {same} "
              f"(max |diff| {diffs:.2g}); smallest top-2 mcq gap {gaps.min():.3g} nats, "
              f"items with gap < 1e-3: {(gaps < 1e-3).sum()}, median {np.median(gaps):.3g} "
              f"[{time.time() - t0:.0f} s]", flush=True)


if __name__ == "__main__":
    main()
