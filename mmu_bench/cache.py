"""Cache directory, atomic writes and verified cache entries.

Every file and folder the suite writes for others to read goes through :func:`atomic_path` (a
file) or :func:`atomic_dir` (a folder): it is written under a temporary sibling name and renamed
into place when complete, so a reader never sees it half-written.

An entry is a directory built that way, with a manifest (``mmu_manifest.json``) listing the
sha256 of every file. An entry whose manifest is missing or whose files do not match is stale or
half-written: it is reported and rebuilt, never silently used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling of the file ``path`` to write (private, empty; its name ends with
    ``path``'s name, so writers that go by the extension still work), renamed onto ``path`` when
    the block ends without error and removed otherwise. Concurrent writers never collide and
    readers see the old file or the new one, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=f".{path.name}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON (indented, one trailing newline) atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _replace_dir(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and restored on failure."""
    if not out.exists() or not any(out.iterdir()):
        os.replace(tmp, out)  # POSIX: atomically replaces a missing or empty directory
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = True, what: str = "folder") -> Iterator[Path]:
    """A fresh temporary sibling folder of ``path`` to fill, moved onto ``path`` when the block
    ends without error (an existing ``path`` is replaced: moved aside, then deleted, or restored
    if the move fails) and removed otherwise. ``overwrite=False`` refuses a non-empty ``path``
    (an MMUError naming ``what``, e.g. "MLLMU export target")."""
    out = Path(path)
    if out.exists():
        if not out.is_dir():
            raise MMUError(f"{what} {out} exists and is not a directory")
        if not overwrite and any(out.iterdir()):
            raise MMUError(f"{what} {out} exists and is not empty; remove it or pass overwrite=True")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp's folder is private; the finished one is not
        yield tmp
        _replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful move


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
    with atomic_dir(path, what="cache entry") as tmp:
        extra = build(tmp) or {}
        files = {str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        write_json_atomic(tmp / MANIFEST, {"key": key, "files": files, **(meta or {}), **extra})
    return path


def read_manifest(path: Path) -> dict:
    return json.loads((path / MANIFEST).read_text())
