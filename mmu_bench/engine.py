"""The shared training engine: AdamW, warmup + cosine decay (transformers' schedulers), gradient
clipping, seeded batching (transformers' ``set_seed``), progress bar, divergence detection, all on
``accelerate.Accelerator`` (mmu_bench/distributed.py): its autocast (bf16 on a CUDA GPU that has
it), backward, gradient unscaling and wrapped optimizer / scheduler.

Every method and the model zoo train through :func:`train`. A method supplies a loss function of
the step and the parameters to train; two hooks let it change a step without touching the engine:

- ``before_step(params)``: after backward (and the multi-process gradient reduction), before
  clipping and the optimizer step; may edit ``p.grad`` in place (MMUnlearner's saliency mask).
- ``after_step(param, update)``: each parameter's optimizer update (new - old) -> the update to
  apply instead (CVF's null-space projection). Only this hook makes the engine keep a copy of the
  trained weights on their device; the copy that lets a diverged run go back one step
  (``restore_on_divergence``) lives in CPU memory when the weights are on an accelerator.

Under ``accelerate launch`` with several processes the same call trains data-parallel: each
process computes its part of every global batch (a loss function takes it with
``mmu_bench.distributed.shard``), gradients are averaged weighted by examples, and the update
runs identically everywhere. See mmu_bench/distributed.py. One process: unchanged.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed


@dataclass
class TrainConfig:
    """Optimisation settings shared by every training run.

    Args:
        steps: optimizer steps.
        lr: peak learning rate.
        warmup: fraction of steps with linear warmup.
        schedule: "cosine" (decay to ``min_lr_ratio`` x lr) or "constant".
        weight_decay: AdamW weight decay.
        grad_clip: max global gradient norm (0 disables).
        seed: seeds python, numpy and torch before training.
        progress: show a progress bar.
        desc: progress-bar label.
        accumulation_steps: micro-batches per optimizer step. ``loss_fn(step)`` is called this many
            times (each draws its own batch) and the gradients add up, each loss divided by the
            count: the step's batch is that many times the method's, memory that of one.
        restore_on_divergence: keep a copy of the trained parameters before each update (in CPU
            memory when they are on an accelerator; shared with ``after_step``'s copy otherwise) so
            that a non-finite loss leaves the model at the last state whose loss was finite.
    """

    steps: int = 100
    lr: float = 1e-3
    warmup: float = 0.05
    schedule: str = "cosine"
    min_lr_ratio: float = 0.02
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    progress: bool = True
    desc: str = "train"
    accumulation_steps: int = 1
    restore_on_divergence: bool = True


class Diverged(RuntimeError):
    """The loss became NaN or infinite. ``step`` is the step where it happened."""

    def __init__(self, step: int, loss: float):
        super().__init__(f"loss became {loss} at step {step}")
        self.step = step
        self.loss = loss


@dataclass
class TrainResult:
    steps: int
    losses: list[float] = field(default_factory=list)
    stopped_early: bool = False


def seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    """transformers' warmup + cosine decay to ``min_lr_ratio`` x lr (or warmup + constant)."""
    from transformers import get_constant_schedule_with_warmup, get_cosine_with_min_lr_schedule_with_warmup

    # At least one warmup step, so the first update is never at the peak rate.
    warm = max(1, int(cfg.warmup * cfg.steps))
    if cfg.schedule == "constant":
        return get_constant_schedule_with_warmup(opt, warm)
    if cfg.schedule != "cosine":
        raise ValueError(f"schedule {cfg.schedule!r} unknown; expected 'cosine' or 'constant'")
    return get_cosine_with_min_lr_schedule_with_warmup(opt, warm, cfg.steps, min_lr_rate=cfg.min_lr_ratio)


def autocast_for(device: torch.device):
    """The accelerator's autocast (bf16 on a CUDA GPU that has it) for work on ``device``; none on CPU."""
    return distributed.accelerator().autocast() if device.type == "cuda" else contextlib.nullcontext()


def train(
    params: Sequence[nn.Parameter],
    loss_fn: Callable[[int], torch.Tensor],
    cfg: TrainConfig,
    device: torch.device | None = None,
    after_step: Callable[[nn.Parameter, torch.Tensor], torch.Tensor] | None = None,
    should_stop: Callable[[int], bool] | None = None,
    before_step: Callable[[list[nn.Parameter]], None] | None = None,
    optimizer_groups: list[dict] | None = None,
) -> TrainResult:
    """Minimise ``loss_fn(step)`` over ``params`` for ``cfg.steps`` steps.

    ``before_step(params)`` runs after backward, before clipping (may edit ``p.grad``);
    ``after_step(p, delta)`` receives each parameter's AdamW update (new - old) and returns the
    update to apply instead. ``should_stop(step)`` is polled after each step (stopping rules
    on validation data). Raises :class:`Diverged` on a non-finite loss, with the model left at the
    last state whose loss was finite (``restore_on_divergence``).

    Several processes (``accelerate launch``): a collective call, which every process makes with
    the same ``cfg.steps``. ``loss_fn`` returns the mean loss over its part of the step's global
    batch (``distributed.shard``; ``distributed.weigh`` for token means); gradients are averaged
    weighted by those parts, the reported losses are the global ones, and rank 0 decides
    ``should_stop`` for everyone. See mmu_bench/distributed.py.
    """
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters")
    if cfg.accumulation_steps < 1:
        raise ValueError(f"accumulation_steps must be >= 1, got {cfg.accumulation_steps}")
    k = cfg.accumulation_steps
    device = device or params[0].device
    acc = distributed.accelerator()
    parallel = distributed.active()
    if parallel:
        distributed.broadcast_parameters(params)
    seed_everything(cfg.seed)
    groups = optimizer_groups or [{"params": params, "weight_decay": cfg.weight_decay}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8)
    sched = make_scheduler(opt, cfg)
    opt, sched = acc.prepare(opt, sched)
    result = TrainResult(steps=0)
    bar = tqdm(range(cfg.steps), desc=cfg.desc, disable=not cfg.progress or not distributed.is_main_process(),
               leave=False, mininterval=0.5)
    # The weights before the step: on their device when after_step needs the update (new - old),
    # else only for restore_on_divergence, in CPU memory when the weights are on an accelerator.
    keep_on = device if after_step is not None or device.type == "cpu" else torch.device("cpu")
    previous: list[torch.Tensor] | None = None
    try:
        for step in bar:
            opt.zero_grad(set_to_none=True)
            value, weights = 0.0, []
            for _ in range(k):
                with autocast_for(device), distributed.step_scope() as share:
                    loss = loss_fn(step)
                part = float(loss.detach())
                if parallel:
                    part, w = distributed.reduce_loss(part, share.count)
                    weights.append(w)
                if not math.isfinite(part):
                    if previous is not None:
                        # The parameters now give a non-finite loss: go back one update, to the
                        # last state whose loss was finite.
                        with torch.no_grad():
                            for p, prev in zip(params, previous):
                                p.copy_(prev)
                    raise Diverged(step, part)
                acc.backward(loss / k)  # / 1 is exact: one micro-batch trains as before
                value += part / k
            if parallel:
                # exact when every micro-batch splits over the processes in the same proportions
                distributed.reduce_gradients(params, sum(weights) / len(weights))
            if before_step is not None:
                before_step(params)
            if cfg.grad_clip > 0:
                # torch's clip after the accelerator unscales (fp16): the exact computation of the
                # engine before accelerate (accelerate's clip_grad_norm_ adds a norm of per-mesh norms)
                acc.unscale_gradients()
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            if cfg.restore_on_divergence or after_step is not None:
                previous = [p.detach().to(keep_on, copy=True) for p in params]
            opt.step()
            if after_step is not None:
                with torch.no_grad():
                    for p, o in zip(params, previous):
                        p.copy_(o + after_step(p, p - o))
            sched.step()
            result.losses.append(value)
            result.steps = step + 1
            if step % 10 == 0:
                bar.set_postfix(loss=f"{value:.3f}")
            if should_stop is not None and distributed.agree(should_stop(step)):
                result.stopped_early = True
                break
    finally:
        bar.close()
        acc.free_memory()  # the accelerator forgets this run's optimizer and scheduler
    return result


class MixtureSampler:
    """Seeded batches drawn from several sources with fixed shares of each batch.

    ``sources`` is a list of (examples, share). Each source is walked in a reshuffled order
    (epochs), so every example is seen equally often; shares are rounded per batch so that a
    replay source gets at least one slot whenever its share is positive.
    """

    def __init__(self, sources: Sequence[tuple[Sequence, float]], batch_size: int, seed: int):
        sources = [(list(ex), share) for ex, share in sources if len(ex) and share > 0]
        if not sources:
            raise ValueError("MixtureSampler needs at least one non-empty source")
        total = sum(s for _, s in sources)
        counts = [max(1, int(round(batch_size * s / total))) for _, s in sources]
        counts[0] += batch_size - sum(counts)
        self.sources = [ex for ex, _ in sources]
        self.counts = counts
        self.rng = np.random.default_rng(seed)
        self.orders = [self.rng.permutation(len(ex)) for ex in self.sources]
        self.pos = [0] * len(self.sources)

    def _take(self, k: int, n: int) -> list:
        out = []
        while len(out) < n:
            if self.pos[k] >= len(self.orders[k]):
                self.orders[k] = self.rng.permutation(len(self.sources[k]))
                self.pos[k] = 0
            out.append(self.sources[k][self.orders[k][self.pos[k]]])
            self.pos[k] += 1
        return out

    def next(self) -> list:
        batch: list = []
        for k, n in enumerate(self.counts):
            batch += self._take(k, n)
        return batch

    def __iter__(self) -> Iterable[list]:
        while True:
            yield self.next()
