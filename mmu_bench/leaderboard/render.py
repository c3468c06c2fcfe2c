"""The tables as text: GitHub Markdown, LaTeX (booktabs) and one tidy CSV; :func:`render` puts
them (or the HTML page of :mod:`.html`) under the title and provenance lines."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Callable, Iterable

from tabulate import tabulate

from ..errors import MMUError
from ..metrics import has_direction
from .aggregate import Group, Row, column_label, column_name, direction

FORMATS = ("md", "latex", "csv", "html")


def _fmt(v: float) -> str:
    return f"{v:.3f}"


def _cell(row: Row, key: str, pm: str) -> str | None:
    if key not in row.mean:
        return None
    if row.kind == "reference":
        return _fmt(row.mean[key])
    return f"{_fmt(row.mean[key])}{pm}{_fmt(row.std.get(key, 0.0))}"


def _label(row: Row) -> str:
    return row.label + (f" (diverged {row.n_diverged}/{row.n})" if row.n_diverged else "")


TIE = "≈ "   # the mark of a tied leader, the same in every format (bold marks a clear winner)


def _body(g: Group, pm: str, bold: Callable[[str], str], esc: Callable[[str], str]) -> list[list[str]]:
    marks = {k: g.marks(k) for k in g.keys}
    body = []
    for r in g.rows:
        line = [esc(_label(r)), "-" if r.kind == "reference" else str(r.n)]
        for k in g.keys:
            c = _cell(r, k, pm)
            mark = marks[k].get(r.label)
            if c is None:
                line.append("-")
            elif mark == "best":
                line.append(bold(esc(c)))
            else:
                line.append(esc(TIE + c) if mark == "tie" else esc(c))
        body.append(line)
    return body


_LATEX_ESC = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
              "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_ARROW = {"up": r"$\uparrow$", "down": r"$\downarrow$", "zero": r"$\to 0$"}


def latex_escape(s: str) -> str:
    s = "".join(_LATEX_ESC.get(ch, ch) for ch in s)
    for sym, tex in (("±", r"$\pm$"), ("→", r"$\to$"), ("↑", r"$\uparrow$"), ("↓", r"$\downarrow$"),
                     ("≈", r"$\approx$")):
        s = s.replace(sym, tex)
    return s


def _render_md(g: Group) -> str:
    headers = ["method", "n"] + [column_label(k, g.setting_name) for k in g.keys]
    body = _body(g, " ± ", lambda s: f"**{s}**", lambda s: s.replace("|", r"\|"))
    table = tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)
    return f"### {g.title}\n\n_{g.caption()}_\n\n{table}\n"


def _render_latex(g: Group) -> str:
    headers = ["method", "$n$"] + [latex_escape(column_name(k)) + (f" {_LATEX_ARROW[direction(k, g.setting_name)]}"
                                                                   if has_direction(k, g.setting_name) else "")
                                   for k in g.keys]
    body = _body(g, " ± ", lambda s: rf"\textbf{{{s}}}", latex_escape)
    n_ref = sum(r.kind == "reference" for r in g.rows)
    lines = [f"% {g.title}", r"\begin{table}[ht]", r"\centering",
             rf"\caption{{{latex_escape(g.title)}. {latex_escape(g.caption())}}}",
             rf"\label{{tab:{g.slug}}}",
             r"\begin{tabular}{l" + "r" * (len(headers) - 1) + "}", r"\toprule",
             " & ".join(headers) + r" \\", r"\midrule"]
    for i, line in enumerate(body):
        if i == n_ref and 0 < n_ref < len(body):
            lines.append(r"\midrule")
        lines.append(" & ".join(line) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _csv_cells(r: Row, key: str | None) -> list[str]:
    """mean, std, ci_low, ci_high of ``key`` (None: the group lacks the column); a reference row
    is one evaluation, so it has no std or CI."""
    if key is None or key not in r.mean:
        return [""] * 4
    if r.kind == "reference":
        return [repr(round(r.mean[key], 6)), "", "", ""]
    lo, hi = r.ci.get(key, (r.mean[key], r.mean[key]))
    return [repr(round(v, 6)) for v in (r.mean[key], r.std.get(key, 0.0), lo, hi)]


def _render_csv(groups: list[Group]) -> str:
    keys: list[str] = []
    for g in groups:
        keys += [k for k in g.keys if k not in keys]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["benchmark", "model", "setting", "protocol", "forget_split", "row", "kind", "n", "n_diverged"]
               + [f"{k}_{s}" for k in keys for s in ("mean", "std", "ci_low", "ci_high")])
    for g in groups:
        for r in g.rows:
            vals = [v for k in keys for v in _csv_cells(r, k if k in g.keys else None)]
            ref = r.kind == "reference"
            w.writerow([g.benchmark, g.model, g.setting_name, g.protocol, g.forget_split, r.label, r.kind,
                        "" if ref else r.n, "" if ref else r.n_diverged] + vals)
    return buf.getvalue()


def render(groups: list[Group], fmt: str = "md", provenance: list[str] | None = None, title: str | None = None,
           plots: Iterable[str | os.PathLike] | None = None) -> str:
    """All tables in one text: md (GitHub Markdown), latex (booktabs), csv (one tidy table: one row
    per group row, mean, std and CI in separate columns), html (one self-contained page: a tab per
    setting, sortable tables, ``plots`` (PNG files from :func:`plot`) embedded). ``provenance``
    lines (how the runs were made, see :func:`provenance`) go on top: a bullet list in md,
    paragraphs in html, comments in LaTeX; CSV stays a bare table."""
    if fmt == "csv":
        return _render_csv(groups)
    if fmt == "html":
        from .html import _html_page  # here, not on top: the page builds on this module's cells

        return _html_page(groups, provenance, title, [Path(p) for p in plots or []])
    fn = {"md": _render_md, "latex": _render_latex}.get(fmt)
    if fn is None:
        raise MMUError(f"unknown leaderboard format {fmt!r}; expected one of {', '.join(FORMATS)}")
    head = ""
    if title:
        head = {"md": f"# {title}\n\n", "latex": f"% {title}\n"}[fmt]
    if provenance:
        head += {"md": "".join(f"- {line}\n" for line in provenance) + "\n",
                 "latex": "".join(f"% {line}\n" for line in provenance)}[fmt]
    return head + "\n".join(fn(g) for g in groups)


def format_for(path: str | os.PathLike, default: str | None = None) -> str:
    """The table format an output file's extension names (.md, .tex, .csv, .html), else ``default``."""
    ext = Path(path).suffix.lower()
    fmt = {".md": "md", ".markdown": "md", ".tex": "latex", ".csv": "csv", ".html": "html", ".htm": "html"}.get(ext)
    fmt = fmt or default
    if fmt is None:
        raise MMUError(f"cannot tell the table format of {str(path)!r} from its extension; use .md, .tex, .csv "
                       f"or .html, or pass --format")
    return fmt
