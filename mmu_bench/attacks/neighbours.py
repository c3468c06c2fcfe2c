"""Neighbour retention: the retain entities that LOOK most like each forget target.

Unlearning an entity by its looks tends to take its look-alikes with it (the entities sharing
attributes are where collateral damage concentrates), and an average over the whole retain set
hides that. For each forget entity, its neighbours are the retain entities sharing the most
drawn look attributes (shape, palette, pattern, accessory, backdrop; every two looks differ in
at least two, so at most three are shared), up to ``K`` of them (ties broken by id). Worlds
without looks (real benchmarks) use the nearest retain entities in the finetuned model's mean
visual features instead (cosine similarity).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from .base import Attack, AttackContext, mean, mcq_correct

K = 3


def look_neighbours(world, forget: list[str], retain: list[str], k: int = K) -> dict[str, list[str]]:
    out = {}
    for f in forget:
        lf = asdict(world.by_id[f].look)
        shared = [(sum(lf[a] == v for a, v in asdict(world.by_id[r].look).items()), r) for r in retain]
        shared.sort(key=lambda t: (-t[0], t[1]))
        out[f] = [r for _, r in shared[:k]]
    return out


def feature_neighbours(adapter, items: list[dict], forget: list[str], retain: list[str], k: int = K) -> dict[str, list[str]]:
    import torch

    feats = {}
    for eid in forget + retain:
        imgs = [it["image"] for it in items if it["entity_id"] == eid and it.get("image") is not None][:4]
        with torch.no_grad():
            v = adapter.visual_features(imgs).float().mean(dim=(0, 1)).cpu().numpy() if imgs else None
        if v is not None:
            feats[eid] = v / (np.linalg.norm(v) + 1e-8)
    out = {}
    for f in forget:
        if f not in feats:
            continue
        sims = sorted(((-float(feats[f] @ feats[r]), r) for r in retain if r in feats))
        out[f] = [r for _, r in sims[:k]]
    return out


class NeighboursAttack(Attack):
    """``attack.neighbours.*``: ``retain.<vqa|qa>.acc`` on the forget targets' neighbours,
    ``retain_all.<vqa|qa>.acc`` on every retain entity, ``gap.<vqa|qa>`` = all - neighbours
    (> 0: the look-alikes lost more than the average retain entity)."""

    name = "neighbours"
    description = "retain accuracy on the forget targets' look-alike retain entities vs all retain"
    headline = "retain.vqa.acc"
    version = 1

    def neighbours(self, ctx: AttackContext) -> dict[str, list[str]]:
        if "neighbours" not in ctx.cache:
            world = ctx.world
            forget = list(ctx.benchmark.request(ctx.split).forget_entities)
            retain = sorted({it["entity_id"] for it in ctx.tasks["retain"]})
            if all(hasattr(getattr(world, "by_id", {}).get(e), "look") for e in forget + retain[:1]):
                ctx.cache["neighbours"] = look_neighbours(world, forget, retain)
            else:
                ctx.cache["neighbours"] = feature_neighbours(ctx.benchmark.load("finetuned", ctx.split),
                                                             ctx.tasks["retain"] + ctx.tasks["forget"], forget, retain)
        return ctx.cache["neighbours"]

    def measure(self, model, ctx: AttackContext) -> dict[str, Any]:
        near = {r for rs in self.neighbours(ctx).values() for r in rs}
        out: dict[str, Any] = {"n_neighbours": len(near)}
        for modality in ("vqa", "qa"):
            items = ctx.items("retain", modality)
            if not items:
                continue
            hits = mcq_correct(model, items, ctx.eval_cfg)
            out[f"retain.{modality}.acc"] = mean(h for h, it in zip(hits, items) if it["entity_id"] in near)
            out[f"retain_all.{modality}.acc"] = mean(hits)
            out[f"gap.{modality}"] = round(out[f"retain_all.{modality}.acc"] - out[f"retain.{modality}.acc"], 6)
        return out

    def sanity(self, reference, setting):
        # Neighbours are retain entities: BOTH the finetuned model and the oracle know them, so
        # both must score high here, else the neighbour items are unanswerable and the gap is noise.
        from .base import HIGH, ORACLES

        oracle = ORACLES[setting]
        ft, orc = (reference[m].get(self.headline, float("nan")) for m in ("finetuned", oracle))
        problems = [f"{m} {self.headline} = {v:.3f} < {HIGH}" for m, v in (("finetuned", ft), (oracle, orc)) if not v >= HIGH]
        return {"metric": self.headline, "finetuned": ft, "oracle": orc, "oracle_model": oracle,
                "ok": not problems, "problems": problems}
