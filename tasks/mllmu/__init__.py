"""MLLMU-Bench (Liu et al., NAACL 2025) as a World-shaped benchmark: see docs/benchmarks.md."""

from .reader import CONFIGS, read_config, read_mllmu
from .world import HUB_ID, SPLIT_CONFIGS, MLLMUConfig, MLLMUWorld

__all__ = ["CONFIGS", "HUB_ID", "SPLIT_CONFIGS", "MLLMUConfig", "MLLMUWorld", "read_config", "read_mllmu"]
