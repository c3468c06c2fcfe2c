"""Moved: the CLEAR-layout writer of the synthetic world is :mod:`mmu_bench.tasks.synthetic.clear_export`
(writing the layout from a synthetic world is the synthetic plugin's job); this old path re-exports it."""

from ..synthetic.clear_export import FIXTURE_SPLITS, write_clear_fixture

__all__ = ["FIXTURE_SPLITS", "write_clear_fixture"]
