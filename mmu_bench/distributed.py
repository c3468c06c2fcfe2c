"""Several processes, one training run (data parallel), and the CUDA-side options.

Under ``accelerate launch --multi_gpu --num_processes N ...`` (or ``torchrun``) every process runs
the same program on the same data. :func:`mmu_bench.engine.train` then trains data-parallel:

- every process builds the SAME global batch for a step (the samplers are seeded), and a loss
  function takes its own part with :func:`shard` (a contiguous slice, sizes differing by at most
  one); a loss function that never calls :func:`shard` computes the whole batch on every process,
  which is correct, only not faster;
- the engine all-reduces the gradients, weighting each process by the examples it took
  (``shard`` records them; :func:`weigh` overrides, e.g. with a token count), so the update is
  the one a single process computes on the global batch, up to float error. Exact for a loss that
  is a mean over examples when every batch of a step splits in the same proportions (e.g. batch
  sizes divisible by the number of processes), and for a token-mean loss whose loss function
  declares its tokens with ``weigh``; a term that couples examples (in-batch negatives) is
  approximated by its per-shard value;
- the method's ``before_step``, clipping, the AdamW step and ``after_step`` then run identically on every process; the
  stopping rule's answer is rank 0's; only rank 0 shows progress bars.

``train`` is therefore a collective call: every process must make it, with the same steps. Work
that one process does while the others wait goes inside :func:`local` (see there).

One process (no launcher) is untouched: :func:`shard` returns its input, the engine reduces
nothing, and results are bit-identical to a run without this module.

The process group is set up by accelerate (``PartialState``: NCCL on GPUs, gloo on CPUs) the first
time :func:`init` runs under a launcher. On a CPU-only machine ``accelerate launch --cpu`` starts
ONE process; use ``--multi_gpu --num_processes N`` (it spawns N processes; gloo is picked here
when there is no GPU) or ``torchrun --nproc_per_node N``.

Also here: :func:`enable_gradient_checkpointing`, :func:`auto_batch_size` (halve on CUDA OOM),
:func:`resolve_device` (what ``--device`` maps to; ``--dtype`` is
``mmu_bench.families.resolve_dtype``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from .errors import MMUError

T = TypeVar("T")

_LAUNCHER_ENV = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


# ------------------------------------------------------------------ process group
def launched() -> bool:
    """True when a launcher started this process as one of several."""
    return any(int(os.environ.get(k, "1") or 1) > 1 for k in _LAUNCHER_ENV)


def init() -> None:
    """Join the process group the launcher prepared (no-op for a single process or if done)."""
    if not dist.is_available() or dist.is_initialized() or not launched():
        return
    from accelerate import PartialState

    # cpu=True makes accelerate pick gloo; without it, a CPU-only launch gets no backend.
    PartialState(cpu=not torch.cuda.is_available())


def _grouped() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


_LOCAL = 0


def active() -> bool:
    """Several processes train together (and :func:`local` is not in force)."""
    return not _LOCAL and _grouped()


@contextlib.contextmanager
def local() -> Iterator[None]:
    """Inside, this process works alone: the engine trains without collectives and :func:`shard`
    returns whole batches. For work one rank does while the others wait, e.g.
    ``with main_process_first(), local(): zoo.path("finetuned")`` (rank 0 builds and caches the
    model, then the others load it). Without ``local()`` a ``train`` call there would wait forever
    for the ranks standing at the barrier: under a launcher ``train`` is a collective call that
    every rank must make, with the same number of steps."""
    global _LOCAL
    _LOCAL += 1
    try:
        yield
    finally:
        _LOCAL -= 1


def world_size() -> int:
    """Processes training together (1 without a launcher, or inside :func:`local`)."""
    return dist.get_world_size() if active() else 1


def rank() -> int:
    """This process's index among them (0 without a launcher, or inside :func:`local`)."""
    return dist.get_rank() if active() else 0


def is_main_process() -> bool:
    """Rank 0 of the launch (also inside :func:`local`): the one that prints and writes files."""
    return not _grouped() or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every process of the launch (no-op for one process)."""
    if _grouped():
        dist.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the body first (e.g. builds and caches a zoo model), then the others (which
    then find it in the cache). One process: just runs the body."""
    if not is_main_process():
        barrier()
    try:
        yield
    finally:
        if is_main_process():
            barrier()


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ------------------------------------------------------------------ sharding a step
@dataclass
class StepShare:
    """What this process computed in one step: examples (or tokens, via :func:`weigh`)."""

    count: float = 0.0
    overridden: bool = False


_STEP: StepShare | None = None


@contextlib.contextmanager
def step_scope() -> Iterator[StepShare]:
    """The engine wraps each call of a loss function in this; :func:`shard` records into it."""
    global _STEP
    outer, _STEP = _STEP, StepShare()
    try:
        yield _STEP
    finally:
        _STEP = outer


def shard_bounds(n: int, world: int, r: int) -> tuple[int, int]:
    """[start, end) of rank ``r``'s contiguous part of ``n`` examples (sizes differ by <= 1)."""
    base, extra = divmod(n, world)
    start = r * base + min(r, extra)
    return start, start + base + (1 if r < extra else 0)


def shard(batch: T) -> T:
    """This process's part of a global batch (a list, tuple, tensor or anything sliceable).

    One process: returns ``batch`` itself. Several: a contiguous slice, and the number of examples
    is recorded for the engine's gradient weighting.
    """
    world = world_size()
    if world == 1:
        return batch
    n = len(batch)  # type: ignore[arg-type]
    if n < world:
        raise MMUError(f"a batch of {n} examples cannot be split over {world} processes; "
                       f"use a batch size of at least {world}")
    start, end = shard_bounds(n, world, rank())
    if _STEP is not None and not _STEP.overridden:
        _STEP.count += end - start
    return batch[start:end]  # type: ignore[index]


def weigh(count: float) -> None:
    """Declare this process's share of the step (e.g. its answer tokens for a token-mean loss);
    replaces what :func:`shard` recorded. No-op outside training or with one process."""
    if _STEP is not None:
        _STEP.count = float(count)
        _STEP.overridden = True


# ------------------------------------------------------------------ collectives used by the engine
def reduce_loss(value: float, count: float) -> tuple[float, float]:
    """(global loss, this process's gradient weight) from each process's loss and share.

    ``count`` 0 (nothing recorded: every process computed the whole batch) counts as 1, so the
    processes are averaged. A non-finite loss anywhere makes the global loss non-finite, so every
    process sees the divergence at the same step.
    """
    count = count if count > 0 else 1.0
    t = torch.tensor([value * count, count], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    total = float(t[1])
    return float(t[0]) / total, count / total


BUCKET_ELEMS = 1 << 25  # gradient elements per all-reduce (128 MB of float32)


def all_reduce_gradients(params: Sequence[nn.Parameter], weight: float, bucket_elems: int | None = None) -> None:
    """Replace every gradient by the weighted sum over processes (sum of weights = 1).

    A parameter that got no gradient on any process keeps ``grad=None`` (AdamW skips it, as a
    single process would); one that got a gradient elsewhere gets zeros here before the sum.
    Reduced in float32 buckets of at most ``bucket_elems`` (default ``BUCKET_ELEMS``) elements.
    """
    bucket_elems = bucket_elems or BUCKET_ELEMS
    dev = _comm_device()
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=dev)
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    grads = []
    for p, h in zip(params, has.tolist()):
        if h:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
    for bucket in _buckets(grads, bucket_elems):
        flat = torch.cat([g.reshape(-1).to(dev, torch.float32) for g in bucket]) * weight
        dist.all_reduce(flat)
        offset = 0
        for g in bucket:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def _buckets(tensors: list[torch.Tensor], limit: int) -> Iterator[list[torch.Tensor]]:
    """Consecutive groups of tensors of at most ``limit`` elements (a bigger tensor alone)."""
    bucket: list[torch.Tensor] = []
    size = 0
    for t in tensors:
        if bucket and size + t.numel() > limit:
            yield bucket
            bucket, size = [], 0
        bucket.append(t)
        size += t.numel()
    if bucket:
        yield bucket


def broadcast_parameters(params: Sequence[nn.Parameter]) -> None:
    """Copy rank 0's values of ``params`` to every process (a guard against different starts)."""
    dev = _comm_device()
    with torch.no_grad():
        for p in params:
            t = p.data.to(dev)
            dist.broadcast(t, src=0)
            if t.data_ptr() != p.data.data_ptr():
                p.data.copy_(t)


def agree(flag: bool) -> bool:
    """Rank 0's value of ``flag`` on every process (decisions such as stopping rules)."""
    if not active():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_comm_device())
    dist.broadcast(t, src=0)
    return bool(t.item())


# ------------------------------------------------------------------ devices, memory
def resolve_device(name: str | None = None) -> torch.device:
    """``--device``: None/"auto" -> this process's GPU (``cuda:LOCAL_RANK`` under a launcher) or
    the CPU; otherwise ``torch.device(name)``."""
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise MMUError(f"device {name!r}: {e}; expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MMUError(f"device {name!r} asked for, but this torch sees no CUDA GPU")
    return dev


def enable_gradient_checkpointing(model: Any, enabled: bool = True) -> nn.Module:
    """Recompute activations in the backward pass instead of storing them (less memory, about a
    third more compute). ``model``: a :class:`~mmu_bench.adapter.LlavaAdapter` or a transformers
    model. Non-reentrant checkpointing, so frozen embeddings / LoRA need no input-grad hooks; the
    KV cache is turned off while it is on. Works on CPU as on CUDA.

    transformers only checkpoints modules in ``train()`` mode: a method that trains in
    ``eval()`` mode (CVF does, to keep dropout off) gets no saving from it.
    Returns the transformers model.
    """
    m = getattr(model, "model", model)
    # peft wraps the model; the transformers model is underneath
    base = m.get_base_model() if hasattr(m, "get_base_model") else m
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x names it so
        base.activation_checkpointing_enable(kwargs) if enabled else base.activation_checkpointing_disable()
    elif hasattr(base, "gradient_checkpointing_enable"):
        base.gradient_checkpointing_enable(kwargs) if enabled else base.gradient_checkpointing_disable()
    else:
        raise MMUError(f"{type(base).__name__} does not support gradient checkpointing")
    for cfg in (getattr(base, "config", None), getattr(getattr(base, "config", None), "text_config", None)):
        if cfg is not None and hasattr(cfg, "use_cache"):
            cfg.use_cache = not enabled
    return base


def is_oom(exc: BaseException) -> bool:
    """A CUDA out-of-memory error (the typed one, or an older RuntimeError saying so)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower() and "cuda" in str(exc).lower()


def auto_batch_size(fn: Callable[[int], T], start: int, minimum: int = 1,
                    on_retry: Callable[[int, int], None] | None = None) -> T:
    """``fn(batch_size)``, halving the batch size on CUDA out-of-memory and retrying.

    Starts at ``start``; after an OOM frees the CUDA cache, halves (never below ``minimum``) and
    calls ``fn`` again from scratch; an OOM at ``minimum`` is raised. ``on_retry(old, new)`` is told
    each reduction (e.g. to print it). Errors other than OOM propagate at once.
    Example: ``metrics, samples = auto_batch_size(lambda b: evaluate(adapter, tasks,
    EvalConfig(batch_size=b)), start=64)``.
    """
    if start < 1 or minimum < 1:
        raise MMUError(f"auto_batch_size needs start >= 1 and minimum >= 1; got {start}, {minimum}")
    size = start
    while True:
        try:
            return fn(size)
        except Exception as e:  # noqa: BLE001 - re-raised unless it is an OOM
            if not is_oom(e) or size <= minimum:
                raise
        # Out of the except block, so the exception's frames (and their tensors) are released.
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        new = max(minimum, size // 2)
        if on_retry is not None:
            on_retry(size, new)
        size = new
