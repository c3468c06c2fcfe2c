"""Run-table helpers for attack metrics: directions, headline columns, sanity rows."""

from __future__ import annotations

import fnmatch

HEADLINES = (
    "quant_int8.forget.vqa.acc", "quant_int8.forget.vqa.recovery", "quant_int4.forget.vqa.acc",
    "quant_int4.forget.vqa.recovery", "quant_int4.retain.vqa.acc", "probe.lens.vqa.best_acc",
    "probe.readout.vqa.best_acc", "paraphrase.forget.vqa.acc", "paraphrase.forget.qa.acc", "permute.forget.vqa.acc",
    "prefix.memory.forget.vqa.acc", "prefix.turn.forget.vqa.acc", "neighbours.retain.vqa.acc", "neighbours.gap.vqa",
    "consistency.both_kept", "consistency.image_gone_text_kept", "consistency.both_gone",
)


def attack_direction(key: str, setting: str = "visual") -> str:
    """Direction of an ``attack.*`` key from METRIC_SPECS (most specific pattern wins)."""
    from . import METRIC_SPECS

    best, score = "up", -1
    for s in METRIC_SPECS:
        if s.direction is None or not fnmatch.fnmatchcase(key, s.pattern):
            continue
        n = sum(ch not in "*?[]" for ch in s.pattern)
        if n > score:
            d = s.direction
            best, score = (d.get(setting, "up") if isinstance(d, dict) else d), n
    return best


def attack_keys(metrics: dict) -> tuple[str, ...]:
    keys = tuple(f"attack.{h}" for h in HEADLINES if f"attack.{h}" in metrics)
    return keys + ("forget.vqa.mcq.acc", "retain.vqa.mcq.acc")


def attack_rows(rows: dict[str, dict], reference: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """The reference rows (finetuned, oracles) with their cached attack values merged in."""
    out = {k: dict(v) for k, v in rows.items()}
    for attack, per_model in reference.items():
        for model, values in per_model.items():
            if model in out:
                out[model].update({f"attack.{attack}.{k}": v for k, v in values.items()})
    return out
