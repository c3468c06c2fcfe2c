"""The shared stopping rule (--stop-at): every method stops on validation items, never on reported ones."""

from __future__ import annotations

import json

import pytest

from conftest import SMALL_RECIPE, SMALL_ZOO
from mmu_bench.errors import MMUError
from mmu_bench.protocols import make_context
from mmu_bench.stopping import StopRule
from mmu_bench.tasks.synthetic.plugin import SyntheticBenchmark

SPLIT = "forget_10"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bench(small_zoo, cache_dir):
    small_zoo.path("finetuned")
    return SyntheticBenchmark(size=20, cache_dir=cache_dir, recipe=SMALL_RECIPE, progress=False, device="cpu")


def _unlearn(bench, method, rule, setting=None):
    from mmu_bench.protocols import forget_request
    from mmu_bench.settings import get_setting

    bench.setting = get_setting(setting or "visual")
    bench.stop_rule = rule
    try:
        model = bench.load("finetuned", SPLIT)
        ctx = make_context(bench, SPLIT, 0, progress=False)
        method.unlearn(model, forget_request(bench, SPLIT), ctx)
    finally:
        bench.setting, bench.stop_rule = None, None
    return model, ctx


def test_rule_parses_and_names_what_is_wrong():
    assert StopRule.parse("forget=0.3") == StopRule(0.3, 5, 200)
    assert StopRule.parse("forget=0.25,every=2,budget=50") == StopRule(0.25, 2, 50)
    assert StopRule.parse("forget=0.3").tag == "forget0.3e5b200"
    with pytest.raises(MMUError, match="target is required"):
        StopRule.parse("every=3")
    with pytest.raises(MMUError, match="'x' is not a number"):
        StopRule.parse("forget=x")
    with pytest.raises(MMUError, match="expected forget=<acc>"):
        StopRule.parse("forget=0.3,steps=4")
    with pytest.raises(MMUError, match=r"must be in \[0, 1\]"):
        StopRule(1.5)


def test_a_baseline_stops_at_the_target_on_validation_items_only(bench):
    from methods.ga import GA

    rule = StopRule(target=0.3, every=5, budget=100)
    _, ctx = _unlearn(bench, GA(), rule)
    logs = ctx.logs
    assert logs["stop_rule"]["source"] == "run" and logs["stop_target_reached"] is True
    assert logs["stopped_early"] and logs["steps"] < 100 and logs["steps"] % 5 == 0
    trajectory = logs["validation_forget_acc"]
    assert trajectory[-1][0] == logs["steps"] and trajectory[-1][1] <= 0.3 < trajectory[0][1]
    # the rule read fresh renderings, none of them a reported item
    val_ids = {it["id"] for it in ctx.validation["forget"]}
    reported = {it["id"] for role in bench.tasks(SPLIT).values() for it in role}
    assert val_ids and not val_ids & reported


def test_budget_bounds_an_unreachable_target(bench):
    from methods.ga import GA

    _, ctx = _unlearn(bench, GA(lr=1e-6), StopRule(target=0.0, every=2, budget=6))
    assert ctx.logs["steps"] == 6 and ctx.logs["stop_target_reached"] is False
    assert [t[0] for t in ctx.logs["validation_forget_acc"]] == [2, 4, 6]


def test_full_setting_also_waits_for_the_text_route(bench):
    from methods.ga import GA

    _, ctx = _unlearn(bench, GA(), StopRule(target=0.3, every=5, budget=100), setting="full")
    assert ctx.validation["forget_text"] and all(it["modality"] == "qa" for it in ctx.validation["forget_text"])
    last = ctx.logs["validation_forget_acc"][-1]
    assert len(last) == 3 and max(last[1:]) <= 0.3  # (step, image acc, text acc)


def test_cvf_uses_the_same_rule(bench):
    from methods.cvf import CVF

    _, ctx = _unlearn(bench, CVF(steps=40), StopRule(target=0.3, every=4, budget=40))
    assert ctx.logs["stop_rule"] == {"target": 0.3, "every": 4, "budget": 40, "source": "run"}
    assert all(step % 4 == 0 for step, *_ in ctx.logs["validation_forget_acc"])
    _, own = _unlearn(bench, CVF(steps=40, eval_every=10), None)
    assert own.logs["stop_rule"]["source"] == "cvf" and own.logs["stop_rule"]["every"] == 10


def test_run_records_the_rule_in_its_own_directory(small_zoo, cache_dir, tmp_path):
    from mmu_bench.run import RunSpec, run

    o = run(RunSpec(method="ga", world_size=20, cache_dir=str(cache_dir), out=str(tmp_path), progress=False,
                    zoo=dict(SMALL_ZOO),
                    stop_at="forget=0.3,every=5,budget=100"))
    assert o.path.parts[-3] == "static-stopforget0.3e5b100"
    assert o.metrics["stop.reached"] == 1.0 and o.metrics["stop.steps"] == o.doc["method"]["steps"]
    doc = json.loads((o.path / "metrics.json").read_text())
    assert doc["stop_rule"]["honoured"] and "never on reported items" in doc["stop_rule"]["rule"]


def test_tune_is_seeded_resumable_and_scores_validation_only(small_zoo, cache_dir, tmp_path):
    import yaml

    from mmu_bench.tuning import tune

    bench = {"world_size": 20, "cache_dir": str(cache_dir), "progress": False,
             "zoo": dict(SMALL_ZOO)}
    rule = StopRule(target=0.3, every=5, budget=40)
    first = tune("ga", "visual", trials=2, seed=0, stop=rule, out=tmp_path / "a", benchmark_kwargs=bench, progress=False)
    assert [t["number"] for t in first.trials] == [0, 1]
    assert all(set(t) >= {"params", "value", "retain_val_acc", "forget_val_acc", "reached"} for t in first.trials)
    best = max(first.trials, key=lambda t: t["value"])
    assert first.best["number"] == best["number"]
    cfg = yaml.safe_load(first.config_path.read_text())
    assert set(cfg) == {"lr"} and cfg["lr"] == pytest.approx(best["params"]["lr"], rel=1e-3)
    # resuming adds only the missing trial, and the same seed draws the same first trials
    more = tune("ga", "visual", trials=3, seed=0, stop=rule, out=tmp_path / "a", benchmark_kwargs=bench, progress=False)
    assert [t["params"] for t in more.trials[:2]] == [t["params"] for t in first.trials] and len(more.trials) == 3
    again = tune("ga", "visual", trials=2, seed=0, stop=rule, out=tmp_path / "b", benchmark_kwargs=bench, progress=False)
    assert [t["value"] for t in again.trials] == [t["value"] for t in first.trials]
    with pytest.raises(MMUError, match="another stop_rule"):
        tune("ga", "visual", trials=4, seed=0, stop=StopRule(0.2), out=tmp_path / "a", benchmark_kwargs=bench,
             progress=False)
    with pytest.raises(MMUError, match="declares no search space"):
        tune("finetuned", "visual", trials=1, out=tmp_path / "c", benchmark_kwargs=bench)
    # two methods in two worker processes choose what a serial run chooses
    from mmu_bench.tuning import tune_many

    ga, npo = tune_many(["ga", "npo"], jobs=2, setting="visual", trials=2, seed=0, stop=rule, out=tmp_path / "d",
                        benchmark_kwargs=bench, log=lambda m: None)
    assert (ga.method, npo.method) == ("ga", "npo")
    assert [t["value"] for t in ga.trials] == [t["value"] for t in first.trials]


def test_matched_retention_interpolates_on_validation_and_leaves_the_model_as_it_was(bench):
    import torch

    from methods.ga import GA
    from mmu_bench.evaluate import EvalConfig
    from mmu_bench.matched import matched_retention

    model, ctx = _unlearn(bench, GA(), StopRule(target=0.3, every=5, budget=100))
    before = {n: p.detach().clone() for n, p in model.model.named_parameters()}
    finetuned = ctx.reference("finetuned")
    metrics, details = matched_retention(model, finetuned, ctx.validation["retain"], bench.tasks(SPLIT), EvalConfig(),
                                         ratio=0.95)
    assert all(torch.equal(p, before[n]) for n, p in model.model.named_parameters())
    curve = dict(map(tuple, details["curve"]))
    # a = 0 is the finetuned model; the chosen a is the largest that keeps the goal on validation
    assert curve[0.0] >= details["goal_val_retain_acc"]
    a = metrics["matched.alpha"]
    assert curve[a] >= details["goal_val_retain_acc"] and all(v < details["goal_val_retain_acc"]
                                                              for x, v in curve.items() if x > a)
    assert a < 1.0 and curve[1.0] < curve[0.0]  # this GA run loses retention, so the match backs off
    # at matched retention the forget accuracy lies between the method's and the finetuned model's
    assert metrics["matched.forget.vqa.mcq.acc"] >= 0.0 and metrics["matched.retain.vqa.mcq.acc"] > 0.8


def test_fronts_from_trials_and_the_leaderboard_command(tmp_path, capsys):
    from mmu_bench.cli import main
    from mmu_bench.fronts import front_rows, plot
    from mmu_bench.tuning import front_area, pareto_front

    assert pareto_front([(0.2, 0.9), (0.5, 0.8), (0.4, 0.7), (1.0, 0.3), (0.5, 0.85)]) == \
        [(0.2, 0.9), (0.5, 0.85), (1.0, 0.3)]
    assert front_area([(1.0, 1.0)]) == 1.0 and front_area([(0.5, 1.0), (1.0, 0.5)]) == pytest.approx(0.75)
    trial = lambda n, f, r: {"number": n, "params": {"lr": 1e-4 * (n + 1)}, "value": r, "forget_val_acc": f,
                             "retain_val_acc": r, "reached": f <= 0.3}
    doc = {"method": "ga", "setting": "visual", "split": "forget_10", "trials": 2, "seed": 0,
           "search": {"lr": "log-uniform[2e-05, 0.002]"}, "stop_rule": {"target": 0.3}, "objective": "o",
           "all": [trial(0, 0.25, 0.6), trial(1, 1.0, 1.0)],
           "reference": {"finetuned": {"forget_val_acc": 1.0, "retain_val_acc": 1.0},
                         "retrain_visual": {"forget_val_acc": 0.2, "retain_val_acc": 1.0}}}
    doc["best"] = doc["all"][0]
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "ga-visual-forget_10.trials.json").write_text(json.dumps(doc))
    rows = front_rows([doc])["visual"]
    assert rows[0]["front"] == [(0.0, 1.0), (1.0, 0.6)] and rows[0]["area"] == pytest.approx(0.6)
    assert [p.name for p in plot({"visual": rows}, tmp_path / "plots")] == ["fronts-visual.png"]
    run = tmp_path / "runs"
    from test_leaderboard import make_run, metrics

    make_run(run, "ga", 0, metrics())
    assert main(["leaderboard", str(run), "--tuning", str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    assert "Trade-off fronts / setting visual" in out and "| ga | 2 | 2 | 0.600 |" in out
    assert "Tuning: 2 trials per method" in out


def test_a_labelled_run_names_its_row(small_zoo, cache_dir, tmp_path):
    from mmu_bench.leaderboard import collect
    from mmu_bench.run import RunSpec, run

    o = run(RunSpec(method="ga", world_size=20, cache_dir=str(cache_dir), out=str(tmp_path), progress=False,
                    zoo=dict(SMALL_ZOO),
                    hyper={"lr": 1e-4, "steps": 3}, label="tuned"))
    assert o.path.parts[-4] == "ga-tuned"
    (rec,) = collect([tmp_path])
    assert rec.method == "ga-tuned" and rec.method_name == "ga"
    assert json.loads((o.path / "config.json").read_text())["method"]["hyper"]["lr"] == 1e-4
