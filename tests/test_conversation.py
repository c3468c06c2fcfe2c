"""Conversations: the prefix attack's earlier turns and the zoo recipe's context_share."""

from __future__ import annotations

from mmu_bench.conversation import SEP, TRAIN_INSTRUCTIONS, context_items, with_turn
from mmu_bench.refusals import MEMORY_PREFIX
from mmu_bench.zoo import ZooRecipe


def _items():
    out = []
    for e in ("e0", "e1"):
        for r in (0, 1):
            for f in ("name", "home", "job", "food"):
                out.append({"id": f"{e}.{r}.{f}", "entity_id": e, "modality": "vqa", "render": r, "fact": f,
                            "question": f"q {e} {r} {f}?", "answer": f"a-{e}-{f}"})
    return out


def test_context_items_are_a_seeded_share_half_instructions_half_earlier_turns_of_the_same_subject():
    items = _items()
    ctx = context_items(items, 0.5, seed=3)
    assert len(ctx) == 8 and ctx == context_items(items, 0.5, seed=3) and ctx != context_items(items, 0.5, seed=4)
    turns = [c for c in ctx if SEP in c["question"]]
    instr = [c for c in ctx if SEP not in c["question"]]
    assert len(turns) == len(instr) == 4
    for c in turns:
        q1, a1, q2 = c["question"].split(SEP)
        # the earlier turn is another fact of the same entity and rendering, answered correctly
        earlier = next(it for it in items if it["question"] == q1 and it["answer"] == a1)
        assert (earlier["entity_id"], earlier["render"]) == (c["entity_id"], c["render"]) and earlier["fact"] != c["fact"]
    # the attack's instruction is held out of training
    assert all(c["question"].split(" q ")[0] in TRAIN_INSTRUCTIONS for c in instr)
    assert MEMORY_PREFIX not in TRAIN_INSTRUCTIONS
    assert context_items(items, 0.0, seed=3) == []


def test_with_turn_keeps_the_item_and_renders_three_parts():
    a, b = _items()[:2]
    t = with_turn(b, a)
    assert t["answer"] == b["answer"] and t["question"].split(SEP) == [a["question"], a["answer"], b["question"]]


def test_context_share_zero_keeps_the_zoo_key():
    # the bare-question recipe keeps the key it had before the field existed; the default has it
    assert "context_share" not in ZooRecipe(context_share=0).fingerprint()
    assert ZooRecipe().fingerprint()["context_share"] == 0.25
