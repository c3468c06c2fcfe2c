"""One prepared check of the CUDA paths on a real-size model (run by benchmarks/gpu_check.sh).

Builds the LLaVA-1.5-7B architecture with RANDOM weights directly on the GPU in bf16 (no
download): CLIP ViT-L/14-336 vision tower, mlp2x_gelu projector, Llama-2-7B language model
(vocab 32064), with the project's byte-level BPE tokenizer (its ids are valid in the big vocab)
and a 336 px CLIP image processor. Then, each phase guarded (an error or a timeout is printed and
the next phase runs) and its peak GPU memory measured:

  env          versions, GPU
  build        the 7B model on the GPU, wrapped in LlavaAdapter; one forward
  cvf          CVF (vision tower + projector, no null space), batch 4: step time
  cvf_null     CVF with the null-space projection (projector layers only: the real code path)
  ga_lora      GA with LoRA on the LLM, batch 4: step time, merge
  ga_lora_gc   the same with gradient checkpointing
  eval         mmu_bench.evaluate.evaluate on ~64 items (mcq / gen / cloze): items/s per kind,
               batch chosen by auto_batch_size
  e2e          the tiny default end to end on the GPU: run(RunSpec(method="cvf", world_size=20, ...))
               with the test suite's small zoo recipe (zoo training + reference rows + CVF); the
               7B model stays loaded ("start_gib")
  nullspace_cost  what the null space would cost on the whole ViT-L tower (moments + eigh on the
               CPU, moving P to the GPU every step), timed on one layer of each width, extrapolated
  mmunlearner_saliency  MMUnlearner's saliency passes (two float32 squared-gradient buffers the size of
               the masked weights): the analytic estimate from parameter counts of the 7B shape
               (a meta-device model: no memory, printed on any machine), then, with the build
               phase's model, the measured peak for masked=vision and masked=language
  ga_full      GA on all LLM weights (AdamW state for 6.7B parameters), last: it may run out of memory

A phase gets min(its own limit, what is left of --budget); a heartbeat line every 30 s.

Usage:  python benchmarks/gpu_check.py [--smoke] [--only a,b] [--skip a,b] [--budget 420] [--out F]
``--smoke`` swaps in a tiny architecture and tiny sizes (CPU is fine): the same code path, in
seconds (tests/test_gpu_check.py runs it). Results go to ``--out`` (default $OUT/gpu_check.json
when $OUT is set), rewritten after every phase so a killed run keeps what it measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

PHASES = ("env", "build", "cvf", "cvf_null", "ga_lora", "ga_lora_gc", "eval", "e2e", "nullspace_cost", "mmunlearner_saliency",
          "ga_full")


@dataclass
class Sizes:
    """LLaVA-1.5-7B and the work done on it; ``SMOKE`` is the same at toy size."""

    vision_hidden: int = 1024
    vision_intermediate: int = 4096
    vision_layers: int = 24
    vision_heads: int = 16
    image_size: int = 336
    patch_size: int = 14
    text_hidden: int = 4096
    text_intermediate: int = 11008
    text_layers: int = 32
    text_heads: int = 32
    vocab_size: int = 32064
    items: int = 8            # forget / retain items for the training phases
    batch_size: int = 4
    steps: int = 4            # timed steps (after one warm-up call of 1 step)
    full_steps: int = 2
    eval_items: int = 64
    eval_batch: int = 64      # auto_batch_size starts here
    max_new_tokens: int = 16
    e2e_world: int = 20
    e2e_zoo: dict = field(default_factory=lambda: {"base_steps": 900, "finetune_steps": 700})
    e2e_max_new_tokens: int = 24
    e2e_dry: bool = False     # resolve the run only (smoke: the full tiny run takes minutes on a CPU)
    timeouts: dict = field(default_factory=lambda: {
        "env": 30, "build": 150, "cvf": 75, "cvf_null": 60, "ga_lora": 75, "ga_lora_gc": 60, "eval": 75,
        "e2e": 240, "nullspace_cost": 45, "mmunlearner_saliency": 120,
        "ga_full": 60})


SMOKE = Sizes(vision_hidden=32, vision_intermediate=64, vision_layers=2, vision_heads=2, image_size=28,
              text_hidden=64, text_intermediate=128, text_layers=2, text_heads=4, vocab_size=1024,
              steps=2, full_steps=1, eval_items=16, eval_batch=8, max_new_tokens=3,
              e2e_zoo={"base_steps": 2, "finetune_steps": 2}, e2e_max_new_tokens=3, e2e_dry=True)

RESULTS: dict[str, dict] = {}
STATE: dict = {}
OUT_PATH: str | None = None


class PhaseTimeout(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    """Raise PhaseTimeout in the main thread after ``seconds`` (checked between Python bytecodes,
    so a long CUDA/LAPACK call finishes first). No-op off the main thread, or when another alarm
    is pending (pytest-timeout's, say)."""
    if (threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer")
            or signal.getitimer(signal.ITIMER_REAL)[0] > 0):
        yield
        return

    def handler(signum, frame):
        raise PhaseTimeout(f"phase ran past its {seconds:.0f} s limit")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, max(1.0, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def log(msg: str) -> None:
    print(msg, flush=True)


def cuda() -> bool:
    return torch.cuda.is_available()


def sync() -> None:
    if cuda():
        torch.cuda.synchronize()


def peak_gib() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda() else None


def free_memory() -> None:
    gc.collect()
    if cuda():
        torch.cuda.empty_cache()


def save_results() -> None:
    if OUT_PATH:
        tmp = OUT_PATH + ".tmp"
        with open(tmp, "w") as f:
            json.dump(RESULTS, f, indent=1, default=str)
        os.replace(tmp, OUT_PATH)


def run_phase(name: str, fn, sizes: Sizes, deadline: float) -> None:
    left = deadline - time.time()
    limit = min(sizes.timeouts.get(name, 60), left)
    if limit < 5:
        RESULTS[name] = {"ok": False, "skipped": f"out of time budget ({left:.0f} s left)"}
        log(f"== {name}: SKIPPED, {left:.0f} s of the budget left")
        save_results()
        return
    log(f"== {name} (limit {limit:.0f} s)")
    if cuda():
        torch.cuda.reset_peak_memory_stats()
    start_gib = round(torch.cuda.memory_allocated() / 2**30, 2) if cuda() else None
    t0 = time.time()
    rec: dict = {}
    done = threading.Event()

    def heartbeat():  # something to read while a long phase runs
        while not done.wait(30):
            log(f"   ... {name} still running ({time.time() - t0:.0f} s)")

    threading.Thread(target=heartbeat, daemon=True).start()
    try:
        with time_limit(limit):
            rec = fn(sizes) or {}
        sync()
        rec["ok"] = True
    except BaseException as e:  # noqa: BLE001 - every phase is guarded; Ctrl-C still stops the run
        if isinstance(e, KeyboardInterrupt):
            raise
        rec["ok"] = False
        rec["error"] = f"{type(e).__name__}: {str(e)[:500]}"
        log(f"!! {name} failed: {rec['error']}")
        log("".join(traceback.format_exception(type(e), e, e.__traceback__, limit=-6)))
    finally:
        done.set()
    rec["seconds"] = round(time.time() - t0, 2)
    rec["peak_gib"] = peak_gib()
    rec["start_gib"] = start_gib
    RESULTS[name] = rec
    free_memory()
    log(f"-- {name}: {'ok' if rec['ok'] else 'FAILED'} in {rec['seconds']} s, GPU memory peak {rec['peak_gib']} GiB "
        f"(at start {start_gib})")
    save_results()


# ------------------------------------------------------------------ the model
def device() -> torch.device:
    return torch.device("cuda") if cuda() else torch.device("cpu")


def dtype() -> torch.dtype:
    return torch.bfloat16 if cuda() and torch.cuda.is_bf16_supported() else torch.float32


def world():
    if "world" not in STATE:
        from mmu_bench.tasks.synthetic.world import World, WorldConfig

        STATE["world"] = World(WorldConfig(size=20, seed=0))
    return STATE["world"]


def llava_config(s: Sizes, tok):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    from mmu_bench.tiny_model import IMAGE_TOKEN

    vision = CLIPVisionConfig(hidden_size=s.vision_hidden, intermediate_size=s.vision_intermediate,
                              num_hidden_layers=s.vision_layers, num_attention_heads=s.vision_heads,
                              image_size=s.image_size, patch_size=s.patch_size, projection_dim=768,
                              hidden_act="quick_gelu")
    text = LlamaConfig(hidden_size=s.text_hidden, intermediate_size=s.text_intermediate,
                       num_hidden_layers=s.text_layers, num_attention_heads=s.text_heads,
                       num_key_value_heads=s.text_heads, vocab_size=s.vocab_size, max_position_embeddings=4096,
                       rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return LlavaConfig(vision_config=vision, text_config=text,
                       image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN),
                       image_seq_length=(s.image_size // s.patch_size) ** 2,
                       vision_feature_layer=-2, vision_feature_select_strategy="default",
                       projector_hidden_act="gelu", multimodal_projector_bias=True)


def phase_env(s: Sizes) -> dict:
    import accelerate
    import peft
    import transformers

    rec = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
           "peft": peft.__version__, "accelerate": accelerate.__version__, "cuda": cuda()}
    if cuda():
        p = torch.cuda.get_device_properties(0)
        rec |= {"gpu": p.name, "gpu_memory_gib": round(p.total_memory / 2**30, 1),
                "bf16": torch.cuda.is_bf16_supported(), "cuda_version": torch.version.cuda}
    log(f"   {rec}")
    return rec


def phase_build(s: Sizes) -> dict:
    from transformers import AutoModelForImageTextToText

    from mmu_bench.adapter import LlavaAdapter
    from mmu_bench.tiny_model import TinyLlavaConfig, build_processor, build_tokenizer

    tok = build_tokenizer(world().corpus(), 1000)
    assert len(tok) <= s.vocab_size
    processor = build_processor(tok, TinyLlavaConfig(image_size=s.image_size, patch_size=s.patch_size))
    config = llava_config(s, tok)
    t0 = time.time()
    with torch.device(device()):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype(), attn_implementation="sdpa")
    sync()
    t_init = time.time() - t0
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    adapter = LlavaAdapter(model, processor, device())
    adapter.model.eval()
    STATE["adapter"] = adapter
    n = sum(p.numel() for p in model.parameters())
    n_vision = sum(p.numel() for p in adapter.vision_modules.parameters())
    log(f"   {n / 1e9:.3f} B parameters ({n_vision / 1e6:.0f} M vision), {dtype()}, {device()}, "
        f"{adapter.n_image_tokens} image tokens, init {t_init:.1f} s")
    # one forward as a sanity check: finite logits
    items = world().split_items("forget_10")[:2]
    with torch.no_grad():
        logits = adapter.model(**{k: v for k, v in adapter.collate(adapter.encode(items)).items()
                                  if k != "labels"}).logits
    assert torch.isfinite(logits.float()).all(), "non-finite logits from the random model"
    return {"params": n, "params_b": round(n / 1e9, 3), "vision_params_m": round(n_vision / 1e6, 1), "init_seconds": round(t_init, 2),
            "image_tokens": adapter.n_image_tokens, "dtype": str(dtype())}


def _adapter():
    if "adapter" not in STATE:
        raise RuntimeError("no model: the build phase did not run or failed")
    return STATE["adapter"]


def _unique_images(items: list[dict], n: int) -> list[dict]:
    seen, out = set(), []
    for it in items:
        key = (it["entity_id"], it.get("render"))
        if it["modality"] == "vqa" and it.get("image") is not None and key not in seen:
            seen.add(key)
            out.append(it)
        if len(out) == n:
            break
    return out


def _data(s: Sizes):
    w = world()
    forget_all = w.split_items("forget_10")
    retain_all = w.split_items(w.retain_split("forget_10"))
    return {
        "forget_images": _unique_images(forget_all, s.items),
        "retain_images": _unique_images(retain_all, s.items),
        "forget_text": forget_all[: s.items],
        "entities": w.forget_ids["forget_10"],
    }


def _context(s: Sizes, retain: list[dict]):
    from mmu_bench.method import UnlearnContext

    ad = _adapter()
    # The reference models ("finetuned", "base") are the model itself: CVF embeds the original
    # images before it trains, so that is the same as a frozen copy, without 14 GB more.
    return UnlearnContext(retain=retain, seed=0, device=ad.device, progress=False, reference=lambda name: ad)


def _timed_unlearn(s: Sizes, make_method, forget: list[dict], retain: list[dict], warmup: bool = True) -> dict:
    """A warm-up call of 1 step (unless the phase before warmed the same path), a timed call of
    1 step and one of ``s.steps`` steps: per step is the difference over the extra steps, setup
    (embeddings, null-space moments and projectors, LoRA attach + merge) the rest."""
    from mmu_bench.method import UnlearnRequest

    ad = _adapter()
    req = UnlearnRequest(forget=forget, forget_entities=_data(s)["entities"])

    def timed(steps: int):
        ctx = _context(s, retain)
        t0 = time.time()
        make_method(steps).unlearn(ad, req, ctx)
        sync()
        return time.time() - t0, ctx

    t_warm = timed(1)[0] if warmup else None
    t_one, _ = timed(1)
    if cuda():
        torch.cuda.reset_peak_memory_stats()
    t_all, ctx = timed(s.steps)
    per_step = (t_all - t_one) / (s.steps - 1) if s.steps > 1 else t_all
    rec = {"warmup_call_s": t_warm and round(t_warm, 2), "one_step_call_s": round(t_one, 2),
           f"call_{s.steps}_steps_s": round(t_all, 2), "per_step_s": round(per_step, 3),
           "setup_s": round(t_one - per_step, 2), "final_loss": ctx.logs.get("final_loss"),
           "steps": ctx.logs.get("steps"), "train_peak_gib": peak_gib()}
    log(f"   {rec}")
    return rec


def phase_cvf(s: Sizes) -> dict:
    from mmu_bench.methods.cvf import CVF

    d = _data(s)
    return _timed_unlearn(s, lambda steps: CVF(steps=steps, batch_size=s.batch_size, retain_batch_size=s.batch_size,
                                               stop_rule=False, null_space=False, trainable="vision", warmup=0.0),
                          d["forget_images"], d["retain_images"])


def phase_cvf_null(s: Sizes) -> dict:
    from mmu_bench.methods.cvf import CVF

    d = _data(s)
    rec = _timed_unlearn(s, lambda steps: CVF(steps=steps, batch_size=s.batch_size, retain_batch_size=s.batch_size,
                                              stop_rule=False, null_space=True, trainable="projector", warmup=0.0),
                         d["forget_images"], d["retain_images"], warmup=False)
    return rec


def phase_nullspace_cost(s: Sizes) -> dict:
    """Time the null-space pieces for one layer of each input width, extrapolate to the tower."""
    from mmu_bench.nullspace import Moments, linear_layers, null_basis

    ad = _adapter()
    layers = linear_layers([("vision." + n, m) for n, m in ad.vision_modules.named_modules()]
                           + [("projector." + n, m) for n, m in ad.projector_modules.named_modules()])
    widths: dict[int, int] = {}
    for layer in layers.values():
        widths[layer.in_features] = widths.get(layer.in_features, 0) + 1
    rows = s.items * (ad.n_image_tokens + 1)  # inputs one batch of retain images gives a layer
    rec: dict = {"layers_by_width": widths}
    total = 0.0
    for d, count in sorted(widths.items()):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(rows, d, generator=g)
        m = Moments.zeros(d)
        t0 = time.time()
        m.add(x)
        t_moments = time.time() - t0
        t0 = time.time()
        basis = null_basis(m.covariance(False), "energy", 0.02)
        P = (basis @ basis.T).to(torch.float32)
        t_eigh = time.time() - t0
        t0 = time.time()
        for _ in range(3):
            P.to(ad.device, dtype())
        sync()
        t_move = (time.time() - t0) / 3
        rec[f"d{d}"] = {"moments_s": round(t_moments, 3), "eigh_s": round(t_eigh, 3), "move_P_s": round(t_move, 4)}
        total += count * (t_moments + t_eigh)
        rec.setdefault("per_step_move_all_P_s", 0.0)
        rec["per_step_move_all_P_s"] = round(rec["per_step_move_all_P_s"] + count * t_move, 3)
    rec["setup_estimate_s"] = round(total, 1)
    log(f"   {rec}")
    return rec


def phase_ga_lora(s: Sizes, checkpointing: bool = False) -> dict:
    from mmu_bench.distributed import enable_gradient_checkpointing
    from mmu_bench.methods.ga import GA

    d = _data(s)
    ad = _adapter()
    if checkpointing:
        enable_gradient_checkpointing(ad)
    try:
        rec = _timed_unlearn(s, lambda steps: GA(steps=steps, batch_size=s.batch_size, lora=True, trainable="llm", warmup=0.0),
                             d["forget_text"], [])
    finally:
        if checkpointing:
            enable_gradient_checkpointing(ad, enabled=False)
    from transformers import LlavaForConditionalGeneration

    assert isinstance(ad.model, LlavaForConditionalGeneration), f"LoRA not merged: {type(ad.model).__name__}"
    rec["merged"] = True
    return rec


def phase_eval(s: Sizes) -> dict:
    from mmu_bench.distributed import auto_batch_size
    from mmu_bench.evaluate import EvalConfig, evaluate

    ad = _adapter()
    items = world().split_items("forget_15")  # mcq, gen and cloze; vqa and qa
    by_kind: dict[str, list] = {}
    for it in items:
        by_kind.setdefault(it["kind"], []).append(it)
    per_kind = max(1, s.eval_items // len(by_kind))
    rec: dict = {}
    total_n, total_t = 0, 0.0
    for kind, its in sorted(by_kind.items()):
        chosen = its[:per_kind]
        sizes_tried = []

        def go(b):
            sizes_tried.append(b)
            return evaluate(ad, {"forget": chosen}, EvalConfig(batch_size=b, max_new_tokens=s.max_new_tokens))

        t0 = time.time()
        metrics, _ = auto_batch_size(go, s.eval_batch, on_retry=lambda a, b: log(f"   OOM at batch {a}; trying {b}"))
        sync()
        dt = time.time() - t0
        rec[kind] = {"items": len(chosen), "seconds": round(dt, 2), "items_per_s": round(len(chosen) / dt, 2),
                     "batch": sizes_tried[-1]}
        log(f"   {kind}: {rec[kind]}")
        total_n += len(chosen)
        total_t += dt
    rec["items_per_s"] = round(total_n / total_t, 2)
    return rec


def saliency_estimate(s: Sizes, weight_bytes: int = 2) -> dict:
    """Analytic saliency-pass memory of the ``s``-shaped LLaVA per masked part, from the parameter
    counts of a meta-device model (no memory, any machine)."""
    from types import SimpleNamespace

    from transformers import LlavaForConditionalGeneration

    from mmu_bench.methods.mmunlearner import linear_parameters, saliency_memory_bytes
    from mmu_bench.tiny_model import build_tokenizer

    if "tokenizer" not in STATE:
        STATE["tokenizer"] = build_tokenizer(world().corpus(), 1000)
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(llava_config(s, STATE["tokenizer"]))
    shell = SimpleNamespace(model=model, language_modules=[model.model.language_model, model.lm_head],
                            vision_modules=model.model.vision_tower, projector_modules=model.model.multi_modal_projector)
    n = sum(p.numel() for p in model.parameters())
    rec: dict = {"params": n}
    for part in ("vision", "language", "both"):
        masked = sum(p.numel() for p in linear_parameters(shell, part).values())
        b = saliency_memory_bytes(n, masked, weight_bytes=weight_bytes)
        rec[part] = {"masked_params": masked, "bytes": b, "total_gib": round(b["total"] / 2**30, 2)}
    return rec


def phase_mmunlearner_saliency(s: Sizes) -> dict:
    from mmu_bench.methods.mmunlearner import MMUnlearner

    est = saliency_estimate(Sizes())  # the 7B shape, whatever --smoke says
    log(f"   analytic, LLaVA-1.5-7B shape, bf16 weights: " + ", ".join(
        f"{p}: {est[p]['masked_params'] / 1e9:.2f} B masked -> {est[p]['total_gib']} GiB" for p in ("vision", "language", "both")))
    rec: dict = {"analytic_7b": est}
    if "adapter" not in STATE:
        return rec
    ad = _adapter()
    here = saliency_estimate(s, weight_bytes=torch.finfo(dtype()).bits // 8)
    d = _data(s)
    w = world()
    retain = d["retain_images"] + [it for it in w.split_items(w.retain_split("forget_10")) if it["modality"] == "qa"][: s.items]
    for part in ("vision", "language"):
        free_memory()
        if cuda():
            torch.cuda.reset_peak_memory_stats()
        t0 = time.time()
        m = MMUnlearner(masked=part, saliency_batch_size=s.batch_size)
        sal = m.compute_saliency(ad, d["forget_images"], retain, "all", seed=0)
        sync()
        density = sum(int(x.mask.sum()) for x in sal.values()) / max(1, sum(x.mask.numel() for x in sal.values()))
        del sal
        rec[part] = {"seconds": round(time.time() - t0, 2), "measured_peak_gib": peak_gib(),
                     "analytic_gib": here[part]["total_gib"], "mask_density": round(density, 4)}
        log(f"   {part}: {rec[part]}")
    return rec


def phase_ga_full(s: Sizes) -> dict:
    from mmu_bench.method import UnlearnRequest
    from mmu_bench.methods.ga import GA

    d = _data(s)
    ad = _adapter()
    ctx = _context(s, [])
    t0 = time.time()
    GA(steps=s.full_steps, batch_size=s.batch_size, warmup=0.0).unlearn(
        ad, UnlearnRequest(forget=d["forget_text"], forget_entities=d["entities"]), ctx)
    sync()
    rec = {"steps": ctx.logs.get("steps"), "seconds_incl_optimizer_state": round(time.time() - t0, 2),
           "final_loss": ctx.logs.get("final_loss")}
    log(f"   {rec}")
    return rec


def phase_e2e(s: Sizes) -> dict:
    from mmu_bench.run import RunSpec, resolve, run

    # (the 7B model stays on the GPU for the phases after this one: "start_gib" is its share)
    tmp = tempfile.mkdtemp(prefix="gpu-check-e2e-")
    spec = RunSpec(method="cvf", world_size=s.e2e_world, zoo=dict(s.e2e_zoo), device=str(device()),
                   cache_dir=os.path.join(tmp, "cache"), out=os.path.join(tmp, "runs"), progress=False,
                   max_new_tokens=s.e2e_max_new_tokens)
    try:
        if s.e2e_dry:
            method, _, _, _ = resolve(spec)
            log(f"   dry: resolved {method.name} on {spec.benchmark}/{spec.model}; run() not executed")
            return {"dry": True}
        t0 = time.time()
        outcome = run(spec)
        dt = time.time() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    keys = ("forget.vqa.mcq.acc", "forget.qa.mcq.acc", "retain.vqa.mcq.acc", "test.vqa.mcq.acc",
            "utility.vqa.mcq.acc", "real.vqa.mcq.acc")
    rec = {"seconds": round(dt, 1), "timings": outcome.doc.get("timings"),
           "cvf": {k: outcome.metrics.get(k) for k in keys},
           "finetuned": {k: outcome.reference.get("finetuned", {}).get(k) for k in keys},
           "diverged": outcome.diverged}
    log(f"   {json.dumps(rec, default=str)}")
    return rec


FUNCS = {"env": phase_env, "build": phase_build, "cvf": phase_cvf, "cvf_null": phase_cvf_null,
         "nullspace_cost": phase_nullspace_cost, "ga_lora": phase_ga_lora,
         "ga_lora_gc": lambda s: phase_ga_lora(s, checkpointing=True), "eval": phase_eval,
         "ga_full": phase_ga_full, "e2e": phase_e2e,
         "mmunlearner_saliency": phase_mmunlearner_saliency}


def main(argv: list[str] | None = None) -> dict:
    global OUT_PATH
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny architecture and sizes (runs on a CPU in seconds)")
    ap.add_argument("--smoke-e2e", action="store_true", help="with --smoke, run the e2e phase for real (minutes)")
    ap.add_argument("--only", default="", help="comma-separated phases to run (default: all)")
    ap.add_argument("--skip", default="", help="comma-separated phases to leave out")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds for all phases together")
    ap.add_argument("--out", default=None, help="JSON results file (default: $OUT/gpu_check.json if $OUT is set)")
    args = ap.parse_args(argv)
    sizes = replace(SMOKE, timeouts=dict(SMOKE.timeouts), e2e_dry=not args.smoke_e2e) if args.smoke else Sizes()
    only = [p for p in args.only.split(",") if p]
    skip = {p for p in args.skip.split(",") if p}
    unknown = (set(only) | skip) - set(PHASES)
    if unknown:
        ap.error(f"unknown phase(s) {', '.join(sorted(unknown))}; phases: {', '.join(PHASES)}")
    phases = [p for p in PHASES if (not only or p in only) and p not in skip]
    OUT_PATH = args.out or (os.path.join(os.environ["OUT"], "gpu_check.json") if os.environ.get("OUT") else None)
    RESULTS.clear()
    STATE.clear()
    RESULTS["_run"] = {"smoke": args.smoke, "sizes": asdict(sizes), "phases": phases, "budget_s": args.budget}
    start = time.time()
    deadline = start + args.budget
    log(f"gpu_check: {'SMOKE ' if args.smoke else ''}phases {', '.join(phases)}; budget {args.budget:.0f} s; "
        f"device {device()}, dtype {dtype()}")
    threads = torch.get_num_threads()
    if args.smoke:
        torch.set_num_threads(1)  # toy sizes: thread start-up costs more than it saves (on busy CPUs, far more)
    try:
        for name in phases:
            run_phase(name, FUNCS[name], sizes, deadline)
    except KeyboardInterrupt:  # gpu_check.sh's time limit sends SIGINT: keep what was measured
        log("gpu_check: interrupted; the summary covers the phases that finished")
    finally:
        torch.set_num_threads(threads)
        STATE.clear()
        free_memory()
    RESULTS["_run"]["total_s"] = round(time.time() - start, 1)
    save_results()
    log("== summary")
    for name in phases:
        r = RESULTS.get(name, {})
        status = "ok" if r.get("ok") else ("skipped" if "skipped" in r else "FAILED")
        log(f"   {name:15s} {status:8s} {r.get('seconds', '-')!s:>8} s  peak {r.get('peak_gib')} GiB"
            + (f"  {r['error'][:120]}" if r.get("error") else ""))
    log(f"gpu_check: done in {RESULTS['_run']['total_s']} s")
    return RESULTS


if __name__ == "__main__":
    res = main()
    failed = [k for k, v in res.items() if not k.startswith("_") and not v.get("ok")]
    sys.exit(1 if failed else 0)
