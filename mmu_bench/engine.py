"""The shared training engine: AdamW, warmup + cosine decay, gradient clipping, seeded batching,
device selection (CUDA + bf16 autocast when present), progress bar, divergence detection.

Every method and the model zoo train through :func:`train`. A method supplies a loss function of
the step and the parameters to train; it may also supply ``project_update`` to transform each
parameter's final optimizer update (the null-space projection of CVF).

Under ``accelerate launch`` with several processes the same call trains data-parallel: each
process computes its part of every global batch (a loss function takes it with
``mmu_bench.distributed.shard``), gradients are averaged weighted by examples, and the update
runs identically everywhere. See mmu_bench/distributed.py. One process: unchanged.
"""

from __future__ import annotations

import math
import random
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
        restore_on_divergence: keep a copy of the trained parameters before each update so that a
            non-finite loss leaves the model at the last state whose loss was finite.
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
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    warm = max(1, int(cfg.warmup * cfg.steps))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.schedule == "constant":
            return 1.0
        t = (step - warm) / max(1, cfg.steps - warm)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


def autocast_for(device: torch.device):
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def train(
    params: Sequence[nn.Parameter],
    loss_fn: Callable[[int], torch.Tensor],
    cfg: TrainConfig,
    device: torch.device | None = None,
    project_update: Callable[[nn.Parameter, torch.Tensor], torch.Tensor] | None = None,
    should_stop: Callable[[int], bool] | None = None,
    optimizer_groups: list[dict] | None = None,
) -> TrainResult:
    """Minimise ``loss_fn(step)`` over ``params`` for ``cfg.steps`` steps.

    ``project_update(p, delta)`` receives each parameter's AdamW update (new - old) and returns
    the update to apply instead. ``should_stop(step)`` is polled after each step (stopping rules
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
    device = device or params[0].device
    distributed.init()
    parallel = distributed.active()
    if parallel:
        distributed.broadcast_parameters(params)
    seed_everything(cfg.seed)
    groups = optimizer_groups or [{"params": params, "weight_decay": cfg.weight_decay}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    result = TrainResult(steps=0)
    bar = tqdm(range(cfg.steps), desc=cfg.desc, disable=not cfg.progress or not distributed.is_main_process(),
               leave=False, mininterval=0.5)
    previous: list[torch.Tensor] | None = None
    for step in bar:
        with autocast_for(device), distributed.step_scope() as share:
            loss = loss_fn(step)
        value = float(loss.detach())
        if parallel:
            value, weight = distributed.reduce_loss(value, share.count)
        if not math.isfinite(value):
            if previous is not None:
                # The parameters now give a non-finite loss: go back one update, to the last
                # state whose loss was finite.
                with torch.no_grad():
                    for p, prev in zip(params, previous):
                        p.copy_(prev)
            bar.close()
            raise Diverged(step, value)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if parallel:
            distributed.all_reduce_gradients(params, weight)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        if cfg.restore_on_divergence:
            previous = [p.detach().clone() for p in params]
        if project_update is None:
            opt.step()
        else:
            old = [p.detach().clone() for p in params]
            opt.step()
            with torch.no_grad():
                for p, o in zip(params, old):
                    p.copy_(o + project_update(p, p - o))
        sched.step()
        result.losses.append(value)
        result.steps = step + 1
        if step % 10 == 0:
            bar.set_postfix(loss=f"{value:.3f}")
        if should_stop is not None and distributed.agree(should_stop(step)):
            result.stopped_early = True
            break
    bar.close()
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
