"""Comparison at matched retention by weight interpolation (after arXiv 2406.09179).

For an unlearned model theta_u and the finetuned model theta_f, theta(a) = (1 - a) theta_f + a theta_u
moves from "forgot nothing, kept everything" (a = 0) to the method's result (a = 1). The rule: on a
grid of a, score the retain entities' VALIDATION renderings (never reported items) and take the
largest a whose validation retention is at least ``ratio`` x the finetuned model's; then report the
forget / test / retain mcq accuracies of theta(a) on the usual items as ``matched.*``. Two methods
are then compared at the same retention: whoever forgets more there forgets more selectively.
Evaluation only, model-agnostic (any method that changes weights).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch

GRID = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)
ROLES = ("forget", "test", "retain")  # reported at the chosen a (mcq items: cheap and comparable)


def matched_retention(model, finetuned, validation_retain: Sequence[dict], tasks: dict[str, list[dict]],
                      eval_cfg, ratio: float = 0.95, grid: Sequence[float] = GRID) -> tuple[dict[str, float], dict[str, Any]]:
    """(``matched.*`` metrics, details with the retention curve). ``model`` (the unlearned one) is
    left exactly as it came in."""
    from .evaluate import evaluate, mcq_accuracy as _acc

    if not validation_retain:
        raise ValueError("matched retention needs the retain entities' validation items")
    ft_params = dict(finetuned.model.named_parameters())
    names = [n for n, p in model.model.named_parameters() if not torch.equal(p.detach(), ft_params[n].detach())]
    mine = dict(model.model.named_parameters())
    unlearned = {n: mine[n].detach().clone() for n in names}
    base = {n: ft_params[n].detach().to(unlearned[n].device, unlearned[n].dtype) for n in names}

    def set_alpha(a: float) -> None:
        with torch.no_grad():
            for n in names:
                mine[n].copy_(torch.lerp(base[n], unlearned[n], a))

    goal = ratio * _acc(finetuned, validation_retain)
    curve, chosen = [], 0.0
    try:
        for a in sorted(grid):
            set_alpha(a)
            r = _acc(model, validation_retain)
            curve.append([a, round(r, 6)])
            if r >= goal:
                chosen = a  # the largest a that still keeps the target retention
        set_alpha(chosen)
        sub = {role: [it for it in tasks[role] if it["kind"] == "mcq"] for role in ROLES if role in tasks}
        # this suite's log-likelihood mcq scoring whatever the run's protocol, so every method's
        # matched numbers are on one scale
        scored, _ = evaluate(model, sub, dataclasses.replace(eval_cfg, mcq_mode="loglik", progress=False,
                                                             protocol="loglik"))
    finally:
        with torch.no_grad():
            for n in names:  # exactly the unlearned weights again, not a lerp's rounding of them
                mine[n].copy_(unlearned[n])
    metrics = {f"matched.{k}": v for k, v in scored.items() if k.endswith(".acc")}
    metrics["matched.alpha"] = chosen
    metrics["matched.val_retain_acc"] = dict(curve)[chosen] if curve else float("nan")
    return metrics, {"ratio": ratio, "goal_val_retain_acc": round(goal, 6), "curve": curve, "alpha": chosen,
                     "changed_parameters": len(names)}
