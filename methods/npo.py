"""NPO (negative preference optimisation, Zhang et al. 2024).

loss = -(2 / beta) * E_forget log sigmoid( beta * (l_theta - l_ref) ), beta 0.4 (MLLMU-Bench),
l = token-mean answer NLL per example. Reference model: ``reference=finetuned`` (default; the NPO
paper's choice, and available on every benchmark) or ``retrain`` (MLLMU-Bench's choice: the
retain-only oracle, privileged information the evaluation itself compares against).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from mmu_bench.tuning import LogUniform
from mmu_bench.method import GradientHyper, GradientMethod, hp, per_example_nll


@dataclass
class NPOHyper(GradientHyper):
    beta: float = hp(0.4, "inverse temperature beta (MLLMU-Bench: 0.4)", search=LogUniform(0.05, 2.0))
    reference: Literal["finetuned", "retrain"] = hp("finetuned", "reference model: finetuned (NPO paper) or retrain (MLLMU-Bench)")
    retain_weight: float = hp(0.0, "optional retain NLL term (0 = plain NPO)")


class NPO(GradientMethod):
    name = "npo"
    description = "negative preference optimisation against a frozen reference model (beta 0.4)"
    Hyper = NPOHyper

    @property
    def uses_retain(self):  # type: ignore[override]
        return self.hyper.retain_weight > 0

    def loss(self, model, forget, retain, context):
        ref = context.reference(self.hyper.reference)
        nll = per_example_nll(model, forget)
        with torch.no_grad():
            ref_nll = per_example_nll(ref, forget)
        b = self.hyper.beta
        loss = -(2.0 / b) * torch.nn.functional.logsigmoid(b * (nll - ref_nll)).mean()
        if retain is not None:
            loss = loss + self.hyper.retain_weight * per_example_nll(model, retain).mean()
        return loss
