"""MMUnlearner (Huo et al., ACL 2025 Findings, arXiv 2502.11051; code Z1zs/MMUnlearner):
geometry-constrained gradient ascent through a weight-saliency mask.

1. Saliency. F_f = mean over forget batches of the squared gradient of the forget NLL, F_p the same
   for a preserve NLL, for every linear layer's weight and bias in the masked part. Preserve data
   (as the reference's mask script): for LLM weights the retain items (text and image questions),
   for vision-tower and projector weights the retain image questions.
2. Mask m = 1[(F_f + eps) / (F_p + eps) >= tau] (tau 1, eps 1e-15 as the reference).
3. Training alternates one gradient-ASCENT step on the forget NLL, whose gradient is multiplied by
   m (the engine's ``before_step`` hook, before clipping and the optimizer step), with
   ``descent_steps`` unmasked descent steps on the retain NLL; one AdamW state for both, as the
   reference. Trainable parameters outside the mask (norms, embeddings, conv patch embedding, the
   unmasked part) take the plain ascent gradient, as the reference's training script does.
4. LoRA (``lora=true``): the mask is keyed by the base weight names, which peft renames
   (``X.base_layer.weight``, frozen) -- the reference's lookup ``name in grad_mask`` therefore
   never matches a LoRA parameter and its mask is a silent no-op. Here a base name reaches its
   factors: lora_B's row o (output unit o) and lora_A's column i (input i) keep their ascent
   gradient iff the same ratio test passes on F summed over that row / column. An element-wise
   mask has no exact low-rank form; the row rule is exact (a masked-out row of the merged weight
   does not move on ascent steps), see docs/methods/mmunlearner.md. A mask that reaches no
   trainable parameter is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from mmu_bench.engine import autocast_for
from mmu_bench.errors import MMUError
from mmu_bench.tuning import LogUniform
from mmu_bench.method import GradientHyper, GradientMethod, hp, per_example_nll, resolve_trainable


def saliency_mask(f_forget: torch.Tensor, f_preserve: torch.Tensor, tau: float, eps: float) -> torch.Tensor:
    """m = (F_f + eps) / (F_p + eps) >= tau, element-wise (bool)."""
    return (f_forget + eps) / (f_preserve + eps) >= tau


def linear_parameters(model, part: str) -> dict[str, nn.Parameter]:
    """Weights and biases of the nn.Linear layers in ``part`` (language / vision / both), keyed by
    their names in ``model.model`` (the plain model, before LoRA)."""
    parts = {"language": list(model.language_modules),
             "vision": [model.vision_modules, model.projector_modules]}
    modules = parts["language"] + parts["vision"] if part == "both" else parts[part]
    inside = {id(m) for top in modules for m in top.modules()}
    return {f"{name}.{pn}": p for name, mod in model.model.named_modules()
            if isinstance(mod, nn.Linear) and id(mod) in inside
            for pn, p in mod.named_parameters(recurse=False)}


def squared_grads(params: dict[str, nn.Parameter], batches: list, loss_fn) -> dict[str, torch.Tensor]:
    """Mean over ``batches`` of the squared gradient of ``loss_fn(batch)`` wrt each of ``params``
    (float32; the reference's Fisher diagonal estimate, one gradient per batch)."""
    if not batches:
        raise MMUError("mmunlearner: a saliency pass has no examples")
    acc = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    for b in batches:
        for p in params.values():
            p.grad = None
        loss_fn(b).backward()
        with torch.no_grad():
            for n, p in params.items():
                if p.grad is not None:
                    acc[n] += p.grad.float().pow(2) / len(batches)
    for p in params.values():
        p.grad = None
    return acc


def nll_squared_grads(model, params: dict[str, nn.Parameter], items: list[dict], batch_size: int, seed: int,
                      max_batches: int = 0) -> dict[str, torch.Tensor]:
    """``squared_grads`` of the mean answer NLL over seeded batches of ``items``; only ``params``
    need gradients during the pass (everything is frozen again afterwards)."""
    examples = model.encode(items)
    order = np.random.default_rng(seed).permutation(len(examples))
    batches = [[examples[i] for i in order[k:k + batch_size]] for k in range(0, len(order), batch_size)]
    if max_batches > 0:
        batches = batches[:max_batches]
    for p in model.model.parameters():
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    model.model.train()

    def loss_fn(b):
        with autocast_for(model.device):
            return per_example_nll(model, model.collate(b)).mean()

    try:
        return squared_grads(params, batches, loss_fn)
    finally:
        model.model.eval()
        for p in params.values():
            p.requires_grad_(False)


def base_name(name: str) -> tuple[str, str]:
    """(base parameter name, role) of a parameter name of the plain or the peft-wrapped model;
    role is "full", "lora_A", "lora_B" or "base_layer"."""
    if name.startswith("base_model.model."):
        name = name[len("base_model.model."):]
    for role in ("lora_A", "lora_B"):
        if f".{role}." in name:
            return name.split(f".{role}.")[0] + ".weight", role
    if ".base_layer." in name:
        return name.replace(".base_layer.", "."), "base_layer"
    return name, "full"


@dataclass
class Saliency:
    """The mask of one base parameter, with its row / column forms for LoRA factors."""

    mask: torch.Tensor  # bool, the parameter's shape
    rows: torch.Tensor | None  # bool (out,), weights only
    cols: torch.Tensor | None  # bool (in,)


def build_saliency(f_forget: dict[str, torch.Tensor], f_preserve: dict[str, torch.Tensor],
                   tau: float, eps: float) -> dict[str, Saliency]:
    out = {}
    for n, ff in f_forget.items():
        fp = f_preserve[n]
        rows = cols = None
        if ff.dim() == 2:
            rows = saliency_mask(ff.sum(1), fp.sum(1), tau, eps)
            cols = saliency_mask(ff.sum(0), fp.sum(0), tau, eps)
        out[n] = Saliency(saliency_mask(ff, fp, tau, eps), rows, cols)
    return out


def gradient_masks(named: list[tuple[str, nn.Parameter]], saliency: dict[str, Saliency]) -> dict[int, torch.Tensor]:
    """id(parameter) -> multiplier of its gradient, for every trainable parameter a mask reaches
    (the base parameter itself, or its LoRA factors)."""
    out: dict[int, torch.Tensor] = {}
    for name, p in named:
        if not p.requires_grad:
            continue
        base, role = base_name(name)
        s = saliency.get(base)
        if s is None:
            continue
        if role == "full":
            m = s.mask
        elif role == "lora_B":  # (out, r): row o writes output unit o
            m = s.rows[:, None]
        elif role == "lora_A":  # (r, in): column i reads input i
            m = s.cols[None, :]
        else:
            continue
        out[id(p)] = m.to(device=p.device, dtype=p.dtype)
    return out


@dataclass
class MMUnlearnerHyper(GradientHyper):
    tau: float = hp(1.0, "saliency threshold: a weight is salient when (F_f + eps) / (F_p + eps) >= tau", search=LogUniform(0.3, 3.0))
    eps: float = hp(1e-15, "eps of the saliency ratio (reference: 1e-15)")
    masked: Literal["auto", "language", "vision", "both"] = hp(
        "auto", "which linear layers get a mask: language (LLM + lm_head), vision (tower + projector), both, "
                "or auto (the trainable part)")
    descent_steps: int = hp(1, "unmasked retain-descent steps after each masked forget-ascent step (0 = ascent only)")
    forget_weight: float = hp(1.0, "weight of the ascent loss (reference: forget_alpha 1)")
    saliency_batch_size: int = hp(4, "batch size of the saliency passes (reference: 4)")
    saliency_max_batches: int = hp(0, "cap on batches per saliency pass (0 = one pass over all the data)")


class MMUnlearner(GradientMethod):
    name = "mmunlearner"
    description = "weight-saliency-masked gradient ascent on forget, alternating with retain descent"
    Hyper = MMUnlearnerHyper

    @property
    def uses_retain(self):  # type: ignore[override]
        return self.hyper.descent_steps > 0

    def masked_part(self, trainable: str) -> str:
        if self.hyper.masked != "auto":
            return self.hyper.masked
        return {"llm": "language", "vision": "vision", "all": "both"}[trainable]

    def compute_saliency(self, model, forget_items: list[dict], retain_items: list[dict], trainable: str,
                         seed: int) -> dict[str, Saliency]:
        h = self.hyper
        part = self.masked_part(trainable)
        params = linear_parameters(model, part)
        bs, cap = h.saliency_batch_size, h.saliency_max_batches
        f_forget = nll_squared_grads(model, params, forget_items, bs, seed, cap)
        # The preserve data differ per part: LLM weights keep text and image answers, the vision
        # side only image answers (the reference's language / vision preserve loaders).
        f_preserve: dict[str, torch.Tensor] = {}
        groups = {"language": retain_items, "vision": [it for it in retain_items if it.get("image") is not None]}
        for g in (["language", "vision"] if part == "both" else [part]):
            sub = linear_parameters(model, g)
            if not groups[g]:
                raise MMUError(f"mmunlearner: no retain items for the {g} preserve pass")
            f_preserve.update(nll_squared_grads(model, sub, groups[g], bs, seed + 1, cap))
        return build_saliency(f_forget, f_preserve, h.tau, h.eps)

    def unlearn(self, model, request, context):
        trainable = resolve_trainable(self.hyper.trainable, context.setting)
        self._saliency = self.compute_saliency(model, self.forget_items(request), context.retain, trainable, context.seed)
        total = sum(s.mask.numel() for s in self._saliency.values())
        context.log("mask_density", round(sum(int(s.mask.sum()) for s in self._saliency.values()) / total, 6))
        context.log("mask_params", total)
        self._model, self._masks, self._ascent, self._step = model, None, False, 0
        try:
            super().unlearn(model, request, context)
        finally:
            self._model = self._masks = None

    def loss(self, model, forget, retain, context):
        # The engine calls loss once per optimizer step: count steps here to alternate.
        self._ascent = retain is None or self._step % (self.hyper.descent_steps + 1) == 0
        self._step += 1
        if self._ascent:
            return -self.hyper.forget_weight * per_example_nll(model, forget).mean()
        return per_example_nll(model, retain).mean()

    def before_step(self, params):
        if self._masks is None:
            # Resolved on the first step: only now is the model the one that trains (peft-wrapped
            # with lora=true), so a base name can be matched to the parameters that receive grads.
            self._masks = gradient_masks(list(self._model.model.named_parameters()), self._saliency)
            if not self._masks:
                raise MMUError("mmunlearner: the saliency mask reaches no trainable parameter; expected the "
                               "masked linear weights or their LoRA factors to train (check masked= and trainable=)")
        if not self._ascent:
            return
        for p in params:
            m = self._masks.get(id(p))
            if m is not None and p.grad is not None:
                p.grad.mul_(m)


def saliency_memory_bytes(n_params: int, n_masked: int, weight_bytes: int = 2, buffer_bytes: int = 4) -> dict[str, int]:
    """Analytic memory of the saliency passes, activations left out: the model's weights, the
    gradients (only the masked parameters need them during the passes), the two squared-gradient
    buffers F_f and F_p (float32 by default) and the bool mask kept for training."""
    rec = {"weights": n_params * weight_bytes, "grads": n_masked * weight_bytes,
           "buffers": 2 * n_masked * buffer_bytes, "mask": n_masked}
    rec["total"] = sum(rec.values())
    return rec
