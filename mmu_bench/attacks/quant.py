"""Quantization attack (Zhang et al. 2024, "Catastrophic failure of LLM unlearning via
quantization"): an unlearned model whose weights moved only a little from the finetuned ones can
get its knowledge back when the weights are rounded to a coarse grid, because rounding snaps them
back to the finetuned model's grid points.

Weights are quantized weight-only with optimum-quanto (int8: per output channel; int4: groups of
128 / 96 input features where the input width allows, else per output channel -- the tiny
model's 64- and 128-wide layers). EVERY Linear and Conv2d is quantized: the vision tower (patch
embedding included), the projector and the language model with its LM head, since a method such
as CVF edits only vision weights and a config that skipped them would prove nothing.
"""

from __future__ import annotations

import copy
from typing import Any

from .base import Attack, AttackContext, mcq_acc

PARTS = ("vision", "projector", "language")


def quantize_adapter(adapter, bits: int):
    """A quantized copy of ``adapter`` (weights int8 or int4, activations float); the original is
    untouched. Returns (copy, coverage {part: [quantized modules, Linear/Conv2d modules]})."""
    import os

    import torch

    # optimum-quanto imports torch.utils.cpp_extension, which imports setuptools; setuptools'
    # distutils shim then asserts if the standard library's distutils was imported first (lm-eval
    # and others do). Keep the standard one: nothing here builds extensions.
    os.environ.setdefault("SETUPTOOLS_USE_DISTUTILS", "stdlib")
    from optimum.quanto import QModuleMixin, freeze, qint4, qint8, quantize

    qtype = {8: qint8, 4: qint4}[bits]
    model = copy.deepcopy(adapter.model)
    quantize(model, weights=qtype)
    freeze(model)  # stores the integer weights (and drops the float ones)
    model.eval()
    q = type(adapter)(model, adapter.processor, adapter.device)
    coverage = {p: [0, 0] for p in PARTS}
    for part, modules in (("vision", [q.vision_modules]), ("projector", [q.projector_modules]),
                          ("language", q.language_modules)):
        for root in modules:
            for m in root.modules():
                if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                    coverage[part][1] += 1
                    coverage[part][0] += isinstance(m, QModuleMixin)
    return q, coverage


class QuantAttack(Attack):
    """``attack.quant_int<b>.*``: forget / retain mcq accuracy after weight-only quantization.

    - ``forget.vqa.acc`` / ``forget.qa.acc``: forget accuracy of the quantized model.
    - ``forget.vqa.acc_unquantized``: the same model before quantization.
    - ``forget.vqa.recovery``: acc after - acc before quantization (down; > 0 = quantization brought
      forgotten knowledge back).
    - ``retain.vqa.acc``: retain accuracy after quantization (up; the quantized model still works).
    - ``coverage``: share of Linear / Conv2d modules quantized (1.0 = all parts).
    """

    headline = "forget.vqa.acc"

    def __init__(self, bits: int):
        self.bits = bits
        self.name = f"quant_int{bits}"
        self.description = f"weights quantized to int{bits} (optimum-quanto, weight-only, every part), forget / retain acc"

    def measure(self, model, ctx: AttackContext) -> dict[str, Any]:
        q, coverage = quantize_adapter(model, self.bits)
        cfg = ctx.eval_cfg
        out: dict[str, Any] = {}
        for modality in ("vqa", "qa"):
            items = ctx.items("forget", modality)
            out[f"forget.{modality}.acc"] = mcq_acc(q, items, cfg)
            out[f"forget.{modality}.acc_unquantized"] = mcq_acc(model, items, cfg)
            out[f"forget.{modality}.recovery"] = round(out[f"forget.{modality}.acc"] - out[f"forget.{modality}.acc_unquantized"], 6)
        retain = retain_sample(ctx)
        out["retain.vqa.acc"] = mcq_acc(q, [it for it in retain if it["modality"] == "vqa"], cfg)
        out["retain.vqa.acc_unquantized"] = mcq_acc(model, [it for it in retain if it["modality"] == "vqa"], cfg)
        done, total = (sum(coverage[p][i] for p in PARTS) for i in (0, 1))
        out["coverage"] = round(done / total, 6) if total else 0.0
        for p in PARTS:
            out[f"coverage.{p}"] = round(coverage[p][0] / coverage[p][1], 6) if coverage[p][1] else 0.0
        return out

    def sanity(self, reference, setting):
        s = super().sanity(reference, setting)
        # A quantization that misses a part (the vision tower above all) is void for methods that
        # edit only that part.
        cov = reference["finetuned"].get("coverage", 0.0)
        if cov < 1.0:
            s["ok"] = False
            s["problems"].append(f"only {cov:.0%} of the Linear/Conv2d modules were quantized")
        return s


RETAIN_ENTITIES = 30  # retain accuracy on at most this many retain entities (cost on large worlds)


def retain_sample(ctx: AttackContext) -> list[dict]:
    """mcq items of the first RETAIN_ENTITIES retain entities (sorted ids: the same for every model)."""
    items = ctx.items("retain")
    keep = set(sorted({it["entity_id"] for it in items})[:RETAIN_ENTITIES])
    return [it for it in items if it["entity_id"] in keep]
