"""Official evaluation protocols: a real benchmark scored with its own released prompts.

``--eval-protocol loglik`` (the default) asks every item with this suite's chat template and
scores mcq by option log-likelihood. ``--eval-protocol official`` asks MLLMU-Bench the way its
released ``eval.py`` does: few-shot letter-choice classification, fill-in-the-blank with its
instruction, one-sentence generation; the released answer parsing and metrics. The prompt
strings are data (``tasks/<benchmark>/protocols/official.yaml``); this module only assembles
them. Two things differ from the released script, on purpose: few-shot profiles are drawn with a
seeded RNG (``random.Random(f"{seed}|{split}|{task}")``; eval.py's draw is unseeded), and
generation is batched (left padding) instead of one example at a time.

The same module renders training examples in the official style (``ZooRecipe.prompt_styles``),
so a tiny model trained here can answer the official prompts.
"""

from __future__ import annotations

import functools
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Sequence

import numpy as np
import torch
import yaml

from .errors import MMUError

EVAL_PROTOCOLS = ("loglik", "official")
TRAIN_SHOTS = ("half", "eval")  # ZooRecipe.train_shots
PROMPT_STYLES = ("suite", "official")
LETTERS = ("A", "B", "C", "D")
# Few-shot prompts reach ~500 tokens (MLLMU-Bench: one profile's five image questions, each with
# its image): the tiny model's 256 positions are raised to this with the "official" style.
OFFICIAL_CONTEXT = 1024
# Text layers of a tiny zoo model trained in the official style. A letter answer takes one more
# lookup than the suite's prompts (recall the answer, then find the option that holds it and read
# its letter). Measured (docs/benchmarks.md): 2 layers knew the facts (loglik mcq 0.87-1.0) but
# named the letter at 0.40-0.80; 4 raised forget/test to 0.90, retained items stay at 0.31-0.54.
OFFICIAL_TEXT_LAYERS = 4


# ---------------------------------------------------------------- protocol files
def protocol_file(benchmark: str, name: str) -> Path:
    from . import tasks as tasks_pkg

    return Path(tasks_pkg.__file__).parent / benchmark / "protocols" / f"{name}.yaml"


def protocol_id(benchmark: str, name: str) -> str:
    """The EvalConfig.protocol of ``--eval-protocol name`` on ``benchmark``: ``loglik`` or
    ``<benchmark>/<name>`` (validated: the benchmark must ship that protocol file)."""
    if name not in EVAL_PROTOCOLS:
        raise MMUError(f"eval protocol {name!r} unknown; expected one of {', '.join(EVAL_PROTOCOLS)}")
    if name == "loglik":
        return name
    path = protocol_file(benchmark, name)
    if not path.is_file():
        from . import tasks as tasks_pkg

        have = sorted(p.parent.parent.name for p in Path(tasks_pkg.__file__).parent.glob(f"*/protocols/{name}.yaml"))
        raise MMUError(f"benchmark {benchmark!r} has no {name!r} evaluation protocol (no {path}); "
                       f"benchmarks with one: {', '.join(have) or 'none'}")
    return f"{benchmark}/{name}"


@functools.lru_cache(maxsize=None)
def load_protocol(pid: str) -> dict:
    """The parsed protocol YAML of ``<benchmark>/<name>``, checked for the fields used here."""
    if "/" not in pid:
        raise MMUError(f"eval protocol id {pid!r}: expected '<benchmark>/<name>'")
    bench, name = pid.split("/", 1)
    path = protocol_file(bench, name)
    if not path.is_file():
        raise MMUError(f"eval protocol file {path} not found")
    doc = yaml.safe_load(path.read_text())
    if isinstance(doc, dict) and doc.get("benchmark") == "clear":  # TOFU-style: its own schema
        from .official_clear import check

        check(doc, str(path))
        doc["path"] = str(path)
        return doc
    for key in ("benchmark", "modes", "tasks", "fewshot_seed"):
        if key not in doc:
            raise MMUError(f"{path}: missing top-level field {key!r}")
    for kind, task in doc["tasks"].items():
        for key in ("shots", "fewshot_modes", "max_new_tokens", "prompt", "parse", "metrics"):
            if key not in task:
                raise MMUError(f"{path}: task {kind!r} lacks field {key!r}")
        for modality in ("vqa", "qa"):
            if modality not in task["prompt"]:
                raise MMUError(f"{path}: task {kind!r} has no prompt for modality {modality!r}")
    doc["path"] = str(path)
    return doc


def protocol_strings(pid: str) -> list[str]:
    """The fixed text of a protocol's templates (placeholders cut out): tokenizer corpus."""
    doc = load_protocol(pid)
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str):
            out.extend(p for p in re.split(r"\{[^}]*\}", v) if p.strip())
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)

    for task in doc["tasks"].values():
        for key in ("shot", "prompt", "question", "option_line"):
            walk(task.get(key))
    return list(dict.fromkeys(out))


# ---------------------------------------------------------------- parsing (eval.py's rules)
def parse_letter(text: str, options: Sequence[str] = LETTERS) -> str | None:
    """eval.py's classification parse: the text after the first "ASSISTANT:" (else all of it),
    stripped; its first character upper-cased is the answer if it is an option key, else None."""
    resp = text.split("ASSISTANT:")[1].strip() if "ASSISTANT:" in text else text.strip()
    return resp[0].upper() if resp and resp[0].upper() in options else None


def parse_answer(text: str) -> str:
    """eval.py's fill-in-the-blank / generation parse: after "ASSISTANT:", else after "Answer:",
    else the whole text; stripped."""
    if "ASSISTANT:" in text:
        return text.split("ASSISTANT:")[1].strip()
    if "Answer:" in text:
        return text.split("Answer:")[1].strip()
    return text.strip()


def bleu(reference: str, hypothesis: str) -> float:
    """eval.py's compute_bleu: whitespace tokens, nltk sentence BLEU, smoothing method1."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    return float(sentence_bleu([reference.split()], hypothesis.split(),
                               smoothing_function=SmoothingFunction().method1))


# ---------------------------------------------------------------- prompts
@dataclass
class Example:
    """One official prompt: its text (with "<image>" placeholders), images in placeholder order,
    the gold answer (a letter for mcq) and the item it asks."""

    item: dict
    split: str
    prompt: str
    images: list = field(default_factory=list)
    gold: str = ""
    shots: list[str] = field(default_factory=list)


def _option_fields(it: dict) -> dict[str, str]:
    return dict(zip(LETTERS, it["options"]))


def shot_text(task: dict, kind: str, it: dict) -> str:
    """One few-shot block of an item (its gold answer shown after "Correct Answer:")."""
    tpl = task["shot"][it["modality"]]
    if kind == "mcq":
        return tpl.format(question=it["question"], answer=LETTERS[it["answer_index"]], **_option_fields(it))
    return tpl.format(question=task["question"].format(question=it["question"]), answer=it["answer"])


def query_text(task: dict, kind: str, it: dict, fewshot: str) -> str:
    tpl = task["prompt"][it["modality"]]
    if kind == "mcq":
        opts = "\n".join(task["option_line"].format(letter=k, option=v) for k, v in _option_fields(it).items())
        return tpl.format(fewshot=fewshot, question=it["question"], options=opts)
    question = task["question"].format(question=it["question"]) if "question" in task else it["question"]
    return tpl.format(fewshot=fewshot, question=question)


def gold_of(kind: str, it: dict) -> str:
    return LETTERS[it["answer_index"]] if kind == "mcq" else it["answer"]


def _ids_in_order(items: Sequence[dict]) -> list[str]:
    return list(dict.fromkeys(it["entity_id"] for it in items))


def build_examples(tasks: dict[str, Sequence[dict]], pid: str, shots: int | None = None,
                   seed: int | None = None) -> list[Example]:
    """The official prompts of every evaluated item, in eval.py's layout.

    Per (split, task): ``shots`` profiles (default: the YAML's, eval.py's for LLaVA) are drawn
    from the split's profile ids (the forget ids for ``test``) with
    ``random.Random(f"{seed}|{split}|{task}")``; their Full_Set questions (the forget + retain
    items: together they are Full_Set) make the few-shot prefix in modes that use one, and those
    questions of the drawn profiles are not asked (eval.py skips them too).
    """
    doc = load_protocol(pid)
    seed = doc["fewshot_seed"] if seed is None else seed
    # Full_Set = forget + retain (a forget config and its complement partition it).
    full: dict[str, list[dict]] = defaultdict(list)
    for role in ("forget", "retain"):
        for it in tasks.get(role, []):
            full[it["entity_id"]].append(it)
    out: list[Example] = []
    for split, items in tasks.items():
        mode = doc["modes"].get(split)
        if mode is None or not items:
            continue  # holdout / utility: no MLLMU-Bench counterpart
        id_source = tasks.get("forget", []) if split == "test" else items
        id_list = _ids_in_order(id_source)
        for kind, task in doc["tasks"].items():
            k = task["shots"] if shots is None or task["shots"] == 0 else shots
            rng = random.Random(f"{seed}|{split}|{kind}")
            chosen = set(rng.sample(id_list, min(k, len(id_list)))) if k > 0 else set()
            # eval.py walks the few-shot parquet in row order, so shots follow profile order
            shot_items = {m: [it for eid in id_list if eid in chosen for it in full.get(eid, [])
                              if it["kind"] == kind and it["modality"] == m] for m in ("vqa", "qa")}
            n_shot = defaultdict(int)
            for m, its in shot_items.items():
                for it in its:
                    n_shot[(it["entity_id"], m)] += 1
            use_shots = mode in task["fewshot_modes"]
            prefix = {m: "".join(shot_text(task, kind, it) for it in its) for m, its in shot_items.items()}
            prefix_images = [it["image"] for it in shot_items["vqa"]]
            index: dict[tuple, int] = defaultdict(int)
            for it in items:
                if it["kind"] != kind:
                    continue
                key = (it["entity_id"], it["modality"], it.get("render", 0))
                idx = index[key]
                index[key] += 1
                if idx < n_shot[(it["entity_id"], it["modality"])]:
                    continue  # a question of a few-shot profile: eval.py does not ask it
                m = it["modality"]
                fewshot = prefix[m] if use_shots else ""
                images = ((prefix_images if use_shots else []) + [it["image"]]) if m == "vqa" else []
                out.append(Example(it, split, query_text(task, kind, it, fewshot), images, gold_of(kind, it),
                                   sorted(chosen) if use_shots else []))
    return out


# ---------------------------------------------------------------- encoding / generation
def _pixels(adapter, images: Sequence[Any], cache: dict[int, torch.Tensor]) -> torch.Tensor | None:
    if not images:
        return None
    todo = [im for im in dict.fromkeys(id(im) for im in images) if im not in cache]
    if todo:
        by_id = {id(im): im for im in images}
        for key, px in zip(todo, adapter.pixel_values([by_id[k] for k in todo])):
            cache[key] = px
    return torch.stack([cache[id(im)] for im in images])


def encode_prompt(adapter, prompt: str, n_images: int, check_only: bool = False) -> list[int]:
    """Token ids of a raw prompt as ``processor(text=prompt, images=...)`` makes them: every
    "<image>" expanded to the model's visual tokens, bos prepended by the tokenizer
    (``check_only``: only check the placeholders against the images)."""
    if prompt.count("<image>") != n_images:
        raise MMUError(f"official prompt has {prompt.count('<image>')} <image> placeholders for "
                       f"{n_images} images: {prompt[:120]!r}")
    if check_only:
        return []
    text = prompt.replace("<image>", adapter.image_token * adapter.n_image_tokens)
    return adapter.tokenizer(text)["input_ids"]


def _collate(adapter, ids: Sequence[list[int]], pixels: Sequence[torch.Tensor | None]) -> dict[str, torch.Tensor]:
    pad = adapter.tokenizer.pad_token_id
    n = max(len(s) for s in ids)
    input_ids = torch.full((len(ids), n), pad, dtype=torch.long)
    attn = torch.zeros((len(ids), n), dtype=torch.long)
    for r, s in enumerate(ids):  # left padding: every row's prompt ends at the last column
        input_ids[r, n - len(s):] = torch.tensor(s)
        attn[r, n - len(s):] = 1
    out = {"input_ids": input_ids, "attention_mask": attn}
    px = [p for p in pixels if p is not None]
    if px:  # LLaVA fills image-token positions in row-major order: rows' images concatenated
        out.update(adapter.vision_inputs(torch.cat(px), input_ids))
    return {k: v.to(adapter.device) for k, v in out.items()}


def generate(adapter, examples: Sequence[Example], max_new_tokens: Sequence[int] | int = 50,
             batch_size: int = 32) -> list[str]:
    """Greedy generations (new tokens only, special tokens skipped), batched with left padding.
    Examples are grouped by length so batches pad little; results come back in input order."""
    budgets = [max_new_tokens] * len(examples) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    cache: dict[int, torch.Tensor] = {}
    ids = [encode_prompt(adapter, ex.prompt, len(ex.images)) for ex in examples]
    order = sorted(range(len(examples)), key=lambda i: (budgets[i], len(ids[i]), i))
    texts: list[str] = [""] * len(examples)
    adapter.model.eval()
    with torch.no_grad():
        for b in range(0, len(order), batch_size):
            chunk = order[b:b + batch_size]
            batch = _collate(adapter, [ids[i] for i in chunk],
                             [_pixels(adapter, examples[i].images, cache) for i in chunk])
            out = adapter.model.generate(**batch, max_new_tokens=max(budgets[i] for i in chunk), do_sample=False,
                                         pad_token_id=adapter.tokenizer.pad_token_id,
                                         eos_token_id=adapter.tokenizer.eos_token_id)
            new = out[:, batch["input_ids"].shape[1]:]
            for i, t in zip(chunk, adapter.tokenizer.batch_decode(new, skip_special_tokens=True)):
                texts[i] = t
    return texts


def _common_prefix(seqs: Sequence[list[int]]) -> int:
    n = min(len(x) for x in seqs)
    first = seqs[0]
    for j in range(n):
        if any(x[j] != first[j] for x in seqs):
            return j
    return n


def generate_shared_prefix(adapter, examples: Sequence[Example], max_new_tokens: Sequence[int] | int = 50,
                           batch_size: int = 32) -> list[str]:
    """``generate``, with the few-shot prefix a task's examples share run once.

    Examples asked with the same shots (same split, task, modality and drawn profiles) start with
    the same tokens and images: that prefix (cut before the query's own image) goes through the
    model once, its KV cache is repeated for each batch, and only the queries are run on top of
    it -- left-padded between prefix and query (masked out; positions continue the prefix). A
    plain greedy loop then decodes, as ``model.generate`` does (after eos a row gets pad tokens),
    without generate's per-step machinery. Same tokens as ``generate`` up to float error.
    """
    import copy

    budgets = [max_new_tokens] * len(examples) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):  # zero-shot groups share only "<bos>USER:": still a lean loop
        groups[(ex.split, ex.item["kind"], ex.item["modality"], tuple(ex.shots), budgets[i])].append(i)
    texts: list[str] = [""] * len(examples)
    tok = adapter.tokenizer
    pad, eos, img_id, n_img = tok.pad_token_id, tok.eos_token_id, adapter.image_token_id, adapter.n_image_tokens
    px_cache: dict[int, torch.Tensor] = {}
    adapter.model.eval()
    dev = adapter.device
    with torch.no_grad():
        for key, idx in groups.items():
            budget = key[-1]
            ids = {i: encode_prompt(adapter, examples[i].prompt, len(examples[i].images)) for i in idx}
            p = _common_prefix([ids[i] for i in idx])
            p = min(p, min(len(ids[i]) for i in idx) - 1)  # every query keeps >= 1 token of its own
            n_prefix_images = len(examples[idx[0]].images) - (1 if key[2] == "vqa" else 0)
            # cut before the query's image run (its tokens equal the shots', its pixels do not)
            runs = [j for j, t in enumerate(ids[idx[0]]) if t == img_id and (j == 0 or ids[idx[0]][j - 1] != img_id)]
            if len(runs) > n_prefix_images:
                p = min(p, runs[n_prefix_images])
            if p == 0:  # nothing shared (a tokenizer without bos): the plain batched path
                for i, t in zip(idx, generate(adapter, [examples[i] for i in idx], budget, batch_size)):
                    texts[i] = t
                continue
            prefix = ids[idx[0]][:p]
            if prefix.count(img_id) != n_prefix_images * n_img:
                raise MMUError(f"shared few-shot prefix of {key[:3]} holds {prefix.count(img_id)} image tokens; "
                               f"expected {n_prefix_images} whole images")
            kw = {}
            if n_prefix_images:
                kw = adapter.vision_inputs(_pixels(adapter, examples[idx[0]].images[:n_prefix_images], px_cache),
                                           torch.tensor([prefix]))
            pre = adapter.model(input_ids=torch.tensor([prefix], device=dev),
                                attention_mask=torch.ones((1, p), dtype=torch.long, device=dev),
                                position_ids=torch.arange(p, device=dev)[None],
                                use_cache=True, **{k: v.to(dev) for k, v in kw.items()})
            order = sorted(idx, key=lambda i: (len(ids[i]), i))
            for b in range(0, len(order), batch_size):
                chunk = order[b:b + batch_size]
                sfx = [ids[i][p:] for i in chunk]
                n = max(len(x) for x in sfx)
                inp = torch.full((len(chunk), n), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), p + n), dtype=torch.long)
                mask[:, :p] = 1
                for r, x in enumerate(sfx):
                    inp[r, n - len(x):] = torch.tensor(x)
                    mask[r, p + n - len(x):] = 1
                pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, p:]
                q_px = [_pixels(adapter, examples[i].images[n_prefix_images:], px_cache) for i in chunk]
                q_px = [x for x in q_px if x is not None]
                kw = adapter.vision_inputs(torch.cat(q_px), inp) if q_px else {}
                cache = copy.deepcopy(pre.cache)
                cache.batch_repeat_interleave(len(chunk))
                inp, mask, pos = inp.to(dev), mask.to(dev), pos.to(dev)
                out = adapter.model(input_ids=inp, attention_mask=mask, position_ids=pos, cache=cache,
                                    use_cache=True, **{k: v.to(dev) for k, v in kw.items()})
                new = []
                done = torch.zeros(len(chunk), dtype=torch.bool, device=dev)
                last = pos[:, -1:]
                for _ in range(budget):
                    nxt = out.logits[:, -1].argmax(-1)
                    nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
                    new.append(nxt)
                    done |= nxt == eos
                    if bool(done.all()) or len(new) == budget:
                        break
                    mask = torch.cat([mask, torch.ones((len(chunk), 1), dtype=torch.long, device=dev)], dim=1)
                    last = last + 1
                    out = adapter.model(input_ids=nxt[:, None], attention_mask=mask, position_ids=last,
                                        cache=out.cache, use_cache=True)
                gen = torch.stack(new, dim=1).cpu()
                for i, t in zip(chunk, tok.batch_decode(gen, skip_special_tokens=True)):
                    texts[i] = t
    return texts


def visible_prompt(prompt: str) -> str:
    """The prompt as eval.py's ``decode(..., skip_special_tokens=True)`` shows it (no images)."""
    return prompt.replace("<image>", "")


# ---------------------------------------------------------------- scoring
def score(kind: str, task: dict, ex: Example, generation: str) -> dict:
    """Parse one generation with eval.py's rule (applied, as there, to prompt + generation) and
    score it."""
    full = visible_prompt(ex.prompt) + generation
    if task["parse"] == "letter":
        pred = parse_letter(full)
        return {"parsed": pred, "correct": pred == ex.gold}
    ans = parse_answer(full)
    rec: dict[str, Any] = {"parsed": ans}
    if kind == "cloze":
        rec["correct"] = ex.gold.lower() in ans.lower()
    else:
        from .evaluate import rouge

        s = rouge().score(ex.gold, ans)
        rec.update(rouge1=s["rouge1"].fmeasure, rouge2=s["rouge2"].fmeasure, rougeL=s["rougeL"].fmeasure,
                   bleu=bleu(ex.gold, ans))
    return rec


_FIELD = {"acc": "correct", "rouge1": "rouge1", "rouge2": "rouge2", "rougeL": "rougeL", "bleu": "bleu"}


def evaluate_official(adapter, tasks: dict[str, Sequence[dict]], cfg) -> tuple[dict[str, float], list[dict]]:
    """``evaluate`` under an official protocol: (metrics, per-sample records with the prompt,
    the raw generation and the parsed answer). Keys are the suite's
    ``<split>.<modality>.<kind>.<metric>`` (fractions; the paper prints accuracies in %)."""
    pid = cfg.protocol
    doc = load_protocol(pid)
    if doc["benchmark"] == "clear":
        from .official_clear import evaluate_clear

        return evaluate_clear(adapter, tasks, cfg, doc)
    examples = build_examples(tasks, pid, shots=cfg.shots, seed=cfg.fewshot_seed)
    budgets = [doc["tasks"][ex.item["kind"]]["max_new_tokens"] for ex in examples]
    gens = generate_shared_prefix(adapter, examples, budgets, batch_size=cfg.batch_size)
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    samples: list[dict] = []
    for ex, g in zip(examples, gens):
        it, kind = ex.item, ex.item["kind"]
        s = score(kind, doc["tasks"][kind], ex, g)
        groups[(ex.split, it["modality"], kind)].append(s)
        rec = {"split": ex.split, "id": it["id"], "entity_id": it["entity_id"], "modality": it["modality"],
               "kind": kind, "answer": ex.gold, "prompt": ex.prompt, "generation": g, "shots": ex.shots}
        rec.update({k: (round(v, 6) if isinstance(v, float) else v) for k, v in s.items()})
        samples.append(rec)
    metrics: dict[str, float] = {}
    for (split, modality, kind), scored in groups.items():
        for metric in doc["tasks"][kind]["metrics"]:
            metrics[f"{split}.{modality}.{kind}.{metric}"] = round(
                float(np.mean([float(s[_FIELD[metric]]) for s in scored])), 6)
        metrics[f"{split}.{modality}.{kind}.n"] = len(scored)
    return dict(sorted(metrics.items())), samples


# ---------------------------------------------------------------- training in the official style
def styles(recipe) -> tuple[str, ...]:
    """The recipe's prompt styles, validated."""
    value = getattr(recipe, "prompt_styles", "suite")
    out = tuple(s.strip() for s in value.split(",") if s.strip())
    bad = [s for s in out if s not in PROMPT_STYLES]
    if not out or bad:
        raise MMUError(f"zoo recipe prompt_styles {value!r}: expected a comma-separated subset of "
                       f"{', '.join(PROMPT_STYLES)} (e.g. 'suite' or 'suite,official')")
    return out


def style_protocol(world) -> str:
    """The protocol a world's official-style training follows: its own, else MLLMU-Bench's (the
    synthetic world exports MLLMU-Bench's layout)."""
    name = getattr(world, "name", "")
    own = protocol_file(name, "official").is_file() and "modes" in load_protocol(f"{name}/official")
    return f"{name}/official" if own else "mllmu/official"  # CLEAR's is TOFU-style: no prompt layout to train


def rotated_options(it: dict, r: int) -> dict:
    """The mcq item with its options rotated left by ``r`` (the gold letter moves with them)."""
    n = len(it["options"])
    r %= n
    return dict(it, options=list(it["options"][r:]) + list(it["options"][:r]),
                answer_index=(it["answer_index"] - r) % n)


def training_examples(items: Sequence[dict], pid: str, seed: int, mcq_rotations: int = 1,
                      train_shots: str = "half",
                      real_ids: Collection[str] = ()) -> list[tuple[str, list, str]]:
    """(prompt, images, target) per item in the official layout: mcq and cloze with a few-shot
    prefix of other profiles, generation zero-shot. Targets follow the prompt's end: " A" after
    "ASSISTANT:", "A" after "ASSISTANT: ".

    ``train_shots`` "half" prefixes a random half of the mcq and cloze examples (the first
    recipe); "eval" prefixes them wherever evaluation does (``fewshot_modes``): items of
    ``real_ids`` are asked in the protocol's ``real`` mode (no mcq prefix in eval.py), the rest
    with one.

    ``mcq_rotations`` > 1 asks each mcq item that many times, its options rotated (rotation 0 is
    the item as evaluated), so the gold answer sits under every letter and only reading the
    options gives the letter (measured at 700 steps: it under-trains, docs/benchmarks.md)."""
    if mcq_rotations < 1:
        raise MMUError(f"mcq_rotations {mcq_rotations}: expected an integer >= 1")
    if train_shots not in TRAIN_SHOTS:
        raise MMUError(f"train_shots {train_shots!r}: expected one of {', '.join(TRAIN_SHOTS)}")
    doc = load_protocol(pid)
    real_ids = set(real_ids)
    rng = random.Random(f"{seed}|official-train")
    by_entity: dict[str, list[dict]] = defaultdict(list)
    for it in items:
        by_entity[it["entity_id"]].append(it)
    entities = list(by_entity)
    out = []
    asked = [rotated_options(it, r) if r else it for it in items
             for r in range(mcq_rotations if it["kind"] == "mcq" else 1)]
    for it in asked:
        kind = it["kind"]
        task = doc["tasks"].get(kind)
        if task is None:
            continue
        fewshot, images = "", []
        half = rng.random() < 0.5 if task["shots"] > 0 else False  # drawn either way: "half" keeps its draws
        if train_shots == "eval":
            mode = doc["modes"]["real" if it["entity_id"] in real_ids else "retain"]
            use = task["shots"] > 0 and mode in task["fewshot_modes"]
        else:
            use = half
        if use:
            others = [e for e in entities if e != it["entity_id"]]
            for eid in sorted(rng.sample(others, min(task["shots"], len(others))), key=entities.index):
                seen: set[str] = set()
                for s in by_entity[eid]:  # one copy of each question (vqa repeats per rendering)
                    if s["kind"] != kind or s["modality"] != it["modality"] or s["question"] in seen:
                        continue
                    seen.add(s["question"])
                    fewshot += shot_text(task, kind, s)
                    if s["modality"] == "vqa":
                        images.append(s["image"])
        prompt = query_text(task, kind, it, fewshot)
        if it["modality"] == "vqa":
            images.append(it["image"])
        gold = gold_of(kind, it)
        out.append((prompt, images, gold if prompt.endswith(" ") else " " + gold))
    return out


@functools.lru_cache(maxsize=None)
def _shot_answer_pattern(pid: str) -> re.Pattern:
    """A shot's answer in a raw prompt: the text after each shot template's lead ("Correct
    Answer: ") up to the character that follows it (its line end)."""
    leads = set()
    for task in load_protocol(pid)["tasks"].values():
        for tmpl in (task.get("shot") or {}).values():
            head, _, tail = tmpl.partition("{answer}")
            leads.add((head.rsplit("\n", 1)[-1], tail[:1] or "\n"))
    return re.compile("|".join(f"{re.escape(lead)}(?P<a{i}>[^{re.escape(end)}]*){re.escape(end)}"
                               for i, (lead, end) in enumerate(sorted(leads))))


def shot_answer_labels(adapter, prompt: str, n_images: int, pid: str) -> tuple[list[int], list[int]]:
    """(token ids as ``encode_prompt`` makes them, labels): the labels are the token ids of each
    few-shot answer, -100 elsewhere. The prompt is tokenized once, whole, as evaluation does."""
    encode_prompt(adapter, prompt, n_images, check_only=True)
    text = prompt.replace("<image>", adapter.image_token * adapter.n_image_tokens)
    enc = adapter.tokenizer(text, return_offsets_mapping=True)
    last_user = text.rfind("USER:")  # the query's own turn is not a shot
    spans = [m.span(g) for m in _shot_answer_pattern(pid).finditer(text)
             for g, v in m.groupdict().items() if v is not None]
    spans = [(a, b) for a, b in spans if b <= last_user]
    ids = enc["input_ids"]
    return ids, [i if e > s and any(s < b and e > a for a, b in spans) else -100
                 for i, (s, e) in zip(ids, enc["offset_mapping"])]


def encode_training(adapter, examples: Sequence[tuple[str, list, str]], pid: str | None = None):
    """Encoded examples (prompt ids, target ids + eos, stacked pixels) for the zoo's trainer;
    with ``pid`` (``ZooRecipe.label_shots``), the few-shot prefix's answers are targets too."""
    from .adapter import Encoded

    cache: dict[int, torch.Tensor] = {}
    eos = adapter.tokenizer.eos_token_id
    out = []
    for p, ims, t in examples:
        if pid is None:
            ids, labels = encode_prompt(adapter, p, len(ims)), None
        else:
            ids, labels = shot_answer_labels(adapter, p, len(ims), pid)
        out.append(Encoded(ids, adapter.tokenizer(t, add_special_tokens=False)["input_ids"] + [eos],
                           _pixels(adapter, ims, cache), n_images=len(ims),
                           prompt_labels=labels if labels and any(x != -100 for x in labels) else None))
    return out


def styled_encode(recipe, world, adapter, items: Sequence[dict]):
    """What the zoo trains on for ``items``: the suite's encoding, plus the official-style
    examples when the recipe's prompt_styles ask for them (the default adds nothing)."""
    st = styles(recipe)
    out = adapter.encode(items) if "suite" in st else []
    if "official" in st:
        pid = style_protocol(world)
        real = {it["entity_id"] for it in world.split_items("real")}
        out = out + encode_training(adapter, training_examples(
            items, pid, recipe.seed, getattr(recipe, "mcq_rotations", 1),
            getattr(recipe, "train_shots", "half"), real),
            pid if getattr(recipe, "label_shots", False) else None)
    return out


def style_corpus(recipe, world) -> list[str]:
    """Extra tokenizer corpus of the recipe's styles (none for the default)."""
    return protocol_strings(style_protocol(world)) if "official" in styles(recipe) else []
