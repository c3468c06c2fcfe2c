"""The evaluator: tasks = split x modality x kind, scored per item, summarised per metric key.

Metric keys are ``<split>.<modality>.<kind>.<metric>`` (e.g. ``forget.vqa.mcq.acc``). Each
metric's definition is written next to its code below and in docs/metrics.md.

- mcq, ``loglik`` mode (default): each option's text is scored as the answer by its summed
  token log-likelihood after the prompt (eos excluded); the argmax is the prediction. One batched
  pass, deterministic. ``acc`` = fraction of items whose argmax is the gold option.
  ``prob`` = normalised answer probability P_gold / sum_o P_o with P = exp(mean token log-prob)
  (TOFU / OpenUnlearning "normalised probability").
- mcq, ``generate`` mode (MLLMU-Bench compatible): the prompt lists "A: ... D: ..." and asks for
  one letter; greedy decoding; the first A-D letter of the output is the prediction; an
  unparsable output counts as wrong.
- gen: greedy decoding (``max_new_tokens`` 50, MLLMU-Bench), ROUGE-1/2/L F-measure with the
  ``rouge-score`` package (stemming). ``prob`` = exp(-mean NLL) of the gold answer.
- cloze: the blank is shown as "[Blank]"; ``acc`` = gold string contained case-insensitively in
  the greedy output (MLLMU-Bench's rule).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch
from rouge_score import rouge_scorer
from tqdm.auto import tqdm

from .errors import MMUError
from .surfaces import Item

LETTERS = "ABCD"
# Which way each metric is better is declared by its spec (mmu_bench/builtin.py, per setting).


@dataclass
class EvalConfig:
    """Evaluation settings.

    Args:
        mcq_mode: "loglik" (default) or "generate" (MLLMU-Bench letter parsing).
        max_new_tokens: generation budget for gen / cloze / mcq-generate.
        batch_size: items per forward pass.
        progress: show a progress bar per task.
        protocol: "loglik" (default: this suite's prompts) or "<benchmark>/official" (the
            benchmark's released prompts, parsing and metrics: mmu_bench/official.py).
        shots: few-shot profiles per official task (None: the protocol file's, eval.py's).
        fewshot_seed: seed of the official protocol's few-shot draws (None: the protocol file's).
    """

    mcq_mode: str = "loglik"
    max_new_tokens: int = 50
    batch_size: int = 64
    progress: bool = False
    protocol: str = "loglik"
    shots: int | None = None
    fewshot_seed: int | None = None

    def __post_init__(self):
        if self.mcq_mode not in ("loglik", "generate"):
            raise MMUError(f"mcq mode {self.mcq_mode!r} unknown; expected 'loglik' or 'generate'")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise MMUError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if self.protocol != "loglik":
            from .official import load_protocol

            load_protocol(self.protocol)  # an unknown protocol fails here, naming its file

    def fingerprint(self) -> dict:
        """Settings that change the numbers; the official-protocol fields only when set, so the
        default's reference-cache tags are those it had before they existed."""
        d = asdict(self) | {"progress": None}
        if self.protocol == "loglik":
            for k in ("protocol", "shots", "fewshot_seed"):
                d.pop(k)
        return d


_SCORER = None


def rouge() -> rouge_scorer.RougeScorer:
    global _SCORER
    if _SCORER is None:
        _SCORER = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    return _SCORER


def mcq_generate_prompt(item: Item) -> str:
    opts = "\n".join(f"{LETTERS[i]}: {o}" for i, o in enumerate(item["options"]))
    return f"{item['question']}\n{opts}\nAnswer with the option's letter."


def parse_letter(text: str) -> int:
    m = re.search(r"\b([ABCD])\b", text) or re.search(r"([ABCD])", text)
    return LETTERS.index(m.group(1)) if m else -1


def mcq_accuracy(adapter, items: Sequence[Item]) -> float:
    """Log-likelihood mcq accuracy of ``items`` (stopping rules, tuning, matched retention)."""
    return sum(s["correct"] for s in score_mcq_loglik(adapter, items, EvalConfig())) / len(items)


def score_mcq_loglik(adapter, items: Sequence[Item], cfg: EvalConfig) -> list[dict]:
    for it in items:
        if len(it["options"]) != 4:
            raise MMUError(f"mcq item {it['id']!r} has {len(it['options'])} options; expected 4")
    lps = adapter.option_logprobs(items, batch_size=cfg.batch_size)
    out = []
    for it, opt_lp in zip(items, lps):
        sums = np.array([float(lp.sum()) for lp in opt_lp])
        means = np.array([float(lp.mean()) for lp in opt_lp])
        pred = int(sums.argmax())
        p = np.exp(means - means.max())
        gold = it["answer_index"]
        # TOFU truth ratio with the wrong options as perturbed answers (see forget_quality.py)
        truth_ratio = float(np.mean([p[k] for k in range(len(p)) if k != gold]) / p[gold])
        out.append({"pred": pred, "correct": pred == gold, "prob": float(p[gold] / p.sum()),
                    "truth_ratio": truth_ratio, "option_logprobs": [round(float(s), 4) for s in sums]})
    return out


def score_mcq_generate(adapter, items: Sequence[Item], cfg: EvalConfig) -> list[dict]:
    prompted = [dict(it, question=mcq_generate_prompt(it)) for it in items]
    texts = adapter.generate(prompted, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)
    return [{"pred": parse_letter(t), "output": t, "correct": parse_letter(t) == it["answer_index"]}
            for it, t in zip(items, texts)]


def answer_prob(adapter, items: Sequence[Item], cfg: EvalConfig) -> list[float]:
    lps = adapter.token_logprobs(adapter.encode(items), batch_size=cfg.batch_size)
    return [float(torch.exp(r["logprobs"].mean())) for r in lps]


def score_gen(adapter, items: Sequence[Item], cfg: EvalConfig) -> list[dict]:
    texts = adapter.generate(items, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)
    probs = answer_prob(adapter, items, cfg)
    out = []
    for it, t, p in zip(items, texts, probs):
        s = rouge().score(it["answer"], t)
        out.append({"output": t, "rouge1": s["rouge1"].fmeasure, "rouge2": s["rouge2"].fmeasure,
                    "rougeL": s["rougeL"].fmeasure, "prob": p})
    return out


def score_cloze(adapter, items: Sequence[Item], cfg: EvalConfig) -> list[dict]:
    texts = adapter.generate(items, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)
    return [{"output": t, "correct": it["answer"].lower() in t.lower()} for it, t in zip(items, texts)]


_SUMMARY = {
    "mcq": {"acc": "correct", "prob": "prob"},
    "gen": {"rougeL": "rougeL", "rouge1": "rouge1", "rouge2": "rouge2", "prob": "prob"},
    "cloze": {"acc": "correct"},
}


def evaluate(adapter, tasks: dict[str, Sequence[Item]], cfg: EvalConfig | None = None) -> tuple[dict[str, float], list[dict]]:
    """Score every item of every split in ``tasks`` ({split name: items}).

    Returns (metrics {key: value}, per-sample records).
    """
    cfg = cfg or EvalConfig()
    if cfg.protocol != "loglik":
        from .official import evaluate_official

        return evaluate_official(adapter, tasks, cfg)
    metrics: dict[str, float] = {}
    samples: list[dict] = []
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for split, items in tasks.items():
        for it in items:
            groups[(split, it["modality"], it["kind"])].append(it)
    bar = tqdm(sorted(groups), desc="evaluate", disable=not cfg.progress, leave=False)
    for split, modality, kind in bar:
        items = groups[(split, modality, kind)]
        if kind == "mcq":
            fn = score_mcq_loglik if cfg.mcq_mode == "loglik" else score_mcq_generate
        else:
            fn = {"gen": score_gen, "cloze": score_cloze}[kind]
        scored = fn(adapter, items, cfg)
        for metric, field in _SUMMARY[kind].items():
            if cfg.mcq_mode == "generate" and kind == "mcq" and metric == "prob":
                continue
            vals = [float(s[field]) for s in scored]
            metrics[f"{split}.{modality}.{kind}.{metric}"] = round(float(np.mean(vals)), 6)
        metrics[f"{split}.{modality}.{kind}.n"] = len(items)
        for it, s in zip(items, scored):
            rec = {"split": split, "id": it["id"], "entity_id": it["entity_id"], "modality": modality,
                   "kind": kind, "answer": it["answer"]}
            rec.update({k: (round(v, 6) if isinstance(v, float) else v) for k, v in s.items()})
            samples.append(rec)
    return dict(sorted(metrics.items())), samples
