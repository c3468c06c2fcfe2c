"""Registers the built-in methods through the same hook a third-party plugin uses."""

from __future__ import annotations

from mmu_bench.hookspecs import hookimpl


@hookimpl
def mmu_bench_methods():
    from .cvf import CVF
    from .ga import GA
    from .ga_diff import GADiff
    from .idkdpo import IdkDPO
    from .kl_min import KLMin
    from .mmunlearner import MMUnlearner
    from .npo import NPO
    from .rmu import RMU
    from .simnpo import SimNPO
    from .reference import Finetuned, Retrain, RetrainVisual

    return [CVF, GA, GADiff, KLMin, NPO, SimNPO, IdkDPO, RMU, MMUnlearner, Finetuned, Retrain, RetrainVisual]
