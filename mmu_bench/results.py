"""The results store: one directory per run, written atomically.

    <out>/<benchmark>/<model>/<method>[-<hyper hash>]/<protocol>/<forget split>/seed<seed>/
        config.json     resolved config, seeds, package versions, device, project version
        samples.jsonl   per-sample predictions and scores
        metrics.json    {"metrics": {key: value}, "reference": {...}, "status": ..., ...}

metrics.json is written last: a run directory without it (or whose status is not "finished"
or "diverged") is unfinished and is redone. The ``metrics`` object holds only deterministic
numbers (no timings, no timestamps), so two runs with the same seed compare equal.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Iterable

from . import __version__
from .cache import atomic_path, write_json_atomic

FINISHED_STATUSES = ("finished", "diverged")


def hyper_tag(overrides: dict[str, Any]) -> str:
    """'' for default hyper-parameters, else a short stable hash of the overrides."""
    if not overrides:
        return ""
    blob = json.dumps(overrides, sort_keys=True, default=str)
    return "-" + hashlib.sha256(blob.encode()).hexdigest()[:8]


def protocol_dirname(protocol: str, options: dict[str, Any] | None = None) -> str:
    """A protocol's directory (and leaderboard table) name: its name, then each option as -KEYVALUE."""
    return protocol + "".join(f"-{k}{v}" for k, v in sorted((options or {}).items()))


def run_dir(out: str | os.PathLike, benchmark: str, model: str, method: str, protocol: str, split: str,
            seed: int, overrides: dict[str, Any], protocol_options: dict[str, Any] | None = None,
            setting: str = "visual", label: str | None = None) -> Path:
    """``label`` names the method's row instead of the hash of its changed hyper-parameters
    (``ga-tuned``); config.json still records every value."""
    safe_model = model.replace("/", "__").replace(":", "_")
    proto = protocol_dirname(protocol, protocol_options)
    mdir = f"{method}-{label}" if label else f"{method}{hyper_tag(overrides)}"
    return Path(out) / benchmark / safe_model / setting / mdir / proto / split / f"seed{seed}"


def finished(path: Path) -> dict | None:
    """The metrics.json of a finished run at ``path``, else None."""
    f = path / "metrics.json"
    if not f.exists():
        return None
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    return data if data.get("status") in FINISHED_STATUSES else None


def write_samples(path: Path, samples: Iterable[dict]) -> None:
    with atomic_path(path / "samples.jsonl") as tmp, open(tmp, "w") as f:
        for s in samples:
            f.write(json.dumps(s, sort_keys=True) + "\n")


def environment() -> dict[str, Any]:
    import torch
    import transformers

    versions = {"mmu_bench": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
                "transformers": transformers.__version__}
    for mod in ("datasets", "peft", "accelerate", "numpy"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - optional
            pass
    device = "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {"versions": versions, "device": device, "platform": platform.platform(),
            "git_commit": _git_commit()}


def _git_commit() -> str | None:
    """The commit of the source tree this package runs from (git itself: packed refs, worktrees),
    or None outside a git checkout."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def write_run(path: Path, config: dict, metrics_doc: dict, samples: list[dict],
              files: dict[str, Any] | None = None) -> None:
    """Write one run: config, samples and extra files (e.g. plots; ``name -> writer(path)``)
    first, metrics.json (the completion mark) last."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.json").unlink(missing_ok=True)
    write_json_atomic(path / "config.json", config)
    write_samples(path, samples)
    for name, writer in (files or {}).items():
        with atomic_path(path / name) as tmp:
            writer(tmp)
    write_json_atomic(path / "metrics.json", metrics_doc)
