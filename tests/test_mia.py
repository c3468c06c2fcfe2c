"""Membership inference: attack scores, AUC sign convention, PrivLeak, and the mia protocol."""

from __future__ import annotations

import pytest

from mmu_bench.mia import ATTACKS, mia_aucs, mia_metrics, privleak
from mmu_bench.run import RunSpec, run
from mmu_bench.tasks.synthetic.benchmark import eval_tasks

from conftest import SMALL_ZOO


@pytest.fixture(scope="module")
def mia_items(small_world):
    t = eval_tasks(small_world, "forget_10", splits=("forget", "holdout"))
    return t["forget"], t["holdout"]


def test_finetuned_members_are_detected_and_oracle_is_near_chance(small_zoo, mia_items):
    members, nonmembers = mia_items
    ft = mia_aucs(small_zoo.load("finetuned"), members, nonmembers)
    oracle = mia_aucs(small_zoo.load("retrain", "forget_10"), members, nonmembers)
    assert set(ft) == {f"{m}.{a}" for m in ("vqa", "qa") for a in ATTACKS}
    assert ft["vqa.loss"] >= 0.9 and ft["qa.loss"] >= 0.9  # one sign convention: member -> high
    assert 0.2 <= oracle["vqa.loss"] <= 0.8
    assert all(0.0 <= v <= 1.0 for v in ft.values())


def test_privleak_definition():
    assert privleak(0.75, 0.5) == pytest.approx(50.0)
    assert privleak(0.25, 0.5) == pytest.approx(-50.0)
    m = mia_metrics({"vqa.loss": 0.6}, {"vqa.loss": 0.5}, {"vqa.loss": 0.4})
    assert m == {"mia.vqa.loss.auc": 0.6, "mia.vqa.loss.privleak": pytest.approx(20.0),
                 "mia.vqa.loss.privleak_visual": pytest.approx(50.0)}


def test_mia_protocol_reports_auc_and_privleak(cache_dir, small_zoo, tmp_path):
    o = run(RunSpec(method="ga", protocol="mia", world_size=20, cache_dir=str(cache_dir), out=str(tmp_path),
                    progress=False, max_new_tokens=24,
                    zoo=dict(SMALL_ZOO)))
    m = o.metrics
    for mod in ("vqa", "qa"):
        for attack in ATTACKS:
            assert 0.0 <= m[f"mia.{mod}.{attack}.auc"] <= 1.0
            assert f"mia.{mod}.{attack}.privleak" in m and f"mia.{mod}.{attack}.privleak_visual" in m
    oracle = o.doc["protocol"]["oracle_auc"]
    assert oracle["finetuned"]["vqa.loss"] > m["mia.vqa.loss.auc"]  # unlearning lowered membership signal
    assert "forget.vqa.mcq.acc" in m  # the static metrics come too
    # per-sample attack scores are saved: every AUC can be recomputed from samples.jsonl
    import json

    from sklearn.metrics import roc_auc_score

    recs = [json.loads(line) for line in (o.path / "samples.jsonl").read_text().splitlines()]
    mia = [r for r in recs if r["split"] == "mia"]
    for mod in ("vqa", "qa"):
        rs = [r for r in mia if r["modality"] == mod]
        assert {r["member"] for r in rs} == {True, False}
        for attack in ("loss", "mink40", "minkpp20"):
            auc = roc_auc_score([r["member"] for r in rs], [r["scores"][attack] for r in rs])
            assert auc == pytest.approx(m[f"mia.{mod}.{attack}.auc"], abs=1e-5)


def test_forget_quality_compares_distributions():
    from mmu_bench.forget_quality import compare

    rng = __import__("numpy").random.default_rng(0)
    ids = [f"i{k}" for k in range(200)]
    a = dict(zip(ids, rng.lognormal(0, 1, 200)))
    same = compare(a, dict(a))
    assert same["ks_p"] == 1.0 and same["js"] == 1.0
    far = compare(a, dict(zip(ids, rng.lognormal(3, 1, 200))))
    assert far["ks_p"] < 1e-6 and far["js"] < 0.5 and far["ks_log10p"] < -6


class _KnownLogprobs:
    """An adapter stand-in whose per-token log-probs (and mu, sigma) are fixed by hand."""

    def __init__(self, table):
        self.table = table  # answer -> (logprobs incl. eos, mu, sigma)

    def encode(self, items):
        return [it["answer"] for it in items]

    def token_logprobs(self, encoded, batch_size=64, with_distribution=False):
        import torch

        out = []
        for answer in encoded:
            lp, mu, sigma = (torch.tensor(v, dtype=torch.float64) for v in self.table[answer])
            out.append({"logprobs": lp, "mu": mu, "sigma": sigma})
        return out


def test_attack_scores_match_hand_computation():
    import math
    import zlib

    from mmu_bench.mia import attack_scores

    # 10 answer tokens + eos (the eos is excluded from every attack)
    lp = [-0.1, -2.0, -0.5, -3.0, -0.2, -1.0, -0.3, -4.0, -0.4, -0.6, -9.0]
    mu = [-1.0] * 11
    sigma = [0.5] * 11
    answer = "Zorblat Quimby"
    s = attack_scores(_KnownLogprobs({answer: (lp, mu, sigma)}), [{"answer": answer}])
    toks = lp[:-1]
    assert s["loss"][0] == pytest.approx(sum(toks) / 10)  # -mean NLL
    assert s["zlib"][0] == pytest.approx(sum(toks) / len(zlib.compress(answer.encode())))
    assert s["mink10"][0] == pytest.approx(-4.0)  # lowest 1 of 10
    assert s["mink20"][0] == pytest.approx((-4.0 - 3.0) / 2)
    assert s["mink40"][0] == pytest.approx((-4.0 - 3.0 - 2.0 - 1.0) / 4)
    z = sorted((t - (-1.0)) / 0.5 for t in toks)
    assert s["minkpp10"][0] == pytest.approx(z[0])
    assert s["minkpp20"][0] == pytest.approx(sum(z[:2]) / 2)
    assert s["minkpp40"][0] == pytest.approx(sum(z[:4]) / 4)
    assert math.isclose(s["minkpp40"][0], (-6.0 - 4.0 - 2.0 + 0.0) / 4)


def test_mia_bad_input_is_clear():
    from mmu_bench.errors import MMUError
    from mmu_bench.protocols import MIAProtocol

    with pytest.raises(MMUError, match="unknown attack 'minkk20'. Did you mean 'mink20'"):
        MIAProtocol(attacks="loss,minkk20")
    fake = _KnownLogprobs({"a": ([-1.0, -1.0], [-1.0, -1.0], [1.0, 1.0])})
    with pytest.raises(MMUError, match="the holdout split is empty"):
        mia_aucs(fake, [{"answer": "a", "modality": "vqa"}], [])
