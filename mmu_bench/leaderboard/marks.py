"""Confidence intervals and the marks they decide: a percentile bootstrap CI of each row's mean
over seeds, and per column a clear winner (bold) or the tied leaders (≈), by the rule every
caption states (:data:`CI_RULE`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .aggregate import Row


BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CI_RULE = ("Bold: the best method per column (max for ↑, min for ↓, closest to 0 for →0; reference rows, "
           "reference pseudo-methods and diverged rows excluded), only where its 95 % CI does not overlap "
           "the CI of any other ranked method (the runner-up's included); otherwise ≈ marks the leader and "
           "every method whose CI overlaps the leader's (not distinguishable). Compared at the shown "
           "precision. A single seed's CI is a point, so a one-seed row wins only by a strictly better "
           "value, and it says nothing about that method's seed variance.")


def bootstrap_ci(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (``BOOTSTRAP_RESAMPLES`` resamples).
    The generator is seeded on every call, so a table is the same on every machine and run.
    One value (or all equal) gives a point."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    if len(x) < 2 or np.all(x == x[0]):
        return float(x.mean()), float(x.mean())
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = x[rng.integers(0, len(x), size=(BOOTSTRAP_RESAMPLES, len(x)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def _badness(lo: float, hi: float, d: str) -> tuple[float, float]:
    """An interval of values turned into an interval of "badness" (lower is better) for direction
    ``d``, rounded to the shown precision, so one rule compares every direction."""
    if d == "up":
        lo, hi = -hi, -lo
    elif d == "zero":   # distance from 0; an interval straddling 0 reaches 0
        lo, hi = (0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))), max(abs(lo), abs(hi))
    return round(lo, 3), round(hi, 3)


def _marks(rows: list["Row"], key: str, d: str) -> dict[str, str]:
    """The leader (best mean at the shown precision; the first label on a tie) is "best" when its
    CI lies strictly on the better side of every other row's CI; else it and every row whose CI
    reaches it are "tie". A row without a CI (reference) counts as a point at its mean."""
    if not rows:
        return {}

    def mean_bad(r: Row) -> float:
        return _badness(r.mean[key], r.mean[key], d)[0]

    def ci_bad(r: Row) -> tuple[float, float]:
        return _badness(*r.ci.get(key, (r.mean[key], r.mean[key])), d)

    top = min(rows, key=mean_bad)
    close = [r for r in rows if r is not top
             and (mean_bad(r) <= mean_bad(top) or ci_bad(r)[0] <= ci_bad(top)[1])]
    if not close:
        return {top.label: "best"}
    return {r.label: "tie" for r in [top] + close}
