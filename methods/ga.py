"""GA: gradient ascent on the forget set.

loss = -E_forget l(theta), l = token-mean answer NLL (METRICS.md, "Baselines").
"""

from __future__ import annotations

from mmu_bench.method import GradientMethod, per_example_nll


class GA(GradientMethod):
    name = "ga"
    description = "gradient ascent on the forget set's answers"

    def loss(self, model, forget, retain, context):
        return -per_example_nll(model, forget).mean()
