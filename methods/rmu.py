"""RMU (representation misdirection for unlearning; Li et al. 2024, WMDP, arXiv 2403.03218).

At one LLM decoder layer, push the forget examples' hidden states towards a fixed random vector
u of norm c (``steering_coeff``), and keep the retain examples' hidden states where the frozen
finetuned model has them:

loss = E_forget mse(h_theta(x_f), c u) + alpha * E_retain mse(h_theta(x_r), h_ref(x_r)),

mse = mean over the hidden dimension, averaged over the selected token positions of each example,
then over examples (OpenUnlearning's form of WMDP's loss). u = uniform [0, 1) vector normalised to
unit length (WMDP's draw), seeded, fixed for a request. Which positions count (``tokens``):

- ``visual``: the visual tokens (image placeholders) -- our MLLM variant for the visual setting:
  the representation of the picture is misdirected, the text prompt and answer are not.
- ``text``: every non-padding text token (prompt and answer), as WMDP steers every token of its
  forget corpus.
- ``auto`` (default): ``visual`` in the visual setting, ``text`` in the full setting.

Which parameters train follows the setting (``trainable``); WMDP updates three MLPs only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch

from mmu_bench.errors import MMUError
from mmu_bench.tuning import LogUniform
from mmu_bench.method import GradientHyper, GradientMethod, hp


def masked_mse(h: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over examples of the mean over their masked positions of mean_d (h - target)^2.

    h, target: (batch, seq, dim) (target may broadcast); mask: (batch, seq) bool. Examples
    without a selected position are left out of the mean.
    """
    sq = (h - target).pow(2).mean(-1)
    m = mask.to(sq.dtype)
    n = m.sum(1)
    keep = n > 0
    if not bool(keep.any()):
        raise MMUError("RMU: no example in the batch has a token position to steer")
    return ((sq * m).sum(1)[keep] / n[keep]).mean()


def rmu_loss(h_forget: torch.Tensor, forget_mask: torch.Tensor, control: torch.Tensor,
             h_retain: torch.Tensor | None, h_retain_ref: torch.Tensor | None, retain_mask: torch.Tensor | None,
             alpha: float) -> torch.Tensor:
    """mse(h_forget, control) + alpha * mse(h_retain, h_retain_ref); control: (dim,)."""
    loss = masked_mse(h_forget, control.to(h_forget.dtype), forget_mask)
    if h_retain is not None:
        loss = loss + alpha * masked_mse(h_retain, h_retain_ref, retain_mask)
    return loss


def control_vector(dim: int, coeff: float, seed: int) -> torch.Tensor:
    """c * u / |u|, u ~ uniform [0, 1)^dim (WMDP's draw), from its own seeded generator."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(dim, generator=g)
    return coeff * u / u.norm()


@dataclass
class RMUHyper(GradientHyper):
    layer: int = hp(0, "0-based LLM decoder layer whose output is steered (WMDP: 7 of Zephyr-7B's 32)")
    steering_coeff: float = hp(20.0, "c, norm of the random target vector (WMDP: 6.5 on Zephyr-7B layer 7, "
                                     "OpenUnlearning: 2 to 20; scale with the layer's activation norms)",
                               search=LogUniform(2.0, 60.0))
    alpha: float = hp(1.0, "weight of the retain term (0 = no retain data)")
    tokens: Literal["auto", "visual", "text"] = hp("auto", "positions steered and kept: visual tokens, text tokens, "
                                                    "or auto (visual setting: visual, full setting: text)")


class RMU(GradientMethod):
    name = "rmu"
    description = "representation misdirection: steer forget hidden states at one LLM layer to a random vector"
    Hyper = RMUHyper

    @property
    def uses_retain(self):  # type: ignore[override]
        return self.hyper.alpha > 0

    def unlearn(self, model, request, context):
        n_layers = model.model.config.text_config.num_hidden_layers
        if not 0 <= self.hyper.layer < n_layers:
            raise MMUError(f"rmu layer {self.hyper.layer} out of range; the LLM has layers 0..{n_layers - 1}")
        self._tokens = self.token_choice(context)
        self._control = control_vector(model.model.config.text_config.hidden_size, self.hyper.steering_coeff,
                                       context.seed).to(model.device)
        if self._tokens == "visual":
            # Text-only retain items have no visual position to keep: leave them out.
            context = dataclasses.replace(context, retain=[it for it in context.retain if it.get("image") is not None])
        super().unlearn(model, request, context)

    def token_choice(self, context) -> str:
        if self.hyper.tokens != "auto":
            return self.hyper.tokens
        return "text" if context.setting == "full" else "visual"

    def positions(self, model, batch: dict) -> torch.Tensor:
        """(batch, seq) bool: the positions the loss acts on."""
        visual = batch["input_ids"] == model.image_token_id
        if self._tokens == "visual":
            return visual
        return batch["attention_mask"].bool() & ~visual

    def hidden(self, model, batch: dict) -> torch.Tensor:
        # hidden_states[0] is the embedding output, [k + 1] the output of decoder layer k
        out = model.model(**{k: v for k, v in batch.items() if k != "labels"}, output_hidden_states=True)
        return out.hidden_states[self.hyper.layer + 1].float()

    def loss(self, model, forget, retain, context):
        h_r = h_ref = m_r = None
        if retain is not None:
            h_r = self.hidden(model, retain)
            with torch.no_grad():
                h_ref = self.hidden(context.reference("finetuned"), retain)
            m_r = self.positions(model, retain)
        return rmu_loss(self.hidden(model, forget), self.positions(model, forget), self._control,
                        h_r, h_ref, m_r, self.hyper.alpha)
