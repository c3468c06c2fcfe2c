"""The one atomic-write helper pair (mmu_bench/cache.py): files and folders appear whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmu_bench.cache import atomic_dir, atomic_path, write_json_atomic, write_text_atomic
from mmu_bench.errors import MMUError


def test_atomic_path_keeps_the_extension_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "plot.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith(".plot.png") and tmp.name.startswith(".")
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["plot.png"]


def test_write_json_and_text_atomic(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    assert (tmp_path / "a.json").read_text() == '{\n  "x": 1\n}\n'
    write_text_atomic(tmp_path / "b.md", "caf\u00e9\n")
    assert (tmp_path / "b.md").read_text(encoding="utf-8") == "caf\u00e9\n"


def test_atomic_dir_replaces_refuses_and_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "one").write_text("1")
    with atomic_dir(out) as tmp:  # replaces a non-empty folder
        (tmp / "two").write_text("2")
    assert [p.name for p in out.iterdir()] == ["two"]
    with pytest.raises(MMUError, match="export target .* exists and is not empty; remove it or pass overwrite=True"):
        with atomic_dir(out, overwrite=False, what="export target"):
            pass
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "three").write_text("3")
        raise RuntimeError("build failed")
    assert [p.name for p in out.iterdir()] == ["two"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left
    (tmp_path / "file").write_text("x")
    with pytest.raises(MMUError, match="is not a directory"), atomic_dir(tmp_path / "file"):
        pass
