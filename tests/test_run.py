"""The run pipeline on the small zoo: baselines forget, results store, reuse, determinism,
divergence, LoRA, hyper-parameter validation and bad input."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmu_bench import plugins
from mmu_bench.errors import MMUError
from mmu_bench.hookspecs import hookimpl
from mmu_bench.method import GradientMethod
from mmu_bench.run import RunSpec, run

from conftest import SMALL_RECIPE, SMALL_RECIPE_ARGS, SMALL_ZOO

# Gold answers are at most ~16 tokens; unlearned models babble to the limit, so tests cap it.
FAST_GEN = 24
ZOO = dict(SMALL_ZOO)


@pytest.fixture(scope="module")
def spec(small_zoo, cache_dir):
    small_zoo.path("retrain", "forget_10")  # make sure the zoo is built (shared fixture)

    def make(method, tmp, **kw):
        return RunSpec(method=method, world_size=20, cache_dir=str(cache_dir), zoo=dict(ZOO), out=str(tmp),
                       progress=False, max_new_tokens=FAST_GEN, **kw)
    return make


@pytest.fixture(scope="module")
def baseline_runs(spec, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return {m: run(spec(m, out)) for m in ("ga", "ga_diff", "kl_min", "npo")}


@pytest.mark.parametrize("method", ["ga", "ga_diff", "kl_min", "npo"])
def test_each_baseline_forgets(baseline_runs, method):
    o = baseline_runs[method]
    ft = o.reference["finetuned"]
    assert ft["forget.vqa.mcq.acc"] >= 0.95
    assert o.metrics["forget.vqa.mcq.acc"] <= ft["forget.vqa.mcq.acc"] - 0.3, o.metrics["forget.vqa.mcq.acc"]
    assert not o.diverged
    for key in ("forget_quality.ks_p", "forget_quality.js", "forget_quality.ks_p_visual", "forget_quality.js_visual"):
        assert 0.0 <= o.metrics[key] <= 1.0


def test_retain_terms_protect_retain_better_than_plain_ga(baseline_runs):
    ga = baseline_runs["ga"].metrics["retain.vqa.mcq.acc"]
    assert baseline_runs["ga_diff"].metrics["retain.vqa.mcq.acc"] >= ga
    assert baseline_runs["kl_min"].metrics["retain.vqa.mcq.acc"] >= ga


def test_run_directory_holds_config_metrics_and_samples(baseline_runs):
    o = baseline_runs["ga"]
    parts = o.path.parts[-7:]
    assert parts == ("synthetic", "tiny-llava", "visual", "ga", "static", "forget_10", "seed0")
    doc = json.loads((o.path / "metrics.json").read_text())
    assert doc["status"] == "finished" and doc["diverged"] is False
    assert doc["metrics"] == o.metrics and set(doc["reference"]) == {"finetuned", "retrain", "retrain_visual"}
    cfg = json.loads((o.path / "config.json").read_text())
    assert cfg["method"]["hyper"]["steps"] == 40 and cfg["spec"]["seed"] == 0
    assert {"torch", "transformers", "mmu_bench"} <= set(cfg["environment"]["versions"])
    samples = [json.loads(line) for line in (o.path / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == sum(v for k, v in o.metrics.items() if k.endswith(".n"))
    assert not list(o.path.glob(".*"))  # no temp files left behind


def test_finished_run_is_reused_unless_overwrite(spec, baseline_runs):
    out = baseline_runs["ga"].path.parents[6]
    again = run(spec("ga", out))
    assert again.reused and again.metrics == baseline_runs["ga"].metrics
    redo = run(spec("ga", out, overwrite=True))
    assert not redo.reused and redo.metrics == baseline_runs["ga"].metrics  # deterministic too


def test_same_seed_same_metrics_in_two_directories(spec, tmp_path):
    a = run(spec("npo", tmp_path / "a", hyper={"steps": 10}))
    b = run(spec("npo", tmp_path / "b", hyper={"steps": 10}))
    assert a.metrics == b.metrics
    assert a.path.parts[-4].startswith("npo-")  # overrides get their own directory


def test_reference_pseudo_methods_evaluate_zoo_models(spec, tmp_path):
    o = run(spec("retrain", tmp_path))
    assert {k: v for k, v in o.metrics.items() if not k.startswith("forget_quality.")} == o.reference["retrain"]
    # forget quality of the oracle against itself is perfect
    assert o.metrics["forget_quality.ks_p"] == 1.0 and o.metrics["forget_quality.js"] == 1.0


def test_vision_only_training_leaves_the_llm_bit_identical(spec, small_zoo, tmp_path, monkeypatch):
    from mmu_bench.protocols import StaticProtocol
    import mmu_bench.protocols as protocols

    captured = {}
    real_evaluate = protocols.evaluate

    def spy(model, tasks, cfg):
        captured["model"] = model
        return real_evaluate(model, tasks, cfg)

    monkeypatch.setattr(protocols, "evaluate", spy)
    run(spec("ga", tmp_path, hyper={"trainable": "vision", "steps": 10}))
    before = small_zoo.load("finetuned")
    after = captured["model"]
    lm_before = dict(before.model.model.language_model.named_parameters())
    changed_vision = False
    for n, p in after.model.model.language_model.named_parameters():
        assert torch.equal(p, lm_before[n]), n
    for (n, p), (_, q) in zip(after.model.model.vision_tower.named_parameters(),
                              before.model.model.vision_tower.named_parameters()):
        changed_vision |= not torch.equal(p, q)
    assert changed_vision and StaticProtocol.name == "static"


def test_lora_trains_the_llm_and_merges(spec, tmp_path, monkeypatch):
    import mmu_bench.protocols as protocols

    captured = {}
    real_evaluate = protocols.evaluate
    monkeypatch.setattr(protocols, "evaluate", lambda m, t, c: (captured.setdefault("m", m), real_evaluate(m, t, c))[1])
    o = run(spec("ga", tmp_path, setting="full", hyper={"lora": True, "lr": 3e-3}))
    model = captured["m"].model
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert not any("lora" in n for n, _ in model.named_parameters())
    assert o.metrics["forget.vqa.mcq.acc"] < o.reference["finetuned"]["forget.vqa.mcq.acc"]


class NaNMethod(GradientMethod):
    name = "test_nan"
    description = "returns a NaN loss at its third step (test only)"

    def loss(self, model, forget, retain, context):
        from mmu_bench.method import per_example_nll

        self.calls = getattr(self, "calls", 0) + 1
        loss = -per_example_nll(model, forget).mean()
        return loss * float("nan") if self.calls == 3 else loss


class _NaNPlugin:
    @hookimpl
    def mmu_bench_methods(self):
        return [NaNMethod]


@pytest.fixture()
def nan_plugin():
    plugins.reset()
    pm = plugins.get_plugin_manager()
    pm.register(_NaNPlugin(), name="test-nan")
    yield
    pm.unregister(name="test-nan")
    plugins.reset()


def test_divergence_is_recorded_not_crashed(spec, tmp_path, nan_plugin):
    o = run(spec("test_nan", tmp_path))
    doc = json.loads((o.path / "metrics.json").read_text())
    assert doc["status"] == "diverged" and doc["diverged"] is True and doc["divergence"]["step"] == 2
    # metrics of the last finite state (two ascent steps) are recorded
    assert doc["metrics"]["forget.vqa.mcq.acc"] is not None
    again = run(spec("test_nan", tmp_path))
    assert again.reused and again.diverged


def test_hyper_parameters_are_type_checked(spec, tmp_path):
    with pytest.raises(MMUError, match=r"unknown ga hyper-parameter key 'step'\. Did you mean 'steps'\?.*Valid keys: steps, lr"):
        run(spec("ga", tmp_path, hyper={"step": 3}))
    with pytest.raises(MMUError, match="expected an integer, got 'ten'"):
        run(spec("ga", tmp_path, hyper={"steps": "ten"}))
    with pytest.raises(MMUError, match="'brain' is not one of 'auto', 'llm', 'vision', 'all'"):
        run(spec("ga", tmp_path, hyper={"trainable": "brain"}))
    with pytest.raises(MMUError, match="expected a boolean"):
        run(spec("ga", tmp_path, hyper={"lora": "maybe"}))
    assert not any(tmp_path.iterdir())  # nothing written for rejected runs


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mmu_bench.cli", "-q", *args], capture_output=True, text=True,
                          timeout=900, cwd=cwd)


def test_cli_run_prints_reference_rows_and_arrows(cache_dir, tmp_path, baseline_runs):
    r = _cli("run", "--method", "ga", "--size", "20", "--cache-dir", str(cache_dir), *SMALL_RECIPE_ARGS,
             "--out", str(tmp_path), "--config", str(_yaml(tmp_path, "steps: 40\n")),
             "--max-new-tokens", str(FAST_GEN))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("synthetic / tiny-llava / setting visual / static / forget_10 / seed 0")
    lines = lines[1:]
    assert "forget.vqa.mcq.acc ↓" in lines[0] and "retain.vqa.mcq.acc ↑" in lines[0]
    rows = [line.split("|")[1].strip() for line in lines[2:6]]
    assert rows == ["finetuned", "retrain", "retrain_visual (oracle)", "ga"]
    assert "forget.qa.mcq.acc ↑" in lines[0]  # visual: text knowledge must survive


def _yaml(tmp_path, text):
    p = tmp_path / "hp.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("args, message", [
    (["--method", "gaa"], "unknown method 'gaa'. Did you mean 'ga'?"),
    (["--method", "ga", "--set", "stepz=3"], "unknown ga hyper-parameter key 'stepz'"),
    (["--method", "ga", "--set", "lr=fast"], "expected a number, got 'fast'"),
    (["--method", "ga", "--forget-split", "forget_7"], "unknown forget split 'forget_7'"),
    (["--method", "ga", "--benchmark", "mlu"], "unknown benchmark 'mlu'"),
    (["--method", "ga", "--set", "steps"], "is not key=value"),
    (["--method", "cvf", "--setting", "full"], "method 'cvf' supports setting visual only, not 'full': CVF freezes the LLM"),
    (["--method", "ga", "--setting", "fulll"], "unknown setting 'fulll'. Did you mean 'full'?"),
    (["--method", "ga", "--seed", "-5"], "-5 is negative"),
])
def test_cli_bad_input_is_one_clear_line(args, message, tmp_path, capsys):
    from mmu_bench.cli import main

    try:  # in-process: the console script itself is exercised by the slow tier's table test
        rc = main(["-q", "run", *args, "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "c")])
    except SystemExit as e:  # argparse's own type errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_cli_unwritable_out_dir(tmp_path, cache_dir):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = _cli("run", "--method", "ga", "--size", "20", "--out", str(blocker / "runs"), "--cache-dir", str(cache_dir),
             *SMALL_RECIPE_ARGS)
    assert r.returncode == 2 and "is not writable" in r.stderr and "Traceback" not in r.stderr


def test_bad_config_file_names_the_file(tmp_path):
    bad = _yaml(tmp_path, "steps: [1\n")
    r = _cli("run", "--method", "ga", "--config", str(bad), "--out", str(tmp_path / "runs"))
    assert r.returncode == 2 and str(bad) in r.stderr and "not valid YAML" in r.stderr


def test_example_third_party_plugin_runs_through_the_cli(cache_dir, tmp_path):
    example = Path(__file__).resolve().parent.parent / "examples" / "mmu-bench-example-plugin"
    try:
        importlib.metadata.distribution("mmu-bench-example-plugin")
    except importlib.metadata.PackageNotFoundError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--no-build-isolation", "-e", str(example)], check=True, timeout=300)
    r = _cli("run", "--method", "example_noise", "--set", "sigma=0.5", "--size", "20", "--cache-dir",
             str(cache_dir), *SMALL_RECIPE_ARGS, "--out", str(tmp_path), "--max-new-tokens", str(FAST_GEN))
    assert r.returncode == 0, r.stderr
    assert "example_noise" in r.stdout
    doc = json.loads(next(tmp_path.rglob("metrics.json")).read_text())
    assert doc["status"] == "finished"
    # large noise on the vision tower destroys image recognition but not text answers
    assert doc["metrics"]["forget.vqa.mcq.acc"] < 0.9 and doc["metrics"]["forget.qa.mcq.acc"] >= 0.9
    off = _cli("--no-plugins", "run", "--method", "example_noise", "--out", str(tmp_path / "x"))
    assert off.returncode == 2 and "unknown method 'example_noise'" in off.stderr


class _SeenGADiff(GradientMethod):
    """ga_diff that records which forget modalities it was handed (test only)."""

    name = "test_seen_ga_diff"
    description = "ga_diff recording the modalities of its forget request"
    uses_retain = True

    def unlearn(self, model, request, context):
        context.log("received_modalities", sorted({it["modality"] for it in request.forget}))
        context.log("received_entities", sorted({it["entity_id"] for it in request.forget}))
        return super().unlearn(model, request, context)

    def loss(self, model, forget, retain, context):
        from mmu_bench.method import per_example_nll

        return -per_example_nll(model, forget).mean() + per_example_nll(model, retain).mean()


class _SeenPlugin:
    @hookimpl
    def mmu_bench_methods(self):
        return [_SeenGADiff]


def test_settings_decide_what_a_method_receives_and_how_it_is_scored(spec, tmp_path, capsys):
    from mmu_bench.cli import main

    plugins.reset()
    pm = plugins.get_plugin_manager()
    pm.register(_SeenPlugin(), name="test-seen")
    try:
        visual = run(spec("test_seen_ga_diff", tmp_path, setting="visual", hyper={"steps": 10}))
        full = run(spec("test_seen_ga_diff", tmp_path, setting="full", hyper={"steps": 10}))
    finally:
        pm.unregister(name="test-seen")
        plugins.reset()
    assert visual.path != full.path and visual.path.parts[-5] == "visual" and full.path.parts[-5] == "full"
    # what the method was handed, not just the flag: visual = image questions only
    assert visual.doc["method"]["received_modalities"] == ["vqa"]
    assert full.doc["method"]["received_modalities"] == ["qa", "vqa"]
    assert visual.doc["method"]["received_entities"] == full.doc["method"]["received_entities"]
    # trainable=auto followed the setting: the vision side in visual, the LLM in full
    assert visual.doc["method"]["trainable"] == "vision" and full.doc["method"]["trainable"] == "llm"
    for o, name in ((visual, "visual"), (full, "full")):
        cfg = json.loads((o.path / "config.json").read_text())
        assert cfg["spec"]["setting"] == name and cfg["setting"]["oracle"] == ("retrain_visual" if name == "visual" else "retrain")
    # the two tables score forget.qa in opposite directions
    from mmu_bench import leaderboard as lb

    groups = lb.aggregate(lb.collect([tmp_path]))
    md = {g.setting.name: lb.render([g], "md") for g in groups}
    assert "forget.qa.mcq.acc ↑" in md["visual"] and "forget.qa.mcq.acc ↓" in md["full"]
