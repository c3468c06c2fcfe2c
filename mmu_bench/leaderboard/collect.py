"""Reading finished run directories: :func:`collect` gives one :class:`RunRecord` per usable
metrics.json, one per part for a composed protocol's run (:func:`_read_runs` says why one is not), :func:`runs_frame` a runs x metrics table of
them that the aggregation builds on."""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import MMUError
from ..results import FINISHED_STATUSES


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
    """A RunRecord for metrics.json file ``f`` (a composed protocol's run: its first part's), or
    why it cannot be used."""
    recs = _read_runs(f)
    return recs if isinstance(recs, str) else recs[0]


def _part_labels(kind: str, spec: dict) -> dict[str, str]:
    """The table each part of composed protocol ``kind`` fills: the part's name with its own
    options (and the stopping rule's tag), as a run of that part alone would be named."""
    from ..plugins import get_registry
    from ..protocols import split_options
    from ..results import protocol_dirname

    cls = get_registry().get("protocols", kind)
    taken = split_options(kind, cls.parts, spec.get("protocol_options") or {})
    stop = {}
    if spec.get("stop_at"):
        from ..stopping import StopRule

        stop = {"stop": StopRule.parse(spec["stop_at"]).tag}
    return {part.name: protocol_dirname(part.name, taken[part] | stop) for part in cls.parts}


def _read_runs(f: Path) -> list[RunRecord] | str:
    """RunRecords for metrics.json file ``f`` (one per part of a composed protocol such as
    ``static+mia+attacks``, which fills each part's table), or why it cannot be used."""
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
        from ..attacks.report import attack_rows

        try:
            reference = {k: _numbers(v) for k, v in attack_rows(reference, proto["reference"]).items()}
        except (AttributeError, TypeError):
            return "protocol.reference is not {attack: {model: {metric: value}}}"
    curves = proto.get("curves") if isinstance(proto, dict) and isinstance(proto.get("curves"), dict) else None
    rec = RunRecord(path=f.parent, method=label, method_name=name, benchmark=benchmark, model=model,
                     protocol=protocol, protocol_kind=kind, forget_split=split, seed=seed,
                     metrics=_numbers(doc["metrics"]), reference=reference,
                     diverged=bool(doc.get("diverged")) or doc["status"] == "diverged", curves=curves,
                     setting=setting, stop_rule=(doc.get("stop_rule") or {}).get("rule")
                     if isinstance(doc.get("stop_rule"), dict) else None,
                     hyper=dict(config.get("method", {}).get("hyper") or {}))
    if "+" not in kind:
        return [rec]
    try:
        return [replace(rec, protocol=label, protocol_kind=part) for part, label in _part_labels(kind, spec).items()]
    except MMUError as e:
        return f"its protocol {kind!r}: {e}"


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
        recs = _read_runs(f)
        if isinstance(recs, str):
            warn(f"skipping {f}: {recs}")
        else:
            records.extend(recs)
    return records


FRAME_INDEX = ("benchmark", "model", "setting", "protocol", "split", "method", "seed")
_FRAME_FIELDS = ("benchmark", "model", "setting", "protocol", "forget_split", "method", "seed")


def runs_frame(records: Iterable[RunRecord], values: Callable[[RunRecord], dict[str, float]] | None = None):
    """A pandas DataFrame of runs x metrics: one row per record, in the order given, indexed by
    :data:`FRAME_INDEX` (benchmark, model, setting, protocol, split, method, seed); one column per
    metric key, sorted; NaN where a run lacks the key. ``values``: a run's metrics (default
    ``RunRecord.metrics``; the aggregation adds the setting's aggregates)."""
    import pandas as pd

    records = list(records)
    rows = [(values or (lambda r: r.metrics))(r) for r in records]
    index = pd.MultiIndex.from_arrays([[getattr(r, f) for r in records] for f in _FRAME_FIELDS], names=FRAME_INDEX)
    return pd.DataFrame(rows, index=index, columns=sorted({k for m in rows for k in m}), dtype=float)
