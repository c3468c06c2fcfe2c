"""GA_Diff (gradient difference): ascend on forget, descend on retain, summed each step.

loss = -E_forget l + retain_weight * E_retain l.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmu_bench.tuning import LogUniform
from mmu_bench.method import GradientHyper, GradientMethod, hp, per_example_nll


@dataclass
class GADiffHyper(GradientHyper):
    retain_weight: float = hp(1.0, "weight of the retain NLL term", search=LogUniform(0.1, 10.0))


class GADiff(GradientMethod):
    name = "ga_diff"
    description = "gradient difference: ascent on forget + descent on retain (summed per step)"
    Hyper = GADiffHyper
    uses_retain = True

    def loss(self, model, forget, retain, context):
        return -per_example_nll(model, forget).mean() + self.hyper.retain_weight * per_example_nll(model, retain).mean()
