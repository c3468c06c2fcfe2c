"""Evaluation tasks of a forget split: written over the World surface, so they live in the core
(:func:`mmu_bench.benchmark.eval_tasks`); re-exported here, where they used to be."""

from __future__ import annotations

from mmu_bench.benchmark import EVAL_SPLITS, eval_tasks

__all__ = ["EVAL_SPLITS", "eval_tasks"]
