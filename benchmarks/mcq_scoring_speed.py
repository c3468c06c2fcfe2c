"""mcq log-likelihood scoring with the prompt pass's LM head on the last position only
(``logits_to_keep=1``, what the adapter does) against the LM head over every prompt position.

    python benchmarks/mcq_scoring_speed.py [--items 240] [--cache-dir DIR]

Both on the shipped finetuned model's forget_10 mcq items, in this one process; prints the time
ratio measured in one run (noisy machines) and whether the scores are bit-identical.

On the tiny model (vocabulary 1000) the ratio is about 1.0 (measured 0.98 and 1.01): its LM head
is cheap. The change is for real models, where the prompt pass's logits over every position are
the memory peak: a batch of 64 prompts of 600 tokens (576 image tokens) at a 32k vocabulary is
64 x 600 x 32000 float32 = 4.9 GB of logits, against 8 MB for the last position.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=240)
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from mmu_bench.tasks.synthetic.plugin import SyntheticBenchmark

    bench = SyntheticBenchmark(cache_dir=args.cache_dir, progress=False)
    model = bench.load("finetuned", "forget_10")
    items = [it for it in bench.world.split_items("forget_10") if it.get("options")][:args.items]

    kept_forward = model.model.forward

    def every_position(*a, **k):  # the prompt pass as it was: logits for every position
        k.pop("logits_to_keep", None)
        return kept_forward(*a, **k)

    model.option_logprobs(items[:8])  # warm-up
    t0 = time.perf_counter()
    kept = model.option_logprobs(items)
    t_kept = time.perf_counter() - t0
    model.model.forward = every_position
    t0 = time.perf_counter()
    full = model.option_logprobs(items)
    t_full = time.perf_counter() - t0
    model.model.forward = kept_forward
    same = all(torch.equal(a, b) for x, y in zip(kept, full) for a, b in zip(x, y))
    print(f"{len(items)} mcq items: every position {t_full:.2f} s, last position {t_kept:.2f} s, "
          f"ratio {t_full / t_kept:.2f}; scores bit-identical: {same}")


if __name__ == "__main__":
    main()
