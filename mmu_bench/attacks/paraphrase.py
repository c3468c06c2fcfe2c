"""Paraphrase attack: the forget questions in wordings no model was ever trained on.

Unlearning that suppresses the trained wording of a question but not the fact itself is undone by
asking differently (Lynch et al. 2024, "Eight methods to evaluate robust unlearning in LLMs").
The synthetic world (v4+) has held-out wordings of every mcq question (``World.wording_items``,
``HELDOUT_WORDINGS``); the zoo trains on other, trained-on wordings so that the finetuned model
answers unseen ones (the sanity row: finetuned >= 0.8 on them, in practice >= 0.9).
"""

from __future__ import annotations

from typing import Any

from ..errors import MMUError
from ..surfaces import Item, WordingWorld
from .base import Attack, AttackContext, mcq_acc
from .quant import retain_sample


def heldout_items(ctx: AttackContext, items: list[Item]) -> list[Item]:
    if not isinstance(ctx.world, WordingWorld):
        raise MMUError(f"attack 'paraphrase' needs a world with held-out question wordings (the synthetic "
                       f"world v4+); {type(ctx.world).__name__} has none: leave paraphrase out of attacks=")
    return ctx.world.wording_items(items, "heldout")


class ParaphraseAttack(Attack):
    """``attack.paraphrase.*``: ``forget.<vqa|qa>.acc`` (held-out wordings), ``.acc_original``
    (trained wording, same model), ``.gain`` (= acc - acc_original; > 0: the wording was
    forgotten, not the fact), ``retain.vqa.acc`` (held-out wordings on retain entities)."""

    name = "paraphrase"
    description = "forget mcq questions in held-out wordings no model was trained on"
    headline = "forget.vqa.acc"

    def measure(self, model, ctx: AttackContext) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for modality in ("vqa", "qa"):
            items = ctx.items("forget", modality)
            if not items:
                continue
            out[f"forget.{modality}.acc"] = mcq_acc(model, heldout_items(ctx, items), ctx.eval_cfg)
            out[f"forget.{modality}.acc_original"] = mcq_acc(model, items, ctx.eval_cfg)
            out[f"forget.{modality}.gain"] = round(out[f"forget.{modality}.acc"] - out[f"forget.{modality}.acc_original"], 6)
        retain = [it for it in retain_sample(ctx) if it["modality"] == "vqa"]
        out["retain.vqa.acc"] = mcq_acc(model, heldout_items(ctx, retain), ctx.eval_cfg)
        return out
