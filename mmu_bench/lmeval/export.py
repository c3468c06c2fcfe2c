"""The world's text QA as lm-eval tasks: jsonl data, task YAMLs (absolute data paths, so the plain
``lm_eval`` CLI runs them from any directory), a group, and ``mmu_lmeval_utils.py`` (this package's
module of that name, copied next to them) for the generation tasks' ``process_results``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..cache import write_text_atomic
from ..errors import MMUError, unknown_name
from ..surfaces import WorldSurface

TASK_PREFIX = "mmu_synthetic"
# Splits of the world exported by default (the ones with text QA items).
DEFAULT_SPLITS = ("forget_5", "forget_10", "forget_15", "retain_95", "retain_90", "retain_85", "real")
KINDS = ("mcq", "cloze", "gen")
MAX_GEN_TOKS = 50  # mmu-bench's EvalConfig.max_new_tokens default (MLLMU-Bench)
UTILS_MODULE = "mmu_lmeval_utils"

_TASK_HEADER = "# Written by mmu_bench.lmeval.export_lmeval_tasks; data path is absolute.\n"
_GROUP_HEADER = ("# Written by mmu_bench.lmeval.export_lmeval_tasks: every exported task, no aggregate\n"
                 "# (forget and retain scores must not be averaged).\n")


def _default_prompt(question: str) -> str:
    """The tiny model's chat-template prompt for a text-only question (no adapter at hand)."""
    from jinja2 import Template

    from ..tiny_model import CHAT_TEMPLATE

    messages = [{"role": "user", "content": [{"type": "text", "text": question}]}]
    return Template(CHAT_TEMPLATE).render(messages=messages, add_generation_prompt=True)


def _utils_source() -> str:
    # Copied, not imported: lm-eval loads ``!function`` modules by file path next to the YAML, so
    # the exported folder stays self-contained (that module must import nothing of mmu_bench).
    return resources.files(__package__).joinpath(f"{UTILS_MODULE}.py").read_text(encoding="utf-8")


class _Function(str):
    """``module.name`` of a function, written as lm-eval's ``!function`` tag."""


class _TaskDumper(yaml.SafeDumper):
    """PyYAML's safe dumper plus the one tag lm-eval's loader resolves: ``!function``."""


_TaskDumper.add_representer(_Function, lambda dumper, value: dumper.represent_scalar("!function", str(value)))


def _dump(header: str, config: dict[str, Any]) -> str:
    # key order as written (lm-eval does not care; people reading the file do); no line folding
    return header + yaml.dump(config, Dumper=_TaskDumper, sort_keys=False, allow_unicode=True, width=float("inf"))


def _task_config(task: str, data_file: Path, kind: str, eos: str, max_gen_toks: int = MAX_GEN_TOKS) -> dict[str, Any]:
    config: dict[str, Any] = {
        "task": task,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "doc_to_text": "prompt",
    }
    if kind == "mcq":
        # choices carry their leading space, so the delimiter is empty: the scored continuation is
        # exactly mmu-bench's " " + option after the chat-template prompt.
        config.update(output_type="multiple_choice", doc_to_choice="choices", doc_to_target="answer_index",
                      target_delimiter="", metric_list=[_metric("acc")])
    else:
        metrics = ("acc", "exact_match") if kind == "cloze" else ("rougeL", "rouge1", "rouge2")
        config.update(output_type="generate_until", doc_to_target="answer", target_delimiter=" ",
                      generation_kwargs={"until": [eos], "do_sample": False, "max_gen_toks": int(max_gen_toks)},
                      process_results=_Function(f"{UTILS_MODULE}.process_{kind}"),
                      metric_list=[_metric(m) for m in metrics])
    config["metadata"] = {"version": 1.0}
    return config


def _metric(name: str) -> dict[str, Any]:
    return {"metric": name, "aggregation": "mean", "higher_is_better": True}


def world_splits(world: WorldSurface) -> list[str]:
    """The splits of a world exported by default: forget and retain splits, then ``real``."""
    forget = tuple(world.forget_splits)
    if not forget:
        return list(DEFAULT_SPLITS)
    names = list(forget) + [world.retain_split(f) for f in forget]
    return names + (["real"] if "real" in world.split_names else [])


def world_task_prefix(world) -> str:
    """``mmu_<world.name>`` (``mmu_synthetic`` for the synthetic world)."""
    name = getattr(world, "name", None) or "synthetic"
    return f"mmu_{name}" if isinstance(name, str) and name.isidentifier() else TASK_PREFIX


def _item_splits(items, splits: Sequence[str] | None) -> dict[str, list[dict]]:
    if isinstance(items, WorldSurface):
        chosen = list(splits) if splits is not None else world_splits(items)
        known = tuple(items.split_names)
        for s in chosen:
            if s not in known:
                raise unknown_name("split", s, known)
        return {s: items.split_items(s) for s in chosen}
    if isinstance(items, Mapping):
        if splits is not None:
            missing = [s for s in splits if s not in items]
            if missing:
                raise MMUError(f"splits {', '.join(missing)} not in the items given "
                               f"(have {', '.join(items)})")
            return {s: list(items[s]) for s in splits}
        return {s: list(v) for s, v in items.items()}
    raise MMUError("export_lmeval_tasks expects a World or a mapping {split: items}; "
                   f"got {type(items).__name__}")


def _render_export(items, task_prefix: str, adapter, splits, kinds,
                   max_gen_toks: int = MAX_GEN_TOKS) -> tuple[list[str], Any]:
    """(task names, ``files(out) -> {relative path: text}``): the export, not yet written."""
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise unknown_name("QA kind", bad[0], KINDS)
    prompt = (lambda q: adapter.prompt_text(q, False)) if adapter is not None else _default_prompt
    eos = getattr(getattr(adapter, "tokenizer", None), "eos_token", None) or "</s>"
    tasks: list[str] = []
    data: dict[str, str] = {}
    task_kinds: dict[str, tuple[str, str]] = {}
    for split, split_items in _item_splits(items, splits).items():
        qa = [it for it in split_items if it.get("modality") == "qa" and it.get("image") is None]
        for kind in kinds:
            rows = [it for it in qa if it["kind"] == kind]
            if not rows:
                continue
            task = f"{task_prefix}_{split}_qa_{kind}"
            lines = []
            for it in rows:
                rec = {"id": it["id"], "entity_id": it.get("entity_id"), "fact": it.get("fact"),
                       "question": it["question"], "prompt": prompt(it["question"]), "answer": it["answer"]}
                if kind == "mcq":
                    rec.update(options=list(it["options"]), answer_index=int(it["answer_index"]),
                               choices=[" " + o for o in it["options"]])
                lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
            rel = f"data/{split}_qa_{kind}.jsonl"
            data[rel] = "".join(lines)
            task_kinds[task] = (rel, kind)
            tasks.append(task)
    if not tasks:
        raise MMUError("no text QA items (modality 'qa') to export as lm-eval tasks")
    group = _dump(_GROUP_HEADER, {"group": task_prefix, "task": tasks, "metadata": {"version": 1.0}})

    def files(out: Path) -> dict[str, str]:
        res = dict(data)
        for task, (rel, kind) in task_kinds.items():
            res[f"{task}.yaml"] = _dump(_TASK_HEADER, _task_config(task, out / rel, kind, eos, max_gen_toks))
        if any(kind != "mcq" for _, kind in task_kinds.values()):
            res[f"{UTILS_MODULE}.py"] = _utils_source()
        res[f"{task_prefix}.yaml"] = group
        return res

    return tasks, files


def export_lmeval_tasks(items, out_dir: str | os.PathLike[str], *, task_prefix: str | None = None,
                        adapter=None, splits: Sequence[str] | None = None,
                        kinds: Sequence[str] = KINDS, max_gen_toks: int = MAX_GEN_TOKS) -> list[str]:
    """Write the text QA of ``items`` as lm-eval tasks under ``out_dir``; return the task names.

    Args:
        items: a world (its ``splits``, default :func:`world_splits`: forget, retain, real) or
            ``{split: items}``. Only text items (``modality == "qa"``, no image) are exported.
        out_dir: folder for the YAMLs (``<task>.yaml``, group ``<task_prefix>.yaml``), the data
            (``data/<split>_qa_<kind>.jsonl``) and the generation tasks' ``mmu_lmeval_utils.py``.
            Pass it to lm-eval as ``--include_path``. Every path inside the YAMLs is absolute.
            Files are replaced atomically; other files in the folder are left alone.
        task_prefix: task names are ``<task_prefix>_<split>_qa_<kind>``; the group is
            ``<task_prefix>``. Default: ``mmu_<world.name>`` (``mmu_synthetic``).
        adapter: the model adapter whose chat template builds the prompts (its
            ``prompt_text(question, False)``); without one, the tiny model's template.
        splits: the splits to export (default: all of a mapping, :func:`world_splits` of a world).
        kinds: which of "mcq", "cloze", "gen" to export.
        max_gen_toks: generation budget of the cloze / gen tasks (mmu-bench's ``--max-new-tokens``).
    """
    prefix = task_prefix or world_task_prefix(items)
    tasks, files = _render_export(items, prefix, adapter, splits, kinds, max_gen_toks)
    out = Path(out_dir).expanduser().resolve()
    for rel, text in files(out).items():
        write_text_atomic(out / rel, text)  # concurrent exports never see a half-written file
    return tasks
