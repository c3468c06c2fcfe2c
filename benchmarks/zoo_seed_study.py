"""How much does the zoo matter? Every method on zoos trained with different zoo seeds.

    python benchmarks/zoo_seed_study.py [--zoo-seeds 0,1,2] [--seeds 0,1,2] [--methods ...]
        [--setting visual] [--split forget_10] [--out runs-zooseed] [--jobs 2] [--md docs/zoo-seeds.md]

Zoo seed 0 is the shipped (pinned) zoo; the others are trained locally from the same recipe with
``seed=k`` (``--zoo local --zoo-set seed=k``). Each zoo's runs go through ``mmu-bench sweep``
(resumable: a killed study resumes). Reported, per headline metric:

- the cell of every method on every zoo (mean over unlearning seeds), and its spread across zoos
  (std of the per-zoo means) beside the spread across unlearning seeds within a zoo;
- Kendall's tau (scipy) between the method rankings of every pair of zoos, and CVF's rank per zoo.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

HEADLINES = ("forget_efficacy", "retention", "forget.vqa.mcq.acc", "test.vqa.mcq.acc", "forget.qa.mcq.acc",
             "retain.vqa.mcq.acc", "utility.vqa.mcq.acc")
DEFAULT_METHODS = "cvf,ga,ga_diff,kl_min,npo,simnpo,idkdpo,rmu,mmunlearner"


def _sweep(methods, seeds, setting, split, out: Path, zoo_seed: int, jobs: int, cache_dir):
    from mmu_bench.sweep import SweepSpec, sweep

    common = {"out": str(out), "progress": False, "cache_dir": cache_dir}
    if zoo_seed != 0:
        common |= {"zoo_weights": "local", "zoo": {"seed": zoo_seed}}
    spec = SweepSpec(methods=methods, seeds=seeds, forget_splits=[split], protocols=["static"],
                     settings=[setting], common=common)
    return sweep(spec, jobs=jobs)


def _cells(out: Path, setting: str, split: str):
    """{method: {metric: [value per unlearning seed]}} and the reference rows of one zoo."""
    from mmu_bench import leaderboard as lb

    groups = lb.aggregate(lb.collect([out / "synthetic" / "tiny-llava" / setting]), setting=setting)
    (g,) = [g for g in groups if g.protocol == "static" and g.forget_split == split]
    cells, refs = {}, {}
    for r in g.rows:
        if r.kind == "reference":
            refs[r.label] = r.mean
            continue
        per_run = [lb.with_aggregates(lb._read_run(p / "metrics.json").metrics, g.setting) for p in r.paths]
        cells[r.label] = {k: [m[k] for m in per_run if k in m] for k in HEADLINES}
    return cells, refs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo-seeds", default="0,1,2")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default=DEFAULT_METHODS)
    ap.add_argument("--setting", default="visual")
    ap.add_argument("--split", default="forget_10")
    ap.add_argument("--out", default="runs-zooseed")
    ap.add_argument("--out0", default=None, help="results folder of zoo seed 0 (default OUT/zoo-seed0); pass the "
                                                 "leaderboard's (runs-leaderboard) to reuse its runs")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--md", default=None, help="also write the tables to this Markdown file")
    args = ap.parse_args()
    from scipy.stats import kendalltau
    from tabulate import tabulate

    from mmu_bench.leaderboard import direction

    zoo_seeds = [int(s) for s in args.zoo_seeds.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    t0 = time.time()
    per_zoo = {}
    for z in zoo_seeds:
        out = Path(args.out0) if z == 0 and args.out0 else Path(args.out) / f"zoo-seed{z}"
        res = _sweep(methods, seeds, args.setting, args.split, out, z, args.jobs, args.cache_dir)
        failed = [r for r in res["results"] if r["status"] == "failed"]
        for r in failed:
            print(f"failed: {r['run']}: {r['error']}")
        per_zoo[z] = _cells(out, args.setting, args.split)
    wall = time.time() - t0

    lines = [f"Zoo-seed study: setting {args.setting}, {args.split}, zoo seeds {zoo_seeds} (0 = the shipped zoo), "
             f"unlearning seeds {seeds}; {wall / 60:.1f} min wall for the runs not already finished.", ""]
    # reference rows per zoo: how different are the zoos themselves?
    ref_keys = ("forget.vqa.mcq.acc", "test.vqa.mcq.acc", "forget.qa.mcq.acc", "retain.vqa.mcq.acc",
                "utility.vqa.mcq.acc")
    body = [[f"{name} @ zoo {z}"] + [f"{refs[name].get(k, float('nan')):.3f}" for k in ref_keys]
            for name in ("finetuned (ref)", "retrain (ref)", "retrain_visual (ref)")
            for z, (_, refs) in per_zoo.items() if name in refs]
    lines += ["Reference rows of each zoo:", "", tabulate(body, headers=["model"] + list(ref_keys), tablefmt="github"), ""]
    summary = []
    for key in HEADLINES:
        d = direction(key, args.setting)
        body, ranks = [], {}
        means = {z: {m: statistics.mean(v[key]) for m, v in cells.items() if v[key]} for z, (cells, _) in per_zoo.items()}
        for m in methods:
            vals = [means[z][m] for z in zoo_seeds if m in means[z]]
            if not vals:
                continue
            within = statistics.mean(statistics.stdev(per_zoo[z][0][m][key]) if len(per_zoo[z][0][m][key]) > 1 else 0.0
                                     for z in zoo_seeds if m in per_zoo[z][0])
            across = statistics.stdev(vals) if len(vals) > 1 else 0.0
            body.append([m] + [f"{means[z].get(m, float('nan')):.3f}" for z in zoo_seeds] + [f"{across:.3f}", f"{within:.3f}"])
        for z in zoo_seeds:
            order = sorted(means[z], key=lambda m: -means[z][m] if d == "up" else means[z][m])
            ranks[z] = {m: i + 1 for i, m in enumerate(order)}
        taus = []
        for a, b in itertools.combinations(zoo_seeds, 2):
            common = sorted(set(ranks[a]) & set(ranks[b]))
            if len(common) > 2:
                taus.append(kendalltau([ranks[a][m] for m in common], [ranks[b][m] for m in common]).statistic)
        cvf_ranks = [ranks[z].get("cvf") for z in zoo_seeds]
        summary.append([key, "↑" if d == "up" else "↓", f"{statistics.mean(taus):.3f}" if taus else "-",
                        f"{min(taus):.3f}" if taus else "-", "/".join(str(r) for r in cvf_ranks)])
        lines += [f"{key} ({'higher' if d == 'up' else 'lower'} is better): mean over unlearning seeds per zoo", "",
                  tabulate(body, headers=["method"] + [f"zoo {z}" for z in zoo_seeds] + ["std across zoos",
                                                                                       "mean std across seeds"],
                           tablefmt="github"), ""]
    lines += ["Ranking agreement across zoos (Kendall tau over method ranks, each pair of zoos):", "",
              tabulate(summary, headers=["metric", "better", "mean tau", "min tau", "cvf rank per zoo"],
                       tablefmt="github"), ""]
    text = "\n".join(lines)
    print(text)
    if args.md:
        Path(args.md).write_text(text + "\n")
        Path(args.md).with_suffix(".json").write_text(json.dumps(
            {str(z): {"cells": c, "reference": r} for z, (c, r) in per_zoo.items()}, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
