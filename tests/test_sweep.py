"""Sweeps: grid expansion, failures recorded, resume after interruption, Ray executor."""

from __future__ import annotations

import json
import os

import pytest

from mmu_bench.sweep import SweepSpec, sweep

from conftest import SMALL_RECIPE_ARGS, SMALL_ZOO


def _spec(cache_dir, out, methods, seeds=(0,)):
    return SweepSpec(methods=list(methods), seeds=list(seeds), common={
        "out": str(out), "world_size": 20, "cache_dir": str(cache_dir), "progress": False, "max_new_tokens": 24,
        "zoo": dict(SMALL_ZOO)})


def test_grid_expansion():
    spec = SweepSpec(methods=["ga", "cvf"], seeds=[0, 1], forget_splits=["forget_5", "forget_10"],
                     protocols=["static", "continual"], hyper={"ga": {"steps": 5}},
                     protocol_options={"continual": {"requests": 2}})
    runs = spec.runs()
    assert len(runs) == 16
    ga = [r for r in runs if r["method"] == "ga"]
    assert all(r["hyper"] == {"steps": 5} for r in ga)
    assert all(r["protocol_options"] == ({"requests": 2} if r["protocol"] == "continual" else {}) for r in runs)


def test_several_grids_in_one_spec(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("methods: [ga, cvf]\nseeds: [0, 1]\ngrids:\n"
                    "  - {forget_splits: [forget_5, forget_10], protocols: [static]}\n"
                    "  - {forget_splits: [forget_10], protocols: [continual, static]}\n")
    runs = SweepSpec.from_file(path).runs()
    points = [(r["method"], r["protocol"], r["forget_split"], r["seed"]) for r in runs]
    assert len(points) == 2 * 2 * 2 + 2 * 1 * 2  # static forget_10 appears in both grids: once
    assert len(set(points)) == len(points)
    assert ("cvf", "continual", "forget_10", 1) in points and ("cvf", "continual", "forget_5", 1) not in points
    bad = SweepSpec(methods=["ga"], grids=[{"forget_split": ["forget_5"]}])
    with pytest.raises(Exception, match=r"grids\[0\].*methods, seeds, forget_splits, protocols"):
        bad.runs()


def test_failed_run_is_recorded_and_sweep_resumes(cache_dir, small_zoo, tmp_path):
    out = tmp_path / "runs"
    # names are checked before anything runs; a run that fails while running (here: LoRA asked of a
    # vision-only run) is recorded and the sweep goes on
    spec = _spec(cache_dir, out, ["retrain", "ga", "finetuned"], seeds=[0, 1])
    spec.hyper = {"ga": {"lora": True, "trainable": "vision"}}
    first = sweep(spec, log=lambda m: None)
    assert first["counts"] == {"ran": 4, "reused": 0, "diverged": 0, "failed": 2}
    failed = [r for r in first["results"] if r["status"] == "failed"]
    assert all("lora=true needs the LLM to train" in r["error"] for r in failed)
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
               *SMALL_RECIPE_ARGS, "--max-new-tokens", "24", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert rc == 2  # a mistyped name is refused before any run starts
    assert "unknown method 'retrian'. Did you mean 'retrain'?" in captured.err
    assert not list(tmp_path.rglob("metrics.json"))
    rc = main(["-q", "sweep", "--methods", "retrain", "--size", "20", "--cache-dir", str(cache_dir),
               *SMALL_RECIPE_ARGS, "--max-new-tokens", "24", "--out", str(tmp_path)])
    assert rc == 0 and "sweep: 1 ran, 0 reused, 0 diverged, 0 failed" in capsys.readouterr().out


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


def test_parallel_jobs_match_serial_and_record_failures(cache_dir, small_zoo, tmp_path):
    """jobs=2: shared oracles built once up front, runs fan out to 2 worker processes; the
    numbers equal a serial sweep's and a failed run is still recorded."""
    spec = _spec(cache_dir, tmp_path / "par", ["finetuned", "retrain", "ga"])
    spec.hyper = {"ga": {"lora": True, "trainable": "vision"}}  # fails while running: recorded
    spec.protocols = ["static", "mia"]
    logs: list[str] = []
    par = sweep(spec, jobs=2, log=logs.append)
    assert par["counts"] == {"ran": 4, "reused": 0, "diverged": 0, "failed": 2}
    assert any(m.startswith("prepared forget_10 / mia") for m in logs)
    label = {"ga": "ga[lora=True,trainable=vision]"}  # a run's label names its hyper-parameters
    assert [r["run"] for r in par["results"]] == [f"visual/{label.get(m, m)}/{p}/forget_10/seed0"
                                                  for m in spec.methods for p in spec.protocols]  # grid order kept
    serial_spec = _spec(cache_dir, tmp_path / "ser", ["finetuned", "retrain"])
    serial_spec.protocols = ["static", "mia"]
    sweep(serial_spec, log=lambda m: None)
    for r in par["results"]:
        if r["status"] != "ran":
            continue
        ours = json.loads((tmp_path / "par" / os.path.relpath(r["path"], tmp_path / "par") / "metrics.json").read_text())
        theirs = json.loads((tmp_path / "ser" / os.path.relpath(r["path"], tmp_path / "par") / "metrics.json").read_text())
        assert ours["metrics"] == theirs["metrics"]
    again = sweep(spec, jobs=2, log=lambda m: None)  # everything finished: nothing to prepare or run
    assert again["counts"] == {"ran": 0, "reused": 4, "diverged": 0, "failed": 2}
    # the summary keeps every invocation; the leaderboard's provenance names the ones that worked
    summary = json.loads((tmp_path / "par" / "sweep-summary.json").read_text())
    assert [h["counts"]["ran"] for h in summary["history"]] == [4, 0] and summary["counts"]["reused"] == 4
    from mmu_bench.leaderboard import provenance

    (line,) = provenance([tmp_path / "par"], [])
    assert "4 ran, 0 reused, 0 diverged, 2 failed" in line and "(local, 2 jobs)" in line


def test_jobs_must_be_positive(tmp_path):
    with pytest.raises(Exception, match="jobs must be at least 1"):
        sweep(SweepSpec(methods=["ga"], common={"out": str(tmp_path)}), jobs=0)


def test_grids_can_carry_their_own_hyper_parameters(tmp_path):
    """An ablation row: the same method twice in one spec, once with other hyper-parameters."""
    from mmu_bench.sweep import SweepSpec

    f = tmp_path / "spec.yaml"
    f.write_text("methods: [cvf, ga]\nseeds: [0]\ncommon: {stop_at: 'forget=0.3'}\n"
                 "grids:\n  - {}\n  - {methods: [cvf], hyper: {cvf: {null_space: false}}}\n")
    runs = SweepSpec.from_file(f).runs()
    assert [(r["method"], r["hyper"]) for r in runs] == [("cvf", {}), ("ga", {}), ("cvf", {"null_space": False})]
    assert all(r["stop_at"] == "forget=0.3" for r in runs)


def test_a_spec_reads_tuned_hyper_parameters_from_files(tmp_path):
    from mmu_bench.errors import MMUError
    from mmu_bench.sweep import SweepSpec

    (tmp_path / "tuning").mkdir()
    (tmp_path / "tuning" / "ga.yaml").write_text("# tuned\nlr: 0.0003\n")
    f = tmp_path / "spec.yaml"
    f.write_text("methods: [ga, npo]\nhyper: {ga: tuning/ga.yaml, npo: {beta: 0.2}}\ncommon: {label: tuned}\n")
    runs = SweepSpec.from_file(f).runs()
    assert [r["hyper"] for r in runs] == [{"lr": 0.0003}, {"beta": 0.2}] and runs[0]["label"] == "tuned"
    f.write_text("methods: [ga]\nhyper: {ga: tuning/missing.yaml}\n")
    with pytest.raises(MMUError, match="run mmu-bench tune first"):
        SweepSpec.from_file(f).runs()


def test_grids_can_set_their_own_run_fields_and_bad_ones_fail_before_anything_runs(tmp_path):
    """A labelled variant under a stopping rule beside the default rows; a label that cannot name a
    directory is an error before the first run, not one failed run per point."""
    from mmu_bench.errors import MMUError

    f = tmp_path / "spec.yaml"
    f.write_text("methods: [ga]\nseeds: [0]\ncommon: {out: " + str(tmp_path / "runs") + "}\n"
                 "grids:\n  - {common: {label: plain}}\n"
                 "  - {common: {label: stopped, stop_at: 'forget=0.3,every=5'}}\n")
    runs = SweepSpec.from_file(f).runs()
    assert [(r["label"], r.get("stop_at")) for r in runs] == [("plain", None), ("stopped", "forget=0.3,every=5")]
    f.write_text("methods: [ga]\ngrids:\n  - {common: {label: not-a-dir}}\n")
    with pytest.raises(MMUError, match="run label 'not-a-dir'"):
        sweep(SweepSpec.from_file(f), log=lambda m: None)
    f.write_text("methods: [ga]\ngrids:\n  - {common: {stop_at: 'forget=2'}}\n")
    with pytest.raises(MMUError, match="stop"):
        sweep(SweepSpec.from_file(f), log=lambda m: None)
    f.write_text("methods: [ga]\ngrids:\n  - {common: [label]}\n")
    with pytest.raises(MMUError, match=r"grids\[0\]\.common"):
        SweepSpec.from_file(f).runs()
