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

Everything here runs on accelerate: one :class:`accelerate.Accelerator` per process
(:func:`accelerator`) sets up the process group (NCCL on GPUs, gloo on CPUs), the device and
mixed precision (bf16 autocast on a CUDA GPU that has it); the engine backpropagates, clips and
steps through it; sharding is ``PartialState.split_between_processes``, the reductions and
broadcasts are ``accelerate.utils.reduce`` / ``broadcast``, the OOM retry is
``accelerate.utils.find_executable_batch_size``. What is ours: the example weighting of the
gradient average (accelerate's DDP averages processes equally and needs the forward to run
through a wrapped model, while methods here call parts of the model directly) and :func:`local`.
On a CPU-only machine ``accelerate launch --cpu`` starts ONE process; use ``--multi_gpu
--num_processes N`` (it spawns N processes; gloo is picked when there is no GPU) or
``torchrun --nproc_per_node N``.

Also here: :func:`enable_gradient_checkpointing`, :func:`auto_batch_size` (halve on OOM),
:func:`resolve_device` (what ``--device`` maps to; ``--dtype`` is
``mmu_bench.families.resolve_dtype``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch
from torch import nn

from .errors import MMUError

T = TypeVar("T")

_LAUNCHER_ENV = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


# ------------------------------------------------------------------ process group
def launched() -> bool:
    """True when a launcher started this process as one of several."""
    return any(int(os.environ.get(k, "1") or 1) > 1 for k in _LAUNCHER_ENV)


_ACCELERATOR = None


def accelerator():
    """This process's :class:`accelerate.Accelerator` (made on first use, then shared).

    Under a launcher, making it joins the process group. ``cpu=True`` without a GPU makes
    accelerate pick gloo (without it, a CPU-only launch gets no backend). ``split_batches``: a
    step's batch is the GLOBAL batch, split over processes, so the scheduler steps once per step
    whatever the number of processes. bf16 autocast only on a CUDA GPU that supports it.
    """
    global _ACCELERATOR
    if _ACCELERATOR is None:
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration

        cuda = torch.cuda.is_available()
        _ACCELERATOR = Accelerator(cpu=not cuda, device_placement=False,
                                   mixed_precision="bf16" if cuda and torch.cuda.is_bf16_supported() else "no",
                                   dataloader_config=DataLoaderConfiguration(split_batches=True))
    return _ACCELERATOR


def init() -> None:
    """Join the process group the launcher prepared (no-op for a single process or if done)."""
    if launched():
        accelerator()


def _state():
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())  # shared state: the same as accelerator()'s


def _grouped() -> bool:
    return launched() and _state().num_processes > 1


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
    return _state().num_processes if active() else 1


def rank() -> int:
    """This process's index among them (0 without a launcher, or inside :func:`local`)."""
    return _state().process_index if active() else 0


def is_main_process() -> bool:
    """Rank 0 of the launch (also inside :func:`local`): the one that prints and writes files."""
    return not _grouped() or _state().is_main_process


def barrier() -> None:
    """Wait for every process of the launch (no-op for one process)."""
    if _grouped():
        _state().wait_for_everyone()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the body first (e.g. builds and caches a zoo model), then the others (which
    then find it in the cache). One process: just runs the body."""
    if not _grouped():
        yield
        return
    with _state().main_process_first():
        yield


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


def shard(batch: T) -> T:
    """This process's part of a global batch (a list, tuple or tensor): accelerate's
    ``split_between_processes``, a contiguous slice, sizes differing by at most one.

    One process: returns ``batch`` itself. Several: the slice, and the number of examples is
    recorded for the engine's gradient weighting.
    """
    world = world_size()
    if world == 1:
        return batch
    n = len(batch)  # type: ignore[arg-type]
    if n < world:
        raise MMUError(f"a batch of {n} examples cannot be split over {world} processes; "
                       f"use a batch size of at least {world}")
    with _state().split_between_processes(batch) as part:
        if _STEP is not None and not _STEP.overridden:
            _STEP.count += len(part)
        return part


def weigh(count: float) -> None:
    """Declare this process's share of the step (e.g. its answer tokens for a token-mean loss);
    replaces what :func:`shard` recorded. No-op outside training or with one process."""
    if _STEP is not None:
        _STEP.count = float(count)
        _STEP.overridden = True


# ------------------------------------------------------------------ collectives used by the engine
def _device() -> torch.device:
    return _state().device  # NCCL needs CUDA tensors; gloo takes CPU ones


def reduce_loss(value: float, count: float) -> tuple[float, float]:
    """(global loss, this process's gradient weight) from each process's loss and share.

    ``count`` 0 (nothing recorded: every process computed the whole batch) counts as 1, so the
    processes are averaged. A non-finite loss anywhere makes the global loss non-finite, so every
    process sees the divergence at the same step.
    """
    from accelerate.utils import reduce

    count = count if count > 0 else 1.0
    t = reduce(torch.tensor([value * count, count], dtype=torch.float64, device=_device()), "sum")
    total = float(t[1])
    return float(t[0]) / total, count / total


def reduce_gradients(params: Sequence[nn.Parameter], weight: float) -> None:
    """Replace every gradient by the weighted sum over processes (sum of weights = 1).

    A parameter that got no gradient on any process keeps ``grad=None`` (AdamW skips it, as a
    single process would); one that got a gradient elsewhere gets zeros here before the sum.
    """
    from accelerate.utils import reduce

    dev = _device()
    has = reduce(torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=dev), "sum")
    grads = []
    for p, h in zip(params, has.tolist()):
        if h > 0:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
    summed = reduce([g.to(dev, torch.float32) * weight for g in grads], "sum")
    for g, s in zip(grads, summed):
        g.copy_(s)


def broadcast_parameters(params: Sequence[nn.Parameter]) -> None:
    """Copy rank 0's values of ``params`` to every process (a guard against different starts)."""
    from accelerate.utils import broadcast

    with torch.no_grad():
        values = broadcast([p.data.to(_device()) for p in params], from_process=0)
        for p, v in zip(params, values):
            p.data.copy_(v)


def agree(flag: bool) -> bool:
    """Rank 0's value of ``flag`` on every process (decisions such as stopping rules)."""
    if not active():
        return flag
    from accelerate.utils import broadcast

    return bool(broadcast(torch.tensor([1.0 if flag else 0.0], device=_device()), from_process=0).item())


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


def auto_batch_size(fn: Callable[[int], T], start: int, minimum: int = 1,
                    on_retry: Callable[[int, int], None] | None = None) -> T:
    """``fn(batch_size)``, halving the batch size on out-of-memory and retrying
    (accelerate's ``find_executable_batch_size``: CUDA, XPU, NPU and CPU allocator OOMs).

    Starts at ``start``; after an OOM frees the device cache, halves (never below ``minimum``) and
    calls ``fn`` again from scratch; an OOM at ``minimum`` is raised. ``on_retry(old, new)`` is told
    each reduction (e.g. to print it). Errors other than OOM propagate at once.
    Example: ``metrics, samples = auto_batch_size(lambda b: evaluate(adapter, tasks,
    EvalConfig(batch_size=b)), start=64)``.
    """
    from accelerate.utils import find_executable_batch_size

    if start < 1 or minimum < 1:
        raise MMUError(f"auto_batch_size needs start >= 1 and minimum >= 1; got {start}, {minimum}")
    size = start

    def halve() -> int:
        nonlocal size
        if size <= minimum:
            raise  # noqa: PLE0704 - called while the OOM is being handled: re-raise it
        new = max(minimum, size // 2)
        if on_retry is not None:
            on_retry(size, new)
        size = new
        return new

    # a plain one-argument function: accelerate inspects its signature
    return find_executable_batch_size(lambda batch_size: fn(batch_size), starting_batch_size=start,
                                      reduce_batch_size_fn=halve)()
