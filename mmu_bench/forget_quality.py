"""Forget quality: how close the unlearned model's forget statistic is to the oracle's.

Per forget item (vqa mcq, the visual knowledge being forgotten) the statistic is the TOFU truth
ratio R = mean_perturbed P / P_gold, with P = exp(mean token log-prob) of an answer and the
item's three wrong options as the perturbed answers (the world's options are drawn like TOFU's
perturbations: same pool, same form). Then, against the oracle on the SAME items:

- ``forget_quality.ks_p``: p-value of the two-sample KS test (scipy ``ks_2samp``); high = close
  to the oracle (TOFU / OpenUnlearning "forget quality"); ``ks_log10p`` its log10.
- ``forget_quality.js``: 1 - Jensen-Shannon distance (base 2) between the histograms of log R
  (20 bins over the pooled range) (CLEAR); 1 = identical distributions.

Both against the retrain oracle and, as ``*_visual``, against retrain_visual (the right oracle for
visual-only methods, which must keep text knowledge).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp


def forget_statistics(samples: list[dict]) -> dict[str, float]:
    """{item id: truth ratio} of the forget split's vqa mcq items (or, under an official protocol
    that names its own, the records carrying ``forget_statistic``: CLEAR's caption truth ratios)."""
    own = {s["id"]: float(s["forget_statistic"]) for s in samples if "forget_statistic" in s}
    if own:
        return own
    return {s["id"]: float(s["truth_ratio"]) for s in samples
            if s.get("split") == "forget" and s.get("modality") == "vqa" and s.get("kind") == "mcq"
            and "truth_ratio" in s}


def compare(unlearned: dict[str, float], oracle: dict[str, float]) -> dict[str, float]:
    ids = sorted(set(unlearned) & set(oracle))
    if len(ids) < 2:
        return {}
    a = np.array([unlearned[i] for i in ids])
    b = np.array([oracle[i] for i in ids])
    p = float(ks_2samp(a, b).pvalue)
    la, lb = np.log(np.clip(a, 1e-12, None)), np.log(np.clip(b, 1e-12, None))
    lo, hi = float(min(la.min(), lb.min())), float(max(la.max(), lb.max()))
    if hi - lo < 1e-9:
        js = 1.0
    else:
        bins = np.linspace(lo, hi, 21)
        ha, _ = np.histogram(la, bins)
        hb, _ = np.histogram(lb, bins)
        js = 1.0 - float(jensenshannon(ha / ha.sum(), hb / hb.sum(), base=2))
    return {"ks_p": round(p, 8), "ks_log10p": round(math.log10(max(p, 1e-300)), 4), "js": round(js, 6)}


def forget_quality_metrics(samples: list[dict], oracle: dict[str, float], oracle_visual: dict[str, float]) -> dict[str, float]:
    mine = forget_statistics(samples)
    out = {f"forget_quality.{k}": v for k, v in compare(mine, oracle).items()}
    out |= {f"forget_quality.{k}_visual": v for k, v in compare(mine, oracle_visual).items()}
    return out
