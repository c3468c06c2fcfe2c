"""What every attack shares: the context it runs in, mcq scoring helpers and the sanity rule.

An attack measures ONE model (``measure(model, ctx) -> {metric: value}``); the protocol runs it on
the unlearned model (keys ``attack.<name>.<metric>``) and on the finetuned model and the oracles
(the sanity rows, cached per zoo). ``sanity`` says whether the attack can tell knowledge from its
absence at all: the finetuned model must score high and the setting's oracle low on the attack's
headline metric, else a number from the attack says nothing about a method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..evaluate import EvalConfig, score_mcq_loglik
from ..surfaces import BenchmarkSurface, Item, WorldSurface

CHANCE = 0.25
# Sanity thresholds on the headline metric: "knows" >= HIGH, "does not know" <= LOW. LOW leaves
# room above chance (0.25) for an oracle that guesses a look-alike's facts now and then.
HIGH, LOW = 0.8, 0.45
ORACLES = {"visual": "retrain_visual", "full": "retrain"}
REFERENCE_MODELS = ("finetuned", "retrain", "retrain_visual")


@dataclass
class AttackContext:
    """Everything an attack may read: the benchmark (world, zoo), the forget split, the
    evaluation tasks, the evaluation config, the setting and a seed."""

    benchmark: BenchmarkSurface
    split: str
    tasks: dict[str, list[Item]]
    eval_cfg: EvalConfig
    setting: str = "visual"
    seed: int = 0
    cache: dict[str, Any] = field(default_factory=dict)  # per-run memo shared by the attacks

    @property
    def world(self) -> WorldSurface:
        return self.benchmark.world

    @property
    def oracle(self) -> str:
        return ORACLES[self.setting]

    def items(self, role: str, modality: str | None = None, kind: str = "mcq") -> list[Item]:
        return [it for it in self.tasks[role] if it["kind"] == kind and (modality is None or it["modality"] == modality)]


def mcq_correct(model, items: Sequence[Item], eval_cfg: EvalConfig) -> list[bool]:
    """Per-item correctness under the suite's loglik mcq scorer (empty list for no items)."""
    if not items:
        return []
    return [bool(s["correct"]) for s in score_mcq_loglik(model, list(items), eval_cfg)]


def mean(xs) -> float:
    xs = list(xs)
    return round(float(np.mean(xs)), 6) if xs else float("nan")


def mcq_acc(model, items: Sequence[Item], eval_cfg: EvalConfig) -> float:
    return mean(mcq_correct(model, items, eval_cfg))


class Attack:
    """Base class. Subclasses set ``name``, ``description``, ``headline`` (the metric the sanity
    rule reads) and implement ``measure``."""

    name = "attack"
    description = ""
    headline = "forget.vqa.acc"
    version = 1  # bump when measure() changes: the cached sanity rows are keyed by it

    def measure(self, model, ctx: AttackContext) -> dict[str, float]:
        raise NotImplementedError

    def sanity(self, reference: dict[str, dict[str, float]], setting: str) -> dict[str, Any]:
        """Headline of the finetuned model must be >= HIGH, of the setting's oracle <= LOW."""
        ft = reference["finetuned"].get(self.headline, float("nan"))
        orc = reference[ORACLES[setting]].get(self.headline, float("nan"))
        problems = []
        if not ft >= HIGH:
            problems.append(f"finetuned {self.headline} = {ft:.3f} < {HIGH} (the attack does not see knowledge that is there)")
        if not orc <= LOW:
            problems.append(f"{ORACLES[setting]} {self.headline} = {orc:.3f} > {LOW} (the attack finds knowledge that was never there)")
        return {"metric": self.headline, "finetuned": ft, "oracle": orc, "oracle_model": ORACLES[setting],
                "ok": not problems, "problems": problems}

    # plots: {file name: writer(path, method_values, reference, label)}; none by default
    plots: dict[str, Callable] = {}
