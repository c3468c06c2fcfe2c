"""Result tables: reference rows first, then methods; metric columns with up/down arrows."""

from __future__ import annotations

from tabulate import tabulate

from .evaluate import metric_direction

MAIN_KEYS = (
    "forget.vqa.mcq.acc", "test.vqa.mcq.acc", "forget.vqa.gen.rougeL", "forget.qa.mcq.acc",
    "retain.vqa.mcq.acc", "retain.qa.mcq.acc", "real.vqa.mcq.acc", "utility.vqa.mcq.acc",
    "retain.vqa.gen.rougeL", "forget_quality.ks_p_visual",
)
CONTINUAL_KEYS = (
    "continual.forget_acc_mean", "continual.retention_final", "continual.retention_auc", "continual.rebound_max",
    "forget.vqa.mcq.acc", "forget.qa.mcq.acc", "retain.vqa.mcq.acc", "utility.vqa.mcq.acc",
)
MIA_KEYS = (
    "mia.vqa.loss.auc", "mia.vqa.loss.privleak", "mia.vqa.loss.privleak_visual", "mia.vqa.mink40.auc",
    "mia.vqa.minkpp20.auc", "mia.qa.loss.auc", "mia.qa.loss.privleak", "forget.vqa.mcq.acc", "retain.vqa.mcq.acc",
)
RELEARN_KEYS = ("relearn.recovery", "relearn.acc_after_unlearn", "relearn.acc_after_relearn", "relearn.acc_finetuned",
                "forget.vqa.mcq.acc", "forget.qa.mcq.acc", "retain.vqa.mcq.acc")
ARROW = {"up": "↑", "down": "↓", "zero": "→0"}


def column_label(key: str) -> str:
    return f"{key} {ARROW[metric_direction(key)]}"


def results_table(rows: dict[str, dict[str, float]], keys=MAIN_KEYS, fmt: str = "github",
                  notes: dict[str, str] | None = None) -> str:
    headers = ["model"] + [column_label(k) for k in keys]
    body = []
    for label, metrics in rows.items():
        name = label + (f" ({notes[label]})" if notes and label in notes else "")
        body.append([name] + [("-" if metrics.get(k) is None else f"{metrics[k]:.3f}") for k in keys])
    return tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True)
