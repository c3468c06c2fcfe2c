"""Pieces every family adapter shares: a module view over parts of a model, square resizing."""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn


class ModuleGroup(nn.Module):
    """A view over existing sub-modules (and loose parameters) of a model, as one module.

    Lets a family's ``vision_modules`` / ``projector_modules`` be "these children but not that
    one" without copying anything: the members stay owned by the model.
    """

    def __init__(self, modules: dict[str, nn.Module], parameters: dict[str, nn.Parameter] | None = None):
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)
        for name, param in (parameters or {}).items():
            self.register_parameter(name, param)


def resize_square(images: Sequence[Any], size: int) -> list[Any]:
    from PIL import Image

    out = []
    for im in images:
        if im.mode != "RGB":
            im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BICUBIC)
        out.append(im)
    return out
