"""The continual protocol: requests in sequence, state kept, curves, summary keys and a plot."""

from __future__ import annotations

import json

import pytest

from mmu_bench.errors import MMUError
from mmu_bench.protocols import continual_summary
from mmu_bench.run import RunSpec, run

from conftest import SMALL_ZOO


def test_summary_keys_from_curves():
    curves = {
        "forget": [[0.2], [0.5, 0.3], [0.4, 0.25, 0.2]],  # request 1 rebounds to 0.5 (+0.3)
        "retain": [0.9, 0.8, 0.6],
        "real": [1, 1, 1], "utility": [1, 1, 1],
    }
    s = continual_summary(curves, finetuned_retain_acc=1.0)
    assert s["continual.forget_acc_mean"] == pytest.approx((0.4 + 0.25 + 0.2) / 3, abs=1e-6)
    assert s["continual.retention_final"] == pytest.approx(0.6)
    assert s["continual.retention_auc"] == pytest.approx((0.9 + 0.8 + 0.6) / 3)
    assert s["continual.rebound_max"] == pytest.approx(0.3)


def test_continual_cvf_run(cache_dir, small_zoo, tmp_path):
    spec = RunSpec(method="cvf", protocol="continual", protocol_options={"requests": 2}, world_size=20,
                   cache_dir=str(cache_dir), out=str(tmp_path), progress=False, max_new_tokens=24,
                   zoo=dict(SMALL_ZOO))
    o = run(spec)
    assert o.path.parts[-3] == "continual-requests2"
    m = o.metrics
    for key in ("continual.forget_acc_mean", "continual.retention_final", "continual.retention_auc",
                "continual.rebound_max"):
        assert 0.0 <= m[key] <= 1.0
    assert m["continual.forget_acc_mean"] <= 0.5  # both requests forgotten
    assert m["forget.qa.mcq.acc"] == o.reference["finetuned"]["forget.qa.mcq.acc"]
    doc = json.loads((o.path / "metrics.json").read_text())
    curves = doc["protocol"]["curves"]
    assert [len(c) for c in curves["forget"]] == [1, 2] and len(curves["retain"]) == 2
    # the last point is the final evaluation's: the same model on the same items
    assert curves["retain"][-1] == pytest.approx(m["retain.vqa.mcq.acc"], abs=1e-6)
    assert sum(curves["forget"][-1]) / 2 == pytest.approx(m["forget.vqa.mcq.acc"], abs=1e-6)
    assert len(doc["protocol"]["requests"]) == 2
    # the method kept its state: the second request protected more inputs (null space rebuilt)
    assert "null_fraction" in doc["method"]["request0"] and "null_fraction" in doc["method"]["request1"]
    png = o.path / "continual.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"


def test_too_many_requests_is_a_clear_error(cache_dir, small_zoo, tmp_path):
    spec = RunSpec(method="ga", protocol="continual", protocol_options={"requests": 5}, world_size=20,
                   cache_dir=str(cache_dir), out=str(tmp_path), progress=False,
                   zoo=dict(SMALL_ZOO))
    with pytest.raises(MMUError, match="5 requests but forget_10 has only 2 entities"):
        run(spec)


def test_relearn_attack_reports_recovery(cache_dir, small_zoo, tmp_path):
    spec = RunSpec(method="ga", protocol="relearn", protocol_options={"relearn_steps": 20}, world_size=20,
                   cache_dir=str(cache_dir), out=str(tmp_path), progress=False, max_new_tokens=24,
                   zoo=dict(SMALL_ZOO))
    o = run(spec)
    m = o.metrics
    assert o.path.parts[-3] == "relearn-relearn_steps20"
    assert m["relearn.acc_finetuned"] >= 0.95 > m["relearn.acc_after_unlearn"]
    # the attack re-teaches its own entities; recovery is then measured on the others only
    assert m["relearn.acc_attack_entities"] >= 0.5
    assert -1.0 <= m["relearn.recovery"] <= 1.5
    held = set(o.doc["protocol"]["held_back_entities"])
    assert held and not held & set(o.doc["protocol"]["attack_entities"])
