"""The official MLLMU-Bench protocol (mmu_bench/official.py, tasks/mllmu/protocols/official.yaml).

Expected strings are written out by hand from MLLMU-Bench's released eval.py (commit 0e3098e):
evaluate_classification, evaluate_fill_in_the_blank and evaluate_generation, LLaVA branch.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from mmu_bench.errors import MMUError
from mmu_bench.evaluate import EvalConfig, evaluate
from mmu_bench.official import (build_examples, encode_training, load_protocol, parse_answer, parse_letter,
                                protocol_id, protocol_strings, score, styles, training_examples)
from mmu_bench.zoo import Zoo, ZooRecipe

PID = "mllmu/official"
IMG = {e: Image.new("RGB", (32, 32), c) for e, c in (("p1", "red"), ("p2", "green"), ("p3", "blue"))}


def _mcq(eid, modality, n, q, opts, gold):
    return dict(id=f"{eid}.{modality}.mcq.{n}", entity_id=eid, modality=modality, kind="mcq", question=q,
                options=list(opts), answer_index=gold, answer=opts[gold],
                image=IMG[eid] if modality == "vqa" else None, render=0 if modality == "vqa" else -1, fact="")


def _open(eid, modality, kind, n, q, a):
    return dict(id=f"{eid}.{modality}.{kind}.{n}", entity_id=eid, modality=modality, kind=kind, question=q,
                answer=a, options=[], answer_index=-1, image=IMG[eid] if modality == "vqa" else None,
                render=0 if modality == "vqa" else -1, fact="")


def _profile(eid):
    return [
        _mcq(eid, "vqa", 0, f"Who is {eid}?", ["w", "x", "y", "z"], 1),
        _mcq(eid, "vqa", 1, f"Where does {eid} live?", ["a", "b", "c", "d"], 3),
        _mcq(eid, "qa", 0, f"What is {eid}'s job?", ["j1", "j2", "j3", "j4"], 0),
        _open(eid, "vqa", "gen", 0, f"Describe {eid}.", f"{eid} is tall."),
        _open(eid, "qa", "gen", 0, f"Tell me about {eid}.", f"{eid} bakes."),
        _open(eid, "vqa", "cloze", 0, f"{eid} lives in [Blank].", "Oslo"),
        _open(eid, "qa", "cloze", 0, f"{eid} works as a [Blank].", "baker"),
    ]


@pytest.fixture(scope="module")
def tasks():
    # forget = p1, p2 (p1 drawn as the mcq shot with seed 0, below); retain = p3
    return {"forget": _profile("p1") + _profile("p2"), "retain": _profile("p3"), "test": [], "real": []}


def _by(examples, split, eid, modality, kind):
    return [e for e in examples if e.split == split and e.item["entity_id"] == eid
            and e.item["modality"] == modality and e.item["kind"] == kind]


def test_prompts_match_released_eval_py(tasks):
    ex = build_examples(tasks, PID, seed=0)
    shot = ex[0].shots
    assert len(shot) == 1 and shot[0] in ("p1", "p2")
    s, q = shot[0], ("p2" if shot[0] == "p1" else "p1")
    # classification, image: one "USER: <image>\nQuestion: ..." block per image question of the
    # drawn profile, then the query with formulate_prompt_with_options and the letter instruction
    (vqa,) = [e for e in _by(ex, "forget", q, "vqa", "mcq") if e.item["id"].endswith(".0")]
    assert vqa.prompt == (
        f"USER: <image>\nQuestion: Who is {s}?\nA: w\nB: x\nC: y\nD: z\nCorrect Answer: B\n"
        f"USER: <image>\nQuestion: Where does {s} live?\nA: a\nB: b\nC: c\nD: d\nCorrect Answer: D\n"
        f"USER: <image>\nWho is {q}?\nA: w\nB: x\nC: y\nD: z\n"
        "Just give ONE letter representing the answer directly.\nASSISTANT:")
    assert vqa.images == [IMG[s], IMG[s], IMG[q]] and vqa.gold == "B"
    (qa,) = _by(ex, "forget", q, "qa", "mcq")
    assert qa.prompt == (
        f"USER:\nQuestion: What is {s}'s job?\nA: j1\nB: j2\nC: j3\nD: j4\nCorrect Answer: A\n"
        f"USER:\nWhat is {q}'s job?\nA: j1\nB: j2\nC: j3\nD: j4\n"
        "Just give ONE letter representing the answer directly.\nASSISTANT:")
    assert qa.images == []
    # the drawn profile's own questions are not asked (eval.py skips few-shot question indices)
    assert _by(ex, "forget", s, "vqa", "mcq") == [] and _by(ex, "forget", s, "qa", "mcq") == []
    # generation: zero-shot, eval.py's two instructions (the image one ends with a space)
    (gv,) = _by(ex, "forget", q, "vqa", "gen")
    assert gv.prompt == (f"USER: <image>\nDescribe {q}.\nAnswer the question based on your trained knowledge "
                         "in one sentence accurately in ENGLISH.\nASSISTANT: ")
    (gq,) = _by(ex, "forget", q, "qa", "gen")
    assert gq.prompt == (f"USER: Tell me about {q}.\nAnswer the question based on your trained knowledge in "
                         "one sentence in ENGLISH.\nASSISTANT:")
    assert _by(ex, "forget", s, "vqa", "gen")  # generation has no shots, so nothing is skipped


def test_fill_in_the_blank_layout(tasks):
    # two profiles are drawn for cloze (random.sample(id_list, 2)): on forget = both profiles, so
    # every forget cloze question is a shot; retain (p3 alone) is its own shot and is skipped too
    ex = build_examples(tasks, PID, seed=0)
    assert [e for e in ex if e.item["kind"] == "cloze"] == []
    ex = build_examples(tasks, PID, shots=1, seed=0)
    s = _by(ex, "forget", "p1", "vqa", "cloze") and "p2" or "p1"
    q = "p2" if s == "p1" else "p1"
    instr = "\nPlease **ONLY** provide the correct answer that should replace the [Blank]."
    (cv,) = _by(ex, "forget", q, "vqa", "cloze")
    assert cv.prompt == (f"USER:<image>\n{s} lives in [Blank].{instr}\nCorrect Answer: Oslo\n"
                         f"USER: <image>\n{q} lives in [Blank].{instr}\nASSISTANT:")
    assert cv.images == [IMG[s], IMG[q]]
    (cq,) = _by(ex, "forget", q, "qa", "cloze")
    assert cq.prompt == (f"USER:\n{s} works as a [Blank].{instr}\nCorrect Answer: baker\n"
                         f"USER:\n{q} works as a [Blank].{instr}\nASSISTANT:")


def test_real_mode_has_no_classification_shots_and_test_draws_forget_ids(tasks):
    t = dict(tasks, real=_profile("p3"), test=[dict(it, id=it["id"] + ".test0") for it in _profile("p2")])
    ex = build_examples(t, PID, seed=0)
    # retain_celebrity: classification without a prefix (p3 is not in Full_Set = forget + retain
    # here? it is, as the retain profile: eval.py looks the drawn id up there, so it is skipped)
    assert not [e for e in ex if e.split == "real" and e.item["kind"] == "mcq"]
    t["retain"] = []
    ex = build_examples(t, PID, seed=0)
    real = [e for e in ex if e.split == "real" and e.item["kind"] == "mcq" and e.item["modality"] == "qa"]
    assert real and real[0].prompt.startswith("USER:\nWhat is p3's job?") and real[0].shots == []
    # test: shots drawn among the forget ids, looked up in Full_Set; that profile's test
    # questions are skipped
    test = [e for e in ex if e.split == "test" and e.item["kind"] == "mcq"]
    forget_shot = [e for e in ex if e.split == "forget" and e.item["kind"] == "mcq"][0].shots
    assert all(e.shots for e in test)
    if forget_shot == ["p2"]:
        pass  # the test profile (p2) may itself be drawn: then it is skipped entirely
    for e in test:
        assert e.item["entity_id"] not in e.shots


def test_seeded_draws(tasks):
    a = [(e.item["id"], e.prompt) for e in build_examples(tasks, PID, seed=0)]
    assert a == [(e.item["id"], e.prompt) for e in build_examples(tasks, PID, seed=0)]
    draws = {tuple(build_examples(tasks, PID, seed=s)[0].shots) for s in range(8)}
    assert draws == {("p1",), ("p2",)}  # the seed changes the draw


@pytest.mark.parametrize("text,expected", [
    ("prompt ... ASSISTANT: B", "B"),
    ("ASSISTANT: b) Paris", "B"),                    # lower case, letter plus text
    ("ASSISTANT:C: the third one", "C"),
    (" D because ...", "D"),                         # no "ASSISTANT:": the whole text
    ("d", "D"),
    ("ASSISTANT: The answer is A", None),           # first character only, as eval.py
    ("ASSISTANT: E", None),                          # not an option key
    ("ASSISTANT:   ", None),
    ("", None),
    ("USER: q\nASSISTANT: A\nASSISTANT: B", "A"),   # text after the first "ASSISTANT:"
])
def test_parse_letter(text, expected):
    assert parse_letter(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("USER: x [Blank]\nASSISTANT: Oslo ", "Oslo"),
    ("Correct Answer: Oslo", "Oslo"),               # no "ASSISTANT:": after "Answer:"
    ("  Oslo\n", "Oslo"),
    ("ASSISTANT: a\nASSISTANT: b", "a"),
])
def test_parse_answer(text, expected):
    assert parse_answer(text) == expected


def test_scoring_rules(tasks):
    doc = load_protocol(PID)
    ex = build_examples(tasks, PID, shots=1, seed=0)
    mcq = next(e for e in ex if e.item["kind"] == "mcq")
    assert score("mcq", doc["tasks"]["mcq"], mcq, f" {mcq.gold.lower()}) ...")["correct"]
    cloze = next(e for e in ex if e.item["kind"] == "cloze")
    assert score("cloze", doc["tasks"]["cloze"], cloze, f" It is {cloze.gold.upper()}.")["correct"]
    gen = next(e for e in ex if e.item["kind"] == "gen")
    s = score("gen", doc["tasks"]["gen"], gen, " " + gen.gold)
    # eval.py's BLEU of a 3-word exact answer: 4-gram precision 0/0 smoothed (method1), not 1
    assert s["rougeL"] == 1.0 and s["bleu"] == pytest.approx(0.5623, abs=1e-4) and s["parsed"] == gen.gold


def test_protocol_ids_and_errors():
    assert protocol_id("mllmu", "loglik") == "loglik"
    assert protocol_id("mllmu", "official") == PID
    with pytest.raises(MMUError, match="synthetic.*no 'official'"):
        protocol_id("synthetic", "official")
    with pytest.raises(MMUError, match="eval protocol 'fancy' unknown"):
        protocol_id("mllmu", "fancy")
    with pytest.raises(MMUError, match="not found"):
        EvalConfig(protocol="mllmu/nothing")
    assert EvalConfig().fingerprint() == {"mcq_mode": "loglik", "max_new_tokens": 50, "batch_size": 64,
                                          "progress": None}


def test_zoo_prompt_styles_key(small_world, cache_dir):
    plain = Zoo(small_world, recipe=ZooRecipe(), cache_dir=cache_dir, progress=False, device="cpu")
    assert "prompt_styles" not in ZooRecipe().fingerprint()
    both = Zoo(small_world, recipe=ZooRecipe(prompt_styles="suite,official"), cache_dir=cache_dir,
               progress=False, device="cpu")
    assert both.key != plain.key and both.model_config.max_positions == 1024
    assert both.model_config.text_layers == 4 and plain.model_config.text_layers == 2
    assert plain.model_config.max_positions == 256
    # mcq rotations enter the key of an official-style zoo only (1: the recipe before them)
    assert "mcq_rotations" not in ZooRecipe(mcq_rotations=2).fingerprint()
    assert ZooRecipe(prompt_styles="suite,official", mcq_rotations=4).fingerprint()["mcq_rotations"] == 4
    assert "mcq_rotations" not in ZooRecipe(prompt_styles="suite,official").fingerprint()
    # likewise train_shots ("half": the recipe before it)
    assert "train_shots" not in ZooRecipe(train_shots="eval").fingerprint()
    assert "train_shots" not in ZooRecipe(prompt_styles="suite,official").fingerprint()
    assert ZooRecipe(prompt_styles="suite,official", train_shots="eval").fingerprint()["train_shots"] == "eval"
    # loss weighting: in the key when not the token mean (the recipe before the field)
    assert "loss_weighting" not in ZooRecipe(prompt_styles="suite,official").fingerprint()
    assert ZooRecipe(loss_weighting="example").fingerprint()["loss_weighting"] == "example"
    with pytest.raises(MMUError, match="loss_weighting 'sentence'"):
        Zoo(small_world, recipe=ZooRecipe(loss_weighting="sentence"), cache_dir=cache_dir, progress=False)
    with pytest.raises(MMUError, match="prompt_styles 'fancy'"):
        styles(ZooRecipe(prompt_styles="fancy"))


def test_training_examples_follow_the_prompts(tasks):
    items = tasks["forget"] + tasks["retain"]
    out = training_examples(items, PID, seed=0)
    assert len(out) == len(items)
    for (prompt, images, target), it in zip(out, items):
        assert prompt.count("<image>") == len(images)
        assert prompt.endswith("ASSISTANT:") or prompt.endswith("ASSISTANT: ")
        gold = "ABCD"[it["answer_index"]] if it["kind"] == "mcq" else it["answer"]
        assert target == (gold if prompt.endswith(" ") else " " + gold)
    assert any(p.count("Correct Answer:") for p, _, _ in out)  # some carry a few-shot prefix
    assert out == training_examples(items, PID, seed=0)


def test_training_examples_rotate_mcq_options(tasks):
    """Every mcq item asked once per rotation: the gold letter visits every position, the option
    under it is always the gold answer, and rotation 0 asks the options as evaluated."""
    items = tasks["forget"] + tasks["retain"]
    mcq = [it for it in items if it["kind"] == "mcq"]
    out = training_examples(items, PID, seed=0, mcq_rotations=4)
    assert len(out) == len(items) + 3 * len(mcq)
    rows = iter(out)
    for it in items:
        asked = [next(rows) for _ in range(4 if it["kind"] == "mcq" else 1)]
        if it["kind"] != "mcq":
            continue
        letters = [t.strip() for _, _, t in asked]
        assert sorted(letters) == list("ABCD")
        assert letters[0] == "ABCD"[it["answer_index"]]
        for (prompt, _, _), letter in zip(asked, letters):
            query = prompt.rsplit("USER:", 1)[1]
            assert f"\n{letter}: {it['options'][it['answer_index']]}\n" in query
        first = asked[0][0].rsplit("USER:", 1)[1]
        assert all(f"\n{k}: {o}\n" in first for k, o in zip("ABCD", it["options"]))
    with pytest.raises(MMUError, match="mcq_rotations 0"):
        training_examples(items, PID, seed=0, mcq_rotations=0)


def test_training_examples_prefix_as_evaluation(tasks):
    """train_shots="eval": every cloze and every mcq example carries a few-shot prefix, except
    mcq about real people (eval.py asks them zero-shot), generation none; "half" prefixes only
    some, real people's mcq included; the draw is the same either way."""
    items = tasks["forget"] + tasks["retain"]
    real = {items[0]["entity_id"]}
    assert any(it["kind"] == "mcq" and it["entity_id"] in real for it in items)
    out = training_examples(items, PID, seed=0, train_shots="eval", real_ids=real)
    half = training_examples(items, PID, seed=0, train_shots="half", real_ids=real)
    assert half == training_examples(items, PID, seed=0)  # real_ids unused by "half"
    n_half = 0
    for (prompt, _, target), (hp, _, ht), it in zip(out, half, items):
        prefixed = prompt.count("Correct Answer:") > 0
        n_half += hp.count("Correct Answer:") > 0
        if it["kind"] == "gen" or (it["kind"] == "mcq" and it["entity_id"] in real):
            assert not prefixed, it["id"]
        else:
            assert prefixed, it["id"]
        assert target == ht and prompt.endswith(hp.rsplit("USER:", 1)[1])  # same query, same target
    prefixable = sum(it["kind"] != "gen" for it in items)
    assert 0 < n_half < prefixable
    with pytest.raises(MMUError, match="train_shots 'always'"):
        training_examples(items, PID, seed=0, train_shots="always")


def test_label_shots_marks_every_shot_answer_and_nothing_else(tasks):
    """label_shots: the prompt's labels are exactly the few-shot answers (each shot's letter or
    blank after "Correct Answer:"), tokenized with the whole prompt as evaluation does; the
    query's own target is unchanged, and without it the prompt is unlabeled."""
    import re

    from mmu_bench.adapter import LlavaAdapter
    from mmu_bench.tiny_model import TinyLlavaConfig, build_model, build_processor, build_tokenizer

    items = tasks["forget"] + tasks["retain"]
    ex = training_examples(items, PID, seed=0, train_shots="eval")
    corpus = [p + t for p, _, t in ex] + protocol_strings(PID)
    tok = build_tokenizer(corpus, 400)
    cfg = TinyLlavaConfig(max_positions=1024)
    ad = LlavaAdapter(build_model(tok, cfg, seed=0), build_processor(tok, cfg), "cpu")
    plain = encode_training(ad, ex)
    labeled = encode_training(ad, ex, PID)
    n_prefixed = 0
    for (prompt, _, _), a, b in zip(ex, plain, labeled):
        assert a.prompt_labels is None and (a.prompt_ids, a.target_ids) == (b.prompt_ids, b.target_ids)
        answers = re.findall(r"Correct Answer: ([^\n]*)\n", prompt)
        if not answers:
            assert b.prompt_labels is None
            continue
        n_prefixed += 1
        assert len(b.prompt_labels) == len(b.prompt_ids)
        got = [i for i in b.prompt_labels if i != -100]
        assert all(i == j for i, j in zip(b.prompt_labels, b.prompt_ids) if i != -100)
        assert tok.decode(got).replace(" ", "") == "".join(answers).replace(" ", "")
        batch = ad.collate([b])["labels"][0].tolist()
        assert batch == b.prompt_labels + b.target_ids
    assert n_prefixed > 0


@pytest.fixture(scope="module")
def mllmu_world(small_world, tmp_path_factory):
    from mmu_bench.tasks.mllmu import MLLMUWorld
    from mmu_bench.tasks.synthetic.mllmu_export import export_mllmu

    return MLLMUWorld(export_mllmu(small_world, tmp_path_factory.mktemp("official") / "mllmu"))


def test_two_runs_bit_identical(small_zoo, mllmu_world, one_torch_thread):
    from mmu_bench.benchmark import eval_tasks

    model = small_zoo.load("base")  # any model: the check is determinism, not accuracy
    tasks = eval_tasks(mllmu_world, "forget_15")
    tasks = {k: [it for it in v if it["entity_id"] in sorted({i["entity_id"] for i in v})[:3]]
             for k, v in tasks.items()}  # a few profiles per split keep it fast
    cfg = EvalConfig(protocol=PID, batch_size=16)
    m1, s1 = evaluate(model, tasks, cfg)
    m2, s2 = evaluate(model, tasks, cfg)
    assert json.dumps([m1, s1], sort_keys=True) == json.dumps([m2, s2], sort_keys=True)
    assert {"forget.vqa.mcq.acc", "retain.qa.gen.rougeL", "retain.qa.gen.bleu", "real.vqa.cloze.acc"} <= set(m1)
    rec = s1[0]
    assert {"prompt", "generation", "parsed", "shots"} <= set(rec)
    assert rec["prompt"].endswith("ASSISTANT:") or rec["prompt"].endswith("ASSISTANT: ")


def test_shared_prefix_generation_equals_batched(small_zoo, mllmu_world, one_torch_thread):
    from mmu_bench.official import generate, generate_shared_prefix
    from mmu_bench.benchmark import eval_tasks

    model = small_zoo.load("finetuned")
    tasks = eval_tasks(mllmu_world, "forget_15")
    built = build_examples(tasks, PID, shots=1)
    ex = [e for e in built if e.shots][:24] + [e for e in built if not e.shots][:6]
    assert {e.item["modality"] for e in ex} == {"vqa", "qa"}  # image shots and text shots
    assert {e.item["kind"] for e in ex} == {"mcq", "cloze", "gen"}
    budgets = [8] * len(ex)
    # the prefix KV path must give the tokens the plain batched path gives
    assert generate_shared_prefix(model, ex, budgets, batch_size=5) == generate(model, ex, budgets, batch_size=5)
