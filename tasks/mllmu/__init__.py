"""MLLMU-Bench (Liu et al., NAACL 2025) as a World-shaped benchmark: see docs/benchmarks.md."""

from .world import HUB_ID, SPLIT_CONFIGS, MLLMUConfig, MLLMUWorld

__all__ = ["HUB_ID", "SPLIT_CONFIGS", "MLLMUConfig", "MLLMUWorld"]
