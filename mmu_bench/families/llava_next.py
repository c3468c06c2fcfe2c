"""LLaVA-NeXT / 1.6 (``llava_next``): anyres tiles and ``image_sizes``."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..adapter import LlavaAdapter
from .common import ModuleGroup, resize_square


class LlavaNextAdapter(LlavaAdapter):
    """LLaVA-NeXT (``LlavaNextForConditionalGeneration``): anyres tiles, ``image_sizes``.

    ``image_size``: side of the square every image is resized to before the processor (default:
    the processor's crop size, 336 for the released checkpoints), so the tiling and the number of
    visual tokens are the same for every image.
    """

    family = "llava_next"

    def __init__(self, model: nn.Module, processor: Any, device: str | torch.device | None = None,
                 image_size: int | None = None):
        self.image_size = int(image_size or _llava_next_size(processor.image_processor))
        super().__init__(model, processor, device)

    @property
    def projector_modules(self) -> nn.Module:
        inner = self.model.model
        return ModuleGroup({"multi_modal_projector": inner.multi_modal_projector},
                           {"image_newline": inner.image_newline})

    def _probe_size(self) -> int:
        return self.image_size

    def pixel_values(self, images: Sequence[Any]) -> list[torch.Tensor]:
        return super().pixel_values(resize_square(images, self.image_size))

    def _image_sizes(self, n: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.tensor([[self.image_size, self.image_size]] * n, dtype=torch.long, device=device)

    def vision_inputs(self, pixel_values: torch.Tensor, input_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"pixel_values": pixel_values, "image_sizes": self._image_sizes(len(pixel_values), pixel_values.device)}

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model.model.get_image_features(
            pixel_values=pixel_values, image_sizes=self._image_sizes(len(pixel_values), pixel_values.device)).pooler_output
        return torch.stack(list(out)) if isinstance(out, (list, tuple)) else out


def _llava_next_size(ip: Any) -> int:
    crop = getattr(ip, "crop_size", None)
    if crop:
        return int(crop["height"])
    size = getattr(ip, "size", None) or {}
    return int(size.get("shortest_edge") or size.get("height") or 336)
