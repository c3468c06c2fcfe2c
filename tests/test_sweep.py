"""Sweeps: grid expansion, failures recorded, resume after interruption, Ray executor."""

from __future__ import annotations

import json
import os

import pytest

from mmu_bench.sweep import SweepSpec, sweep

from conftest import SMALL_RECIPE


def _spec(cache_dir, out, methods, seeds=(0,)):
    return SweepSpec(methods=list(methods), seeds=list(seeds), common={
        "out": str(out), "world_size": 20, "cache_dir": str(cache_dir), "progress": False, "max_new_tokens": 24,
        "zoo": {"base_steps": SMALL_RECIPE.base_steps, "finetune_steps": SMALL_RECIPE.finetune_steps}})


def test_grid_expansion():
    spec = SweepSpec(methods=["ga", "cvf"], seeds=[0, 1], forget_splits=["forget_5", "forget_10"],
                     protocols=["static", "continual"], hyper={"ga": {"steps": 5}},
                     protocol_options={"continual": {"requests": 2}})
    runs = spec.runs()
    assert len(runs) == 16
    ga = [r for r in runs if r["method"] == "ga"]
    assert all(r["hyper"] == {"steps": 5} for r in ga)
    assert all(r["protocol_options"] == ({"requests": 2} if r["protocol"] == "continual" else {}) for r in runs)


def test_failed_run_is_recorded_and_sweep_resumes(cache_dir, small_zoo, tmp_path):
    out = tmp_path / "runs"
    spec = _spec(cache_dir, out, ["retrain", "no_such_method", "finetuned"], seeds=[0, 1])
    first = sweep(spec, log=lambda m: None)
    assert first["counts"] == {"ran": 4, "reused": 0, "diverged": 0, "failed": 2}
    failed = [r for r in first["results"] if r["status"] == "failed"]
    assert all("unknown method 'no_such_method'" in r["error"] for r in failed)
    summary = json.loads((out / "sweep-summary.json").read_text())
    assert summary["counts"]["failed"] == 2
    # a run killed mid-way leaves no metrics.json: it is redone, the finished ones are reused
    killed = next(p for p in out.rglob("metrics.json") if "finetuned" in str(p) and "seed1" in str(p))
    mtimes = {p: os.stat(p).st_mtime_ns for p in out.rglob("metrics.json") if p != killed}
    killed.unlink()
    second = sweep(spec, log=lambda m: None)
    assert second["counts"] == {"ran": 1, "reused": 3, "diverged": 0, "failed": 2}
    assert killed.exists()
    assert all(os.stat(p).st_mtime_ns == t for p, t in mtimes.items())


def test_sweep_cli_exit_code_and_summary(cache_dir, small_zoo, tmp_path, capsys):
    from mmu_bench.cli import main

    rc = main(["-q", "sweep", "--methods", "retrain,retrian", "--size", "20", "--cache-dir", str(cache_dir),
               "--zoo-set", f"base_steps={SMALL_RECIPE.base_steps}", "--zoo-set",
               f"finetune_steps={SMALL_RECIPE.finetune_steps}", "--max-new-tokens", "24", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert rc == 1
    assert "sweep: 1 ran, 0 reused, 0 diverged, 1 failed" in captured.out
    assert "Did you mean 'retrain'?" in captured.err


def test_ray_executor_runs_two_tiny_runs_locally(cache_dir, small_zoo, tmp_path):
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = sweep(_spec(cache_dir, tmp_path, ["finetuned", "retrain"]), executor="ray", log=lambda m: None)
    finally:
        ray.shutdown()
    assert result["counts"] == {"ran": 2, "reused": 0, "diverged": 0, "failed": 0}
    assert len(list(tmp_path.rglob("metrics.json"))) == 2
