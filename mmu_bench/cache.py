"""Cache directory, atomic writes and verified cache entries.

An entry is a directory built under a temporary name and renamed into place when complete, with a
manifest (``mmu_manifest.json``) listing the sha256 of every file. An entry whose manifest is
missing or whose files do not match is stale or half-written: it is reported and rebuilt, never
silently used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable

from .errors import MMUError

MANIFEST = "mmu_manifest.json"


def ensure_writable(path: Path, what: str, hint: str = "") -> Path:
    """Create ``path`` and prove it takes a file; else one clear MMUError naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{uuid.uuid4().hex}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise MMUError(f"{what} {str(path)!r} is not writable ({e.strerror or e}){hint}") from None
    return path


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``cache_dir``, else $MMU_BENCH_CACHE, else ~/.cache/mmu-bench."""
    root = Path(cache_dir or os.environ.get("MMU_BENCH_CACHE") or Path.home() / ".cache" / "mmu-bench")
    return ensure_writable(root, "cache directory",
                           "; set MMU_BENCH_CACHE or --cache-dir to a writable directory")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON via a temporary file in the same directory and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def entry_problem(path: Path, key: str) -> str | None:
    """Why the entry at ``path`` cannot be used (None if it is complete and intact)."""
    if not path.exists():
        return "missing"
    mf = path / MANIFEST
    if not mf.exists():
        return "half-written (no manifest)"
    try:
        manifest = json.loads(mf.read_text())
    except (OSError, ValueError):
        return "corrupt manifest"
    if manifest.get("key") != key:
        return "stale (built for another configuration)"
    for name, digest in manifest.get("files", {}).items():
        f = path / name
        if not f.exists():
            return f"half-written ({name} missing)"
        if sha256_file(f) != digest:
            return f"corrupt ({name} does not match its checksum)"
    return None


def build_entry(path: Path, key: str, build: Callable[[Path], dict | None], meta: dict | None = None) -> Path:
    """Build an entry into a temporary sibling directory, write its manifest, rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex[:8]}"
    try:
        extra = build(tmp) or {}
        files = {str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        write_json_atomic(tmp / MANIFEST, {"key": key, "files": files, **(meta or {}), **extra})
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def read_manifest(path: Path) -> dict:
    return json.loads((path / MANIFEST).read_text())
