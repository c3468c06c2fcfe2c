"""Cold-build and check timings of the default world + zoo, and mcq loglik-vs-generate speed.

    python benchmarks/zoo_timings.py [--size 100] [--cache-dir DIR] [--items 400]

With no --cache-dir the build is cold (a fresh temporary cache). Prints wall times and ratios
measured in this one run (the machines are noisy; compare ratios, not absolute seconds).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--forget-split", default="forget_10")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--items", type=int, default=400, help="mcq items for the loglik-vs-generate ratio")
    args = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))

    from mmu_bench.evaluate import EvalConfig, evaluate
    from mmu_bench.tasks.synthetic.benchmark import eval_tasks
    from mmu_bench.tasks.synthetic.dataset import build_world
    from mmu_bench.tasks.synthetic.world import WorldConfig
    from mmu_bench.worldcheck import world_check
    from mmu_bench.zoo import Zoo

    cache = args.cache_dir or tempfile.mkdtemp(prefix="mmu-cold-")
    t0 = time.time()
    zoo = Zoo(WorldConfig(size=args.size), cache_dir=cache, progress=False)
    build_world(zoo.world.config, cache)
    t_world = time.time() - t0
    times = {}
    for name in ("base", "finetuned", "retrain", "retrain_visual"):
        t = time.time()
        zoo.path(name, args.forget_split if name.startswith("retrain") else None)
        times[name] = time.time() - t
    t_build = time.time() - t0
    t = time.time()
    report = world_check(zoo, args.forget_split)
    t_check = time.time() - t

    adapter = zoo.load("finetuned")
    items = [it for it in eval_tasks(zoo.world, args.forget_split)["retain"] if it["kind"] == "mcq"][: args.items]
    t = time.time()
    m_ll, _ = evaluate(adapter, {"retain": items}, EvalConfig(mcq_mode="loglik"))
    t_ll = time.time() - t
    t = time.time()
    m_gen, _ = evaluate(adapter, {"retain": items}, EvalConfig(mcq_mode="generate", max_new_tokens=50))
    t_gen = time.time() - t

    print(f"cache: {cache}")
    print(f"world (draw + DatasetDict): {t_world:7.1f} s")
    for name, s in times.items():
        print(f"zoo {name:<15}       {s:7.1f} s")
    print(f"cold world + zoo total:     {t_build:7.1f} s   (goal <= 600 s)")
    print(f"world check (4 models):     {t_check:7.1f} s   (goal <= 60 s); valid={report['valid']}")
    print(f"mcq on {len(items)} items: loglik {t_ll:.2f} s, generate {t_gen:.2f} s, "
          f"generate/loglik time ratio {t_gen / t_ll:.1f}x")
    print(f"  acc loglik {m_ll['retain.vqa.mcq.acc']:.3f}, acc generate {m_gen['retain.vqa.mcq.acc']:.3f} "
          f"(the tiny model is trained on answers, not on letter choice)")


if __name__ == "__main__":
    main()
