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

Modules: ``bridge`` (the language view and lm-eval's ``HFLM`` over it), ``export`` (the world's
tasks; ``mmu_lmeval_utils`` is the module it copies next to them), ``running``.
"""

from .bridge import adapter_lm, export_language_model, language_model_view
from .export import (DEFAULT_SPLITS, KINDS, MAX_GEN_TOKS, TASK_PREFIX, UTILS_MODULE,  # noqa: F401 (_default_prompt: tests)
                     _default_prompt, export_lmeval_tasks, world_splits, world_task_prefix)
from .running import (SPEC_PREFIX, flatten_results, lmeval_utility, parse_spec, run_lmeval,
                      simple_evaluate_adapter)

__all__ = ["DEFAULT_SPLITS", "KINDS", "MAX_GEN_TOKS", "SPEC_PREFIX", "TASK_PREFIX", "UTILS_MODULE", "adapter_lm",
           "export_language_model", "export_lmeval_tasks", "flatten_results", "language_model_view",
           "lmeval_utility", "parse_spec", "run_lmeval", "simple_evaluate_adapter", "world_splits",
           "world_task_prefix"]
