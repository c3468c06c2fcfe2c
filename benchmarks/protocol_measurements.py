"""Continual, MIA and relearn numbers on the default world (the closing-note measurements).

    python benchmarks/protocol_measurements.py [--seeds 0,1,2] [--out runs-protocols] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import statistics

ROWS = {
    "continual": [("cvf", "cvf", {}), ("cvf null_space=false", "cvf", {"null_space": False}),
                  ("ga_diff", "ga_diff", {})],
    "mia": [("finetuned", "finetuned", {}), ("retrain", "retrain", {}), ("ga", "ga", {}), ("cvf", "cvf", {})],
    "relearn": [("cvf", "cvf", {}), ("ga", "ga", {})],
}
KEYS = {
    "continual": ("continual.forget_acc_mean", "continual.retention_final", "continual.retention_auc",
                  "continual.rebound_max", "forget.qa.mcq.acc", "utility.vqa.mcq.acc"),
    "mia": ("mia.vqa.loss.auc", "mia.vqa.loss.privleak", "mia.vqa.loss.privleak_visual", "mia.vqa.mink40.auc",
            "mia.vqa.minkpp20.auc", "mia.qa.loss.auc", "mia.qa.loss.privleak"),
    "relearn": ("relearn.recovery", "relearn.acc_after_unlearn", "relearn.acc_after_relearn", "relearn.acc_finetuned"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="runs-protocols")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--protocols", default="continual,mia,relearn")
    args = ap.parse_args()
    from tabulate import tabulate

    from mmu_bench.report import column_label
    from mmu_bench.run import RunSpec, run

    seeds = [int(s) for s in args.seeds.split(",")]
    for protocol in args.protocols.split(","):
        table = []
        for label, method, hyper in ROWS[protocol]:
            vals = {k: [] for k in KEYS[protocol]}
            for seed in (seeds if method not in ("finetuned", "retrain") else seeds[:1]):
                o = run(RunSpec(method=method, hyper=dict(hyper), protocol=protocol, seed=seed, out=args.out,
                                cache_dir=args.cache_dir, progress=False))
                for k in vals:
                    vals[k].append(o.metrics[k])
            table.append([label] + [f"{statistics.mean(v):.3f} ± {statistics.stdev(v) if len(v) > 1 else 0:.3f}"
                                    for v in vals.values()])
            print(f"done: {protocol} {label}", flush=True)
        print(f"\n{protocol}, seeds {seeds}, mean ± std\n")
        print(tabulate(table, headers=["method"] + [column_label(k) for k in KEYS[protocol]], tablefmt="github",
                       disable_numparse=True), flush=True)


if __name__ == "__main__":
    main()
