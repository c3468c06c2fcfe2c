"""The bridge to lm-eval: a plain causal LM over the adapter's language side (sharing its
weights), lm-eval's ``HFLM`` over it, and the same view saved as an ordinary causal-LM folder."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch

from ..errors import MMUError


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a peft wrapper (LoRA layers stay in place)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _language_parts(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    inner = getattr(model, "model", None)
    lm = getattr(inner, "language_model", None) or getattr(model, "language_model", None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if lm is None or head is None:
        raise MMUError(f"cannot find the language model and lm_head of {type(model).__name__}; "
                       "expected a LLaVA-style model (model.model.language_model, lm_head)")
    return lm, head


def _causal_lm_shell(cfg, model_name: str):
    """``AutoModelForCausalLM.from_config(cfg)``; for a VLM-only text config (``qwen2_vl_text``)
    the causal LM of its base text architecture (``qwen2``), whose forward is the same
    ``lm_head(model(...))``."""
    import transformers
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as CAUSAL

    try:
        return AutoModelForCausalLM.from_config(cfg)
    except ValueError:
        pass
    mt = getattr(cfg, "model_type", "")
    for base in (mt.replace("_5_vl_text", ""), mt.replace("_vl_text", ""), mt.removesuffix("_text")):
        if base in CAUSAL:
            return getattr(transformers, CAUSAL[base])(cfg)
    raise MMUError(f"no causal-LM class for the language side of {model_name} (text config {mt!r}); "
                   "lm-eval utility needs one")


def language_model_view(adapter) -> "transformers.PreTrainedModel":  # noqa: F821
    """A causal LM over the adapter's language side that shares its weights (nothing is copied).

    Built from ``config.text_config`` (``AutoModelForCausalLM``, e.g. ``LlamaForCausalLM``) on the
    meta device, then given the LLaVA's own language model as ``.model`` and its ``lm_head``. On
    text-only input its logits are the LLaVA's. Changing the view's weights changes the LLaVA's;
    ``view.eval()`` / ``.train()`` switch the shared modules too.
    """
    model = _unwrap(adapter.model)
    lm, head = _language_parts(model)
    cfg = copy.deepcopy(model.config.text_config)
    cfg.tie_word_embeddings = head.weight is lm.get_input_embeddings().weight
    with torch.device("meta"):
        view = _causal_lm_shell(cfg, type(model).__name__)
    setattr(view, view.base_model_prefix, lm)
    view.set_output_embeddings(head)
    left = [n for n, p in list(view.named_parameters()) + list(view.named_buffers()) if p.is_meta]
    if left:
        raise MMUError(f"language view of {type(model).__name__} has unshared parts: {', '.join(left[:5])}")
    try:
        view.config.dtype = next(lm.parameters()).dtype
    except StopIteration:  # pragma: no cover - a language model has parameters
        pass
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        view.generation_config = copy.deepcopy(gen)
    view.train(model.training)
    return view


def export_language_model(adapter, out_dir: str | os.PathLike[str]) -> Path:
    """Save the language view + tokenizer as a plain causal-LM folder (for ``lm_eval --model hf``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    language_model_view(adapter).save_pretrained(out)
    adapter.tokenizer.save_pretrained(out)
    return out


def adapter_lm(view, tokenizer, batch_size: int):
    """lm-eval's ``HFLM`` driving ``view`` (:func:`language_model_view`) with the adapter's tokenizer."""
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=view, tokenizer=tokenizer, batch_size=batch_size,
                max_length=getattr(view.config, "max_position_embeddings", None))
