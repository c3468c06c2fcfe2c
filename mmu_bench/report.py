"""Result tables: reference rows first, then methods; metric columns with the arrows their
metric specs give in the run's setting (mmu_bench/metrics.py).

The columns of a protocol's table are the protocol's own declaration (``columns(setting)`` on the
protocol class, mmu_bench/protocols.py), so a plugin's protocol shows its keys like a built-in's.
"""

from __future__ import annotations

from typing import Sequence

from tabulate import tabulate

from .metrics import ARROW, column_label, direction

__all__ = ["ARROW", "column_label", "protocol_columns", "results_table"]


def protocol_columns(protocol: str, setting) -> list[str]:
    """The columns protocol ``protocol`` declares for ``setting`` (a Setting); the static
    protocol's when it declares none."""
    from .plugins import get_registry
    from .protocols import evaluation_columns

    cls = get_registry().get("protocols", protocol)
    fn = getattr(cls, "columns", None)
    return list(fn(setting)) if callable(fn) else evaluation_columns(setting)


def results_table(rows: dict[str, dict[str, float]], keys: Sequence[str], setting: str | None = "visual",
                  fmt: str = "github", notes: dict[str, str] | None = None) -> str:
    headers = ["model"] + [column_label(k, setting) for k in keys]
    body = []
    for label, metrics in rows.items():
        name = label + (f" ({notes[label]})" if notes and label in notes else "")
        body.append([name] + [("-" if metrics.get(k) is None else f"{metrics[k]:.3f}") for k in keys])
    return tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True)
