"""Membership inference on answer tokens (privacy of unlearning).

Members = forget items (trained, then unlearned); non-members = holdout items (never trained,
same templates and answer lengths). Every item is scored on its gold answer's tokens (eos
excluded) given image + question. Sign convention (one, everywhere): a score is HIGHER for
"more likely a member", and we report the AUC of "is a member", so the finetuned model is near
1.0, an ideal unlearned model near the oracle's value (about 0.5), over-unlearning below it.

Attacks (MUSE / Min-K% / Min-K%++):
- ``loss``: -mean NLL.
- ``zlib``: -NLL_sum / len(zlib.compress(answer bytes)) (NLL normalised by zlib entropy).
- ``mink{k}``: mean of the lowest k % token log-probs (k in 10, 20, 40).
- ``minkpp{k}``: mean of the lowest k % of z_t = (log p(x_t) - mu_t) / sigma_t, with mu_t,
  sigma_t the mean and std of log p under the model's own next-token distribution.
- ``ref`` (optional): NLL(base model) - NLL(model): calibration by a reference model.

PrivLeak (MUSE) = (AUC_unlearned - AUC_oracle) / AUC_oracle * 100, with AUC_oracle measured on
the same items with the retrain oracle (``privleak``) and with retrain_visual
(``privleak_visual``: the right oracle for visual-only methods). Near 0 is ideal; positive =
under-unlearning; negative = over-unlearning.
"""

from __future__ import annotations

import math
import zlib
from typing import Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

ATTACKS = ("loss", "zlib", "mink10", "mink20", "mink40", "minkpp10", "minkpp20", "minkpp40")


def _lowest_mean(x: torch.Tensor, k: int) -> float:
    n = max(1, math.ceil(len(x) * k / 100))
    return float(torch.sort(x).values[:n].mean())


def attack_scores(adapter, items: Sequence[dict], reference=None, batch_size: int = 64) -> dict[str, list[float]]:
    """{attack: [score per item]}; higher = more likely a member."""
    recs = adapter.token_logprobs(adapter.encode(items), batch_size=batch_size, with_distribution=True)
    out: dict[str, list[float]] = {a: [] for a in ATTACKS}
    for it, r in zip(items, recs):
        lp, mu, sigma = r["logprobs"][:-1], r["mu"][:-1], r["sigma"][:-1]  # drop eos
        if len(lp) == 0:
            lp, mu, sigma = r["logprobs"], r["mu"], r["sigma"]
        # float32 before sorting and z-scoring: bf16 log-probs (GPU runs) tie and round Min-K away
        lp, mu, sigma = lp.float(), mu.float(), sigma.float()
        nll = float(-lp.mean())
        out["loss"].append(-nll)
        out["zlib"].append(float(lp.sum()) / len(zlib.compress(it["answer"].encode())))
        z = (lp - mu) / sigma
        for k in (10, 20, 40):
            out[f"mink{k}"].append(_lowest_mean(lp, k))
            out[f"minkpp{k}"].append(_lowest_mean(z, k))
    if reference is not None:
        ref = reference.token_logprobs(reference.encode(items), batch_size=batch_size)
        out["ref"] = [float(-rr["logprobs"][:-1].mean()) - (-s) for rr, s in zip(ref, out["loss"])]
    return out


def check_attacks(attacks: Sequence[str]) -> list[str]:
    from .errors import unknown_name

    for a in attacks:
        if a not in ATTACKS and a != "ref":
            raise unknown_name("attack", a, list(ATTACKS) + ["ref"])
    return list(attacks)


def mia_aucs(adapter, members: Sequence[dict], nonmembers: Sequence[dict], reference=None,
             attacks: Sequence[str] | None = None, samples: list | None = None) -> dict[str, float]:
    """{"<modality>.<attack>": AUC of is-member}, per modality (vqa, qa). ``samples``: a list that
    receives one record per scored item (id, modality, member, every attack's score), so any AUC
    can be recomputed from a run's samples.jsonl."""
    from .errors import MMUError

    if not members:
        raise MMUError("membership inference needs member items (the forget split is empty)")
    if not nonmembers:
        raise MMUError("membership inference needs non-member items: the holdout split is empty "
                       "(give the world holdout profiles, e.g. a larger --size)")
    keep = set(check_attacks(attacks)) if attacks else None
    result: dict[str, float] = {}
    for modality in ("vqa", "qa"):
        mem = [it for it in members if it["modality"] == modality]
        non = [it for it in nonmembers if it["modality"] == modality]
        if not mem or not non:
            continue
        s_mem = attack_scores(adapter, mem, reference)
        s_non = attack_scores(adapter, non, reference)
        labels = np.r_[np.ones(len(mem)), np.zeros(len(non))]
        if samples is not None:
            for member, group, scores in ((True, mem, s_mem), (False, non, s_non)):
                for i, it in enumerate(group):
                    samples.append({"split": "mia", "id": it["id"], "entity_id": it["entity_id"],
                                    "modality": modality, "kind": "mia", "member": member,
                                    "scores": {a: round(v[i], 6) for a, v in scores.items()}})
        for attack in s_mem:
            if keep is not None and attack not in keep:
                continue
            result[f"{modality}.{attack}"] = round(float(roc_auc_score(labels, s_mem[attack] + s_non[attack])), 6)
    return result


def privleak(auc: float, auc_oracle: float) -> float:
    return round((auc - auc_oracle) / auc_oracle * 100.0, 4) if auc_oracle > 0 else float("nan")


def mia_metrics(aucs: dict[str, float], oracle: dict[str, float], oracle_visual: dict[str, float]) -> dict[str, float]:
    """Keys ``mia.<modality>.<attack>.auc|privleak|privleak_visual``."""
    out = {}
    for key, auc in aucs.items():
        out[f"mia.{key}.auc"] = auc
        if key in oracle:
            out[f"mia.{key}.privleak"] = privleak(auc, oracle[key])
        if key in oracle_visual:
            out[f"mia.{key}.privleak_visual"] = privleak(auc, oracle_visual[key])
    return out
