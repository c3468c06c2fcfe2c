"""Registers the built-in methods through the same hook a third-party plugin uses."""

from __future__ import annotations

from mmu_bench.hookspecs import hookimpl


@hookimpl
def mmu_bench_methods():
    from .cvf import CVF
    from .ga import GA
    from .ga_diff import GADiff
    from .kl_min import KLMin
    from .npo import NPO
    from .reference import Finetuned, Retrain, RetrainVisual

    return [CVF, GA, GADiff, KLMin, NPO, Finetuned, Retrain, RetrainVisual]
