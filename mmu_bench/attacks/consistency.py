"""Modality consistency (UMU-Bench's concern): do the image route and the text route agree?

Per forget entity, the IMAGE route is "known" when most (more than half) of its vqa mcq items on
the four text facts (home, job, food, hobby; every training rendering) are answered correctly,
the TEXT route when most of its qa mcq items on the same facts are. Each entity falls into one
cell of a 2x2 table; the rates over the forget entities are reported:

- ``both_kept``: neither route forgot (nothing unlearned for this entity);
- ``image_gone_text_kept``: the visual setting's target (forget the face, keep the facts);
- ``image_kept_text_gone``: only the text route forgot (the image still identifies it);
- ``both_gone``: the full setting's target.

``agree`` = both_kept + both_gone. The setting's target cell (visual: image_gone_text_kept;
full: both_gone) is higher-is-better; measure() itself does not depend on the setting.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .base import HIGH, LOW, ORACLES, Attack, AttackContext, mcq_correct

FACTS = ("home", "job", "food", "hobby")
CELLS = ("both_kept", "image_gone_text_kept", "image_kept_text_gone", "both_gone")
TARGET = {"visual": "image_gone_text_kept", "full": "both_gone"}


def cell(image_known: bool, text_known: bool) -> str:
    return {(True, True): "both_kept", (False, True): "image_gone_text_kept",
            (True, False): "image_kept_text_gone", (False, False): "both_gone"}[(image_known, text_known)]


class ConsistencyAttack(Attack):
    name = "consistency"
    description = "per forget entity, image route vs text route known (majority correct): 2x2 rates"
    headline = "both_kept"

    def measure(self, model, ctx: AttackContext) -> dict[str, Any]:
        items = [it for it in ctx.items("forget") if it["fact"] in FACTS]
        hits = mcq_correct(model, items, ctx.eval_cfg)
        per: dict[str, dict[str, list[bool]]] = defaultdict(lambda: {"vqa": [], "qa": []})
        for it, h in zip(items, hits):
            per[it["entity_id"]][it["modality"]].append(h)
        entities = sorted(e for e, r in per.items() if r["vqa"] and r["qa"])
        counts = dict.fromkeys(CELLS, 0)
        for e in entities:
            r = per[e]
            counts[cell(sum(r["vqa"]) * 2 > len(r["vqa"]), sum(r["qa"]) * 2 > len(r["qa"]))] += 1
        n = len(entities)
        out: dict[str, Any] = {c: round(counts[c] / n, 6) if n else float("nan") for c in CELLS}
        out["agree"] = round(out["both_kept"] + out["both_gone"], 6) if n else float("nan")
        out["n_entities"] = n
        return out

    def sanity(self, reference, setting):
        # finetuned: both routes kept; the setting's oracle: in the setting's target cell.
        oracle = ORACLES[setting]
        ft, orc = reference["finetuned"], reference[oracle]
        target = TARGET[setting]
        problems = []
        if not ft.get("both_kept", 0) >= HIGH:
            problems.append(f"finetuned both_kept = {ft.get('both_kept')} < {HIGH}")
        if not ft.get(target, 1) <= LOW:
            problems.append(f"finetuned {target} = {ft.get(target)} > {LOW}")
        if not orc.get(target, 0) >= HIGH:
            problems.append(f"{oracle} {target} = {orc.get(target)} < {HIGH}")
        return {"metric": target, "finetuned": ft.get(target), "oracle": orc.get(target),
                "oracle_model": oracle, "ok": not problems, "problems": problems}
