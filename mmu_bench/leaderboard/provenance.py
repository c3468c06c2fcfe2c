"""Provenance lines: how the runs behind the tables were made."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from .collect import RunRecord


def provenance(paths: Iterable[str | os.PathLike], records: list[RunRecord], command: str | None = None) -> list[str]:
    """Lines saying how the tables were made: the command, and for every sweep-summary.json under
    ``paths`` its counts, wall time, executor and hardware (written by ``mmu-bench sweep``)."""
    lines = []
    if command:
        runs = len({r.path for r in records})  # a composed protocol's run fills several tables
        entries = f" ({len(records)} table entries: a composed run counts once per part)" if runs != len(records) else ""
        lines.append(f"Generated from {runs} runs{entries} by `{command}`.")
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
