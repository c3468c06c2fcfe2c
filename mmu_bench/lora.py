"""LoRA on the LLM through peft: attach for training, merge back into plain weights after."""

from __future__ import annotations

import re

from .adapter import LlavaAdapter
from .errors import MMUError


def attach_lora(model: LlavaAdapter, rank: int, alpha: int, targets: str):
    """Wrap ``model.model`` with LoRA adapters on the language model's linear layers only."""
    from peft import LoraConfig, get_peft_model

    names = [t.strip() for t in targets.split(",") if t.strip()]
    if not names:
        raise MMUError("lora_targets is empty; expected module names such as q_proj,v_proj")
    pattern = r".*language_model.*\.(" + "|".join(map(re.escape, names)) + r")$"
    matched = [n for n, _ in model.model.named_modules() if re.match(pattern, n)]
    if not matched:
        raise MMUError(f"lora_targets {targets!r} match no linear layer of the language model")
    cfg = LoraConfig(r=rank, lora_alpha=alpha, target_modules=pattern, lora_dropout=0.0, bias="none")
    original = model.model
    peft_model = get_peft_model(original, cfg)
    model.model = peft_model
    return original


def merge_lora(model: LlavaAdapter, original) -> None:
    """Fold the adapters into the weights and give the adapter its plain model back."""
    merged = model.model.merge_and_unload()
    model.model = merged
    for p in model.model.parameters():
        p.requires_grad_(False)
