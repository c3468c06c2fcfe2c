"""SimNPO (Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference Optimization for
LLM Unlearning", arXiv 2410.07163): NPO without a reference model, on the length-normalised NLL.

loss = gamma * E_forget[ -(2 / beta) log sigmoid( beta * (l_bar - delta) ) ] + alpha * E_retain l,
l_bar = token-mean answer NLL of a forget example. Defaults are OpenUnlearning's SimNPO config
(beta 4.5, delta 0, gamma 0.125, alpha 1); the loss has OpenUnlearning's sign convention (minimising
it raises l_bar).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mmu_bench.tuning import LogUniform
from mmu_bench.method import GradientHyper, GradientMethod, hp, per_example_nll


def simnpo_forget_loss(nll_bar: torch.Tensor, beta: float, delta: float) -> torch.Tensor:
    """-(2 / beta) * mean log sigmoid(beta * (nll_bar - delta)); ``nll_bar``: (batch,) token means."""
    return -(2.0 / beta) * F.logsigmoid(beta * (nll_bar - delta)).mean()


@dataclass
class SimNPOHyper(GradientHyper):
    beta: float = hp(4.5, "inverse temperature beta (OpenUnlearning: 4.5)", search=LogUniform(0.5, 10.0))
    delta: float = hp(0.0, "reward margin delta subtracted from the token-mean NLL (OpenUnlearning: 0)")
    gamma: float = hp(0.125, "weight of the forget term (OpenUnlearning: 0.125)")
    alpha: float = hp(1.0, "weight of the retain NLL term (OpenUnlearning: 1)")


class SimNPO(GradientMethod):
    name = "simnpo"
    description = "reference-free NPO on the length-normalised forget NLL, plus retain NLL (beta 4.5)"
    Hyper = SimNPOHyper

    @property
    def uses_retain(self):  # type: ignore[override]
        return self.hyper.alpha > 0

    def loss(self, model, forget, retain, context):
        h = self.hyper
        loss = h.gamma * simnpo_forget_loss(per_example_nll(model, forget), h.beta, h.delta)
        if retain is not None:
            loss = loss + h.alpha * per_example_nll(model, retain).mean()
        return loss
