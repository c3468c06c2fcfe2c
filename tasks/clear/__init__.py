"""CLEAR (Dontsov et al., 2024) as a World-shaped benchmark: see docs/benchmarks.md."""

from .fixture import FIXTURE_SPLITS, write_clear_fixture
from .reader import CONFIGS, read_clear, read_clear_config
from .world import HUB_ID, SPLIT_CONFIGS, ClearConfig, ClearWorld, attribute_persons

__all__ = ["CONFIGS", "FIXTURE_SPLITS", "HUB_ID", "SPLIT_CONFIGS", "ClearConfig", "ClearWorld",
           "attribute_persons", "read_clear", "read_clear_config", "write_clear_fixture"]
