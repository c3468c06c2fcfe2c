"""The evaluator on the small zoo: metric keys, scoring rules, determinism."""

from __future__ import annotations

import pytest

from mmu_bench.metrics import direction as metric_direction
from mmu_bench.evaluate import (EvalConfig, evaluate, parse_letter, rouge,
                                score_cloze, score_mcq_generate)
from mmu_bench.tasks.synthetic.benchmark import eval_tasks


@pytest.fixture(scope="module")
def forget_tasks(small_world):
    return eval_tasks(small_world, "forget_10", splits=("forget", "test"))


def test_metric_keys_and_sample_records(finetuned, forget_tasks):
    metrics, samples = evaluate(finetuned, forget_tasks)
    for key in ("forget.vqa.mcq.acc", "forget.qa.mcq.acc", "forget.vqa.gen.rougeL", "forget.qa.cloze.acc",
                "test.vqa.mcq.acc", "forget.vqa.mcq.prob", "forget.vqa.gen.rouge1", "forget.vqa.gen.rouge2"):
        assert key in metrics and 0.0 <= metrics[key] <= 1.0
    n = sum(len(v) for v in forget_tasks.values())
    assert len(samples) == n and len({(s["split"], s["id"]) for s in samples}) == n
    mcq = [s for s in samples if s["kind"] == "mcq"]
    assert all(len(s["option_logprobs"]) == 4 for s in mcq)
    # acc is exactly the mean of the per-sample correctness
    vqa = [s for s in mcq if s["split"] == "forget" and s["modality"] == "vqa"]
    assert metrics["forget.vqa.mcq.acc"] == pytest.approx(sum(s["correct"] for s in vqa) / len(vqa), abs=1e-6)


def test_evaluation_is_deterministic(finetuned, forget_tasks):
    a, sa = evaluate(finetuned, forget_tasks)
    b, sb = evaluate(finetuned, forget_tasks)
    assert a == b and sa == sb


def test_finetuned_generates_its_facts(finetuned, forget_tasks):
    metrics, samples = evaluate(finetuned, {"forget": forget_tasks["forget"]})
    assert metrics["forget.qa.cloze.acc"] >= 0.9
    assert metrics["forget.qa.gen.rougeL"] >= 0.9
    gen = [s for s in samples if s["kind"] == "gen" and s["modality"] == "qa"]
    assert any(s["output"] == s["answer"] for s in gen)


def test_cloze_rule_is_case_insensitive_containment(finetuned, small_world):
    item = next(it for it in small_world.split_items("forget_10") if it["kind"] == "cloze")

    class Fake:
        def generate(self, items, max_new_tokens, batch_size):
            return [f"well, {items[0]['answer'].upper()} I think", "something else"]

    out = score_cloze(Fake(), [item, item], EvalConfig())
    assert [o["correct"] for o in out] == [True, False]


def test_generate_mode_parses_the_first_letter(small_world):
    items = [it for it in small_world.split_items("forget_10") if it["kind"] == "mcq"][:3]
    letters = "ABCD"

    class Fake:
        def generate(self, its, max_new_tokens, batch_size):
            assert "A: " in its[0]["question"] and "D: " in its[0]["question"]
            return [f"The answer is {letters[its[0]['answer_index']]}.", "no idea", "B"]

    out = score_mcq_generate(Fake(), items, EvalConfig(mcq_mode="generate"))
    assert out[0]["correct"] and out[1]["pred"] == -1 and not out[1]["correct"]
    assert parse_letter("(C) because") == 2 and parse_letter("xyz") == -1


def test_mcq_generate_mode_runs_on_the_model(finetuned, forget_tasks):
    items = [it for it in forget_tasks["forget"] if it["kind"] == "mcq"][:8]
    metrics, _ = evaluate(finetuned, {"forget": items}, EvalConfig(mcq_mode="generate", max_new_tokens=5))
    assert "forget.vqa.mcq.acc" in metrics and "forget.vqa.mcq.prob" not in metrics


def test_rouge_uses_stemming():
    s = rouge().score("Zork lives in Bim and works as a farmer.", "zork living in bim, works as farmers")
    assert s["rougeL"].fmeasure > 0.6


def test_metric_directions():
    assert metric_direction("forget.vqa.mcq.acc") == "down"
    assert metric_direction("test.vqa.mcq.acc") == "down"
    assert metric_direction("forget.qa.mcq.acc", "visual") == "up"  # text knowledge must survive visual unlearning
    assert metric_direction("forget.qa.mcq.acc", "full") == "down"  # ... and must go in the full setting
    assert metric_direction("forget.vqa.mcq.acc", "full") == "down"
    assert metric_direction("mia.vqa.loss.privleak_visual") == "zero"
    assert metric_direction("forget_quality.ks_p_visual") == "up"
    assert metric_direction("retain.vqa.gen.rougeL") == "up"
    assert metric_direction("relearn.acc_after_relearn") == "down"  # forget acc of the held-back entities
    assert metric_direction("continual.rebound_max") == "down"


def test_bad_mcq_mode_is_a_clear_error():
    from mmu_bench.errors import MMUError

    with pytest.raises(MMUError, match="mcq mode 'letters' unknown"):
        EvalConfig(mcq_mode="letters")
