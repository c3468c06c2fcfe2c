"""IdkDPO: DPO whose preferred answer is an "I don't know" refusal and rejected answer the truth.

Following TOFU's / OpenUnlearning's IdkDPO: for every forget example, preferred y_w = a refusal
drawn (seeded) from ``mmu_bench.refusals.REFUSALS``, rejected y_l = the true answer, against the
frozen finetuned model as reference; plus a retain NLL term.

loss = gamma * E_forget[ -(2 / beta) log sigmoid( beta * ((s_w - s_w_ref) - (s_l - s_l_ref)) ) ]
       + alpha * E_retain l,
s = log p(answer | prompt), summed over the answer's tokens (DPO's sequence log-likelihood;
``reduction=mean`` uses the token mean instead). beta 0.1, gamma 1, alpha 1 (OpenUnlearning).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from mmu_bench.errors import MMUError
from mmu_bench.tuning import LogUniform
from mmu_bench.method import GradientHyper, GradientMethod, hp, per_example_nll
from mmu_bench.refusals import REFUSALS


def dpo_loss(win: torch.Tensor, win_ref: torch.Tensor, lose: torch.Tensor, lose_ref: torch.Tensor,
             beta: float) -> torch.Tensor:
    """-(2 / beta) * mean log sigmoid(beta * ((win - win_ref) - (lose - lose_ref))); inputs are
    (batch,) answer log-likelihoods under the model and the reference."""
    return -(2.0 / beta) * F.logsigmoid(beta * ((win - win_ref) - (lose - lose_ref))).mean()


def answer_loglik(model, batch: dict, reduction: str) -> torch.Tensor:
    """log p(answer | prompt) of each example, (batch,): token sum or token mean."""
    nll = per_example_nll(model, batch)
    if reduction == "mean":
        return -nll
    return -nll * (batch["labels"][:, 1:] != -100).sum(1)


def with_answers(batch: dict, answers: list[list[int]], pad_id: int) -> dict:
    """The collated ``batch`` (right padded) with each row's answer tokens replaced by ``answers[r]``.

    Prompts, and so the image-token positions and the vision inputs, are unchanged: only
    input_ids, attention_mask and labels are rebuilt.
    """
    ids, labels = batch["input_ids"], batch["labels"]
    rows = []
    for r in range(ids.size(0)):
        ans_pos = (labels[r] != -100).nonzero()
        if len(ans_pos) == 0:
            raise MMUError("with_answers: a batch row has no answer tokens")
        rows.append(ids[r, : int(ans_pos[0])].tolist() + list(answers[r]))
    n = max(len(s) for s in rows)
    new_ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    attn = torch.zeros_like(new_ids)
    new_labels = torch.full_like(new_ids, -100)
    for r, s in enumerate(rows):
        k = len(s) - len(answers[r])
        new_ids[r, : len(s)] = torch.tensor(s)
        attn[r, : len(s)] = 1
        new_labels[r, k : len(s)] = torch.tensor(list(answers[r]))
    out = dict(batch)
    dev = ids.device
    out.update(input_ids=new_ids.to(dev), attention_mask=attn.to(dev), labels=new_labels.to(dev))
    return out


@dataclass
class IdkDPOHyper(GradientHyper):
    beta: float = hp(0.1, "DPO inverse temperature beta (OpenUnlearning: 0.1)", search=LogUniform(0.02, 1.0))
    gamma: float = hp(1.0, "weight of the DPO forget term")
    alpha: float = hp(1.0, "weight of the retain NLL term (0 = no retain data)")
    reduction: Literal["sum", "mean"] = hp("sum", "answer log-likelihood: token sum (DPO) or token mean")


class IdkDPO(GradientMethod):
    name = "idkdpo"
    description = "DPO preferring an 'I don't know' refusal over the true answer (reference: finetuned) + retain NLL"
    Hyper = IdkDPOHyper

    @property
    def uses_retain(self):  # type: ignore[override]
        return self.hyper.alpha > 0

    def unlearn(self, model, request, context):
        # One seeded stream of refusal draws per request (each forget example draws afresh every
        # time it is batched, as TOFU's idk data loader does).
        self._rng = random.Random(context.seed)
        self._refusal_ids = [model.answer_ids(r) for r in REFUSALS]
        super().unlearn(model, request, context)

    def loss(self, model, forget, retain, context):
        h = self.hyper
        ref = context.reference("finetuned")
        idk = with_answers(forget, [self._rng.choice(self._refusal_ids) for _ in range(forget["input_ids"].size(0))],
                           model.tokenizer.pad_token_id)
        win, lose = answer_loglik(model, idk, h.reduction), answer_loglik(model, forget, h.reduction)
        with torch.no_grad():
            win_ref, lose_ref = answer_loglik(ref, idk, h.reduction), answer_loglik(ref, forget, h.reduction)
        loss = h.gamma * dpo_loss(win, win_ref, lose, lose_ref, h.beta)
        if retain is not None:
            loss = loss + h.alpha * per_example_nll(model, retain).mean()
        return loss
