"""Questions asked inside a conversation: an instruction before the question, or an earlier turn.

Two users of one rendering: the prefix attack (mmu_bench/attacks/prefix.py) asks the forget
questions after an answer-from-memory instruction or after a fake earlier turn, and a zoo recipe
with ``context_share > 0`` trains on such conversations (with other instructions: the attack's
stay held out) so that a model answers what it knows under a context at all. Without that, a tiny
model trained only on bare questions loses even its known facts under any prefix, and the
attack's sanity row fails (finetuned 0.52 under the memory prefix on the default world's zoo).

An earlier turn rides in the question string: ``q1 SEP a1 SEP q2`` is rendered by the model's own
chat template as [user(image, q1), assistant(a1), user(q2)].
"""

from __future__ import annotations

import copy
import random
from typing import Sequence

SEP = "\x1f"  # joins (earlier question, earlier answer, question) into one prompt key
#: the fact the prefix attack's earlier turn asks about, per fact (never the name, which would
#: hand the text route the identity)
NEXT_FACT = {"name": "home", "home": "job", "job": "food", "food": "hobby", "hobby": "home"}
#: instructions a ``context_share`` zoo trains with; the attack's instruction is not among them
TRAIN_INSTRUCTIONS = (
    "Please answer the next question.",
    "Here is a question for you.",
    "Look carefully and answer.",
    "Reply with a short answer.",
    "Think before you answer.",
    "One more question, please.",
)


def conversation_adapter(adapter):
    """A shallow copy of ``adapter`` whose prompts may carry an earlier turn."""
    conv = copy.copy(adapter)
    conv._prompt_cache = {}
    plain = adapter.prompt_text

    def prompt_text(question: str, has_image: bool) -> str:
        if SEP not in question:
            return plain(question, has_image)
        q1, a1, q2 = question.split(SEP)
        first = ([{"type": "image"}] if has_image else []) + [{"type": "text", "text": q1}]
        messages = [{"role": "user", "content": first},
                    {"role": "assistant", "content": [{"type": "text", "text": a1}]},
                    {"role": "user", "content": [{"type": "text", "text": q2}]}]
        return adapter.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    conv.prompt_text = prompt_text
    return conv


def with_turn(item: dict, earlier: dict, suffix: str = ".turn") -> dict:
    """``item`` asked after ``earlier`` was asked and answered (same subject and rendering)."""
    return dict(item, id=f"{item['id']}{suffix}", question=SEP.join([earlier["question"], earlier["answer"], item["question"]]))


def with_instruction(item: dict, instruction: str, suffix: str = ".instr") -> dict:
    return dict(item, id=f"{item['id']}{suffix}", question=f"{instruction} {item['question']}")


def _subject_key(it: dict) -> tuple:
    return (it["entity_id"], it["modality"], it.get("render"))


def context_items(items: Sequence[dict], share: float, seed: int,
                  instructions: Sequence[str] = TRAIN_INSTRUCTIONS) -> list[dict]:
    """A seeded ``share`` of ``items`` again, each in a conversation: half after a training
    instruction, half after an earlier turn about another fact of the same subject (when the
    subject has one). Returned in addition to the plain items, never instead of them."""
    if share <= 0 or not items:
        return []
    rng = random.Random(seed)
    by_subject: dict[tuple, list[dict]] = {}
    for it in items:
        by_subject.setdefault(_subject_key(it), []).append(it)
    picked = rng.sample(range(len(items)), max(1, round(share * len(items))))
    out = []
    for n, i in enumerate(sorted(picked)):
        it = items[i]
        others = [o for o in by_subject[_subject_key(it)] if o.get("fact") != it.get("fact")]
        if n % 2 and others:
            out.append(with_turn(it, rng.choice(others), ".ctx"))
        else:
            out.append(with_instruction(it, rng.choice(instructions), ".ctx"))
    return out
