"""Reference pseudo-methods: they unlearn nothing and evaluate a zoo model instead.

They make the reference rows (no unlearning, and the two oracles) usable in every protocol.
"""

from __future__ import annotations

from mmu_bench.method import Method


class Finetuned(Method):
    name = "finetuned"
    description = "reference: the finetuned model, no unlearning"
    zoo_model = "finetuned"

    def unlearn(self, model, request, context):
        return None


class Retrain(Finetuned):
    name = "retrain"
    description = "reference: the retrain oracle (never saw the forget set)"
    zoo_model = "retrain"


class RetrainVisual(Finetuned):
    name = "retrain_visual"
    description = "reference: the visual oracle (knows forget facts by name, never saw their images)"
    zoo_model = "retrain_visual"


REFERENCE_METHODS = ("finetuned", "retrain", "retrain_visual")
