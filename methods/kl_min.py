"""KL_Min: ascend on forget, keep retain outputs close to the finetuned model.

loss = -E_forget l + E_retain [ l + kl_weight * KL(p_finetuned || p_theta) ], the KL token-wise
over the full vocabulary at answer positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmu_bench.tuning import LogUniform
from mmu_bench.method import GradientHyper, GradientMethod, answer_logits, hp, per_example_nll


@dataclass
class KLMinHyper(GradientHyper):
    kl_weight: float = hp(1.0, "weight of the KL term on retain answers", search=LogUniform(0.1, 10.0))


class KLMin(GradientMethod):
    name = "kl_min"
    description = "gradient ascent on forget + retain NLL + KL to the finetuned model on retain"
    Hyper = KLMinHyper
    uses_retain = True

    def loss(self, model, forget, retain, context):
        ref = context.reference("finetuned")
        logits, mask = answer_logits(model, retain)
        with torch.no_grad():
            ref_logits, _ = answer_logits(ref, retain)
        logp = torch.log_softmax(logits, -1)
        ref_logp = torch.log_softmax(ref_logits, -1)
        kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
        kl = (kl * mask).sum() / mask.sum().clamp(min=1)
        tgt = retain["labels"][:, 1:]
        tok = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tgt.clamp(min=0), reduction="none")
        nll = ((tok * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()  # per-example token mean, as l
        return -per_example_nll(model, forget).mean() + nll + self.hyper.kl_weight * kl
