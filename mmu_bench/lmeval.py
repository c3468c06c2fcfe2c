"""lm-eval integration: general text utility of the model's language side, and the synthetic
world's text QA shipped as lm-eval tasks.

- :func:`language_model_view` gives a plain causal LM (e.g. ``LlamaForCausalLM``) over the
  LLaVA's language model and lm_head, sharing the weights, so lm-eval's ``HFLM`` can drive it.
- :func:`export_lmeval_tasks` writes jsonl data and lm-eval YAML tasks (absolute data paths, so
  the plain ``lm_eval`` CLI can run them from any directory) for the world's text QA: per split a
  ``multiple_choice`` task (``<prefix>_<split>_qa_mcq``) scored exactly like mmu-bench's loglik
  mcq, and two ``generate_until`` tasks (``..._qa_cloze``: ``acc`` = gold contained in the output,
  ``exact_match``; ``..._qa_gen``: ROUGE F-measures), plus a group ``<prefix>`` listing them.
- :func:`run_lmeval` runs ``lm_eval.simple_evaluate`` and returns flat metric keys
  ``utility.lmeval.<task>.<metric>``; :func:`lmeval_utility` parses ``--utility lmeval:<tasks>``.
- :func:`export_language_model` saves the language view as an ordinary causal-LM folder for
  ``lm_eval --model hf --model_args pretrained=<folder>``.

Offline: nothing here downloads anything. Tasks are looked up in the include path first
(``TaskManager(include_defaults=False)``, 0.05 s); only names not found there are looked up among
lm-eval's own task YAMLs (about 6 s to index, no network). Their datasets must already be in the
local Hugging Face cache when HF_DATASETS_OFFLINE=1.
"""

from __future__ import annotations

import contextlib
import copy
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

from .cache import write_text_atomic
from .errors import MMUError, unknown_name
from .surfaces import WorldSurface

TASK_PREFIX = "mmu_synthetic"
SPEC_PREFIX = "lmeval:"
# Splits of the world exported by default (the ones with text QA items).
DEFAULT_SPLITS = ("forget_5", "forget_10", "forget_15", "retain_95", "retain_90", "retain_85", "real")
KINDS = ("mcq", "cloze", "gen")
MAX_GEN_TOKS = 50  # mmu-bench's EvalConfig.max_new_tokens default (MLLMU-Bench)
UTILS_MODULE = "mmu_lmeval_utils"

# ---------------------------------------------------------------------------------------- model


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a peft wrapper (LoRA layers stay in place)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _language_parts(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    inner = getattr(model, "model", None)
    lm = getattr(inner, "language_model", None) or getattr(model, "language_model", None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if lm is None or head is None:
        raise MMUError(f"cannot find the language model and lm_head of {type(model).__name__}; "
                       "expected a LLaVA-style model (model.model.language_model, lm_head)")
    return lm, head


def _causal_lm_shell(cfg, model_name: str):
    """``AutoModelForCausalLM.from_config(cfg)``; for a VLM-only text config (``qwen2_vl_text``)
    the causal LM of its base text architecture (``qwen2``), whose forward is the same
    ``lm_head(model(...))``."""
    import transformers
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as CAUSAL

    try:
        return AutoModelForCausalLM.from_config(cfg)
    except ValueError:
        pass
    mt = getattr(cfg, "model_type", "")
    for base in (mt.replace("_5_vl_text", ""), mt.replace("_vl_text", ""), mt.removesuffix("_text")):
        if base in CAUSAL:
            return getattr(transformers, CAUSAL[base])(cfg)
    raise MMUError(f"no causal-LM class for the language side of {model_name} (text config {mt!r}); "
                   "lm-eval utility needs one")


def language_model_view(adapter) -> "transformers.PreTrainedModel":  # noqa: F821
    """A causal LM over the adapter's language side that shares its weights (nothing is copied).

    Built from ``config.text_config`` (``AutoModelForCausalLM``, e.g. ``LlamaForCausalLM``) on the
    meta device, then given the LLaVA's own language model as ``.model`` and its ``lm_head``. On
    text-only input its logits are the LLaVA's. Changing the view's weights changes the LLaVA's;
    ``view.eval()`` / ``.train()`` switch the shared modules too.
    """
    model = _unwrap(adapter.model)
    lm, head = _language_parts(model)
    cfg = copy.deepcopy(model.config.text_config)
    cfg.tie_word_embeddings = head.weight is lm.get_input_embeddings().weight
    with torch.device("meta"):
        view = _causal_lm_shell(cfg, type(model).__name__)
    setattr(view, view.base_model_prefix, lm)
    view.set_output_embeddings(head)
    left = [n for n, p in list(view.named_parameters()) + list(view.named_buffers()) if p.is_meta]
    if left:
        raise MMUError(f"language view of {type(model).__name__} has unshared parts: {', '.join(left[:5])}")
    try:
        view.config.dtype = next(lm.parameters()).dtype
    except StopIteration:  # pragma: no cover - a language model has parameters
        pass
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        view.generation_config = copy.deepcopy(gen)
    view.train(model.training)
    return view


def export_language_model(adapter, out_dir: str | os.PathLike[str]) -> Path:
    """Save the language view + tokenizer as a plain causal-LM folder (for ``lm_eval --model hf``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    language_model_view(adapter).save_pretrained(out)
    adapter.tokenizer.save_pretrained(out)
    return out

# ---------------------------------------------------------------------------------------- tasks


def _default_prompt(question: str) -> str:
    """The tiny model's chat-template prompt for a text-only question (no adapter at hand)."""
    from jinja2 import Template

    from .tiny_model import CHAT_TEMPLATE

    messages = [{"role": "user", "content": [{"type": "text", "text": question}]}]
    return Template(CHAT_TEMPLATE).render(messages=messages, add_generation_prompt=True)


_UTILS_SOURCE = '''"""process_results for mmu-bench's exported generation tasks (written by mmu_bench.lmeval)."""

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
'''


def _yaml_quote(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def _task_yaml(task: str, data_file: Path, kind: str, eos: str, max_gen_toks: int = MAX_GEN_TOKS) -> str:
    lines = [
        f"# Written by mmu_bench.lmeval.export_lmeval_tasks; data path is absolute.",
        f"task: {task}",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {_yaml_quote(str(data_file))}",
        "test_split: test",
        "doc_to_text: prompt",
    ]
    if kind == "mcq":
        # choices carry their leading space, so the delimiter is empty: the scored continuation is
        # exactly mmu-bench's " " + option after the chat-template prompt.
        lines += [
            "output_type: multiple_choice",
            "doc_to_choice: choices",
            "doc_to_target: answer_index",
            'target_delimiter: ""',
            "metric_list:",
            "  - metric: acc",
            "    aggregation: mean",
            "    higher_is_better: true",
        ]
    else:
        metrics = ("acc", "exact_match") if kind == "cloze" else ("rougeL", "rouge1", "rouge2")
        lines += [
            "output_type: generate_until",
            "doc_to_target: answer",
            'target_delimiter: " "',
            "generation_kwargs:",
            f"  until: [{_yaml_quote(eos)}]",
            "  do_sample: false",
            f"  max_gen_toks: {int(max_gen_toks)}",
            f"process_results: !function {UTILS_MODULE}.process_{kind}",
            "metric_list:",
        ]
        for m in metrics:
            lines += [f"  - metric: {m}", "    aggregation: mean", "    higher_is_better: true"]
    lines += ["metadata:", "  version: 1.0", ""]
    return "\n".join(lines)


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
    group = ["# Written by mmu_bench.lmeval.export_lmeval_tasks: every exported task, no aggregate",
             "# (forget and retain scores must not be averaged).", f"group: {task_prefix}", "task:"]
    group += [f"  - {t}" for t in tasks] + ["metadata:", "  version: 1.0", ""]

    def files(out: Path) -> dict[str, str]:
        res = dict(data)
        for task, (rel, kind) in task_kinds.items():
            res[f"{task}.yaml"] = _task_yaml(task, out / rel, kind, eos, max_gen_toks)
        if any(kind != "mcq" for _, kind in task_kinds.values()):
            res[f"{UTILS_MODULE}.py"] = _UTILS_SOURCE
        res[f"{task_prefix}.yaml"] = "\n".join(group)
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


# ---------------------------------------------------------------------------------------- running


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
    from lm_eval.models.huggingface import HFLM

    manager = _task_manager(tasks, include_path, include_defaults)
    view = language_model_view(adapter)
    with _preserved_state(adapter.model), torch.no_grad():
        lm = HFLM(pretrained=view, tokenizer=adapter.tokenizer, batch_size=batch_size,
                  max_length=getattr(view.config, "max_position_embeddings", None))
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
