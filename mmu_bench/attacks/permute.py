"""Option-order attack: the forget mcq items with their options in another order.

A method that learned "never pick option B for this question" rather than forgetting the answer
is caught when the gold option moves. Each item's options are rotated by 1-3 places (seeded by
the item id, so every model sees the same orders); the gold index moves with its option.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .base import Attack, AttackContext, mcq_acc


def permuted(items: list[dict]) -> list[dict]:
    out = []
    for it in items:
        k = len(it["options"])
        shift = 1 + int(hashlib.md5(it["id"].encode()).hexdigest()[:8], 16) % (k - 1)  # never 0: order changes
        opts = it["options"][shift:] + it["options"][:shift]
        out.append(dict(it, id=f"{it['id']}.perm{shift}", options=opts, answer_index=(it["answer_index"] - shift) % k))
    return out


class PermuteAttack(Attack):
    """``attack.permute.*``: ``forget.<vqa|qa>.acc`` (rotated options), ``.gain`` (vs the
    original order)."""

    name = "permute"
    description = "forget mcq items with the option order rotated"
    headline = "forget.vqa.acc"

    def measure(self, model, ctx: AttackContext) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for modality in ("vqa", "qa"):
            items = ctx.items("forget", modality)
            if items:
                out[f"forget.{modality}.acc"] = mcq_acc(model, permuted(items), ctx.eval_cfg)
                out[f"forget.{modality}.gain"] = round(out[f"forget.{modality}.acc"] - mcq_acc(model, items, ctx.eval_cfg), 6)
        return out
