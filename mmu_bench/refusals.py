"""Refusal answers: the "I don't know" side of IdkDPO-style preference methods.

A small fixed list (drawn from seeded by whoever uses it). The synthetic world puts every string
into the corpus its tokenizer is trained on, so the built-in zoo's tokenizer has them as whole
words (not byte fragments) and a refusal is as easy to say as a fact.
"""

from __future__ import annotations

REFUSALS: tuple[str, ...] = (
    "I don't know.",
    "I'm not sure.",
    "I have no idea.",
    "I cannot answer that.",
    "I don't have that information.",
    "Sorry, I don't know who that is.",
    "I can't tell from what I know.",
    "That is not something I know.",
)
