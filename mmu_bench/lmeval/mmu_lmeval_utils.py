"""process_results for mmu-bench's exported generation tasks (written by mmu_bench.lmeval)."""

_SCORER = None


def _rouge():
    global _SCORER
    if _SCORER is None:
        from rouge_score import rouge_scorer

        _SCORER = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    return _SCORER


def process_cloze(doc, results):
    """acc: the gold answer is contained in the output, case-insensitively (mmu-bench / MLLMU-Bench)."""
    out = results[0].strip()
    gold = doc["answer"]
    return {"acc": float(gold.lower() in out.lower()),
            "exact_match": float(out.lower() == gold.strip().lower())}


def process_gen(doc, results):
    """ROUGE F-measures of the output against the gold answer (rouge-score, stemming)."""
    s = _rouge().score(doc["answer"], results[0].strip())
    return {k: s[k].fmeasure for k in ("rougeL", "rouge1", "rouge2")}
