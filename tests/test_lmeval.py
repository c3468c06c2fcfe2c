"""lm-eval integration on the small zoo: the language view, the exported world tasks agreeing with
mmu-bench's own evaluator, metric keys, spec parsing and unknown-task errors. All offline."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mmu_bench.errors import MMUError
from mmu_bench.evaluate import evaluate
from mmu_bench.lmeval import (_default_prompt, export_lmeval_tasks, language_model_view, lmeval_utility,
                              parse_spec, run_lmeval, simple_evaluate_adapter)

SPLITS = ("forget_10", "retain_90")


def qa_items(world, split, kind=None):
    return [it for it in world.split_items(split)
            if it["modality"] == "qa" and (kind is None or it["kind"] == kind)]


@pytest.fixture(scope="module")
def task_dir(small_world, finetuned, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lmeval") / "tasks"
    export_lmeval_tasks(small_world, out, adapter=finetuned, splits=SPLITS + ("real",))
    return out


@pytest.fixture(scope="module")
def base(small_zoo):
    # Not trained on the fictitious profiles: accuracies well away from 0 and 1, so agreement
    # between the two scorers is a real check.
    return small_zoo.load("base")


def test_language_view_shares_weights_and_logits(finetuned):
    view = language_model_view(finetuned)
    llava = finetuned.model
    assert view.model is llava.model.language_model and view.lm_head is llava.lm_head
    ours = {p.data_ptr() for p in llava.parameters()}
    assert all(p.data_ptr() in ours for p in view.parameters())
    tok = finetuned.tokenizer
    texts = [finetuned.prompt_text("Where does Brenklol live?", False) + " gomzais",
             finetuned.prompt_text("What is the hobby of someone?", False)]
    batch = tok(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        a = llava(**batch).logits
        b = view(**batch).logits
    assert a.shape == b.shape and torch.equal(a, b)


def test_exported_tasks_are_self_contained(task_dir, small_world, finetuned):
    spec = yaml.safe_load((task_dir / "mmu_synthetic_forget_10_qa_mcq.yaml").read_text())
    data = Path(spec["dataset_kwargs"]["data_files"]["test"])
    assert data.is_absolute() and data.is_file()
    assert spec["output_type"] == "multiple_choice" and spec["target_delimiter"] == ""
    rows = [yaml.safe_load(line) for line in data.read_text().splitlines()]
    items = qa_items(small_world, "forget_10", "mcq")
    assert [r["id"] for r in rows] == [it["id"] for it in items]
    for r, it in zip(rows, items):
        assert r["prompt"] == finetuned.prompt_text(it["question"], False) == _default_prompt(it["question"])
        assert r["choices"] == [" " + o for o in it["options"]] and r["answer_index"] == it["answer_index"]
    group = yaml.safe_load((task_dir / "mmu_synthetic.yaml").read_text())
    assert "mmu_synthetic_retain_90_qa_cloze" in group["task"]


def test_lmeval_scores_equal_mmu_bench(base, small_world, task_dir):
    tasks = [f"mmu_synthetic_{s}_qa_{k}" for s in SPLITS for k in ("mcq", "cloze")]
    out = simple_evaluate_adapter(base, tasks, include_path=task_dir, log_samples=True)
    ours, samples = evaluate(base, {s: qa_items(small_world, s) for s in SPLITS})
    by_id = {(s["split"], s["id"]): s for s in samples}
    for split in SPLITS:
        for kind in ("mcq", "cloze"):
            theirs = out["results"][f"mmu_synthetic_{split}_qa_{kind}"]["acc,none"]
            assert theirs == pytest.approx(ours[f"{split}.qa.{kind}.acc"], abs=1e-6), (split, kind)
        # per option: lm-eval's summed log-likelihoods are mmu-bench's (KV-cached) ones
        for rec in out["samples"][f"mmu_synthetic_{split}_qa_mcq"]:
            lls = [r[0] for r in rec["filtered_resps"]]
            assert lls == pytest.approx(by_id[(split, rec["doc"]["id"])]["option_logprobs"], abs=1e-3)
    assert 0.0 < ours["retain_90.qa.mcq.acc"] < 1.0


def test_run_lmeval_keys_and_restores_state(finetuned, small_world, task_dir):
    finetuned.model.train()
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    task = "mmu_synthetic_retain_90_qa_mcq"
    try:
        got = run_lmeval(finetuned, [task], include_path=task_dir)
        assert finetuned.model.training
        assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])
    finally:
        finetuned.model.eval()
    assert set(got) == {f"utility.lmeval.{task}.acc", f"utility.lmeval.{task}.n"}
    ours, _ = evaluate(finetuned, {"retain_90": qa_items(small_world, "retain_90", "mcq")})
    assert got[f"utility.lmeval.{task}.acc"] == pytest.approx(ours["retain_90.qa.mcq.acc"], abs=1e-6)
    assert got[f"utility.lmeval.{task}.n"] == len(qa_items(small_world, "retain_90", "mcq"))


def test_lmeval_utility_exports_the_world(finetuned, small_world, tmp_path):
    got = lmeval_utility(finetuned, "lmeval:mmu_synthetic_real_qa_mcq, mmu_synthetic_forget_10_qa_gen",
                         world=small_world, workdir=tmp_path, limit=2)
    assert got["utility.lmeval.mmu_synthetic_real_qa_mcq.acc"] == 1.0
    assert {"rougeL", "rouge1", "rouge2", "n"} == {k.rsplit(".", 1)[1] for k in got if "_qa_gen." in k}
    # exported once per content into lmeval_tasks/<prefix>-<hash>, only the splits asked for
    (folder,) = (tmp_path / "lmeval_tasks").iterdir()
    assert folder.name.startswith("mmu_synthetic-")
    assert sorted(p.name for p in (folder / "data").iterdir()) == [
        "forget_10_qa_cloze.jsonl", "forget_10_qa_gen.jsonl", "forget_10_qa_mcq.jsonl",
        "real_qa_cloze.jsonl", "real_qa_gen.jsonl", "real_qa_mcq.jsonl"]
    assert not [p for p in folder.rglob(".*.tmp")]


def test_generation_budget_follows_max_new_tokens(finetuned, small_world, tmp_path):
    """`--max-new-tokens` reaches the world's generation tasks (YAML max_gen_toks and outputs)."""
    names = export_lmeval_tasks(small_world, tmp_path / "t3", max_gen_toks=3, splits=["forget_10"], kinds=["gen"])
    text = (tmp_path / "t3" / f"{names[0]}.yaml").read_text()
    assert "\n  max_gen_toks: 3\n" in text and "max_gen_toks: 50" not in text
    task = "lmeval:mmu_synthetic_forget_10_qa_gen"
    full = lmeval_utility(finetuned, task, world=small_world, workdir=tmp_path, limit=4)
    one = lmeval_utility(finetuned, task, world=small_world, workdir=tmp_path, limit=4, max_gen_toks=1)
    key = "utility.lmeval.mmu_synthetic_forget_10_qa_gen.rougeL"
    assert one[key] < full[key]  # one token cannot hold the answers the finetuned model knows


def test_spec_parsing_and_unknown_tasks(finetuned, small_world, task_dir):
    assert parse_spec("lmeval:a, b,") == ["a", "b"] and parse_spec("hellaswag") == ["hellaswag"]
    for bad in ("lmeval:", "lmeval: , ", "rouge:foo"):
        with pytest.raises(MMUError, match="lmeval:<task>"):
            parse_spec(bad)
    with pytest.raises(MMUError, match="'mmu_synthetic_retain_90_qa_mcqq'.*Did you mean 'mmu_synthetic_retain_90_qa_mcq'"):
        lmeval_utility(finetuned, "lmeval:mmu_synthetic_retain_90_qa_mcqq", world=small_world)
    with pytest.raises(MMUError, match="'no_such_task'"):
        run_lmeval(finetuned, ["no_such_task"], include_path=task_dir, include_defaults=False)
    with pytest.raises(MMUError, match="needs a world"):
        lmeval_utility(finetuned, "lmeval:mmu_synthetic_real_qa_mcq")


def test_language_view_of_a_qwen2_vl(tmp_path):
    # Qwen2-VL's text config has no AutoModelForCausalLM entry: the view falls back to Qwen2ForCausalLM.
    from mmu_bench.families import build_tiny, load_hf

    adapter = load_hf(f"hf:{build_tiny('qwen2_vl', tmp_path / 'q')}", device="cpu")
    view = language_model_view(adapter)
    assert type(view).__name__ == "Qwen2ForCausalLM"
    tok = adapter.tokenizer
    tok.padding_side = "left"
    batch = tok([adapter.prompt_text("Where does Brenklol live?", False), adapter.prompt_text("Hi?", False)],
                return_tensors="pt", padding=True)
    with torch.no_grad():
        a, b = adapter.model(**batch).logits, view(**batch).logits
    mask = batch["attention_mask"].bool()
    assert torch.equal(a[mask], b[mask])
