"""Full runs on the real benchmarks' layouts (MLLMU-Bench, CLEAR fixtures written from the small
world) and with ``hf:`` models, through the same zoo / protocol / results path as the default.

The zoo recipes here are tiny (tens of steps): these tests check that every stage connects and
that what each stage promises holds (reference rows, metric keys, the oracle's data), not how
well a 40-step model learns.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from mmu_bench.errors import MMUError
from mmu_bench.families import build_tiny
from mmu_bench.run import RunSpec, run
from mmu_bench.tasks.clear import write_clear_fixture
from mmu_bench.tasks.synthetic.mllmu_export import export_mllmu

TINY_ZOO = {"base_steps": 40, "finetune_steps": 30, "batch_size": 16, "context_share": 0.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory, small_world):
    root = tmp_path_factory.mktemp("realdata")
    return {"mllmu": export_mllmu(small_world, root / "mllmu"),
            "clear": write_clear_fixture(small_world, root / "clear")}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("realcache")


def _spec(tmp_path, cache, **kw) -> RunSpec:
    return RunSpec(out=str(tmp_path / "runs"), cache_dir=str(cache), progress=False, device="cpu",
                   zoo=dict(TINY_ZOO), max_new_tokens=8, **kw)


@pytest.mark.slow  # integration: trains or spawns processes (the fast tier skips it)
@pytest.mark.parametrize("benchmark", ["mllmu", "clear"])
def test_cvf_runs_end_to_end_on_real_layouts(benchmark, data, cache, tmp_path):
    spec = _spec(tmp_path, cache, method="cvf", benchmark=benchmark, data=str(data[benchmark]),
                 forget_split="forget_10", hyper={"steps": 4, "stop_rule": False})
    out = run(spec)
    assert set(out.reference) == {"finetuned", "retrain", "retrain_visual"}
    assert "forget.vqa.mcq.acc" in out.metrics and "retain.vqa.mcq.acc" in out.metrics
    assert all(v == v for k, v in out.metrics.items() if k.endswith(".acc"))  # no NaN accuracies
    doc = json.loads((out.path / "metrics.json").read_text())
    assert doc["status"] == "finished"
    cfg = json.loads((out.path / "config.json").read_text())
    assert cfg["benchmark"]["benchmark"] == benchmark
    # The retrain oracle of a real benchmark trains on its retain config only.
    from mmu_bench.plugins import get_registry
    from mmu_bench.run import make_benchmark

    bench = make_benchmark(get_registry().get("benchmarks", benchmark), spec)
    meta = json.loads((bench.zoo.path("retrain", "forget_10") / "mmu_manifest.json").read_text())
    assert meta["examples"] == len(bench.world.split_items(bench.world.retain_split("forget_10")))


def test_real_benchmark_errors(data, cache, tmp_path):
    with pytest.raises(MMUError, match="needs --data"):
        run(_spec(tmp_path, cache, method="ga", benchmark="mllmu"))
    with pytest.raises(MMUError, match="forget_1"):  # CLEAR's splits are forget_1 / 5 / 10
        run(_spec(tmp_path, cache, method="ga", benchmark="clear", data=str(data["clear"]),
                  forget_split="forget_15"))
    with pytest.raises(MMUError, match="draws its own world"):
        run(_spec(tmp_path, cache, method="ga", data=str(data["mllmu"])))


@pytest.mark.slow  # integration: trains or spawns processes (the fast tier skips it)
@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_hf_model_through_the_zoo_and_a_run(family, data, cache, tmp_path, small_world):
    """``--model hf:<folder>`` is the zoo's base: fine-tuned into finetuned / oracles, then
    unlearned and evaluated like the tiny default."""
    folder = build_tiny(family, tmp_path / family, corpus=small_world.corpus())
    spec = _spec(tmp_path, cache, method="ga", benchmark="mllmu", data=str(data["mllmu"]),
                 model=f"hf:{folder}", hyper={"steps": 3})
    out = run(spec)
    assert "forget.qa.mcq.acc" in out.metrics
    from mmu_bench.plugins import get_registry
    from mmu_bench.run import make_benchmark

    bench = make_benchmark(get_registry().get("benchmarks", "mllmu"), spec)
    assert str(bench.zoo.path("base")) == str(folder)  # used in place, not copied
    ft = bench.load("finetuned", "forget_10")
    assert ft.model.config.model_type == family
    base = bench.load("base", "forget_10")
    changed = [n for (n, p), (_, q) in zip(ft.model.named_parameters(), base.model.named_parameters())
               if not torch.equal(p, q)]
    assert changed, "finetuned must differ from its hf: base"
    # The run directory names the model; the finished run is reused.
    again = run(spec)
    assert again.reused and again.metrics == out.metrics


def test_hf_model_missing_folder_is_a_clear_error(tmp_path, cache):
    with pytest.raises(MMUError, match="no-such-model"):
        run(_spec(tmp_path, cache, method="ga", model=f"hf:{tmp_path / 'no-such-model'}"))


@pytest.mark.slow  # integration: trains or spawns processes (the fast tier skips it)
def test_finetune_command_builds_the_oracles(data, cache, tmp_path, capsys):
    from mmu_bench.cli import main

    rc = main(["-q", "finetune", "--benchmark", "clear", "--data", str(data["clear"]), "--forget-splits",
               "forget_5", "--cache-dir", str(cache), "--device", "cpu", "--no-check",
               *[a for k, v in TINY_ZOO.items() for a in ("--zoo-set", f"{k}={v}")]])
    assert rc == 0
    text = capsys.readouterr().out
    for name in ("finetuned", "retrain@forget_5", "retrain_visual@forget_5"):
        assert name in text
    paths = [line.split()[-1] for line in text.splitlines() if "@forget_5" in line]
    assert all(os.path.isdir(p) for p in paths)
