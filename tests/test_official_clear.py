"""CLEAR's official protocol (mmu_bench/official_clear.py, tasks/clear/protocols/official.yaml).

Expected strings and numbers are written by hand from CLEAR's released code
(somvy/multimodal_unlearning @ bb14c96): config/model_config.yaml's llava chat template,
mm/dataset.py's question strategies, mm/eval.py's slicing, mm/calculate_metrics.py's aggregates.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mmu_bench.errors import MMUError
from mmu_bench.evaluate import EvalConfig, evaluate
from mmu_bench.forget_quality import forget_statistics
from mmu_bench.official import load_protocol, protocol_id, style_protocol
from mmu_bench.official_clear import aggregate, model_utility, prompt_texts, task_rows, truth_ratios

PID = "clear/official"


@pytest.fixture(scope="module")
def doc():
    return load_protocol(PID)


@pytest.fixture(scope="module")
def clear(small_world, tmp_path_factory):
    from mmu_bench.tasks.clear import ClearWorld, write_clear_fixture

    return ClearWorld(write_clear_fixture(small_world, tmp_path_factory.mktemp("clear-official") / "clear"))


@pytest.fixture(scope="module")
def tasks(clear):
    from mmu_bench.benchmark import eval_tasks

    return eval_tasks(clear, "forget_10")


def test_chat_template_strings(doc):
    # llava's chat_template: "USER: " + "<image>\n" + text + " ", then "ASSISTANT:" / "ASSISTANT: " + answer + " "
    q, full = prompt_texts(doc, "The name of the person on the image is ", "Ann Lee", True)
    assert q == "USER: <image>\nThe name of the person on the image is  ASSISTANT:"
    assert full == "USER: <image>\nThe name of the person on the image is  ASSISTANT: Ann Lee "
    q, full = prompt_texts(doc, "Who wrote X?", "Bo", False)
    assert (q, full) == ("USER: Who wrote X? ASSISTANT:", "USER: Who wrote X? ASSISTANT: Bo ")
    assert len(doc["question_strategies"]["random_caption"]) == 9
    assert doc["ds_size"] == 300 and doc["max_new_tokens"] == 300


def test_protocol_id_and_training_style(clear):
    assert protocol_id("clear", "official") == PID
    # CLEAR's protocol has no prompt layout to train in: the official training style stays MLLMU's
    assert style_protocol(clear) == "mllmu/official"


def test_task_rows_follow_the_released_configs(tasks, doc, clear):
    rows = task_rows(tasks, doc, seed=0)
    assert set(rows) == {"forget_caption", "forget_facerec", "retain_caption", "retain_facerec",
                         "real_faces", "real_world"}
    fc = rows["forget_caption"]
    # every row of forget10_perturbed, in row order (the fixture's forget10 = the world's forget_15)
    perturbed = clear._read("forget10_perturbed")
    assert [r.item["official"]["row"] for r in fc] == list(range(len(perturbed)))
    assert [r.answer for r in fc] == [p["caption"] for p in perturbed]
    assert [r.base for r in fc] == [p["paraphrased_caption"] for p in perturbed]
    assert [r.perturbed for r in fc] == [p["perturbed_captions"] for p in perturbed]
    assert {r.item["official"]["config"] for r in rows["retain_caption"]} == {"retain_perturbed"}
    fr = rows["forget_facerec"][0]
    assert fr.questions == {ld: "The name of the person on the image is " for ld in ("eval", "base", "perturb")}
    assert fr.answer == fr.base == perturbed[0]["name"] and fr.perturbed == perturbed[0]["perturbed_names"]
    rw = rows["real_world"][0]
    assert rw.questions["eval"] == rw.item["official"]["question"] and rw.perturbed == rw.item["official"]["options"]
    # random_caption: one seeded draw per row and loader, from dataset.py's nine questions
    qs = doc["question_strategies"]["random_caption"]
    assert all(r.questions[ld] in qs for r in fc for ld in r.questions)
    assert len({r.questions["eval"] for r in fc}) > 1
    assert any(r.questions["eval"] != r.questions["base"] for r in fc)  # loaders draw independently
    again = task_rows(tasks, doc, seed=0)["forget_caption"]
    assert [r.questions for r in again] == [r.questions for r in fc]
    assert [r.questions for r in task_rows(tasks, doc, seed=1)["forget_caption"]] != [r.questions for r in fc]


def test_ds_size_keeps_the_first_rows(tasks, doc):
    small = dict(doc, ds_size=3)
    rows = task_rows(tasks, small, seed=0)
    assert [r.item["official"]["row"] for r in rows["forget_caption"]] == [0, 1, 2]


def test_items_without_source_rows_fail_clearly(doc):
    from mmu_bench.official_clear import evaluate_clear

    with pytest.raises(MMUError, match="no evaluation item carries a CLEAR source row"):
        evaluate_clear(None, {"forget": [{"id": "x"}]}, EvalConfig(), doc)


def test_aggregates_match_calculate_metrics(doc):
    recs = [{"avg_gt_loss": 1.0, "avg_paraphrased_loss": 1.0, "average_perturb_loss": [2.0, 3.0],
             "rougeL_recall": 0.5},
            {"avg_gt_loss": 2.0, "avg_paraphrased_loss": 3.0, "average_perturb_loss": [1.0, 2.0],
             "rougeL_recall": 1.0}]
    # one scalar mean over every row and perturbation: (2 + 3 + 1 + 2) / 4 = 2
    tr = truth_ratios([1.0, 3.0], [[2.0, 3.0], [1.0, 2.0]])
    assert tr == pytest.approx([math.e, math.exp(-1)])
    forget = aggregate(doc["tasks"]["forget_caption"], recs)  # eval_log*: prob = mean exp(-gt)
    assert forget["prob"] == pytest.approx((math.exp(-1) + math.exp(-2)) / 2)
    assert forget["truth_ratio"] == pytest.approx(math.exp(-1))  # mean min(R, 1/R) = e^-1 both rows
    assert forget["rougeL_recall"] == 0.75 and forget["n"] == 2
    face = aggregate(doc["tasks"]["retain_facerec"], recs)  # P_true / (P_true + sum P_perturbed)
    p1 = math.exp(-1) / (math.exp(-1) + math.exp(-2) + math.exp(-3))
    p2 = math.exp(-2) / (math.exp(-2) + math.exp(-1) + math.exp(-2))
    assert face["prob"] == pytest.approx((p1 + p2) / 2)
    assert face["truth_ratio"] == pytest.approx((1 - math.exp(-1) + 0) / 2)  # mean max(0, 1 - 1/R)
    per = {n: {"prob": 0.5, "rougeL_recall": 0.25, "truth_ratio": 1.0} for n in doc["tasks"]}
    assert model_utility(per, doc) == pytest.approx(12 / (4 * (2 + 4 + 1)))  # hmean of the 12 kept values
    del per["real_world"]
    assert model_utility(per, doc) is None


@pytest.fixture(scope="module")
def evaluated(small_zoo, tasks, one_torch_thread):
    model = small_zoo.load("finetuned")  # any model: the checks are mechanics and determinism
    few = {k: [it for it in v if it["entity_id"] in sorted({i["entity_id"] for i in v})[:2]]
           for k, v in tasks.items()}
    cfg = EvalConfig(protocol=PID, batch_size=16)
    return model, few, evaluate(model, few, cfg), evaluate(model, few, cfg)


def test_end_to_end_keys_records_and_bit_identical(evaluated, doc):
    model, few, (m1, s1), (m2, s2) = evaluated
    assert json.dumps([m1, s1], sort_keys=True) == json.dumps([m2, s2], sort_keys=True)
    for split, task in (("forget", "caption"), ("forget", "facerec"), ("retain", "caption"),
                        ("retain", "facerec"), ("real", "faces")):
        for metric in ("prob", "rougeL_recall", "truth_ratio", "n"):
            assert f"{split}.vqa.{task}.{metric}" in m1
    rec = next(s for s in s1 if s["task"] == "forget_caption")
    # generation runs on the decoded prompt cut before the answer: no image, trailing space kept
    assert rec["prompt"] == f"USER: \n{rec['questions']['eval']} ASSISTANT: "
    assert rec["avg_gt_loss"] == pytest.approx(rec["gt_loss"] / rec["num_token_gt"], rel=1e-5)
    assert len(rec["average_perturb_loss"]) == len(rec["average_perturb_loss"]) > 0
    # forget quality's statistic = the forget caption truth ratios
    stats = forget_statistics(s1)
    assert set(stats) == {s["id"] for s in s1 if s["task"] == "forget_caption"}
    fc = [s for s in s1 if s["task"] == "forget_caption"]
    expect = truth_ratios([s["avg_paraphrased_loss"] for s in fc], [s["average_perturb_loss"] for s in fc])
    assert np.allclose([stats[s["id"]] for s in fc], expect, rtol=1e-4)


def test_answer_tokens_are_the_full_texts_tail(evaluated, doc):
    from mmu_bench.official_clear import _encode

    model = evaluated[0]
    enc = _encode(model, doc, "Describe the image in detail.", "a red circle", None, {})
    q, full = prompt_texts(doc, "Describe the image in detail.", "a red circle", False)
    ids = model.tokenizer(full)["input_ids"]
    assert enc.prompt_ids + enc.target_ids == ids
    assert len(enc.prompt_ids) == len(model.tokenizer(q)["input_ids"])


def test_columns_are_keys_the_protocol_writes(evaluated):
    from mmu_bench.official_clear import columns
    from mmu_bench.settings import VISUAL

    m1 = evaluated[2][0]
    cols = columns(VISUAL)
    written = [c for c in cols if not c.startswith(("forget_quality.", "clear.", "real.vqa.world."))]
    assert set(written) <= set(m1)  # the rest need the oracle / all four kept tasks / real_world rows


def test_forget_quality_reads_the_caption_truth_ratios(evaluated):
    from mmu_bench.forget_quality import forget_quality_metrics

    s1 = evaluated[2][1]
    stats = forget_statistics(s1)
    same = forget_quality_metrics(s1, stats, {})
    assert same["forget_quality.ks_p"] == 1.0  # identical to the oracle
    shifted = forget_quality_metrics(s1, {k: v * 50 for k, v in stats.items()}, {})
    assert shifted["forget_quality.ks_p"] < 0.05
