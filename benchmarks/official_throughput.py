"""Throughput of ``--eval-protocol official`` against MLLMU-Bench's released loop, in one run.

The released eval.py asks one example at a time: ``processor(images=[...], text=prompt)``,
``model.generate(max_new_tokens=50)``, ``decode(outputs[0][2:])``, then parses. This script runs
that loop, the batched official evaluator (``generate``) and the evaluator's default, batched
with the few-shot prefix's KV cache shared (``generate_shared_prefix``), on the same items (the same official prompts) with
the same model, prints examples per second of each and their ratio, and how many parsed answers
agree (greedy decoding under left padding can differ in the last float bits, rarely in a token).

    python benchmarks/official_throughput.py --data <MLLMU folder> [--model-dir <zoo model>]
        [--forget-split forget_15] [--limit 200] [--batch-size 32]

Without ``--model-dir`` a tiny LLaVA (random init, tokenizer trained on the data) is used: the
timing does not depend on what the model knows.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def released_loop(adapter, examples, budgets):
    """eval.py's per-example loop (LLaVA branch), parses included."""
    import torch

    from mmu_bench.official import parse_answer, parse_letter

    proc, out = adapter.processor, []
    for ex, budget in zip(examples, budgets):
        inputs = proc(images=ex.images or None, text=ex.prompt, return_tensors="pt").to(adapter.device)
        with torch.no_grad():
            outputs = adapter.model.generate(**inputs, max_new_tokens=budget, do_sample=False,
                                             pad_token_id=adapter.tokenizer.pad_token_id)
        text = proc.decode(outputs[0][2:], skip_special_tokens=True)
        out.append(parse_letter(text) if ex.item["kind"] == "mcq" else parse_answer(text))
    return out


def main(argv=None) -> int:
    import torch

    from mmu_bench.adapter import LlavaAdapter
    from mmu_bench.official import build_examples, generate, generate_shared_prefix, load_protocol, score
    from mmu_bench.tasks.mllmu import MLLMUWorld
    from mmu_bench.tasks.synthetic.benchmark import eval_tasks

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="MLLMU-Bench layout folder (e.g. the synthetic export)")
    p.add_argument("--model-dir", default=None, help="a zoo model folder (default: a random tiny LLaVA)")
    p.add_argument("--forget-split", default="forget_15")
    p.add_argument("--limit", type=int, default=200, help="examples timed (spread over every task)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    world = MLLMUWorld(args.data)
    if args.model_dir:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        adapter = LlavaAdapter(AutoModelForImageTextToText.from_pretrained(args.model_dir),
                               AutoProcessor.from_pretrained(args.model_dir), "cpu")
    else:
        from dataclasses import replace

        from mmu_bench.official import OFFICIAL_CONTEXT, OFFICIAL_TEXT_LAYERS
        from mmu_bench.tiny_model import TinyLlavaConfig, build_model, build_processor, build_tokenizer

        # the shape of an official-style zoo model (zoo.Zoo raises both for prompt_styles=official)
        cfg = replace(TinyLlavaConfig(), max_positions=OFFICIAL_CONTEXT, text_layers=OFFICIAL_TEXT_LAYERS)
        tok = build_tokenizer(world.corpus(), cfg.vocab_size)
        tok.model_max_length = cfg.max_positions
        proc = build_processor(tok, cfg)
        adapter = LlavaAdapter(build_model(tok, cfg, seed=0), proc, "cpu")
    doc = load_protocol("mllmu/official")
    examples = build_examples(eval_tasks(world, args.forget_split), "mllmu/official")
    step = max(1, len(examples) // args.limit)
    examples = examples[::step][:args.limit]  # every task and split represented
    budgets = [doc["tasks"][e.item["kind"]]["max_new_tokens"] for e in examples]
    adapter.model.eval()

    t0 = time.perf_counter()
    ref = released_loop(adapter, examples, budgets)
    t_ref = time.perf_counter() - t0
    def parsed(gens):
        return [score(e.item["kind"], doc["tasks"][e.item["kind"]], e, g)["parsed"] for e, g in zip(examples, gens)]

    t0 = time.perf_counter()
    batched = parsed(generate(adapter, examples, budgets, batch_size=args.batch_size))
    t_batch = time.perf_counter() - t0
    t0 = time.perf_counter()
    shared = parsed(generate_shared_prefix(adapter, examples, budgets, batch_size=args.batch_size))
    t_shared = time.perf_counter() - t0
    n = len(examples)
    print(f"{n} official examples, {args.threads} thread(s), batch {args.batch_size}")
    print(f"released one-at-a-time loop:   {t_ref:8.2f} s  {n / t_ref:8.1f} examples/s")
    for name, t, ours in (("batched (left padding):", t_batch, batched),
                          ("batched + shared prefix KV:", t_shared, shared)):
        same = sum(a == b for a, b in zip(ref, ours))
        print(f"{name:30s} {t:8.2f} s  {n / t:8.1f} examples/s  speed-up {t_ref / t:.1f}x  "
              f"parsed answers equal to the released loop's: {same}/{n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
