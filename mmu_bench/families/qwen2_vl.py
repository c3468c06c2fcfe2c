"""Qwen2-VL / Qwen2.5-VL (``qwen2_vl``, ``qwen2_5_vl``): flattened patches + ``image_grid_thw``,
and a Qwen processor that needs no torchvision."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..adapter import LlavaAdapter
from ..errors import MMUError
from .common import ModuleGroup, resize_square


class Qwen2VLAdapter(LlavaAdapter):
    """Qwen2-VL (``Qwen2VLForConditionalGeneration``): flattened patches + ``image_grid_thw``.

    ``image_size``: side of the square every image is resized to (a multiple of patch x merge,
    28 for the released checkpoints). Default: 448 (16 x 16 = 256 visual tokens) or less when the
    processor's ``max_pixels`` is smaller. Vision = the ViT without its merger; projector = the
    merger (``visual.merger``, the patch-merging MLP into the LLM's width).
    """

    family = "qwen2_vl"
    answer_prefix = ""  # the generation prompt ends with "<|im_start|>assistant\n"
    kv_option_scoring = False  # mrope positions are the model's own: score full sequences
    default_image_size = 448

    def __init__(self, model: nn.Module, processor: Any, device: str | torch.device | None = None,
                 image_size: int | None = None):
        ip = processor.image_processor
        self.factor = int(ip.patch_size) * int(ip.merge_size)
        self.image_size = int(image_size or _qwen_size(ip, self.default_image_size))
        if self.image_size % self.factor:
            raise MMUError(f"{self.family}: image_size {self.image_size} is not a multiple of patch x merge "
                           f"= {self.factor}")
        super().__init__(model, processor, device)

    @property
    def vision_modules(self) -> nn.Module:
        visual = self.model.model.visual
        return ModuleGroup({n: m for n, m in visual.named_children() if n != "merger"},
                           dict(visual.named_parameters(recurse=False)))

    @property
    def projector_modules(self) -> nn.Module:
        return self.model.model.visual.merger

    def _probe_size(self) -> int:
        return self.image_size

    def _size_kwargs(self) -> dict[str, Any]:
        # min = max = the square's area: a square image keeps exactly this size (whatever the
        # processor's own min_pixels / max_pixels, which stay untouched)
        area = self.image_size * self.image_size
        return {"size": {"shortest_edge": area, "longest_edge": area}}

    def _count_image_tokens(self) -> int:
        from PIL import Image

        ip = self.processor.image_processor
        blank = Image.new("RGB", (self.image_size, self.image_size))
        probe = ip(images=[blank], return_tensors="pt", **self._size_kwargs())
        self.grid_thw = probe["image_grid_thw"][0].clone()
        self.patches_per_image = int(self.grid_thw.prod())
        text = self.processor(text=[self.image_token], images=[blank], return_tensors="pt", **self._size_kwargs())
        n = int((text["input_ids"] == self.image_token_id).sum())
        if n != self.patches_per_image // int(ip.merge_size) ** 2:
            raise MMUError(f"{self.family}: the processor expands one image into {n} tokens; expected "
                           f"{self.patches_per_image // int(ip.merge_size) ** 2}")
        return n

    def pixel_values(self, images: Sequence[Any]) -> list[torch.Tensor]:
        """Per image: its flattened patches, (patches, channels x temporal x patch x patch)."""
        out: list[torch.Tensor] = []
        images = list(images)
        for i in range(0, len(images), 64):
            chunk = resize_square(images[i:i + 64], self.image_size)
            px = self.processor.image_processor(images=chunk, return_tensors="pt", **self._size_kwargs())["pixel_values"]
            out.extend(px.split(self.patches_per_image))
        return out

    def vision_inputs(self, pixel_values: torch.Tensor, input_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if pixel_values.dim() == 2:  # already flat: the patches of consecutive images
            pixel_values = pixel_values.reshape(-1, self.patches_per_image, pixel_values.shape[-1])
        n = pixel_values.shape[0]
        out = {"pixel_values": pixel_values.reshape(-1, pixel_values.shape[-1]),
               "image_grid_thw": self.grid_thw.to(pixel_values.device).repeat(n, 1)}
        if input_ids is not None:
            out["mm_token_type_ids"] = (input_ids == self.image_token_id).long()
        return out

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        kw = self.vision_inputs(pixel_values)
        out = self.model.model.get_image_features(pixel_values=kw["pixel_values"],
                                                  image_grid_thw=kw["image_grid_thw"]).pooler_output
        return torch.stack(list(out)) if isinstance(out, (list, tuple)) else out


class Qwen2_5_VLAdapter(Qwen2VLAdapter):
    """Qwen2.5-VL: as Qwen2-VL (windowed ViT with an RMSNorm + SwiGLU, same interface)."""

    family = "qwen2_5_vl"


def _qwen_size(ip: Any, default: int) -> int:
    factor = int(ip.patch_size) * int(ip.merge_size)
    size = getattr(ip, "size", None) or {}
    max_pixels = size.get("longest_edge") or getattr(ip, "max_pixels", None) or default * default
    min_pixels = size.get("shortest_edge") or getattr(ip, "min_pixels", None) or factor * factor
    side = min(default, int(math.isqrt(int(max_pixels))) // factor * factor)
    while side * side < min_pixels:
        side += factor
    return max(side, factor)


# ---------------------------------------------------------------- Qwen processors without torchvision
def _qwen_processor_class(base_name: str) -> type:
    """A subclass of transformers' Qwen processor without the (torchvision) video processor.

    It saves itself under the original class name, so the folder is what a hub checkpoint holds
    and an environment with torchvision loads it with plain ``AutoProcessor``.
    """
    import transformers
    from transformers.processing_utils import ProcessorMixin

    base = getattr(transformers, base_name)

    class ImageOnlyProcessor(base):  # type: ignore[misc, valid-type]
        saved_as = base_name

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
            self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

        def save_pretrained(self, save_directory, *args, **kwargs):
            files = super().save_pretrained(save_directory, *args, **kwargs)
            for name in ("processor_config.json", "tokenizer_config.json", "preprocessor_config.json"):
                path = Path(save_directory) / name
                if path.is_file():
                    data = json.loads(path.read_text())
                    if data.get("processor_class") == type(self).__name__:
                        data["processor_class"] = self.saved_as
                        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
            return files

    ImageOnlyProcessor.__name__ = ImageOnlyProcessor.__qualname__ = f"ImageOnly{base_name}"
    return ImageOnlyProcessor


_PROCESSOR_CLASSES: dict[str, type] = {}


def qwen_processor_class(base_name: str = "Qwen2VLProcessor") -> type:
    if base_name not in _PROCESSOR_CLASSES:
        _PROCESSOR_CLASSES[base_name] = _qwen_processor_class(base_name)
    return _PROCESSOR_CLASSES[base_name]
