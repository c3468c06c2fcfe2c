"""Plugin hook specifications (pluggy project ``mmu_bench``).

Every component the suite can name on the command line or in a config -- unlearning methods,
benchmarks, models, metrics, protocols, settings -- reaches it through one of these hooks, built-ins
included, so a third-party package has exactly the same power as the suite itself.

Each hook returns a list of *registrable objects*: anything (a class or an instance) with a
string attribute ``name`` (unique within its kind, used on the command line) and a string
attribute ``description`` (one line, shown by ``mmu-bench ls``). A plugin implements only the
hooks it needs::

    from mmu_bench import hookimpl

    @hookimpl
    def mmu_bench_methods():
        return [MyMethod]
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT_NAME = "mmu_bench"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def mmu_bench_methods() -> list[Any]:
    """Return unlearning methods this plugin provides.

    Each item is a method class (preferred: the harness instantiates it with its ``Hyper``
    hyper-parameters) or a ready instance, with ``name`` and ``description`` attributes.
    """


@hookspec
def mmu_bench_benchmarks() -> list[Any]:
    """Return benchmarks (forget/retain task suites) this plugin provides.

    Each item has ``name`` and ``description``; a benchmark describes its data splits and
    the metrics and protocols it evaluates.
    """


@hookspec
def mmu_bench_models() -> list[Any]:
    """Return model families or model-zoo entries this plugin provides.

    Each item has ``name`` and ``description``; it knows how to load a model and wrap it in
    an adapter that exposes the vision / projector / language module map.
    """


@hookspec
def mmu_bench_metrics() -> list[Any]:
    """Return the specs of the metrics this plugin produces.

    Each item is a :class:`mmu_bench.metrics.MetricSpec` (a key pattern, a one-line description,
    its direction, per setting where it differs, and the stage producing it); tables and
    leaderboards read directions and descriptions from them. Any object with ``name`` (an exact
    key) and ``description`` also works (direction "up").
    """


@hookspec
def mmu_bench_protocols() -> list[Any]:
    """Return evaluation protocols (e.g. attack or relearning procedures) this plugin provides.

    Each item has ``name`` and ``description``.
    """


@hookspec
def mmu_bench_settings() -> list[Any]:
    """Return unlearning settings (:class:`mmu_bench.settings.Setting`) this plugin provides.

    A setting decides which forget items a method receives, the oracle, per-setting metric
    directions and the leaderboard aggregates. Built-ins: ``visual`` and ``full``.
    """
