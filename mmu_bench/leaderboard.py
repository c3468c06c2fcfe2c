"""Leaderboard tables and plots from finished run directories.

Python API::

    from mmu_bench import leaderboard as lb
    records = lb.collect(["runs"])            # every finished run under runs/
    groups = lb.aggregate(records)            # one table per (benchmark, model, setting, protocol, split)
    print(lb.render(groups, "md"))            # md | latex | csv | html
    lb.plot(groups, "plots")                  # PNG scatter (+ continual curves) per table

Every table is in ONE setting (mmu_bench/settings.py: visual or full) and says which; runs of
two settings never share a table. Aggregates are the setting's (docs/leaderboard.md), computed per
run, then mean +- std over seeds like every other column:

    forget efficacy = clip((1 - m) / (1 - 0.25), 0, 1),  m = mean of the setting's forget accuracies
                      (visual: forget.vqa, test.vqa; full: also forget.qa)
    retention       = harmonic mean of the setting's kept accuracies (visual includes forget.qa)

Both are "up" (higher is better). 0.25 is chance for four-option multiple choice. Directions and
descriptions come from the metric specs (mmu_bench/metrics.py), per setting.
"""

from __future__ import annotations

import csv
import difflib
import html
import io
import json
import math
import os
import re
import sys
import uuid
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from tabulate import tabulate

from .errors import MMUError
from .metrics import ARROW, catalog
from .report import protocol_columns
from .results import FINISHED_STATUSES
from .settings import Setting, get_setting

FORMATS = ("md", "latex", "csv", "html")
REFERENCE_NAMES = ("finetuned", "retrain", "retrain_visual")
CHANCE = 0.25
FORGET_EFFICACY = "forget_efficacy"
RETENTION = "retention"
AGGREGATES = (FORGET_EFFICACY, RETENTION)
PROTOCOL_ORDER = ("static", "continual", "mia", "relearn", "attacks")
_REF_TOL = 1e-9


# ----------------------------------------------------------------------------- collecting


@dataclass
class RunRecord:
    """One finished run, read from its directory."""

    path: Path                      # the run directory (holds config.json and metrics.json)
    method: str                     # label: method name + hyper hash suffix, e.g. "ga" or "ga-cb6a52bb"
    method_name: str                # the registered method name, e.g. "ga"
    benchmark: str
    model: str
    protocol: str                   # directory name, e.g. "static" or "continual-requests2"
    protocol_kind: str              # the registered protocol, e.g. "continual"
    forget_split: str
    seed: int
    metrics: dict[str, float]
    reference: dict[str, dict[str, float]]
    diverged: bool
    curves: dict[str, Any] | None = None   # metrics.json protocol.curves (continual), else None
    setting: str = "visual"                # the unlearning setting (config.json spec.setting)
    stop_rule: str | None = None           # the shared stopping rule the run used (--stop-at), in words
    hyper: dict[str, Any] = field(default_factory=dict)  # config.json method.hyper (resolved values)


def _warn_stderr(msg: str) -> None:
    print(f"mmu-bench: {msg}", file=sys.stderr)


def _numbers(d: Any) -> dict[str, float]:
    if not isinstance(d, dict):
        return {}
    return {k: float(v) for k, v in d.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def _read_run(f: Path) -> RunRecord | str:
    """A RunRecord for metrics.json file ``f``, or why it cannot be used."""
    try:
        doc = json.loads(f.read_text())
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    except ValueError as e:
        return f"not valid JSON ({e})"
    if not isinstance(doc, dict) or "metrics" not in doc or "status" not in doc:
        return "not a run's metrics.json (no 'metrics' / 'status' keys)"
    if doc["status"] not in FINISHED_STATUSES:
        return f"unfinished run (status {doc['status']!r})"
    if not isinstance(doc["metrics"], dict):
        return "'metrics' is not an object"
    cf = f.parent / "config.json"
    if not cf.exists():
        return "no config.json next to it"
    try:
        config = json.loads(cf.read_text())
        spec = config["spec"]
        name = str(config.get("method", {}).get("name") or spec["method"])
        benchmark, model = str(spec["benchmark"]), str(spec["model"])
        kind, split, seed = str(spec["protocol"]), str(spec["forget_split"]), int(spec["seed"])
        setting = spec.get("setting")
    except OSError as e:
        return f"config.json unreadable ({e.strerror or e})"
    except ValueError as e:
        return f"config.json is not valid JSON ({e})"
    except (KeyError, TypeError, AttributeError) as e:
        return f"config.json lacks spec field {e}"
    if not isinstance(setting, str):
        return ("config.json records no unlearning setting (made before settings existed, when the "
                "baselines forgot both modalities and CVF only images); re-run it with --setting")
    parts = f.parent.resolve().parts
    if len(parts) >= 5 and parts[-5] in ("visual", "full") and parts[-5] != setting:
        return (f"its directory says setting {parts[-5]!r} but config.json says {setting!r}; the two "
                f"settings are scored differently and never share a table")
    # <benchmark>/<model>/<method>[-<hash>]/<protocol>/<split>/seed<seed>: take the labels from the
    # directory names when they fit the config, else rebuild them from the config.
    mdir = parts[-4] if len(parts) >= 4 else ""
    label = mdir if mdir == name or mdir.startswith(name + "-") else name
    pdir = parts[-3] if len(parts) >= 3 else ""
    opts = spec.get("protocol_options") or {}
    protocol = pdir if pdir == kind or pdir.startswith(kind + "-") else \
        kind + "".join(f"-{k}{v}" for k, v in sorted(opts.items()))
    reference = {k: _numbers(v) for k, v in (doc.get("reference") or {}).items()} \
        if isinstance(doc.get("reference"), dict) else {}
    proto = doc.get("protocol")
    if isinstance(proto, dict) and isinstance(proto.get("reference"), dict) and reference:
        # the attacks protocol keeps the reference models' values under each attack apart; merge
        # them into the reference rows as ``attack.<name>.<metric>`` so the oracles sit in the table
        from .attacks.report import attack_rows

        try:
            reference = {k: _numbers(v) for k, v in attack_rows(reference, proto["reference"]).items()}
        except (AttributeError, TypeError):
            return "protocol.reference is not {attack: {model: {metric: value}}}"
    curves = proto.get("curves") if isinstance(proto, dict) and isinstance(proto.get("curves"), dict) else None
    return RunRecord(path=f.parent, method=label, method_name=name, benchmark=benchmark, model=model,
                     protocol=protocol, protocol_kind=kind, forget_split=split, seed=seed,
                     metrics=_numbers(doc["metrics"]), reference=reference,
                     diverged=bool(doc.get("diverged")) or doc["status"] == "diverged", curves=curves,
                     setting=setting, stop_rule=(doc.get("stop_rule") or {}).get("rule")
                     if isinstance(doc.get("stop_rule"), dict) else None,
                     hyper=dict(config.get("method", {}).get("hyper") or {}))


def collect(paths: Iterable[str | os.PathLike], warn: Callable[[str], None] | None = None) -> list[RunRecord]:
    """Every finished run under ``paths`` (directories searched recursively for metrics.json, or
    metrics.json files). A metrics.json that cannot be used is reported through ``warn`` (default:
    one line on stderr naming the path and why) and skipped."""
    warn = warn or _warn_stderr
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files.extend(sorted(p.rglob("metrics.json")))
        else:
            raise MMUError(f"no such file or directory: {str(p)!r}")
    records, seen = [], set()
    for f in files:
        key = f.resolve()
        if key in seen:
            continue
        seen.add(key)
        rec = _read_run(f)
        if isinstance(rec, str):
            warn(f"skipping {f}: {rec}")
        else:
            records.append(rec)
    return records


# ----------------------------------------------------------------------------- aggregates


def with_aggregates(metrics: dict[str, float], setting: Setting) -> dict[str, float]:
    """``metrics`` plus the setting's forget efficacy and retention (mmu_bench/settings.py)."""
    out = dict(metrics)
    for key, fn in ((FORGET_EFFICACY, setting.forget_efficacy), (RETENTION, setting.retention)):
        v = fn(metrics)
        if v is not None:
            out[key] = v
    return out


def _ranked_key(key: str, setting: str | None) -> bool:
    """Whether a column has a better direction: False for keys whose specs all declare none
    (stop.steps, matched.alpha, ...); keys no spec knows rank as ↑, as before."""
    specs = catalog().matching(key)
    return not specs or any(s.direction_in(setting) is not None for s in specs)


def direction(key: str, setting: str | None = "visual") -> str:
    """"up", "down" or "zero": which way is better for ``key`` in ``setting`` (metric specs)."""
    return catalog().direction(key, setting)


def column_name(key: str) -> str:
    return {FORGET_EFFICACY: "forget efficacy", RETENTION: "retention"}.get(key, key)


def column_label(key: str, setting: str | None = "visual") -> str:
    return f"{column_name(key)} {ARROW[direction(key, setting)]}"


# ----------------------------------------------------------------------------- confidence


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


# ----------------------------------------------------------------------------- grouping


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
    per_run = [with_aggregates(r.metrics, setting) for r in runs]
    keys = sorted({k for m in per_run for k in m})
    values = {k: [m[k] for m in per_run if k in m] for k in keys}
    mean, std = {}, {}
    for k in keys:
        mean[k], std[k] = _mean_std(values[k])
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
    from .protocols import evaluation_columns

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


# ----------------------------------------------------------------------------- rendering


def _row_hyper(by_method: dict[str, list[RunRecord]]) -> dict[str, dict[str, Any]]:
    """For rows labelled other than their method (``cvf-1a2b3c4d``, ``ga-tuned``): the
    hyper-parameters that differ from the method's defaults, so a reader knows what the row is."""
    from .plugins import get_registry

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
    from .attacks.base import HIGH, LOW

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


def _fmt(v: float) -> str:
    return f"{v:.3f}"


def _cell(row: Row, key: str, pm: str) -> str | None:
    if key not in row.mean:
        return None
    if row.kind == "reference":
        return _fmt(row.mean[key])
    return f"{_fmt(row.mean[key])}{pm}{_fmt(row.std.get(key, 0.0))}"


def _label(row: Row) -> str:
    return row.label + (f" (diverged {row.n_diverged}/{row.n})" if row.n_diverged else "")


TIE = "≈ "   # the mark of a tied leader, the same in every format (bold marks a clear winner)


def _body(g: Group, pm: str, bold: Callable[[str], str], esc: Callable[[str], str]) -> list[list[str]]:
    marks = {k: g.marks(k) for k in g.keys}
    body = []
    for r in g.rows:
        line = [esc(_label(r)), "-" if r.kind == "reference" else str(r.n)]
        for k in g.keys:
            c = _cell(r, k, pm)
            mark = marks[k].get(r.label)
            if c is None:
                line.append("-")
            elif mark == "best":
                line.append(bold(esc(c)))
            else:
                line.append(esc(TIE + c) if mark == "tie" else esc(c))
        body.append(line)
    return body


_LATEX_ESC = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
              "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_ARROW = {"up": r"$\uparrow$", "down": r"$\downarrow$", "zero": r"$\to 0$"}


def latex_escape(s: str) -> str:
    s = "".join(_LATEX_ESC.get(ch, ch) for ch in s)
    for sym, tex in (("±", r"$\pm$"), ("→", r"$\to$"), ("↑", r"$\uparrow$"), ("↓", r"$\downarrow$"),
                     ("≈", r"$\approx$")):
        s = s.replace(sym, tex)
    return s


def _render_md(g: Group) -> str:
    headers = ["method", "n"] + [column_label(k, g.setting_name) for k in g.keys]
    body = _body(g, " ± ", lambda s: f"**{s}**", lambda s: s.replace("|", r"\|"))
    table = tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)
    return f"### {g.title}\n\n_{g.caption()}_\n\n{table}\n"


# ----------------------------------------------------------------------------- html page

# Inline so the page is one self-contained file: no external stylesheet, script or image.
_HTML_CSS = r"""
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
nav.tabs { margin: 1em 0; border-bottom: 1px solid #aaa; }
nav.tabs button { font: inherit; padding: .35em 1em; border: 1px solid #aaa; border-bottom: none;
  background: #eee; cursor: pointer; }
nav.tabs button[aria-selected="true"] { background: #fff; font-weight: bold; }
table.leaderboard { border-collapse: collapse; font-size: 90%; margin: .5em 0 1.5em; }
table.leaderboard th, table.leaderboard td { border: 1px solid #ccc; padding: .25em .5em; text-align: right; }
table.leaderboard td { white-space: nowrap; }
table.leaderboard th { background: #f4f4f4; cursor: pointer; user-select: none; }
table.leaderboard th[data-sorted="best"]::after { content: " \25BE"; }
table.leaderboard th[data-sorted="worst"]::after { content: " \25B4"; }
table.leaderboard td[data-key="method"] { text-align: left; }
table.leaderboard tbody.reference td { color: #555; background: #fafafa; }
table.leaderboard tbody.reference { border-bottom: 2px solid #888; }
td.tie { text-decoration: underline dotted; }
small.ci { display: block; color: #777; font-size: 80%; }
p.caption { font-size: 85%; color: #444; max-width: 75em; }
figure img { max-width: 100%; }
"""

_HTML_JS = """
(function () {
  "use strict";
  // Tabs: one setting's tables at a time; without script every setting stays visible.
  var tabs = Array.from(document.querySelectorAll("nav.tabs button"));
  var panels = Array.from(document.querySelectorAll("section.setting"));
  function show(name) {
    panels.forEach(function (p) { p.hidden = p.dataset.setting !== name; });
    tabs.forEach(function (t) { t.setAttribute("aria-selected", String(t.dataset.setting === name)); });
  }
  tabs.forEach(function (t) { t.addEventListener("click", function () { show(t.dataset.setting); }); });
  if (tabs.length) { show(tabs[0].dataset.setting); }

  // Sorting: the first click on a header puts the best mean first (by the column's arrow), the
  // next click reverses. Each tbody sorts on its own, so the reference rows stay on top; a
  // missing value sorts last either way; equal values keep the original order.
  function badness(td, dir) {
    var v = td ? td.dataset.value : undefined;
    if (v === undefined || v === "") { return null; }
    if (dir === "text") { return v.toLowerCase(); }
    var x = parseFloat(v);
    return dir === "up" ? -x : (dir === "zero" ? Math.abs(x) : x);
  }
  function sortBy(table, th) {
    var heads = Array.from(th.parentNode.children), col = heads.indexOf(th), dir = th.dataset.direction;
    var order = th.dataset.sorted === "best" ? "worst" : "best", sign = order === "best" ? 1 : -1;
    heads.forEach(function (h) { delete h.dataset.sorted; });
    th.dataset.sorted = order;
    table.querySelectorAll("tbody").forEach(function (tb) {
      var rows = Array.from(tb.rows);
      rows.sort(function (a, b) {
        var x = badness(a.cells[col], dir), y = badness(b.cells[col], dir);
        var tie = a.dataset.index - b.dataset.index;
        if (x === null || y === null) { return (x === null) - (y === null) || tie; }
        return x < y ? -sign : (x > y ? sign : tie);
      });
      rows.forEach(function (r) { tb.appendChild(r); });
    });
  }
  document.querySelectorAll("table.leaderboard").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th) {
      th.addEventListener("click", function () { sortBy(table, th); });
    });
  });
})();
"""


def _attrs(a: dict[str, Any]) -> str:
    """`` name="value"`` for every attribute that is not None, escaped."""
    return "".join(f' {k}="{html.escape(str(v), quote=True)}"' for k, v in a.items() if v is not None)


def _html_cell(r: Row, key: str, mark: str | None) -> str:
    """One metric cell: mean ± std as in the other formats, the CI below it (and as a tooltip),
    and data-key / data-value (the mean) for the sorting script and the tests."""
    if key not in r.mean:
        return f"<td{_attrs({'data-key': key})}>-</td>"
    text = html.escape(_cell(r, key, " ± "))
    text = f"<b>{text}</b>" if mark == "best" else (html.escape(TIE) + text if mark == "tie" else text)
    a = {"data-key": key, "data-value": repr(round(r.mean[key], 6)), "class": mark}
    if r.kind == "method":
        lo, hi = r.ci.get(key, (r.mean[key], r.mean[key]))
        a |= {"data-ci-low": repr(round(lo, 6)), "data-ci-high": repr(round(hi, 6)),
              "title": f"95 % CI of the mean: [{_fmt(lo)}, {_fmt(hi)}] (bootstrap over {r.n} seed(s))"}
        text += f'<small class="ci">[{_fmt(lo)}, {_fmt(hi)}]</small>'
    return f"<td{_attrs(a)}>{text}</td>"


def _html_row(g: Group, r: Row, index: int, marks: dict[str, dict[str, str]]) -> str:
    ref = r.kind == "reference"
    cells = [f"<td{_attrs({'data-key': 'method', 'data-value': r.label})}>{html.escape(_label(r))}</td>",
             f"<td{_attrs({'data-key': 'n', 'data-value': None if ref else r.n})}>{'-' if ref else r.n}</td>"]
    cells += [_html_cell(r, k, marks[k].get(r.label)) for k in g.keys]
    a = {"data-row": r.label, "data-kind": r.kind, "data-index": index}
    return f"<tr{_attrs(a)}>" + "".join(cells) + "</tr>"


def _html_table(g: Group) -> str:
    """The group's table: a header row, then the reference rows and the method rows in two
    tbody blocks (each sorts on its own, so the references stay on top)."""
    heads = [("method", "method", "text"), ("n", "n", "up")] + \
        [(column_label(k, g.setting_name), k, direction(k, g.setting_name)) for k in g.keys]
    th = "".join(f"<th{_attrs({'data-key': k, 'data-direction': d, 'title': 'sort: best first, again: reversed'})}>"
                 f"{html.escape(label)}</th>" for label, k, d in heads)
    marks = {k: g.marks(k) for k in g.keys}
    blocks = []
    for kind in ("reference", "method"):
        rows = [_html_row(g, r, i, marks) for i, r in enumerate(g.rows) if r.kind == kind]
        if rows:
            blocks.append(f'<tbody class="{kind}">\n' + "\n".join(rows) + "\n</tbody>")
    return (f"<table{_attrs({'class': 'leaderboard', 'id': 'table-' + g.slug})}>\n<thead><tr>{th}</tr></thead>\n"
            + "\n".join(blocks) + "\n</table>")


def _html_figures(g: Group, plots: list[Path]) -> str:
    """The group's PNG plots (named ``<slug>.*.png`` by :func:`plot`), embedded as base64."""
    import base64

    out = []
    for p in plots:
        if p.name.startswith(g.slug + ".") and p.suffix == ".png":
            data = base64.b64encode(p.read_bytes()).decode("ascii")
            out.append(f'<figure><img src="data:image/png;base64,{data}"{_attrs({"alt": p.name})}/>'
                       f"<figcaption>{html.escape(p.name)}</figcaption></figure>")
    return "\n".join(out)


def _render_html(g: Group, plots: list[Path] | None = None) -> str:
    return (f"<div{_attrs({'class': 'group', 'id': g.slug})}>\n<h3>{html.escape(g.title)}</h3>\n"
            f"<p class=\"caption\">{html.escape(g.caption())}</p>\n{_html_table(g)}\n"
            f"{_html_figures(g, plots or [])}\n</div>\n")


def _html_page(groups: list[Group], provenance: list[str] | None, title: str | None,
               plots: list[Path] | None) -> str:
    """One self-contained page: title, provenance, a tab per setting holding its tables (and
    their plots), the inline sorting / tab script."""
    settings = list(dict.fromkeys(g.setting_name for g in groups))
    tabs = "".join(f"<button{_attrs({'type': 'button', 'data-setting': s, 'aria-selected': 'false'})}>"
                   f"setting {html.escape(s)}</button>" for s in settings)
    panels = "".join(f"<section{_attrs({'class': 'setting', 'data-setting': s, 'id': 'setting-' + s})}>\n"
                     + "".join(_render_html(g, plots) for g in groups if g.setting_name == s) + "</section>\n"
                     for s in settings)
    name = html.escape(title or "mmu-bench leaderboard")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
            f"<title>{name}</title>\n<style>{_HTML_CSS}</style>\n</head>\n<body>\n"
            + (f"<h2>{name}</h2>\n" if title else "")
            + "".join(f"<p class=\"provenance\">{html.escape(line)}</p>\n" for line in provenance or [])
            + "<p class=\"help\">Click a column header to sort by its mean, best first; click again to "
              "reverse. Reference rows sort among themselves and stay on top. Under each value: its 95 % "
              "bootstrap CI.</p>\n"
            + f"<nav class=\"tabs\">{tabs}</nav>\n{panels}<script>{_HTML_JS}</script>\n</body>\n</html>\n")


def _render_latex(g: Group) -> str:
    headers = ["method", "$n$"] + [f"{latex_escape(column_name(k))} {_LATEX_ARROW[direction(k, g.setting_name)]}"
                                   for k in g.keys]
    body = _body(g, " ± ", lambda s: rf"\textbf{{{s}}}", latex_escape)
    n_ref = sum(r.kind == "reference" for r in g.rows)
    lines = [f"% {g.title}", r"\begin{table}[ht]", r"\centering",
             rf"\caption{{{latex_escape(g.title)}. {latex_escape(g.caption())}}}",
             rf"\label{{tab:{g.slug}}}",
             r"\begin{tabular}{l" + "r" * (len(headers) - 1) + "}", r"\toprule",
             " & ".join(headers) + r" \\", r"\midrule"]
    for i, line in enumerate(body):
        if i == n_ref and 0 < n_ref < len(body):
            lines.append(r"\midrule")
        lines.append(" & ".join(line) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _csv_cells(r: Row, key: str | None) -> list[str]:
    """mean, std, ci_low, ci_high of ``key`` (None: the group lacks the column); a reference row
    is one evaluation, so it has no std or CI."""
    if key is None or key not in r.mean:
        return [""] * 4
    if r.kind == "reference":
        return [repr(round(r.mean[key], 6)), "", "", ""]
    lo, hi = r.ci.get(key, (r.mean[key], r.mean[key]))
    return [repr(round(v, 6)) for v in (r.mean[key], r.std.get(key, 0.0), lo, hi)]


def _render_csv(groups: list[Group]) -> str:
    keys: list[str] = []
    for g in groups:
        keys += [k for k in g.keys if k not in keys]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["benchmark", "model", "setting", "protocol", "forget_split", "row", "kind", "n", "n_diverged"]
               + [f"{k}_{s}" for k in keys for s in ("mean", "std", "ci_low", "ci_high")])
    for g in groups:
        for r in g.rows:
            vals = [v for k in keys for v in _csv_cells(r, k if k in g.keys else None)]
            ref = r.kind == "reference"
            w.writerow([g.benchmark, g.model, g.setting_name, g.protocol, g.forget_split, r.label, r.kind,
                        "" if ref else r.n, "" if ref else r.n_diverged] + vals)
    return buf.getvalue()


def render(groups: list[Group], fmt: str = "md", provenance: list[str] | None = None, title: str | None = None,
           plots: Iterable[str | os.PathLike] | None = None) -> str:
    """All tables in one text: md (GitHub Markdown), latex (booktabs), csv (one tidy table: one row
    per group row, mean, std and CI in separate columns), html (one self-contained page: a tab per
    setting, sortable tables, ``plots`` (PNG files from :func:`plot`) embedded). ``provenance``
    lines (how the runs were made, see :func:`provenance`) go on top: a bullet list in md,
    paragraphs in html, comments in LaTeX; CSV stays a bare table."""
    if fmt == "csv":
        return _render_csv(groups)
    if fmt == "html":
        return _html_page(groups, provenance, title, [Path(p) for p in plots or []])
    fn = {"md": _render_md, "latex": _render_latex}.get(fmt)
    if fn is None:
        raise MMUError(f"unknown leaderboard format {fmt!r}; expected one of {', '.join(FORMATS)}")
    head = ""
    if title:
        head = {"md": f"# {title}\n\n", "latex": f"% {title}\n"}[fmt]
    if provenance:
        head += {"md": "".join(f"- {line}\n" for line in provenance) + "\n",
                 "latex": "".join(f"% {line}\n" for line in provenance)}[fmt]
    return head + "\n".join(fn(g) for g in groups)


def format_for(path: str | os.PathLike, default: str | None = None) -> str:
    """The table format an output file's extension names (.md, .tex, .csv, .html), else ``default``."""
    ext = Path(path).suffix.lower()
    fmt = {".md": "md", ".markdown": "md", ".tex": "latex", ".csv": "csv", ".html": "html", ".htm": "html"}.get(ext)
    fmt = fmt or default
    if fmt is None:
        raise MMUError(f"cannot tell the table format of {str(path)!r} from its extension; use .md, .tex, .csv "
                       f"or .html, or pass --format")
    return fmt


def provenance(paths: Iterable[str | os.PathLike], records: list[RunRecord], command: str | None = None) -> list[str]:
    """Lines saying how the tables were made: the command, and for every sweep-summary.json under
    ``paths`` its counts, wall time, executor and hardware (written by ``mmu-bench sweep``)."""
    lines = []
    if command:
        lines.append(f"Generated from {len(records)} runs by `{command}`.")
    for root in paths:
        root = Path(root)
        found = [root] if root.name == "sweep-summary.json" else (
            sorted(root.rglob("sweep-summary.json")) if root.is_dir() else [])
        for f in found:
            try:
                d = json.loads(f.read_text())
                history = d["history"] if isinstance(d.get("history"), list) else [d]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            # invocations that did work; a re-run that only reused finished runs adds nothing
            worked = [h for h in history if isinstance(h, dict) and h.get("seconds") is not None
                      and isinstance(h.get("counts"), dict)
                      and sum(h["counts"].get(k, 0) for k in ("ran", "diverged")) > 0]
            for i, h in enumerate(worked, 1):
                c, hw = h["counts"], h.get("hardware") or {}
                gpus = ", ".join(hw.get("gpus") or []) or "no GPU"
                where = f"{hw.get('cores', '?')} cores ({hw.get('cpu', '?')}), {gpus}" if hw else "unrecorded hardware"
                runner = h.get("executor", "local") + (f", {h['jobs']} jobs" if (h.get("jobs") or 1) > 1 else "")
                part = f" (part {i} of {len(worked)})" if len(worked) > 1 else ""
                lines.append(f"Sweep `{f}`{part}: {c.get('ran', 0)} ran, {c.get('reused', 0)} reused, "
                             f"{c.get('diverged', 0)} diverged, {c.get('failed', 0)} failed in "
                             f"{h['seconds'] / 60:.1f} min wall ({runner}) on {where}"
                             + (f", finished {h['finished_at']}" if h.get("finished_at") else "") + ".")
    return lines


# ----------------------------------------------------------------------------- plots


def _save(fig, path: Path) -> None:
    tmp = path.with_name(f".{uuid.uuid4().hex[:8]}.{path.name}")
    fig.savefig(tmp, dpi=110, format="png")
    os.replace(tmp, path)


def plot(groups: list[Group], out_dir: str | os.PathLike) -> list[Path]:
    """Per group ``<slug>.png``: forget efficacy (x) vs retention (y), one labelled point per method
    with error bars (std over seeds), reference rows as grey markers. Continual groups with curves
    also get ``<slug>.curves.png``: retain vqa mcq acc after each request, mean over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for g in groups:
        fig = Figure(figsize=(6, 4.8))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        markers = "osD^vP*Xph<>"
        i = 0
        for r in g.rows:
            if FORGET_EFFICACY not in r.mean or RETENTION not in r.mean:
                continue
            x, y = r.mean[FORGET_EFFICACY], r.mean[RETENTION]
            if r.kind == "reference":
                oracle = g.setting is not None and r.label.startswith(g.setting.oracle + " ")
                # the setting's oracle is the target a method should reach: a filled star
                ax.scatter([x], [y], marker="*" if oracle else "s", s=140 if oracle else 60,
                           facecolor="gold" if oracle else "none", edgecolor="black" if oracle else "grey", zorder=2)
                left = x < 0.5
                ax.annotate(r.label, (x, y), textcoords="offset points", xytext=(6 if left else -6, -12),
                            ha="left" if left else "right", fontsize=8, color="grey")
            else:
                # each method gets its own colour and marker and a legend entry, so coinciding points
                # stay readable
                ax.errorbar([x], [y], xerr=[r.std.get(FORGET_EFFICACY, 0.0)], yerr=[r.std.get(RETENTION, 0.0)],
                            fmt="x" if r.n_diverged else markers[i % len(markers)], capsize=3, zorder=3,
                            alpha=0.85, label=f"{_label(r)} (n={r.n})")
                i += 1
        ax.set(xlim=(-0.05, 1.05), ylim=(-0.05, 1.05), xlabel="forget efficacy ↑", ylabel="retention ↑",
               title=g.title)
        ax.grid(alpha=0.3)
        if i:
            ax.legend(fontsize=8, loc="lower left")
        fig.tight_layout()
        p = out / f"{g.slug}.png"
        _save(fig, p)
        written.append(p)
        if g.protocol_kind == "attacks":
            p = _plot_attacks(g, out)
            if p is not None:
                written.append(p)
        if g.protocol_kind == "continual" and g.curves:
            fig = Figure(figsize=(6, 4))
            FigureCanvasAgg(fig)
            ax = fig.add_subplot()
            for lab, ys in g.curves.items():
                ax.plot(range(1, len(ys) + 1), ys, marker="o", label=lab)
            ref = next((r for r in g.rows if r.label == "finetuned (ref)"), None)
            if ref is not None and "retain.vqa.mcq.acc" in ref.mean:
                ax.axhline(ref.mean["retain.vqa.mcq.acc"], color="grey", ls="--", lw=1, label="finetuned (ref)")
            steps = max(len(ys) for ys in g.curves.values())
            ax.set_xticks(range(1, steps + 1))
            ax.set(ylim=(0, 1.05), xlabel="after request", ylabel="retain vqa mcq acc (mean over seeds)",
                   title=g.title)
            ax.legend(fontsize=8)
            fig.tight_layout()
            p = out / f"{g.slug}.curves.png"
            _save(fig, p)
            written.append(p)
    return written


def _plot_attacks(g: Group, out: Path) -> Path | None:
    """``<slug>.attacks.png``: every row (reference models, then methods) x every attack column, the
    mean over seeds in each cell, so which method's forgetting survives which attack reads at a
    glance. Columns are the group's attack keys; the colour is the value (0..1 keys only)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = [k for k in g.keys if k.startswith("attack.")
            and all(0.0 <= r.mean[k] <= 1.0 for r in g.rows if k in r.mean)]
    rows = [r for r in g.rows if any(k in r.mean for k in cols)]
    if not cols or not rows:
        return None
    import numpy as np

    vals = np.array([[r.mean.get(k, np.nan) for k in cols] for r in rows])
    fig = Figure(figsize=(1.0 + 0.62 * len(cols), 1.6 + 0.36 * len(rows)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(vals), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i, r in enumerate(rows):
        for j, k in enumerate(cols):
            if k in r.mean:
                v = r.mean[k]
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6.5,
                        color="black" if v > 0.6 else "white")
    ax.set_xticks(range(len(cols)), [f"{column_name(k).removeprefix('attack.')} {ARROW[direction(k, g.setting_name)]}"
                                     + (" (void)" if k in g.void else "") for k in cols],
                  rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), [f"{_label(r)}" + (f" (n={r.n})" if r.kind == "method" else "") for r in rows],
                  fontsize=7)
    ax.set_title(g.title + "\nmean over seeds; reference rows = the zoo models under the same attack", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    p = out / f"{g.slug}.attacks.png"
    _save(fig, p)
    return p


# ----------------------------------------------------------------------------- command line


def cmd_leaderboard(args) -> int:
    from .cache import write_text_atomic

    keys = args.keys.split(",") if args.keys else None
    records = collect(args.runs)
    groups = aggregate(records, keys, setting=args.setting)
    import shlex

    command = "mmu-bench " + shlex.join(sys.argv[1:]) if sys.argv[1:] and sys.argv[1] == "leaderboard" else None
    lines = provenance(args.runs, records, command)
    fronts_md, front_pngs = "", []
    if args.tuning:
        from . import fronts

        from .tuning import load_trials

        docs = load_trials(args.tuning)
        if not docs:
            raise MMUError(f"--tuning: no *.trials.json under {', '.join(args.tuning)} (written by mmu-bench tune)")
        rows = fronts.front_rows(docs)
        lines += fronts.provenance_lines(docs)
        fronts_md = fronts.markdown(rows)
        front_pngs = fronts.plot(rows, args.plots) if args.plots else []
    outs = args.out or []
    if args.format and len(outs) > 1:
        raise MMUError("--format applies to one --out; with several, each file's extension names its format")
    fmts = [args.format or format_for(out, "md" if len(outs) == 1 else None) for out in outs]
    # plots first, so that the html page can embed them
    pngs = (plot(groups, args.plots) if args.plots else []) + front_pngs
    for p in pngs:
        print(f"wrote {p}")
    for out, fmt in zip(outs, fmts):
        text = render(groups, fmt, lines, args.title, plots=pngs) + ("\n" + fronts_md if fmt == "md" and fronts_md else "")
        write_text_atomic(out, text)
        print(f"wrote {out} ({len(groups)} table{'s' if len(groups) != 1 else ''})")
    if not outs:
        text = render(groups, args.format or "md", lines, args.title, plots=pngs) + \
            ("\n" + fronts_md if (args.format or "md") == "md" and fronts_md else "")
        print(text, end="" if text.endswith("\n") else "\n")
    return 0


def add_command(subparsers) -> None:
    p = subparsers.add_parser("leaderboard", help="tables (md, latex, csv, html) and plots from run directories",
                              description="Aggregate finished runs (mean ± std over seeds) into one table per "
                                          "benchmark / model / protocol / forget split. See docs/leaderboard.md.")
    p.add_argument("runs", nargs="+", metavar="RUNS",
                   help="run directories (searched recursively) or metrics.json files")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="table format (default: from --out's extension, else md)")
    p.add_argument("--out", action="append", default=None, metavar="FILE",
                   help="write the tables here (default: print); repeat for several formats, each named by "
                        "its extension: .md .tex .csv .html")
    p.add_argument("--plots", default=None, metavar="DIR", help="also write PNG plots into DIR")
    p.add_argument("--title", default=None, help="a title line on top (md heading, html h2, LaTeX comment)")
    p.add_argument("--setting", default=None,
                   help="make a leaderboard of this setting only; a run of another setting is an error "
                        "(default: one table per setting found)")
    p.add_argument("--tuning", action="append", default=None, metavar="DIR",
                   help="folders of mmu-bench tune output: their trials become trade-off fronts (plot, table) "
                        "and their budget, space and choice go into the provenance")
    p.add_argument("--keys", default=None, metavar="K1,K2,...",
                   help="metric columns (default: the protocol's main keys); the aggregates are always added")
    p.set_defaults(func=cmd_leaderboard)
