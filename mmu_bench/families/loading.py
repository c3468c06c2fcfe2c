"""``hf:`` loading: spec parsing, dtypes, the processor (built by hand where the auto one needs
torchvision) and the model, wrapped in its family's adapter."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..adapter import LlavaAdapter, pick_device
from ..errors import MMUError, unknown_name
from .qwen2_vl import qwen_processor_class
from .registry import _check_kwargs, _construct, registered_adapters

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype | str:
    """None: bf16 on CUDA, float32 elsewhere; "auto": the checkpoint's own dtype; or a name."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).lower().removeprefix("torch.")
    name = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16", "float": "float32"}.get(name, name)
    if name == "auto":
        return "auto"
    if name not in DTYPES:
        raise MMUError(f"dtype {dtype!r} unknown; expected auto, float32, bfloat16 or float16")
    return DTYPES[name]


def parse_spec(spec: str) -> str:
    """The hub id or folder of an ``hf:<hub id or folder>`` spec; MMUError for anything else."""
    if not isinstance(spec, str) or not spec.startswith("hf:"):
        raise MMUError(f"model spec {spec!r}: expected 'hf:<hub id or local folder>' (e.g. hf:llava-hf/llava-1.5-7b-hf "
                       f"or hf:/path/to/save_pretrained/folder)")
    ref = spec[3:].strip()
    if not ref:
        raise MMUError("model spec 'hf:' names no hub id or folder; expected 'hf:<hub id or local folder>'")
    return ref


def _looks_like_path(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~", ".\\")) or ref.count("/") > 1 or os.sep != "/" and os.sep in ref


def _check_source(ref: str) -> str:
    path = Path(ref).expanduser()
    if path.exists():
        if not path.is_dir():
            raise MMUError(f"model folder {path} is a file; expected a save_pretrained folder")
        if not (path / "config.json").is_file():
            raise MMUError(f"model folder {path} has no config.json; expected a save_pretrained folder "
                           f"(model + processor)")
        return str(path)
    if _looks_like_path(ref):
        raise MMUError(f"model folder {path} does not exist")
    return ref  # a hub id


def load_processor(ref: str, model_type: str | None = None, trust_remote_code: bool = False) -> Any:
    """``AutoProcessor``, or a processor built by hand where the auto one needs torchvision (Qwen)."""
    from transformers import AutoProcessor

    error: Exception | None = None
    try:
        proc = AutoProcessor.from_pretrained(ref, trust_remote_code=trust_remote_code)
        if hasattr(proc, "image_processor") and hasattr(proc, "tokenizer"):
            return proc
    except Exception as e:  # noqa: BLE001 -- e.g. a video processor that needs torchvision
        error = e
    builder = _HAND_PROCESSORS.get(model_type or "")
    if builder is None:
        why = f": {type(error).__name__}: {error}" if error else " (it has no image processor)"
        raise MMUError(f"could not load the processor of {ref!r}{why}")
    return builder().from_pretrained(ref, trust_remote_code=trust_remote_code)


def load_hf(spec: str, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
            trust_remote_code: bool = False, attn_implementation: str | None = None,
            gradient_checkpointing: bool = False, **adapter_kwargs: Any) -> LlavaAdapter:
    """Load ``hf:<hub id or local folder>`` with ``AutoModelForImageTextToText`` + its processor and
    wrap it in its family's adapter.

    Args:
        device: "cuda", "cpu", ... (default: CUDA when present).
        dtype: "auto" (the checkpoint's), "float32", "bfloat16", "float16" (default: bfloat16 on
            CUDA, float32 on CPU).
        trust_remote_code: passed to transformers (default False: only built-in architectures).
        attn_implementation: e.g. "sdpa", "eager", "flash_attention_2" (default: "sdpa" on CUDA,
            transformers' choice elsewhere).
        gradient_checkpointing: recompute activations in the backward pass (non-reentrant).
        adapter_kwargs: passed to the adapter (``image_size`` for llava_next / qwen families).
    """
    from transformers import AutoConfig, AutoModelForImageTextToText

    ref = _check_source(parse_spec(spec))
    dev = pick_device(device) if not isinstance(device, torch.device) else device
    torch_dtype = resolve_dtype(dtype, dev)
    if attn_implementation is None and dev.type == "cuda":
        attn_implementation = "sdpa"
    try:
        config = AutoConfig.from_pretrained(ref, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise MMUError(f"could not load the config of {ref!r} ({'folder' if Path(ref).exists() else 'hub id; offline?'}): "
                       f"{' '.join(str(e).split())[:300]}") from None
    adapters = registered_adapters()
    if config.model_type not in adapters:
        raise unknown_name("model family (config.model_type)", str(config.model_type), list(adapters))
    _check_kwargs(adapters[config.model_type], config.model_type, adapter_kwargs)  # before a long load
    kw: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
    if attn_implementation is not None:
        kw["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForImageTextToText.from_pretrained(ref, **kw)
    except (OSError, ValueError) as e:
        raise MMUError(f"could not load model {ref!r}: {' '.join(str(e).split())[:300]}") from None
    processor = load_processor(ref, config.model_type, trust_remote_code)
    tok = processor.tokenizer
    if tok.pad_token_id is None:  # e.g. some Mistral / Llama tokenizers: pad with eos (masked anyway)
        tok.pad_token = tok.eos_token
    if gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    model.eval()
    return _construct(adapters[config.model_type], config.model_type, model, processor, dev, adapter_kwargs)


_HAND_PROCESSORS = {
    "qwen2_vl": lambda: qwen_processor_class("Qwen2VLProcessor"),
    "qwen2_5_vl": lambda: qwen_processor_class("Qwen2_5_VLProcessor"),
}
