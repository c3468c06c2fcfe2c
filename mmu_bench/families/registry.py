"""The adapter registry: ``config.model_type`` -> adapter class (built-ins, then plugins)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..adapter import LlavaAdapter
from ..errors import MMUError, unknown_name
from .llava_next import LlavaNextAdapter
from .qwen2_vl import Qwen2_5_VLAdapter, Qwen2VLAdapter

ADAPTERS: dict[str, type] = {
    "llava": LlavaAdapter,
    "llava_next": LlavaNextAdapter,
    "qwen2_vl": Qwen2VLAdapter,
    "qwen2_5_vl": Qwen2_5_VLAdapter,
}


def registered_adapters() -> dict[str, type]:
    """model_type -> adapter class: the built-ins, then every ``mmu_bench_models`` item that has
    ``model_types`` and ``adapter`` (a plugin's entry replaces a built-in for its model types)."""
    from ..plugins import get_registry

    out = dict(ADAPTERS)
    for item in get_registry().registry("models").values():
        types = getattr(item, "model_types", None)
        adapter = getattr(item, "adapter", None)
        if not types or adapter is None:
            continue
        for t in ([types] if isinstance(types, str) else types):
            out[t] = adapter
    return out


def adapter_for(model: nn.Module, processor: Any, device: str | torch.device | None = None, **kwargs: Any):
    """The adapter of ``model``'s family (by ``config.model_type``), wrapping model and processor.

    ``kwargs`` go to the adapter (e.g. ``image_size`` for llava_next / qwen families).
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    adapters = registered_adapters()
    if model_type not in adapters:
        raise unknown_name("model family (config.model_type)", str(model_type), list(adapters))
    return _construct(adapters[model_type], model_type, model, processor, device, kwargs)


def _check_kwargs(cls: type, model_type: str, kwargs: dict[str, Any]) -> None:
    if kwargs:
        import inspect

        params = inspect.signature(cls.__init__).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        bad = [k for k in kwargs if k not in params and not takes_any]
        if bad:
            raise MMUError(f"the {model_type} adapter takes no {', '.join(bad)}")


def _construct(cls: type, model_type: str, model, processor, device, kwargs: dict[str, Any]):
    _check_kwargs(cls, model_type, kwargs)
    return cls(model, processor, device, **kwargs)


# The built-in families (the ones build_tiny makes tiny models of).
FAMILIES = tuple(ADAPTERS)
