"""The CLI: world check / build / export on the small world, and bad input as one clear line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mmu_bench.cli import main

from conftest import SMALL_RECIPE_ARGS


def _run(*args):
    return subprocess.run([sys.executable, "-m", "mmu_bench.cli", *args], capture_output=True, text=True,
                          timeout=600)


def test_world_check_prints_table_and_writes_json(small_zoo, small_check, cache_dir, tmp_path, capsys):
    out = tmp_path / "check.json"
    rc = main(["-q", "world", "check", "--size", "20", "--cache-dir", str(cache_dir), *SMALL_RECIPE_ARGS,
               "--out", str(out), "--strict"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "| metric" in text and "retrain_visual@forget_10" in text and "zoo is a VALID testbed" in text
    data = json.loads(out.read_text())
    assert set(data) >= {"base", "finetuned", "retrain", "retrain_visual"}
    # the CLI reuses the cached zoo and gets the same numbers as the Python API
    assert data["finetuned"] == small_check["models"]["finetuned"]


def test_world_export_writes_mllmu_layout(cache_dir, tmp_path, capsys):
    rc = main(["-q", "world", "export", "--size", "20", "--cache-dir", str(cache_dir), "--format", "mllmu",
               "--out", str(tmp_path / "mllmu")])
    assert rc == 0
    assert (tmp_path / "mllmu" / "forget_10" / "train-00000-of-00001.parquet").exists()


def test_world_build_without_zoo(cache_dir, capsys):
    assert main(["-q", "world", "build", "--size", "20", "--cache-dir", str(cache_dir), "--no-zoo"]) == 0
    assert "world " in capsys.readouterr().out


def _main(argv, capsys) -> tuple[int, str]:
    """The CLI in-process: (exit code, stderr)."""
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own type errors
        rc = e.code
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["world", "check", "--forget-split", "forget_7"], "unknown forget split 'forget_7'"),
    (["world", "build", "--size", "0", "--no-zoo"], "world size must be an integer >= 20"),
    (["world", "build", "--no-zoo", "--zoo-set", "base_step=3"], "unknown zoo recipe key 'base_step'"),
    (["world", "build", "--no-zoo", "--zoo-set", "base_steps=many"], "expected an integer, got 'many'"),
])
def test_bad_input_is_one_clear_line(args, message, tmp_path, capsys):
    rc, err = _main([*args, "--cache-dir", str(tmp_path)], capsys)
    assert rc == 2
    assert message in err
    assert "Traceback" not in err


def test_unwritable_cache_dir_is_one_clear_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, err = _main(["world", "build", "--no-zoo", "--cache-dir", str(blocker / "cache")], capsys)
    assert rc == 2 and "is not writable" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_the_console_script_reports_bad_input_in_one_line(tmp_path):
    """One check through the real ``python -m mmu_bench.cli`` process (the rest run in-process)."""
    r = _run("world", "check", "--forget-split", "forget_7", "--cache-dir", str(tmp_path))
    assert r.returncode == 2 and "unknown forget split 'forget_7'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("argv, message", [
    (["run", "--method", "ga", "--seed", "-5"], "-5 is negative"),
    (["run", "--method", "ga", "--max-new-tokens", "0"], "max_new_tokens must be an integer >= 1"),
    (["run", "--method", "ga", "--set", "steps=-4"], "'steps': -4 is below its minimum; expected >= 1"),
    (["run", "--method", "cvf", "--set", "lr=0"], "'lr': 0.0 is out of range; expected > 0"),
    (["run", "--method", "cvf", "--setting", "full"], "supports setting visual only"),
    (["sweep", "--methods", "ga", "--seeds", "a,b"], "--seeds: 'a' is not an integer"),
    (["sweep", "--methods", "ga", "--settings", "fulll"], "unknown setting 'fulll'. Did you mean 'full'?"),
    (["sweep", "--methods", "gaa"], "unknown method 'gaa'. Did you mean 'ga'?"),
])
def test_bad_values_are_one_line_before_any_work(argv, message, tmp_path, capsys):
    from mmu_bench.cli import main

    try:
        rc = main(["-q", *argv, "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")])
    except SystemExit as e:  # argparse's own type errors
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache" / "zoo").exists()  # nothing built


def test_a_sweep_leaves_out_unsupported_method_setting_pairs():
    from mmu_bench.sweep import SweepSpec, _supported

    said = []
    grid = _supported(SweepSpec(methods=["cvf", "ga"], settings=["visual", "full"], seeds=[0, 1]).runs(), said.append)
    assert [(kw["setting"], kw["method"]) for kw in grid] == [("visual", "cvf")] * 2 + [("visual", "ga")] * 2 + \
        [("full", "ga")] * 2
    assert len(said) == 1 and "leaving out cvf in setting full" in said[0]
