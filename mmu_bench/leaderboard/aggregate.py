"""Aggregation: runs grouped into tables (:class:`Group`), one row per reference model and per
method (:class:`Row`: mean ± std and bootstrap CI over seeds), plus the setting's aggregates,
computed per run (mmu_bench/settings.py):

    forget efficacy = clip((1 - m) / (1 - 0.25), 0, 1),  m = mean of the setting's forget accuracies
                      (visual: forget.vqa, test.vqa; full: also forget.qa)
    retention       = harmonic mean of the setting's kept accuracies (visual includes forget.qa)

Both are "up" (higher is better). 0.25 is chance for four-option multiple choice. Directions and
descriptions come from the metric specs (mmu_bench/metrics.py), per setting.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import MMUError
from ..metrics import catalog, has_direction
from ..metrics import column_label as metric_label
from ..report import protocol_columns
from ..settings import Setting, get_setting
from .collect import RunRecord, runs_frame
from .marks import BOOTSTRAP_RESAMPLES, CI_RULE, _marks, bootstrap_ci

REFERENCE_NAMES = ("finetuned", "retrain", "retrain_visual")
CHANCE = 0.25
FORGET_EFFICACY = "forget_efficacy"
RETENTION = "retention"
AGGREGATES = (FORGET_EFFICACY, RETENTION)
PROTOCOL_ORDER = ("static", "continual", "mia", "relearn", "attacks")
_REF_TOL = 1e-9


# ----------------------------------------------------------------------------- aggregates, columns


def with_aggregates(metrics: dict[str, float], setting: Setting) -> dict[str, float]:
    """``metrics`` plus the setting's forget efficacy and retention (mmu_bench/settings.py)."""
    out = dict(metrics)
    for key, fn in ((FORGET_EFFICACY, setting.forget_efficacy), (RETENTION, setting.retention)):
        v = fn(metrics)
        if v is not None:
            out[key] = v
    return out


def _ranked_key(key: str, setting: str | None) -> bool:
    """Whether a column has a better direction (marks are only drawn where it has)."""
    return has_direction(key, setting)


def direction(key: str, setting: str | None = "visual") -> str:
    """"up", "down" or "zero": which way is better for ``key`` in ``setting`` (metric specs)."""
    return catalog().direction(key, setting)


def column_name(key: str) -> str:
    return {FORGET_EFFICACY: "forget efficacy", RETENTION: "retention"}.get(key, key)


def column_label(key: str, setting: str | None = "visual") -> str:
    return metric_label(key, setting, column_name(key))


# ----------------------------------------------------------------------------- rows and tables


@dataclass
class Row:
    label: str
    kind: str                       # "reference" (a zoo model) or "method"
    n: int                          # seeds (runs) behind the row; 1 for reference rows
    n_diverged: int
    mean: dict[str, float]
    std: dict[str, float]
    seeds: list[int] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    pseudo: bool = False            # a run of a reference pseudo-method (finetuned, retrain, ...)
    values: dict[str, list[float]] = field(default_factory=dict)        # per key: one value per run, by seed
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)    # per key: 95 % bootstrap CI of the mean

    @property
    def unmatched(self) -> bool:
        """Under a stopping rule: some seed missed the forget target, so the row is not at matched
        forgetting and must not win a column of that table."""
        return "stop.reached" in self.mean and self.mean["stop.reached"] < 1.0

    @property
    def ranked(self) -> bool:
        """Whether the row competes for "best": methods only, not the reference pseudo-methods,
        not rows with a diverged run, not rows that missed a stopping rule's target."""
        return self.kind == "method" and self.n_diverged == 0 and not self.pseudo and not self.unmatched


@dataclass
class Group:
    benchmark: str
    model: str
    protocol: str
    forget_split: str
    protocol_kind: str
    keys: list[str]                 # columns: metric keys, then the aggregates
    rows: list[Row]
    retention_inputs: list[str]
    curves: dict[str, list[float]] = field(default_factory=dict)   # continual: mean retain acc per request
    finetuned_retain_acc: float | None = None
    setting: Setting | None = None
    notes: list[str] = field(default_factory=list)  # caption sentences: the stopping rule, void columns
    void: dict[str, str] = field(default_factory=dict)  # column -> why its sanity row fails

    @property
    def setting_name(self) -> str:
        return self.setting.name if self.setting else "visual"

    @property
    def title(self) -> str:
        return f"{self.benchmark} / {self.model} / setting {self.setting_name} / {self.protocol} / {self.forget_split}"

    @property
    def slug(self) -> str:
        raw = "__".join((self.benchmark, self.model.replace("/", "__"), self.setting_name, self.protocol,
                         self.forget_split))
        return re.sub(r"[^A-Za-z0-9._-]+", "_", raw)

    def marks(self, key: str) -> dict[str, str]:
        """Which ranked rows column ``key`` marks: ``{label: "best"}`` for a clear winner, else
        ``{label: "tie"}`` for the tied leaders (see :func:`_marks`)."""
        if key in self.void or not _ranked_key(key, self.setting_name):
            return {}  # nothing to win: a void attack column, or a key with no better direction
        ranked = [r for r in self.rows if r.ranked and key in r.mean]
        return _marks(ranked, key, direction(key, self.setting_name))

    def best(self, key: str) -> set[str]:
        """Labels of the clear winners of column ``key`` (bold): none when the leaders tie."""
        return {lab for lab, m in self.marks(key).items() if m == "best"}

    def tied(self, key: str) -> set[str]:
        """Labels of the tied leaders of column ``key`` (marked ≈)."""
        return {lab for lab, m in self.marks(key).items() if m == "tie"}

    def caption(self) -> str:
        methods = [r for r in self.rows if r.kind == "method"]
        seeds = ", ".join(f"{r.label} n={r.n}" for r in methods)
        div = " Rows marked 'diverged' include diverged runs and are not ranked." \
            if any(r.n_diverged for r in methods) else ""
        st = self.setting or get_setting("visual")
        return (f"Setting {st.name} ({st.description}); oracle {st.oracle}. "
                f"Mean ± std over seeds (std with ddof=1; 0 for one seed); seeds: {seeds}. "
                f"95 % CI of the mean: percentile bootstrap over seeds ({BOOTSTRAP_RESAMPLES} resamples, "
                f"seeded), in the CSV (each key's ci_low and ci_high columns) and the HTML page. "
                f"Reference rows: one deterministic evaluation of the zoo model. "
                f"Aggregates: {st.efficacy_formula()}; {st.retention_formula(self.retention_inputs)}. "
                f"{CI_RULE}{div}" + "".join(f" {n}" for n in self.notes))


# ----------------------------------------------------------------------------- grouping


def _refs_equal(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> str | None:
    """None if the reference rows agree, else what differs."""
    for name in sorted(set(a) | set(b), key=lambda n: (n not in REFERENCE_NAMES, n)):
        if name not in a or name not in b:
            return f"reference row {name!r} present in only one"
        ra, rb = a[name], b[name]
        for k in sorted(set(ra) | set(rb)):
            if k not in ra or k not in rb:
                return f"{name} {k} present in only one"
            if abs(ra[k] - rb[k]) > _REF_TOL:
                return f"{name} {k}: {ra[k]:g} vs {rb[k]:g}"
    return None


def group_runs(records: Iterable[RunRecord]) -> dict[tuple[str, str, str, str, str], list[RunRecord]]:
    """Runs by (benchmark, model, setting, protocol, forget split): two settings never share a
    table. Refuses (MMUError) runs that cannot share a table: reference rows that differ (another
    world, zoo or evaluation setting), or two different results for one method and seed. Identical
    duplicates (the same run copied) are kept once."""
    groups: dict[tuple[str, str, str, str, str], list[RunRecord]] = {}
    for r in records:
        groups.setdefault((r.benchmark, r.model, r.setting, r.protocol, r.forget_split), []).append(r)
    for key, runs in groups.items():
        first = runs[0]
        for r in runs[1:]:
            why = _refs_equal(first.reference, r.reference)
            if why:
                raise MMUError(
                    f"runs {first.path} and {r.path} cannot share a table ({' / '.join(key)}): their "
                    f"reference rows differ ({why}), so they were evaluated against another world, zoo or "
                    f"evaluation setting; make a separate leaderboard for each")
        kept: dict[tuple[str, int], RunRecord] = {}
        for r in runs:
            other = kept.get((r.method, r.seed))
            if other is None:
                kept[(r.method, r.seed)] = r
            elif other.metrics != r.metrics or other.diverged != r.diverged:
                raise MMUError(f"two different results for {r.method} seed {r.seed} in one table: "
                               f"{other.path} and {r.path}; pass only one of them")
        groups[key] = list(kept.values())
    return groups


def _table_order(key: tuple[str, str, str, str, str]) -> tuple:
    """Tables in reading order: per setting (visual first), static, continual, mia, relearn, then
    other protocols; splits by their number (forget_5 before forget_10)."""
    bench, model, setting, proto, split = key
    kinds = list(PROTOCOL_ORDER)
    kind = proto.split("-")[0]
    natural = [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", split)]
    return (bench, model, setting != "visual", setting, kinds.index(kind) if kind in kinds else len(kinds), proto, [(isinstance(t, str), t) for t in natural])


def _mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def _method_row(label: str, runs: list[RunRecord], setting: Setting) -> Row:
    runs = sorted(runs, key=lambda r: r.seed)
    per_run = runs_frame(runs, lambda r: with_aggregates(r.metrics, setting))
    values = {k: col.dropna().tolist() for k, col in per_run.items()}   # by seed; NaN: a run lacks k
    mean, std = {}, {}
    for k, v in values.items():
        mean[k], std[k] = _mean_std(v)
    return Row(label, "method", len(runs), sum(r.diverged for r in runs), mean, std,
               [r.seed for r in runs], [r.path for r in runs], runs[0].method_name in REFERENCE_NAMES,
               values=values, ci={k: bootstrap_ci(v) for k, v in values.items()})


def _mean_curve(curves: list[list[float]]) -> list[float]:
    out = []
    for t in range(max(len(c) for c in curves)):
        vals = [float(c[t]) for c in curves if t < len(c)]
        out.append(sum(vals) / len(vals))
    return out


def _columns(kind: str, setting: Setting) -> list[str]:
    """The columns protocol ``kind`` declares (an unregistered protocol: the evaluation's)."""
    from ..protocols import evaluation_columns

    try:
        return protocol_columns(kind, setting)
    except MMUError:
        return evaluation_columns(setting)


def aggregate(records: Iterable[RunRecord], keys: Iterable[str] | None = None,
              setting: str | None = None) -> list[Group]:
    """One Group (table) per (benchmark, model, setting, protocol, forget split), sorted by those.
    Rows: reference rows (finetuned, retrain, retrain_visual) first (the caption names the
    setting's oracle), then methods by label. Columns: ``keys`` (default: the columns the protocol declares for the
    setting, those present) then the setting's two aggregates. ``setting``: this leaderboard is for
    one setting only, and a run of another is an error (MMUError naming it)."""
    records = list(records)
    if not records:
        raise MMUError("no finished runs found (a run directory holds config.json and metrics.json)")
    if setting is not None:
        get_setting(setting)
        other = [r for r in records if r.setting != setting]
        if other:
            raise MMUError(f"run {other[0].path} is in setting {other[0].setting!r}, but this leaderboard is for "
                           f"setting {setting!r} ({len(other)} such run(s)); settings are scored differently "
                           f"and never share a table: pass those runs to a leaderboard of their own")
    chosen = [k.strip() for k in keys if k.strip()] if keys is not None else None
    out = []
    for (bench, model, sname, proto, split), runs in sorted(group_runs(records).items(),
                                                            key=lambda kv: _table_order(kv[0])):
        st = get_setting(sname)
        ref = runs[0].reference
        names = [n for n in REFERENCE_NAMES if n in ref] + sorted(n for n in ref if n not in REFERENCE_NAMES)
        rows = [Row(f"{n} (ref)", "reference", 1, 0,
                    with_aggregates(ref[n], st), {}) for n in names]
        by_method: dict[str, list[RunRecord]] = {}
        for r in runs:
            by_method.setdefault(r.method, []).append(r)
        rows += [_method_row(lab, rs, st) for lab, rs in sorted(by_method.items())]
        kind = runs[0].protocol_kind
        present = {k for row in rows for k in row.mean}
        if chosen is None:
            cols = [k for k in _columns(kind, st) if k in present]
            cols += [k for k in ("stop.reached", "stop.steps") if k in present]  # runs under --stop-at
        else:
            cols = [k for k in chosen if k not in AGGREGATES]
        cols += list(AGGREGATES)
        inputs = [k for k in st.retention_inputs
                  if any(k in r.metrics for r in runs) or any(k in v for v in ref.values())]
        g = Group(bench, model, proto, split, kind, cols, rows, inputs, setting=st)
        curves = {}
        for lab, rs in sorted(by_method.items()):
            cs = [r.curves["retain"] for r in rs if r.curves and isinstance(r.curves.get("retain"), list)
                  and r.curves["retain"]]
            if cs:
                curves[lab] = _mean_curve(cs)
        g.curves = curves
        named = _row_hyper(by_method)
        if named:
            g.notes.append("Rows other than a method's defaults: " + "; ".join(
                f"{lab} = {', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in d.items())}"
                for lab, d in named.items()) + ".")
        rules = sorted({r.stop_rule for r in runs if r.stop_rule})
        if rules:
            g.notes.append(f"Matched forgetting: every method ran under one stopping rule: {'; '.join(rules)} "
                           f"(stop.reached = share of seeds that got there within the budget).")
        missed = [r.label for r in g.rows if r.unmatched]
        if missed:
            g.notes.append(f"Not ranked, since some seed missed the stopping rule's target: {', '.join(missed)}.")
        if kind == "attacks":
            g.void = void_attack_columns(cols, ref, st)
            if g.void:
                g.notes.append("Void (the attack fails its sanity rows on this zoo, so the column says nothing "
                               "about a method): " + "; ".join(f"{k}: {why}" for k, why in g.void.items()) + ".")
        out.append(g)
    if chosen is not None:
        known = {k for g in out for r in g.rows for k in r.mean}
        missing = [k for k in chosen if k not in known]
        if missing:
            close = difflib.get_close_matches(missing[0], sorted(known), n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise MMUError(f"unknown metric key(s) {', '.join(map(repr, missing))}: no run has them.{hint}")
    return out


# ----------------------------------------------------------------------------- caption notes


def _row_hyper(by_method: dict[str, list[RunRecord]]) -> dict[str, dict[str, Any]]:
    """For rows labelled other than their method (``cvf-1a2b3c4d``, ``ga-tuned``): the
    hyper-parameters that differ from the method's defaults, so a reader knows what the row is."""
    from ..plugins import get_registry

    out = {}
    for label, runs in sorted(by_method.items()):
        r = runs[0]
        if label == r.method_name or not r.hyper:
            continue
        try:
            cls = get_registry().get("methods", r.method_name)
            default = dataclasses.asdict(cls.Hyper())
        except Exception:  # an uninstalled plugin or a Hyper without defaults: name what was stored
            default = {}
        diff = {k: v for k, v in r.hyper.items() if default.get(k, object()) != v}
        if diff:
            out[label] = diff
    return out


def void_attack_columns(cols: list[str], reference: dict[str, dict[str, float]], setting: Setting) -> dict[str, str]:
    """Attack accuracy columns whose sanity rows fail: a ↓ column needs the finetuned model >= HIGH
    and the setting's oracle <= LOW under the attack, a ↑ column the finetuned model >= HIGH (the
    attacks' own rule, mmu_bench/attacks/base.py, applied to every column, not only the headline)."""
    from ..attacks.base import HIGH, LOW

    ft, orc = reference.get("finetuned", {}), reference.get(setting.oracle, {})
    out = {}
    for k in cols:
        if not k.startswith("attack.") or not k.endswith("acc") or k not in ft:
            continue
        d = direction(k, setting.name)
        why = []
        if ft[k] < HIGH:
            why.append(f"finetuned {ft[k]:.2f} < {HIGH}")
        if d == "down" and k in orc and orc[k] > LOW:
            why.append(f"{setting.oracle} {orc[k]:.2f} > {LOW}")
        if why:
            out[k] = ", ".join(why)
    return out
