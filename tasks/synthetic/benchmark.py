"""Evaluation tasks of the synthetic benchmark for one forget split."""

from __future__ import annotations

from .world import World

EVAL_SPLITS = ("forget", "retain", "test", "holdout", "real", "utility")


def eval_tasks(world: World, forget_split: str = "forget_10", splits=EVAL_SPLITS) -> dict[str, list[dict]]:
    """{role: items}: forget / retain (train renderings), test (forget entities in unseen
    renderings), holdout, real, utility. ``world`` is any object with the World surface (the
    synthetic World or a real benchmark's DataWorld)."""
    forget_ids = set(world.forget_ids[forget_split])
    out = {}
    for role in splits:
        if role == "forget":
            out[role] = world.split_items(forget_split)
        elif role == "retain":
            out[role] = world.split_items(world.retain_split(forget_split))
        elif role == "test":
            out[role] = [it for it in world.split_items("test") if it["entity_id"] in forget_ids]
        else:
            out[role] = world.split_items(role)
    return out
