"""CLEAR (Dontsov et al., 2024) as a World-shaped benchmark: see docs/benchmarks.md."""

from .reader import CONFIGS, read_clear, read_clear_config
from .world import HUB_ID, SPLIT_CONFIGS, ClearConfig, ClearWorld, attribute_persons

__all__ = ["CONFIGS", "FIXTURE_SPLITS", "HUB_ID", "SPLIT_CONFIGS", "ClearConfig", "ClearWorld",
           "attribute_persons", "read_clear", "read_clear_config", "write_clear_fixture"]


def __getattr__(name: str):
    # The fixture writer draws on the synthetic world, so it lives in that plugin
    # (mmu_bench.tasks.synthetic.clear_export); re-exported here on first use, where it used to be,
    # so reading CLEAR never imports the synthetic plugin.
    if name in ("FIXTURE_SPLITS", "write_clear_fixture"):
        from ..synthetic import clear_export

        return getattr(clear_export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
