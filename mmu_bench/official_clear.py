"""CLEAR's official evaluation protocol (``--benchmark clear --eval-protocol official``).

CLEAR's released code (somvy/multimodal_unlearning @ bb14c96, mm/eval.py + mm/calculate_metrics.py)
scores six tasks TOFU-style; the task table, templates and constants are data in
``tasks/clear/protocols/official.yaml``. Per row of a task's config (its first ``ds_size``):

- the question: a random caption question, "The name of the person on the image is ", or the
  row's own question, asked with LLaVA's chat template; drawn independently for each of the three
  loaders (answer, base answer, perturbed answers), as the release's ``random.choice`` is;
- ``avg_gt_loss`` / ``avg_paraphrased_loss`` / ``average_perturb_loss``: summed answer-token NLL
  over the number of answer tokens, the answer tokens being the full text's tokens after the
  first ``len(tokenize(question prompt))`` (get_batch_loss + the collator's masking);
- a greedy generation (300 new tokens) from the decoded prompt cut before the answer and
  re-tokenised as text: the image token is a special token, so decoding drops it and the release
  generates WITHOUT the image (kept here: it is what the published numbers measure);
- ROUGE-L recall of the generation against the decoded answer.

Aggregates (compute_model_utility): ``prob`` = mean exp(-avg_gt_loss) for the caption tasks
(eval_log*), else mean P_true / (P_true + sum P_perturbed); ``truth_ratio`` from
R_i = exp(mean(all perturbed losses of the task) - paraphrased loss_i) (one scalar mean over every
row and perturbation, as the release computes it), mean(min(R, 1/R)) on forget tasks, else
mean(max(0, 1 - 1/R)); ``clear.model_utility`` = harmonic mean of the 12 non-forget values. The
forget caption task's R_i are the run's forget statistics, so forget quality (KS p-value against
the retrain oracle, evaluate_forget_quality) comes out of mmu_bench/forget_quality.py.

Keys: ``<split>.vqa.<task>.<metric>`` (task: caption, facerec, faces, world; metric: rougeL_recall,
prob, truth_ratio, n).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from .errors import MMUError
from .metrics import MetricSpec

TOP_FIELDS = ("benchmark", "question_seed", "ds_size", "max_new_tokens", "prompt", "full",
              "question_strategies", "tasks")
TASK_FIELDS = ("split", "config", "file", "name", "question_strategy", "answer_key", "base_answer_key",
               "perturbed_answer_key")
LOADERS = ("eval", "base", "perturb")
# task -> the key's task part
SHORT = {"forget_caption": "caption", "retain_caption": "caption", "forget_facerec": "facerec",
         "retain_facerec": "facerec", "real_faces": "faces", "real_world": "world"}

METRICS = [
    MetricSpec("*.vqa.caption.*", "CLEAR official: image captions (forget: forget*_perturbed, retain: "
               "retain_perturbed), asked with a random caption question", stage="clear/official"),
    MetricSpec("*.vqa.facerec.*", "CLEAR official: the person's name ('The name of the person on the image is ')",
               stage="clear/official"),
    MetricSpec("real.vqa.faces.*", "CLEAR official: real_faces, the name of a real person", stage="clear/official"),
    MetricSpec("real.vqa.world.*", "CLEAR official: real_world, questions about real pictures", stage="clear/official"),
    MetricSpec("*.vqa.*.rougeL_recall", "ROUGE-L recall of the greedy answer (generated without the image, "
               "as the release does) vs the gold", stage="clear/official"),
    MetricSpec("*.vqa.*.truth_ratio", "CLEAR truth ratio: forget mean min(R, 1/R), else mean max(0, 1 - 1/R)",
               stage="clear/official"),
    MetricSpec("forget.vqa.*.truth_ratio", "1 = paraphrase and perturbations equally likely (forgotten)", "up",
               "clear/official"),
    MetricSpec("clear.model_utility", "CLEAR model utility: harmonic mean of prob, ROUGE and truth ratio on "
               "Retain, Retain FaceRec, Real Faces, Real World", "up", "clear/official"),
]


def columns(setting) -> list[str]:
    """Headline columns of a CLEAR official run (calculate_metrics.py's table)."""
    return ["forget.vqa.caption.rougeL_recall", "forget.vqa.caption.prob", "forget.vqa.caption.truth_ratio",
            "forget.vqa.facerec.prob", "retain.vqa.caption.rougeL_recall", "retain.vqa.facerec.prob",
            "real.vqa.faces.prob", "real.vqa.world.prob", "clear.model_utility",
            setting.oracle_key("forget_quality.ks_p")]


def check(doc: dict, path: str) -> None:
    """MMUError unless a CLEAR protocol file has the fields used here."""
    for key in TOP_FIELDS:
        if key not in doc:
            raise MMUError(f"{path}: missing top-level field {key!r}")
    for name, task in doc["tasks"].items():
        if name not in SHORT:
            raise MMUError(f"{path}: task {name!r} unknown; expected one of {', '.join(SHORT)}")
        for key in TASK_FIELDS:
            if key not in task:
                raise MMUError(f"{path}: task {name!r} lacks field {key!r}")
        if task["question_strategy"] not in ("random_caption", "random_faces", "column"):
            raise MMUError(f"{path}: task {name!r}: question_strategy {task['question_strategy']!r}; expected "
                           "random_caption, random_faces or column")


@dataclass
class Row:
    """One row of a task: the item it came from and the three loaders' (question, answers)."""

    item: dict
    questions: dict[str, str]  # loader -> question
    answer: str
    base: str
    perturbed: list[str]


def _question(doc: dict, task: dict, row: dict, rng: random.Random) -> str:
    s = task["question_strategy"]
    if s == "random_caption":
        return rng.choice(doc["question_strategies"]["random_caption"])
    if s == "random_faces":
        return doc["question_strategies"]["random_faces"]
    return row[task.get("question_key", "question")]


def _matches(config: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(config, pattern)


def task_rows(tasks: dict[str, Sequence[dict]], doc: dict, seed: int | None = None) -> dict[str, list[Row]]:
    """Each protocol task's rows, from the items' ``official`` source rows (tasks/clear/world.py):
    in config row order, the first ``ds_size``, with seeded question draws."""
    seed = doc["question_seed"] if seed is None else seed
    out: dict[str, list[Row]] = {}
    for name, task in doc["tasks"].items():
        src = [it for it in tasks.get(task["split"], [])
               if "official" in it and _matches(it["official"]["config"], task["config"])]
        if not src:
            continue
        configs = sorted({it["official"]["config"] for it in src})
        if len(configs) > 1:
            raise MMUError(f"CLEAR official task {name}: split {task['split']!r} mixes rows of configs "
                           f"{', '.join(configs)}; expected one")
        seen: dict[int, dict] = {}
        for it in src:
            seen.setdefault(it["official"]["row"], it)
        items = [seen[r] for r in sorted(seen)][: doc["ds_size"]]
        rngs = {ld: random.Random(f"{seed}|{name}|{ld}") for ld in LOADERS}
        rows = []
        for it in items:
            raw = it["official"]
            missing = [task[k] for k in ("answer_key", "base_answer_key", "perturbed_answer_key") if task[k] not in raw]
            if missing:
                raise MMUError(f"CLEAR official task {name}: row {raw['where']} lacks field(s) "
                               f"{', '.join(missing)} (CLEAR's {raw['config']} has them)")
            if not raw[task["perturbed_answer_key"]]:
                raise MMUError(f"CLEAR official task {name}: row {raw['where']} has no "
                               f"{task['perturbed_answer_key']}; expected a non-empty list")
            # one draw per row and loader, as each loader's __getitem__ draws once per row
            qs = {ld: _question(doc, task, raw, rngs[ld]) for ld in LOADERS}
            rows.append(Row(it, qs, raw[task["answer_key"]], raw[task["base_answer_key"]],
                            list(raw[task["perturbed_answer_key"]])))
        out[name] = rows
    return out


def prompt_texts(doc: dict, question: str, answer: str, has_image: bool) -> tuple[str, str]:
    """(question prompt with the generation prompt, full text with the answer) of the chat template."""
    m = "vqa" if has_image else "qa"
    return doc["prompt"][m].format(question=question), doc["full"][m].format(question=question, answer=answer)


# ---------------------------------------------------------------- losses
def _encode(adapter, doc: dict, question: str, answer: str, image, pixel_cache: dict):
    """Encoded(question tokens, answer tokens, pixels): the collator's masking -- the first
    len(tokenize(question prompt)) tokens of the full text are the question."""
    from .adapter import Encoded
    from .official import _pixels, encode_prompt

    has_image = image is not None
    q, full = prompt_texts(doc, question, answer, has_image)
    n_img = 1 if has_image else 0
    ids = encode_prompt(adapter, full, n_img)
    n_q = len(encode_prompt(adapter, q, n_img))
    px = _pixels(adapter, [image], pixel_cache)[0] if has_image else None
    return Encoded(ids[:n_q], ids[n_q:], px)


def losses(adapter, encoded: Sequence, batch_size: int) -> list[tuple[float, int]]:
    """(summed NLL, token count) of each example's answer tokens (get_batch_loss, num_token_gt)."""
    recs = adapter.token_logprobs(list(encoded), batch_size=batch_size)
    return [(float(-r["logprobs"].double().sum()), int(r["logprobs"].numel())) for r in recs]


def _per_token(loss_n: tuple[float, int]) -> float:
    loss, n = loss_n
    if n == 0:
        raise MMUError("CLEAR official: an answer has no tokens after its question (empty answer?)")
    return loss / n


# ---------------------------------------------------------------- generation
def generation_prompt(adapter, doc: dict, question: str, answer: str, has_image: bool) -> tuple[str, str]:
    """(question text, decoded answer) as get_all_evals makes them: the full input decoded with
    special tokens skipped (so without its image), cut at the last occurrence of the decoded
    answer (``s[: s.rfind(ans)]``, the release's slicing even when the answer is not found)."""
    tok = adapter.tokenizer
    _, full = prompt_texts(doc, question, answer, has_image)
    ids = tok(full.replace("<image>", adapter.image_token * adapter.n_image_tokens))["input_ids"]
    # the image token is special in LLaVA / Qwen processors; drop it explicitly in case this
    # tokenizer does not mark it so
    s = tok.decode([i for i in ids if i != adapter.image_token_id], skip_special_tokens=True)
    ans = tok.decode(tok(answer)["input_ids"], skip_special_tokens=True)
    return s[: s.rfind(ans)], ans


def _max_positions(adapter) -> int | None:
    cfg = adapter.model.config
    cfg = getattr(cfg, "text_config", cfg)
    return getattr(cfg, "max_position_embeddings", None)


# ---------------------------------------------------------------- aggregation (calculate_metrics.py)
def truth_ratios(paraphrased: Sequence[float], perturbed: Sequence[Sequence[float]]) -> np.ndarray:
    """R_i = exp(mean over ALL rows and perturbations of the perturbed loss - paraphrased_i):
    ``dict_values_to_array(average_perturb_loss).mean()`` is one scalar in the release."""
    return np.exp(float(np.mean(np.array(perturbed, dtype=float))) - np.array(paraphrased, dtype=float))


def aggregate(task: dict, recs: Sequence[dict]) -> dict[str, float]:
    gt = np.array([r["avg_gt_loss"] for r in recs])
    true_p = np.exp(-gt)
    if "eval_log" in task["file"]:
        prob = float(np.mean(true_p))
    else:
        false_p = np.exp(-np.array([r["average_perturb_loss"] for r in recs]))
        prob = float(np.mean(true_p / (true_p + false_p.sum(-1))))
    tr = truth_ratios([r["avg_paraphrased_loss"] for r in recs], [r["average_perturb_loss"] for r in recs])
    tr_value = np.mean(np.minimum(tr, 1 / tr)) if "forget" in task["file"] else np.mean(np.maximum(0, 1 - 1 / tr))
    return {"prob": prob, "rougeL_recall": float(np.mean([r["rougeL_recall"] for r in recs])),
            "truth_ratio": float(tr_value), "n": len(recs)}


def model_utility(per_task: dict[str, dict[str, float]], doc: dict) -> float | None:
    """scipy hmean of every non-forget task's three values (None unless all four tasks ran)."""
    kept = [n for n, t in doc["tasks"].items() if "Forget" not in t["name"]]
    if not all(n in per_task for n in kept):
        return None
    vals = [per_task[n][m] for n in kept for m in ("prob", "rougeL_recall", "truth_ratio")]
    if any(v <= 0 for v in vals):
        return 0.0  # scipy's hmean of values with a zero is 0
    return float(len(vals) / sum(1 / v for v in vals))


def evaluate_clear(adapter, tasks: dict[str, Sequence[dict]], cfg, doc: dict) -> tuple[dict[str, float], list[dict]]:
    from .official import Example, generate
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(["rouge1", "rougeL"], use_stemmer=True)  # eval.py / calculate_metrics.py's
    rows = task_rows(tasks, doc, seed=cfg.fewshot_seed)
    if not rows:
        raise MMUError("CLEAR official protocol: no evaluation item carries a CLEAR source row "
                       "('official' field); load the data with --benchmark clear")
    cache: dict[int, torch.Tensor] = {}
    limit = _max_positions(adapter)
    metrics: dict[str, float] = {}
    samples: list[dict] = []
    per_task: dict[str, dict[str, float]] = {}
    for name, task_rows_ in rows.items():
        task = doc["tasks"][name]
        img = [r.item["image"] for r in task_rows_]
        gt = losses(adapter, [_encode(adapter, doc, r.questions["eval"], r.answer, im, cache)
                              for r, im in zip(task_rows_, img)], cfg.batch_size)
        base = losses(adapter, [_encode(adapter, doc, r.questions["base"], r.base, im, cache)
                                for r, im in zip(task_rows_, img)], cfg.batch_size)
        flat = [(i, p) for i, r in enumerate(task_rows_) for p in r.perturbed]
        pert_l = losses(adapter, [_encode(adapter, doc, task_rows_[i].questions["perturb"], p, img[i], cache)
                                  for i, p in flat], cfg.batch_size)
        pert: dict[int, list[float]] = defaultdict(list)
        for (i, _), ln in zip(flat, pert_l):
            pert[i].append(_per_token(ln))
        prompts = [generation_prompt(adapter, doc, r.questions["eval"], r.answer, im is not None)
                   for r, im in zip(task_rows_, img)]
        examples = [Example(r.item, task["split"], q, [], ans) for r, (q, ans) in zip(task_rows_, prompts)]
        budgets = []
        for ex in examples:  # the release's 300 new tokens, within the model's positions
            n = doc["max_new_tokens"]
            if limit:
                n = max(1, min(n, limit - len(adapter.tokenizer(ex.prompt)["input_ids"])))
            budgets.append(n)
        gens = generate(adapter, examples, budgets, batch_size=cfg.batch_size)
        recs = []
        for i, (r, ex, g) in enumerate(zip(task_rows_, examples, gens)):
            rec = {"split": task["split"], "id": f"{r.item['id']}.{name}", "entity_id": r.item["entity_id"],
                   "modality": "vqa", "kind": SHORT[name], "task": name, "answer": ex.gold,
                   "questions": r.questions, "prompt": ex.prompt, "generation": g,
                   "avg_gt_loss": _per_token(gt[i]), "gt_loss": gt[i][0], "num_token_gt": gt[i][1],
                   "avg_paraphrased_loss": _per_token(base[i]), "average_perturb_loss": pert[i],
                   "rougeL_recall": scorer.score(ex.gold, g)["rougeL"].recall}
            recs.append(rec)
        agg = aggregate(task, recs)
        per_task[name] = agg
        tr = truth_ratios([r["avg_paraphrased_loss"] for r in recs], [r["average_perturb_loss"] for r in recs])
        for rec, t in zip(recs, tr):
            rec["truth_ratio"] = float(t)
            if name == "forget_caption":  # evaluate_forget_quality's statistic
                rec["forget_statistic"] = float(t)
        for k, v in agg.items():
            metrics[f"{task['split']}.vqa.{SHORT[name]}.{k}"] = v if k == "n" else round(v, 6)
        samples += [{k: (round(v, 6) if isinstance(v, float) else
                         [round(x, 6) for x in v] if k == "average_perturb_loss" else v) for k, v in rec.items()}
                    for rec in recs]
    mu = model_utility(per_task, doc)
    if mu is not None and not math.isnan(mu):
        metrics["clear.model_utility"] = round(mu, 6)
    return dict(sorted(metrics.items())), samples
