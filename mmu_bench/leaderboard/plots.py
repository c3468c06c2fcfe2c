"""PNG plots per table: forget efficacy vs retention, the continual curves, the attacks grid."""

from __future__ import annotations

import os
from pathlib import Path

from ..cache import atomic_path
from ..metrics import ARROW
from .aggregate import FORGET_EFFICACY, RETENTION, Group, column_name, direction
from .render import _label


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def plot(groups: list[Group], out_dir: str | os.PathLike) -> list[Path]:
    """Per group ``<slug>.png``: forget efficacy (x) vs retention (y), one labelled point per method
    with error bars (std over seeds), reference rows as grey markers. Continual groups with curves
    also get ``<slug>.curves.png``: retain vqa mcq acc after each request, mean over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for g in groups:
        fig = Figure(figsize=(6, 4.8))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        markers = "osD^vP*Xph<>"
        i = 0
        for r in g.rows:
            if FORGET_EFFICACY not in r.mean or RETENTION not in r.mean:
                continue
            x, y = r.mean[FORGET_EFFICACY], r.mean[RETENTION]
            if r.kind == "reference":
                oracle = g.setting is not None and r.label.startswith(g.setting.oracle + " ")
                # the setting's oracle is the target a method should reach: a filled star
                ax.scatter([x], [y], marker="*" if oracle else "s", s=140 if oracle else 60,
                           facecolor="gold" if oracle else "none", edgecolor="black" if oracle else "grey", zorder=2)
                left = x < 0.5
                ax.annotate(r.label, (x, y), textcoords="offset points", xytext=(6 if left else -6, -12),
                            ha="left" if left else "right", fontsize=8, color="grey")
            else:
                # each method gets its own colour and marker and a legend entry, so coinciding points
                # stay readable
                ax.errorbar([x], [y], xerr=[r.std.get(FORGET_EFFICACY, 0.0)], yerr=[r.std.get(RETENTION, 0.0)],
                            fmt="x" if r.n_diverged else markers[i % len(markers)], capsize=3, zorder=3,
                            alpha=0.85, label=f"{_label(r)} (n={r.n})")
                i += 1
        ax.set(xlim=(-0.05, 1.05), ylim=(-0.05, 1.05), xlabel="forget efficacy ↑", ylabel="retention ↑",
               title=g.title)
        ax.grid(alpha=0.3)
        if i:
            ax.legend(fontsize=8, loc="lower left")
        fig.tight_layout()
        p = out / f"{g.slug}.png"
        _save(fig, p)
        written.append(p)
        if g.protocol_kind == "attacks":
            p = _plot_attacks(g, out)
            if p is not None:
                written.append(p)
        if g.protocol_kind == "continual" and g.curves:
            fig = Figure(figsize=(6, 4))
            FigureCanvasAgg(fig)
            ax = fig.add_subplot()
            for lab, ys in g.curves.items():
                ax.plot(range(1, len(ys) + 1), ys, marker="o", label=lab)
            ref = next((r for r in g.rows if r.label == "finetuned (ref)"), None)
            if ref is not None and "retain.vqa.mcq.acc" in ref.mean:
                ax.axhline(ref.mean["retain.vqa.mcq.acc"], color="grey", ls="--", lw=1, label="finetuned (ref)")
            steps = max(len(ys) for ys in g.curves.values())
            ax.set_xticks(range(1, steps + 1))
            ax.set(ylim=(0, 1.05), xlabel="after request", ylabel="retain vqa mcq acc (mean over seeds)",
                   title=g.title)
            ax.legend(fontsize=8)
            fig.tight_layout()
            p = out / f"{g.slug}.curves.png"
            _save(fig, p)
            written.append(p)
    return written


def _plot_attacks(g: Group, out: Path) -> Path | None:
    """``<slug>.attacks.png``: every row (reference models, then methods) x every attack column, the
    mean over seeds in each cell, so which method's forgetting survives which attack reads at a
    glance. Columns are the group's attack keys; the colour is the value (0..1 keys only)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = [k for k in g.keys if k.startswith("attack.")
            and all(0.0 <= r.mean[k] <= 1.0 for r in g.rows if k in r.mean)]
    rows = [r for r in g.rows if any(k in r.mean for k in cols)]
    if not cols or not rows:
        return None
    import numpy as np

    vals = np.array([[r.mean.get(k, np.nan) for k in cols] for r in rows])
    fig = Figure(figsize=(1.0 + 0.62 * len(cols), 1.6 + 0.36 * len(rows)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(vals), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i, r in enumerate(rows):
        for j, k in enumerate(cols):
            if k in r.mean:
                v = r.mean[k]
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6.5,
                        color="black" if v > 0.6 else "white")
    ax.set_xticks(range(len(cols)), [f"{column_name(k).removeprefix('attack.')} {ARROW[direction(k, g.setting_name)]}"
                                     + (" (void)" if k in g.void else "") for k in cols],
                  rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), [f"{_label(r)}" + (f" (n={r.n})" if r.kind == "method" else "") for r in rows],
                  fontsize=7)
    ax.set_title(g.title + "\nmean over seeds; reference rows = the zoo models under the same attack", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    p = out / f"{g.slug}.attacks.png"
    _save(fig, p)
    return p
