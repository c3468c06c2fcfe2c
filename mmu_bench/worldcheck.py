"""``mmu-bench world check``: is the zoo a valid unlearning testbed?

Evaluates base / finetuned / retrain / retrain_visual on every task of the synthetic benchmark and
checks the validity relations (V1) of docs/world.md.
"""

from __future__ import annotations

import operator
import time
from dataclasses import dataclass

from tabulate import tabulate

from .benchmark import eval_tasks
from .evaluate import EvalConfig, evaluate
from .zoo import Zoo, model_label


@dataclass(frozen=True)
class Relation:
    model: str
    key: str
    op: str  # ">=" or "<="
    threshold: float
    why: str

    def holds(self, value: float) -> bool:
        return {">=": operator.ge, "<=": operator.le}[self.op](value, self.threshold)


def relations() -> list[Relation]:
    """The validity relations V1 (chance is 0.25 on 4-way mcq)."""
    rel = []
    for m in ("vqa", "qa"):
        for s in ("forget", "retain"):
            rel.append(Relation("finetuned", f"{s}.{m}.mcq.acc", ">=", 0.95, "finetuned knows every profile"))
    rel.append(Relation("finetuned", "test.vqa.mcq.acc", ">=", 0.8, "finetuned recognises unseen renderings"))
    for model in ("base", "retrain"):
        for m in ("vqa", "qa"):
            rel.append(Relation(model, f"forget.{m}.mcq.acc", "<=", 0.4, f"{model} never learned the forget set"))
    rel.append(Relation("retrain_visual", "forget.vqa.mcq.acc", "<=", 0.4, "retrain_visual never saw the forget images"))
    rel.append(Relation("retrain_visual", "forget.qa.mcq.acc", ">=", 0.95, "retrain_visual knows the forget facts by name"))
    for m in ("vqa", "qa"):
        rel.append(Relation("retrain", f"retain.{m}.mcq.acc", ">=", 0.95, "the oracle knows the retain set"))
    for model in ("base", "finetuned", "retrain", "retrain_visual"):
        for key in ("real.vqa.mcq.acc", "real.qa.mcq.acc", "utility.vqa.mcq.acc"):
            rel.append(Relation(model, key, ">=", 0.9, "general and public knowledge is kept"))
    return rel


def world_check(zoo: Zoo, forget_split: str = "forget_10", eval_cfg: EvalConfig | None = None) -> dict:
    """Evaluate the four zoo models; returns {"models": {name: metrics}, "relations": [...], ...}."""
    tasks = eval_tasks(zoo.world, forget_split)
    results: dict[str, dict[str, float]] = {}
    timings: dict[str, float] = {}
    for name in ("base", "finetuned", "retrain", "retrain_visual"):
        split = forget_split if name.startswith("retrain") else None
        adapter = zoo.load(name, split)
        t0 = time.time()
        metrics, _ = evaluate(adapter, tasks, eval_cfg)
        timings[name] = round(time.time() - t0, 2)
        results[name] = metrics
    checks = []
    for r in relations():
        v = results[r.model].get(r.key)
        checks.append({"model": r.model, "key": r.key, "op": r.op, "threshold": r.threshold,
                       "value": v, "ok": v is not None and r.holds(v), "why": r.why})
    return {"forget_split": forget_split, "zoo": zoo.key, "world": zoo.world.config.__dict__,
            "models": results, "relations": checks, "valid": all(c["ok"] for c in checks),
            "eval_seconds": timings}


def format_check(report: dict) -> str:
    models = list(report["models"])
    keys = sorted({k for m in report["models"].values() for k in m
                   if k.endswith((".acc", ".rougeL"))})
    rows = [[k] + [f"{report['models'][m].get(k, float('nan')):.3f}" for m in models] for k in keys]
    labels = [model_label(m, report["forget_split"]) for m in models]
    table = tabulate(rows, headers=["metric"] + labels, tablefmt="github")
    lines = [table, "", "validity relations (V1):"]
    for c in report["relations"]:
        mark = "ok  " if c["ok"] else "FAIL"
        val = "missing" if c["value"] is None else f"{c['value']:.3f}"
        lines.append(f"  [{mark}] {c['model']:<15} {c['key']:<22} {val} {c['op']} {c['threshold']}  ({c['why']})")
    lines.append("")
    lines.append("zoo is a VALID testbed" if report["valid"] else "zoo is NOT a valid testbed (see FAIL lines)")
    return "\n".join(lines)
