"""Leaderboard tables and plots from finished run directories.

Python API::

    from mmu_bench import leaderboard as lb
    records = lb.collect(["runs"])            # every finished run under runs/
    groups = lb.aggregate(records)            # one table per (benchmark, model, setting, protocol, split)
    print(lb.render(groups, "md"))            # md | latex | csv | html
    lb.plot(groups, "plots")                  # PNG scatter (+ continual curves) per table

Every table is in ONE setting (mmu_bench/settings.py: visual or full) and says which; runs of
two settings never share a table. Aggregates are the setting's (docs/leaderboard.md), computed per
run, then mean +- std over seeds like every other column:

    forget efficacy = clip((1 - m) / (1 - 0.25), 0, 1),  m = mean of the setting's forget accuracies
                      (visual: forget.vqa, test.vqa; full: also forget.qa)
    retention       = harmonic mean of the setting's kept accuracies (visual includes forget.qa)

Both are "up" (higher is better). 0.25 is chance for four-option multiple choice. Directions and
descriptions come from the metric specs (mmu_bench/metrics.py), per setting.

Modules: ``collect`` (run directories -> RunRecords, runs x metrics frame), ``marks`` (bootstrap
CIs, best / tie), ``aggregate`` (rows, tables, the aggregates), ``render`` (md, latex, csv),
``html`` (the page), ``plots``, ``provenance``, ``cli`` (``mmu-bench leaderboard``). The names
below are the API; ``lb.collect``, ``lb.aggregate``, ``lb.render`` and ``lb.provenance`` are the
functions (they are bound after, so they shadow, their modules of the same name).
"""

from __future__ import annotations

from .aggregate import (AGGREGATES, CHANCE, FORGET_EFFICACY, PROTOCOL_ORDER, REFERENCE_NAMES, RETENTION, Group,
                        Row, aggregate, column_label, column_name, direction, group_runs, void_attack_columns,
                        with_aggregates)
from .cli import add_command, cmd_leaderboard
from .collect import FRAME_INDEX, RunRecord, collect, runs_frame
from .marks import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CI_RULE, bootstrap_ci
from .plots import plot
from .provenance import provenance
from .render import FORMATS, TIE, format_for, latex_escape, render

# private, but used elsewhere: benchmarks/zoo_seed_study.py, mmu_bench/fronts.py, the tests
from .collect import _read_run  # noqa: F401
from .marks import _badness  # noqa: F401
from .plots import _save  # noqa: F401

__all__ = ["AGGREGATES", "BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "CHANCE", "CI_RULE", "FORGET_EFFICACY",
           "FORMATS", "FRAME_INDEX", "PROTOCOL_ORDER", "REFERENCE_NAMES", "RETENTION", "TIE", "Group", "Row",
           "RunRecord", "add_command", "aggregate", "bootstrap_ci", "cmd_leaderboard", "collect", "column_label",
           "column_name", "direction", "format_for", "group_runs", "latex_escape", "plot", "provenance",
           "render", "runs_frame", "void_attack_columns", "with_aggregates"]
