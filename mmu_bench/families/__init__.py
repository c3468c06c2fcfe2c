"""Model families: one adapter per ``config.model_type``, ``hf:`` loading and tiny test models.

Every family's adapter subclasses :class:`~mmu_bench.adapter.LlavaAdapter` and overrides only
what differs (docs/models.md has the table):

- ``llava`` (LLaVA-1.5): the base adapter itself.
- ``llava_next`` (LLaVA-NeXT / 1.6): pixel_values carry a patch dimension (anyres tiles) and the
  model needs ``image_sizes``; every image is resized to one fixed square first, so each image
  gives the same tiles and the same number of visual tokens; ``image_newline`` counts as projector.
- ``qwen2_vl`` / ``qwen2_5_vl``: pixel_values are flattened patches (one row per 14 px patch x 2
  frames) plus ``image_grid_thw`` and ``mm_token_type_ids``; images are resized to a fixed square
  (a multiple of patch x merge) so every image gives the same grid. The model computes its 3-D
  (mrope) positions itself, so mcq options are scored as full sequences rather than with the
  KV-cached prompt and explicit 1-D positions of the base adapter.

``adapter_for(model, processor)`` picks the adapter by ``model.config.model_type``; plugins add
or replace families through the ``mmu_bench_models`` hook with items that have ``model_types``
and ``adapter``. ``load_hf("hf:<hub id or folder>")`` loads any supported model and wraps it;
``build_tiny(family, folder)`` writes a tiny random model of a family that loads the same way.

Modules: one per family (``llava_next``, ``qwen2_vl`` with Qwen2.5-VL and the torchvision-free
Qwen processor), ``registry`` (``adapter_for``), ``loading`` (``load_hf``, dtypes, processors),
``common`` (what the adapters share). The tiny builders live with the default tiny model in
:mod:`mmu_bench.tiny_model`; this package re-exports them.
"""

from __future__ import annotations

from typing import Any

from ..adapter import LlavaAdapter
from .common import ModuleGroup
from .llava_next import LlavaNextAdapter
from .loading import DTYPES, _check_source, load_hf, load_processor, parse_spec, resolve_dtype  # noqa: F401 (zoo.py)
from .qwen2_vl import Qwen2_5_VLAdapter, Qwen2VLAdapter, qwen_processor_class
from .registry import ADAPTERS, FAMILIES, adapter_for, registered_adapters

__all__ = ["ADAPTERS", "DTYPES", "FAMILIES", "QWEN_CHAT_TEMPLATE", "QWEN_SPECIAL_TOKENS", "LlavaAdapter",
           "LlavaNextAdapter", "ModuleGroup", "Qwen2VLAdapter", "Qwen2_5_VLAdapter", "adapter_for", "build_tiny",
           "load_hf", "load_processor", "parse_spec", "qwen_processor_class", "registered_adapters",
           "resolve_dtype", "tiny_corpus"]

_TINY = ("QWEN_CHAT_TEMPLATE", "QWEN_SPECIAL_TOKENS", "build_tiny", "tiny_corpus")


def __getattr__(name: str) -> Any:
    # mmu_bench.tiny_model imports transformers' model classes at once (seconds): load it on
    # first use of a tiny builder, so importing this package stays as light as before.
    if name in _TINY:
        from .. import tiny_model

        return getattr(tiny_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
