"""Core built-ins (protocols and metric definitions), registered through the plugin hooks."""

from __future__ import annotations

from .hookspecs import hookimpl


class MetricSpec:
    def __init__(self, name: str, description: str):
        self.name = name
        self.description = description


METRICS = [
    MetricSpec("mcq.acc", "multiple choice accuracy (loglik: argmax of option log-likelihood; generate: parsed letter)"),
    MetricSpec("mcq.prob", "normalised probability of the gold option, P_gold / sum P (TOFU)"),
    MetricSpec("gen.rougeL", "ROUGE-L F of the greedy answer vs the gold (rouge-score, stemming)"),
    MetricSpec("gen.rouge1", "ROUGE-1 F of the greedy answer vs the gold"),
    MetricSpec("gen.rouge2", "ROUGE-2 F of the greedy answer vs the gold"),
    MetricSpec("gen.prob", "answer probability exp(-mean NLL) of the gold answer"),
    MetricSpec("cloze.acc", "gold string contained (case-insensitive) in the greedy fill-in (MLLMU-Bench)"),
]


@hookimpl
def mmu_bench_protocols():
    from .protocols import ContinualProtocol, MIAProtocol, RelearnProtocol, StaticProtocol

    from .attacks.protocol import AttacksProtocol

    return [StaticProtocol, ContinualProtocol, MIAProtocol, RelearnProtocol, AttacksProtocol]


@hookimpl
def mmu_bench_metrics():
    from .attacks import as_metric_specs

    return METRICS + as_metric_specs()
