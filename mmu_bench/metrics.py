"""Self-describing metrics: one :class:`MetricSpec` per family of metric keys.

Whoever produces a metric registers its spec through the ``mmu_bench_metrics`` hook (the
evaluator's, MIA's, forget quality's and each protocol's are in mmu_bench/builtin.py; a plugin's
protocol registers its own). The run table, the leaderboard, the CLI and ``mmu-bench ls metrics``
read directions and descriptions from here, so a plugin's metric is shown exactly like a
built-in's.

A spec's ``pattern`` is a shell-style pattern over metric keys (``fnmatch``: ``forget.qa.*``).
Several specs may match one key: the most specific (most literal characters) that gives a
direction decides the direction; the description is every matching spec's, general to specific
(``forget.vqa.mcq.acc`` = "the forget entities' image questions ..." + "multiple-choice accuracy ...").
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

DIRECTIONS = ("up", "down", "zero")
ARROW = {"up": "↑", "down": "↓", "zero": "→0"}


@dataclass(frozen=True)
class MetricSpec:
    """A family of metric keys.

    Args:
        pattern: fnmatch pattern over keys (``forget.vqa.*``, ``mia.*.privleak``); also the name
            ``mmu-bench ls metrics`` lists.
        description: one line: what the metric means.
        direction: "up" / "down" (higher / lower is better), "zero" (closest to 0 is best), a
            mapping setting name -> one of those (``{"visual": "up", "full": "down"}``), or None
            when the spec only describes (a more general spec gives the direction).
        stage: what produces it (evaluate, forget_quality, mia, continual, relearn, leaderboard,
            or a plugin's protocol name).
    """

    pattern: str
    description: str
    direction: str | Mapping[str, str] | None = None
    stage: str = "evaluate"

    def __post_init__(self):
        d = self.direction
        values = list(d.values()) if isinstance(d, Mapping) else [d]
        bad = [v for v in values if v is not None and v not in DIRECTIONS]
        if bad:
            raise ValueError(f"metric spec {self.pattern!r}: direction {bad[0]!r} unknown; expected "
                             f"{', '.join(DIRECTIONS)} or a mapping setting -> one of them")

    @property
    def name(self) -> str:
        return self.pattern

    def direction_in(self, setting: str | None) -> str | None:
        d = self.direction
        if isinstance(d, Mapping):
            if setting is None:
                return None
            return d.get(setting)
        return d

    def directions_text(self) -> str:
        d = self.direction
        if isinstance(d, Mapping):
            return ", ".join(f"{ARROW[v]} {k}" for k, v in d.items())
        return ARROW.get(d, "") if d else ""


def _specificity(pattern: str) -> int:
    return sum(ch not in "*?[]" for ch in pattern)


def _as_spec(obj: Any) -> MetricSpec:
    """A registered metric as a spec (a plugin may register any object with name + description:
    its name is then an exact key)."""
    if isinstance(obj, MetricSpec):
        return obj
    return MetricSpec(str(obj.name), str(getattr(obj, "description", "")), getattr(obj, "direction", None),
                      str(getattr(obj, "stage", "plugin")))


class MetricCatalog:
    """Lookup over a set of specs (``catalog()`` gives the registered ones)."""

    def __init__(self, specs: Iterable[Any]):
        self.specs = sorted((_as_spec(s) for s in specs), key=lambda s: _specificity(s.pattern))

    def matching(self, key: str) -> list[MetricSpec]:
        """Specs whose pattern matches ``key``, general to specific."""
        return [s for s in self.specs if fnmatch.fnmatchcase(key, s.pattern)]

    def direction(self, key: str, setting: str | None = None) -> str:
        """"up", "down" or "zero" for ``key`` in ``setting``; "up" for a key no spec directs."""
        for s in reversed(self.matching(key)):
            d = s.direction_in(setting)
            if d is not None:
                return d
        return "up"

    def describe(self, key: str) -> str:
        parts = [s.description for s in self.matching(key) if s.description]
        return "; ".join(parts)

    def known(self, key: str) -> bool:
        return bool(self.matching(key))


def catalog() -> MetricCatalog:
    """The registered metric specs (every plugin's ``mmu_bench_metrics``)."""
    from .plugins import get_registry

    return MetricCatalog(get_registry().registry("metrics").values())


def direction(key: str, setting: str | None = None) -> str:
    return catalog().direction(key, setting)


def has_direction(key: str, setting: str | None = None) -> bool:
    """Whether ``key`` has a better side: False for keys whose specs all declare none (stop.steps,
    matched.alpha, ...); keys no spec knows count as ↑, like ``direction``."""
    specs = catalog().matching(key)
    return not specs or any(s.direction_in(setting) is not None for s in specs)


def column_label(key: str, setting: str | None = None, name: str | None = None) -> str:
    """``name`` (default: the key) and the arrow of its better direction; no arrow for a key
    without one (an arrow would claim a better side that does not exist)."""
    name = key if name is None else name
    return f"{name} {ARROW[direction(key, setting)]}" if has_direction(key, setting) else name
