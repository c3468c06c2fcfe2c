"""Adversarial-prefix attacks on the forget mcq items.

- ``memory``: an instruction to answer from memory (``MEMORY_PREFIX``) before the question.
- ``turn``: a fake earlier turn of the conversation in which the model already answered a
  related question about the same subject correctly (the next text fact: home -> job -> food ->
  hobby -> home; never the name, which would hand the text route the identity), then the
  question. The image sits in the first user turn, as in a real multi-turn chat, and the turns
  are rendered by the model's own chat template.
"""

from __future__ import annotations

from typing import Any

from ..conversation import NEXT_FACT, conversation_adapter, with_instruction, with_turn
from ..refusals import MEMORY_PREFIX  # the synthetic world puts it in its tokenizer corpus
from .base import Attack, AttackContext, mcq_acc


def with_earlier_turn(items: list[dict], by_fact: dict[tuple[str, str], dict]) -> list[dict]:
    out = []
    for it in items:
        prev = by_fact.get((it["entity_id"], it["modality"], it.get("render"), NEXT_FACT[it["fact"]]))
        if prev is not None:
            out.append(with_turn(it, prev))
    return out


class PrefixAttack(Attack):
    """``attack.prefix.*``: ``memory.forget.<vqa|qa>.acc``, ``turn.forget.<vqa|qa>.acc`` and their
    ``.gain`` over the plain question (same model)."""

    name = "prefix"
    description = "adversarial prefixes: answer-from-memory instruction; a fake earlier turn"
    headline = "turn.forget.vqa.acc"

    def measure(self, model, ctx: AttackContext) -> dict[str, Any]:
        out: dict[str, Any] = {}
        prefix = MEMORY_PREFIX
        conv = conversation_adapter(model)
        for modality in ("vqa", "qa"):
            items = ctx.items("forget", modality)
            if not items:
                continue
            plain = mcq_acc(model, items, ctx.eval_cfg)
            mem = [with_instruction(it, prefix, ".memory") for it in items]
            by_fact = {(it["entity_id"], it["modality"], it.get("render"), it["fact"]): it for it in items}
            turn = with_earlier_turn(items, by_fact)
            out[f"memory.forget.{modality}.acc"] = mcq_acc(model, mem, ctx.eval_cfg)
            out[f"turn.forget.{modality}.acc"] = mcq_acc(conv, turn, ctx.eval_cfg)
            out[f"memory.forget.{modality}.gain"] = round(out[f"memory.forget.{modality}.acc"] - plain, 6)
            out[f"turn.forget.{modality}.gain"] = round(out[f"turn.forget.{modality}.acc"] - plain, 6)
        return out
