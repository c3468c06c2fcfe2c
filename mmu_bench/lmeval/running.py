"""Running lm-eval on an adapter: task lookup (the include path first, lm-eval's own tasks only
when needed), ``simple_evaluate`` with the global random states and train mode restored after,
flat metric keys, and the ``--utility lmeval:<tasks>`` option (exporting the world's tasks first)."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import random
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cache import write_text_atomic
from ..errors import MMUError, unknown_name
from ..surfaces import WorldSurface
from .bridge import adapter_lm, language_model_view
from .export import KINDS, MAX_GEN_TOKS, TASK_PREFIX, _render_export, world_splits, world_task_prefix

SPEC_PREFIX = "lmeval:"


@contextlib.contextmanager
def _preserved_state(model: torch.nn.Module):
    """lm-eval seeds python / numpy / torch globally and calls model.eval(): undo both after."""
    py, npy, tch = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    training = model.training
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.random.set_rng_state(tch)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        model.train(training)


def _include_paths(include_path) -> list[str] | None:
    if include_path is None:
        return None
    paths = [include_path] if isinstance(include_path, (str, os.PathLike)) else list(include_path)
    for p in paths:
        if not Path(p).is_dir():
            raise MMUError(f"lm-eval include path {str(p)!r} is not a directory")
    return [str(Path(p).resolve()) for p in paths]


def _task_manager(tasks: Sequence[str], include_path, include_defaults: bool | None):
    """A TaskManager that knows every name in ``tasks`` (defaults indexed only when needed)."""
    from lm_eval.tasks import TaskManager

    paths = _include_paths(include_path)
    local = TaskManager(include_defaults=False, include_path=paths) if paths else None
    local_names = list(local.all_tasks) if local else []
    missing = [t for t in tasks if t not in local_names]
    if not missing:
        return local
    if include_defaults is False:
        raise unknown_name("lm-eval task", missing[0], local_names or ["(none: no include_path)"])
    full = TaskManager(include_defaults=True, include_path=paths)
    known = list(full.all_tasks)
    missing = [t for t in tasks if t not in known]
    if missing:
        near = difflib.get_close_matches(missing[0], [k for k in known if k not in local_names], n=3, cutoff=0.5)
        err = unknown_name("lm-eval task", missing[0], local_names + near)
        raise MMUError(f"{err} (names listed: the include path's tasks and the nearest of lm-eval's "
                       f"{len(known) - len(local_names)} own tasks; `lm-eval ls tasks` lists them all)")
    return full


def flatten_results(results: Mapping[str, Any], prefix: str = "utility.lmeval") -> dict[str, float]:
    """``{prefix.<task>.<metric>: value}`` from simple_evaluate's output.

    The ",none" filter suffix is dropped (another filter stays as ``<metric>.<filter>``); stderr
    entries and non-numbers are skipped; ``<task>.n`` is the number of documents scored.
    """
    flat: dict[str, float] = {}
    for task, res in results.get("results", {}).items():
        for key, value in res.items():
            if key in ("alias", "sample_len") or "_stderr" in key:
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            metric, _, filt = key.partition(",")
            name = metric if filt in ("", "none") else f"{metric}.{filt}"
            flat[f"{prefix}.{task}.{name}"] = float(value)
    for task, n in results.get("n-samples", {}).items():
        if f"{prefix}.{task}.n" not in flat and any(k.startswith(f"{prefix}.{task}.") for k in flat):
            flat[f"{prefix}.{task}.n"] = float(n.get("effective", n.get("original", 0)))
    return dict(sorted(flat.items()))


def run_lmeval(adapter, tasks: list[str], *, include_path=None, limit: int | float | None = None,
               batch_size: int = 16, include_defaults: bool | None = None,
               num_fewshot: int | None = None) -> dict[str, float]:
    """Run lm-eval tasks on the adapter's language side; return ``{utility.lmeval.<task>.<metric>: v}``.

    Args:
        adapter: the model adapter (its model is not copied; its train/eval mode and the global
            random states are restored afterwards).
        tasks: lm-eval task or group names.
        include_path: folder(s) of extra task YAMLs (e.g. :func:`export_lmeval_tasks`' out_dir).
        limit: documents per task (lm-eval's ``limit``; a float < 1 is a fraction).
        batch_size: lm-eval's batch size.
        include_defaults: None (default): look for names missing from include_path among lm-eval's
            own tasks; False: never; True: same as None.
        num_fewshot: lm-eval's ``num_fewshot`` (None: each task's own).
    """
    out = simple_evaluate_adapter(adapter, tasks, include_path=include_path, limit=limit,
                                  batch_size=batch_size, include_defaults=include_defaults,
                                  num_fewshot=num_fewshot)
    return flatten_results(out) if out is not None else {}


def simple_evaluate_adapter(adapter, tasks: Sequence[str], *, include_path=None,
                            limit: int | float | None = None, batch_size: int = 16,
                            include_defaults: bool | None = None, num_fewshot: int | None = None,
                            log_samples: bool = False) -> dict | None:
    """:func:`run_lmeval` without the flattening: lm-eval's own result dict (with per-document
    ``samples`` when ``log_samples``). None on non-zero ranks of a distributed run."""
    if not tasks:
        raise MMUError("no lm-eval task given")
    from lm_eval import simple_evaluate

    manager = _task_manager(tasks, include_path, include_defaults)
    view = language_model_view(adapter)
    with _preserved_state(adapter.model), torch.no_grad():
        lm = adapter_lm(view, adapter.tokenizer, batch_size)
        # bootstrap_iters=0: no stderr (run_lmeval drops it anyway), no bootstrap time.
        return simple_evaluate(model=lm, tasks=list(tasks), task_manager=manager, limit=limit,
                               num_fewshot=num_fewshot, log_samples=log_samples, bootstrap_iters=0)


def parse_spec(spec: str) -> list[str]:
    """``"lmeval:a,b"`` -> ``["a", "b"]`` (the ``lmeval:`` prefix may be omitted)."""
    body = spec.strip()
    if body.startswith(SPEC_PREFIX):
        body = body[len(SPEC_PREFIX):]
    elif ":" in body.split(",")[0]:
        raise MMUError(f"utility spec {spec!r} is not an lm-eval spec; expected 'lmeval:<task>[,<task>...]'")
    names = [t.strip() for t in body.split(",") if t.strip()]
    if not names:
        raise MMUError(f"utility spec {spec!r} names no task; expected 'lmeval:<task>[,<task>...]'")
    return names


def _requested_splits(world: WorldSurface, prefix: str, names: Sequence[str]) -> list[str]:
    """The world splits the requested task names need (all default ones for the group name, or
    when no name parses, so an unknown-task error can still suggest the closest)."""
    known = tuple(world.split_names)
    splits: list[str] = []
    for name in names:
        rest = name[len(prefix) + 1:]
        for kind in KINDS:
            split = rest[: -len(f"_qa_{kind}")] if rest.endswith(f"_qa_{kind}") else None
            if split in known and split not in splits:
                splits.append(split)
    if prefix in names or len(splits) < len(names):
        splits += [s for s in world_splits(world) if s not in splits]
    return splits


def lmeval_utility(adapter, spec: str, world: WorldSurface | None = None, workdir: str | os.PathLike[str] | None = None, *,
                   limit: int | float | None = None, batch_size: int = 16,
                   include_path=None, max_gen_toks: int = MAX_GEN_TOKS) -> dict[str, float]:
    """The ``--utility lmeval:<task,...>`` option: run the named lm-eval tasks on ``adapter``.

    Names starting with ``mmu_<world.name>`` (``mmu_synthetic``: the world's own text QA tasks, or
    that group) need ``world``: they are exported with the adapter's chat template to
    ``workdir/lmeval_tasks/<prefix>-<content hash>`` (reused when the same export is asked again,
    safe for concurrent runs; a temporary folder when ``workdir`` is None) first. Any other name
    is looked up in ``include_path``, then among lm-eval's own tasks (offline).
    ``max_gen_toks`` is the world's generation tasks' budget (``--max-new-tokens``); other
    tasks keep their own settings.
    """
    tasks = parse_spec(spec)
    paths = [] if include_path is None else (
        [include_path] if isinstance(include_path, (str, os.PathLike)) else list(include_path))
    prefix = world_task_prefix(world) if world is not None else TASK_PREFIX
    own = [t for t in tasks if t == prefix or t.startswith(prefix + "_")]
    with contextlib.ExitStack() as stack:
        if own:
            if world is None:
                raise MMUError(f"lm-eval task {own[0]!r} is one of the synthetic world's tasks; "
                               "it needs a world to export")
            _, files = _render_export(world, prefix, adapter, _requested_splits(world, prefix, own), KINDS,
                                      max_gen_toks)
            if workdir is None:
                task_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mmu-lmeval-")))
            else:
                key = hashlib.sha256(json.dumps(files(Path("/OUT")), sort_keys=True).encode()).hexdigest()[:12]
                task_dir = Path(workdir).expanduser().resolve() / "lmeval_tasks" / f"{prefix}-{key}"
            for rel, text in files(task_dir).items():
                write_text_atomic(task_dir / rel, text)
            paths.append(task_dir)
        # Only the world's own names asked for: a typo among them need not index lm-eval's tasks.
        return run_lmeval(adapter, tasks, include_path=paths or None, limit=limit, batch_size=batch_size,
                          include_defaults=False if len(own) == len(tasks) else None)
