"""Trade-off fronts from tuning trials (``mmu-bench leaderboard ... --tuning DIR``).

Every trial of ``mmu-bench tune`` is a point (validation forget efficacy, validation retention):
both are measured on held-out validation items, never on the reported ones. Per setting, each
method's non-dominated trials form its Pareto front; the front's area (the part of [0, 1]^2 it
dominates from (0, 0)) summarises it in one number, larger is better. The finetuned model and the
setting's oracle are marked where the trials files record them.
"""

from __future__ import annotations

from pathlib import Path
from .tuning import efficacy, front_area, pareto_front


def front_rows(docs: list[dict]) -> dict[str, list[dict]]:
    """{setting: [{method, trials, front, area, best}]} from trials documents."""
    out: dict[str, list[dict]] = {}
    for d in sorted(docs, key=lambda d: (d["setting"], d["method"])):
        pts = [(efficacy(t["forget_val_acc"]), t["retain_val_acc"]) for t in d["all"] if not t.get("diverged")]
        front = pareto_front(pts)
        out.setdefault(d["setting"], []).append({
            "method": d["method"], "trials": len(d["all"]), "points": pts, "front": front,
            "area": front_area(front), "best": d["best"], "reference": d.get("reference", {}),
            "search": d.get("search", {}), "stop_rule": d.get("stop_rule", {}), "seed": d.get("seed")})
    return out


def provenance_lines(docs: list[dict]) -> list[str]:
    """How the tuned rows were chosen: budget, sampler, rule, objective, each method's space."""
    if not docs:
        return []
    budgets = sorted({d["trials"] for d in docs})
    first = docs[0]
    lines = [f"Tuning: {', '.join(map(str, budgets))} trials per method (Optuna TPE, seed {first.get('seed')}), "
             f"every trial under the stopping rule {first.get('stop_rule')}, objective: {first.get('objective')}; "
             f"validation items only."]
    for d in sorted(docs, key=lambda d: (d["setting"], d["method"])):
        lines.append(f"Tuned {d['method']} ({d['setting']}): space {d['search']}, chosen {d['best']['params']} "
                     f"(trial {d['best']['number']}).")
    return lines


def markdown(rows: dict[str, list[dict]]) -> str:
    parts = []
    for setting, rs in rows.items():
        parts.append(f"### Trade-off fronts / setting {setting}\n\n_Each tuning trial is a point (validation forget "
                     f"efficacy, validation retention); front area = the part of [0, 1]² the method's Pareto front "
                     f"dominates from (0, 0), larger is better._\n")
        parts.append("| method | trials | front points | front area ↑ | best trial: retain val acc, forget val acc |")
        parts.append("|---|---|---|---|---|")
        for r in sorted(rs, key=lambda r: -r["area"]):
            b = r["best"]
            parts.append(f"| {r['method']} | {r['trials']} | {len(r['front'])} | {r['area']:.3f} | "
                         f"{b.get('retain_val_acc')}, {b.get('forget_val_acc')} |")
        parts.append("")
    return "\n".join(parts)


def plot(rows: dict[str, list[dict]], out_dir: str | Path) -> list[Path]:
    """``fronts-<setting>.png``: every trial, each method's front as a step line, the finetuned
    model (grey square) and the oracle (gold star)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .leaderboard import _save

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    markers = "osD^vP*Xph<>"
    for setting, rs in rows.items():
        fig = Figure(figsize=(6.4, 5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for i, r in enumerate(rs):
            xs, ys = zip(*r["points"]) if r["points"] else ((), ())
            line = ax.plot(*zip(*r["front"]), drawstyle="steps-post", lw=1.2,
                           label=f"{r['method']} (area {r['area']:.2f})")[0] if r["front"] else None
            ax.scatter(xs, ys, s=18, marker=markers[i % len(markers)], alpha=0.6,
                       color=line.get_color() if line else None)
        refs: dict[str, dict] = {}
        for r in rs:
            refs.update(r["reference"])
        for name, v in refs.items():
            oracle = name != "finetuned"
            ax.scatter([efficacy(v["forget_val_acc"])], [v["retain_val_acc"]], marker="*" if oracle else "s",
                       s=160 if oracle else 60, facecolor="gold" if oracle else "none",
                       edgecolor="black" if oracle else "grey", zorder=4)
            ax.annotate(name, (efficacy(v["forget_val_acc"]), v["retain_val_acc"]), textcoords="offset points",
                        xytext=(-6, -12), ha="right", fontsize=8, color="grey")
        ax.set(xlim=(-0.05, 1.05), ylim=(-0.05, 1.05), xlabel="validation forget efficacy ↑",
               ylabel="validation retention (retain mcq acc) ↑", title=f"tuning trials and fronts / setting {setting}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        p = out / f"fronts-{setting}.png"
        _save(fig, p)
        written.append(p)
    return written
