"""Example third-party mmu-bench plugin: one unlearning method that perturbs the vision tower.

Only ``mmu_bench.hookspecs`` is imported at module level: every plugin is imported whenever
mmu-bench starts (even for ``mmu-bench --help``-like commands), so heavy imports such as torch
belong inside the functions that need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmu_bench.hookspecs import hookimpl

__version__ = "0.1.0"


def _seed_of(*sources: Any, default: int = 0) -> int:
    """First ``seed`` found on the request / context (attribute or mapping key), else ``default``."""
    for src in sources:
        if src is None:
            continue
        seed = src.get("seed") if isinstance(src, dict) else getattr(src, "seed", None)
        if seed is not None:
            return int(seed)
    return default


def _modules(obj: Any) -> list[Any]:
    """``vision_modules`` may be one ``nn.Module`` or a list of them."""
    import torch.nn as nn

    return [obj] if isinstance(obj, nn.Module) else list(obj)


class NoiseMethod:
    """Adds seeded Gaussian noise (std ``sigma``) to every vision-tower parameter.

    A deliberately naive baseline: it shows the shape of a method plugin, not a good method.
    """

    name = "example_noise"
    description = "adds Gaussian noise to the vision tower (example third-party method)"

    @dataclass
    class Hyper:
        """Hyper-parameters of the method."""

        sigma: float = 0.01

    def __init__(self, hyper: NoiseMethod.Hyper | None = None) -> None:
        self.hyper = hyper if hyper is not None else self.Hyper()

    def unlearn(self, model: Any, request: Any, context: Any) -> None:
        """Perturb ``model.vision_modules`` in place; seed from ``request``/``context`` (default 0)."""
        import torch

        gen = torch.Generator().manual_seed(_seed_of(request, context))
        with torch.no_grad():
            for module in _modules(model.vision_modules):
                for p in module.parameters():
                    noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
                    p.add_(noise.to(device=p.device, dtype=p.dtype), alpha=self.hyper.sigma)
        return None


@hookimpl
def mmu_bench_methods() -> list[type]:
    """Register this package's methods with mmu-bench."""
    return [NoiseMethod]
