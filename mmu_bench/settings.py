"""Unlearning settings: what is to be forgotten, and so how a result is scored.

Two settings, never mixed in one table (docs/settings.md):

- ``visual`` (default; the NS-CVF paper's and MMUnlearner's setting): forget what the model learned
  from the forget entities' IMAGES and keep what it knows about them from text. A method receives
  the forget entities' image questions only; the oracle is ``retrain_visual`` (knows the entities by
  name, never saw them); ``forget.qa.*`` is higher-is-better and part of retention.
- ``full`` (MLLMU-Bench's and CLEAR's setting): forget the entity in both modalities. A method
  receives image and text questions; the oracle is ``retrain``; ``forget.qa.*`` is
  lower-is-better and part of forget efficacy.

A setting decides, in this one place: the forget items a method receives (:meth:`Setting.forget_items`),
the oracle (forget quality, PrivLeak, the plot's marker), each metric's direction (through the
metric specs' per-setting directions, mmu_bench/metrics.py), the default trainable part of the
gradient baselines, and the leaderboard aggregates (:meth:`Setting.forget_efficacy`,
:meth:`Setting.retention`). Settings are plugins (hook ``mmu_bench_settings``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

CHANCE = 0.25  # four-option multiple choice


@dataclass(frozen=True)
class Setting:
    """One unlearning setting.

    Args:
        name: what ``--setting`` takes.
        description: one line for ``mmu-bench ls settings``.
        forget_modalities: the modalities of the forget items a method receives.
        oracle: the zoo model a method should end up like (forget quality, PrivLeak).
        trainable: the part of the model the gradient baselines train by default (``trainable=auto``).
        efficacy_inputs: forget accuracies averaged by forget efficacy (lower = more forgotten).
        retention_inputs: accuracies whose harmonic mean is retention (higher = more kept).
        key_suffix: suffix of the oracle-relative keys (``forget_quality.ks_p<suffix>``,
            ``mia.*.privleak<suffix>``) that compare against this setting's oracle.
        papers: where the setting comes from.
    """

    name: str
    description: str
    forget_modalities: tuple[str, ...]
    oracle: str
    trainable: str
    efficacy_inputs: tuple[str, ...]
    retention_inputs: tuple[str, ...]
    key_suffix: str
    papers: str = ""

    def forget_items(self, items: Sequence[dict]) -> list[dict]:
        """The forget items a method receives in this setting."""
        return [it for it in items if it["modality"] in self.forget_modalities]

    def oracle_key(self, key: str) -> str:
        """``forget_quality.ks_p`` -> this setting's oracle's variant (``..._visual`` in visual)."""
        return key + self.key_suffix

    def forget_efficacy(self, metrics: dict[str, float]) -> float | None:
        """clip((1 - m) / (1 - 0.25), 0, 1), m = mean of the setting's forget accuracies present;
        1 = chance or below, 0 = the finetuned model's perfect recall. None when none is present."""
        vals = [metrics[k] for k in self.efficacy_inputs if k in metrics]
        if not vals:
            return None
        m = sum(vals) / len(vals)
        return min(1.0, max(0.0, (1.0 - m) / (1.0 - CHANCE)))

    def retention(self, metrics: dict[str, float]) -> float | None:
        """Harmonic mean of the setting's retention inputs present (0 if any is 0); None when none
        is (OpenUnlearning's model utility is a harmonic mean for the same reason: one collapsed
        ability must not be averaged away)."""
        vals = [metrics[k] for k in self.retention_inputs if k in metrics]
        if not vals:
            return None
        if any(v <= 0 for v in vals):
            return 0.0
        return len(vals) / sum(1.0 / v for v in vals)

    def efficacy_formula(self) -> str:
        return (f"forget efficacy = clip((1 - mean({', '.join(self.efficacy_inputs)})) / (1 - {CHANCE}), 0, 1)")

    def retention_formula(self, present: Sequence[str] | None = None) -> str:
        keys = [k for k in self.retention_inputs if present is None or k in present]
        return f"retention = harmonic mean of {', '.join(keys) or '(none present)'} (0 if any is 0)"


_KEPT = ("retain.vqa.mcq.acc", "retain.qa.mcq.acc", "real.vqa.mcq.acc", "utility.vqa.mcq.acc")

VISUAL = Setting(
    name="visual",
    description="forget what was learned from the forget entities' images, keep their text facts "
                "(oracle retrain_visual; NS-CVF, MMUnlearner)",
    forget_modalities=("vqa",),
    oracle="retrain_visual",
    trainable="vision",
    efficacy_inputs=("forget.vqa.mcq.acc", "test.vqa.mcq.acc"),
    retention_inputs=("retain.vqa.mcq.acc", "forget.qa.mcq.acc") + _KEPT[1:],
    key_suffix="_visual",
    papers="NS-CVF (arXiv 2605.05909), MMUnlearner (arXiv 2502.11051)",
)
FULL = Setting(
    name="full",
    description="forget the forget entities in both modalities, image and text "
                "(oracle retrain; MLLMU-Bench, CLEAR)",
    forget_modalities=("vqa", "qa"),
    oracle="retrain",
    trainable="llm",
    efficacy_inputs=("forget.vqa.mcq.acc", "test.vqa.mcq.acc", "forget.qa.mcq.acc"),
    retention_inputs=_KEPT,
    key_suffix="",
    papers="MLLMU-Bench (arXiv 2410.22108), CLEAR (arXiv 2410.18057)",
)
SETTINGS = (VISUAL, FULL)
DEFAULT_SETTING = VISUAL.name


def get_setting(name: str) -> Setting:
    """A registered setting by name (built-ins and plugins); MMUError naming the closest one."""
    from .plugins import get_registry

    return get_registry().get("settings", name)


def check_method_setting(method_cls, setting: Setting) -> None:
    """MMUError (one line, saying why) when a method does not support ``setting``."""
    from .errors import MMUError

    supported = tuple(getattr(method_cls, "settings", ()) or (s.name for s in SETTINGS))
    if setting.name not in supported:
        why = getattr(method_cls, "settings_note", "")
        raise MMUError(f"method {method_cls.name!r} supports setting {', '.join(supported)} only, not "
                       f"{setting.name!r}" + (f": {why}" if why else ""))
