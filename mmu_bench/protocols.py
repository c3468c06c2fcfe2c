"""Protocols own the evaluation schedule. ``static``: one forget request, evaluate after."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .engine import Diverged
from .evaluate import EvalConfig, evaluate
from .method import Method, UnlearnContext


@dataclass
class ProtocolResult:
    metrics: dict[str, float]
    samples: list[dict]
    method_logs: dict[str, Any] = field(default_factory=dict)
    diverged: dict | None = None
    timings: dict[str, float] = field(default_factory=dict)


def make_context(benchmark, split: str, seed: int, progress: bool, device=None) -> UnlearnContext:
    cache: dict[str, Any] = {}

    def reference(name: str):
        if name not in cache:
            adapter = benchmark.load(name, split)
            for p in adapter.model.parameters():
                p.requires_grad_(False)
            adapter.model.eval()
            cache[name] = adapter
        return cache[name]

    validation = benchmark.validation(split) if hasattr(benchmark, "validation") else {}
    return UnlearnContext(retain=benchmark.retain_items(split), seed=seed, progress=progress,
                          reference=reference, device=device, validation=validation)


class StaticProtocol:
    name = "static"
    description = "one forget request from the finetuned model, then every task is evaluated"

    def run(self, method: Method, benchmark, split: str, seed: int, eval_cfg: EvalConfig,
            progress: bool = True) -> ProtocolResult:
        t0 = time.time()
        model = benchmark.load(getattr(method, "zoo_model", "finetuned"), split)
        request = benchmark.request(split)
        context = make_context(benchmark, split, seed, progress, model.device)
        diverged = None
        t1 = time.time()
        try:
            method.unlearn(model, request, context)
        except Diverged as e:
            diverged = {"step": e.step, "loss": str(e.loss)}
        model.model.eval()
        t2 = time.time()
        metrics, samples = evaluate(model, benchmark.tasks(split), eval_cfg)
        t3 = time.time()
        return ProtocolResult(metrics, samples, context.logs, diverged,
                              {"load": round(t1 - t0, 2), "unlearn": round(t2 - t1, 2), "evaluate": round(t3 - t2, 2)})
