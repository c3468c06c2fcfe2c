"""CVF ablations and baselines on the default world, several seeds, one table.

    python benchmarks/cvf_ablation.py [--seeds 0,1,2] [--out runs-ablation] [--cache-dir DIR]

Every CVF variant stops by the same validation rule (forget validation vqa mcq acc <= 0.3), so
variants are compared at (approximately) matched forgetting; the baselines run their defaults.
Prints mean +- std over seeds and the unlearning time per run (measured in this one run).
"""

from __future__ import annotations

import argparse
import statistics

VARIANTS = {
    "cvf": {},
    "cvf null_space=false": {"null_space": False},
    "cvf trainable=projector": {"trainable": "projector"},
    "cvf target=base": {"target": "base"},
    "cvf target=blank": {"target": "blank"},
    "cvf feature=llm_layer:1": {"feature": "llm_layer:1"},
    "cvf retain_loss=infonce": {"retain_loss": "infonce"},
    "cvf centred+bias_comp": {"covariance": "centred", "bias_compensation": True},
    "cvf forget_selective": {"subspace": "forget_selective"},
}
BASELINES = ("ga", "ga_diff", "kl_min", "npo")
KEYS = ("forget.vqa.mcq.acc", "test.vqa.mcq.acc", "forget.qa.mcq.acc", "retain.vqa.mcq.acc",
        "real.vqa.mcq.acc", "utility.vqa.mcq.acc")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="runs-ablation")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--only", default=None, help="comma-separated row names to run")
    args = ap.parse_args()
    from tabulate import tabulate

    from mmu_bench.report import column_label
    from mmu_bench.run import RunSpec, run

    seeds = [int(s) for s in args.seeds.split(",")]
    rows = [(name, "cvf", hyper) for name, hyper in VARIANTS.items()] + [(b, b, {}) for b in BASELINES]
    if args.only:
        keep = set(args.only.split(","))
        rows = [r for r in rows if r[0] in keep]
    table, reference = [], None
    for label, method, hyper in rows:
        vals = {k: [] for k in KEYS}
        steps, secs = [], []
        for seed in seeds:
            o = run(RunSpec(method=method, hyper=dict(hyper), seed=seed, out=args.out, cache_dir=args.cache_dir,
                            progress=False))
            reference = o.reference
            for k in KEYS:
                vals[k].append(o.metrics[k])
            steps.append(o.doc.get("method", {}).get("steps", 0))
            secs.append(o.doc.get("timings", {}).get("unlearn", 0.0))
        cells = [f"{statistics.mean(v):.3f} ± {statistics.stdev(v) if len(v) > 1 else 0:.3f}" for v in vals.values()]
        table.append([label] + cells + [f"{statistics.mean(steps):.0f}", f"{statistics.mean(secs):.1f}"])
        print(f"done: {label}", flush=True)
    ref_rows = [[name] + [f"{reference[name][k]:.3f}" for k in KEYS] + ["", ""]
                for name in ("finetuned", "retrain", "retrain_visual")]
    headers = ["method"] + [column_label(k) for k in KEYS] + ["steps", "unlearn s"]
    print(f"\nseeds {seeds}; mean ± std\n")
    print(tabulate(ref_rows + table, headers=headers, tablefmt="github", disable_numparse=True))


if __name__ == "__main__":
    main()
