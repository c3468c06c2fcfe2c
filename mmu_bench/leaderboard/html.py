"""The HTML leaderboard: one self-contained page (inline style and script, plots as base64), a
tab per setting, tables sortable by any column, the CI under each value."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from .aggregate import Group, Row, column_label, direction
from .render import TIE, _cell, _fmt, _label


# Inline so the page is one self-contained file: no external stylesheet, script or image.
_HTML_CSS = r"""
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
nav.tabs { margin: 1em 0; border-bottom: 1px solid #aaa; }
nav.tabs button { font: inherit; padding: .35em 1em; border: 1px solid #aaa; border-bottom: none;
  background: #eee; cursor: pointer; }
nav.tabs button[aria-selected="true"] { background: #fff; font-weight: bold; }
table.leaderboard { border-collapse: collapse; font-size: 90%; margin: .5em 0 1.5em; }
table.leaderboard th, table.leaderboard td { border: 1px solid #ccc; padding: .25em .5em; text-align: right; }
table.leaderboard td { white-space: nowrap; }
table.leaderboard th { background: #f4f4f4; cursor: pointer; user-select: none; }
table.leaderboard th[data-sorted="best"]::after { content: " \25BE"; }
table.leaderboard th[data-sorted="worst"]::after { content: " \25B4"; }
table.leaderboard td[data-key="method"] { text-align: left; }
table.leaderboard tbody.reference td { color: #555; background: #fafafa; }
table.leaderboard tbody.reference { border-bottom: 2px solid #888; }
td.tie { text-decoration: underline dotted; }
small.ci { display: block; color: #777; font-size: 80%; }
p.caption { font-size: 85%; color: #444; max-width: 75em; }
figure img { max-width: 100%; }
"""

_HTML_JS = """
(function () {
  "use strict";
  // Tabs: one setting's tables at a time; without script every setting stays visible.
  var tabs = Array.from(document.querySelectorAll("nav.tabs button"));
  var panels = Array.from(document.querySelectorAll("section.setting"));
  function show(name) {
    panels.forEach(function (p) { p.hidden = p.dataset.setting !== name; });
    tabs.forEach(function (t) { t.setAttribute("aria-selected", String(t.dataset.setting === name)); });
  }
  tabs.forEach(function (t) { t.addEventListener("click", function () { show(t.dataset.setting); }); });
  if (tabs.length) { show(tabs[0].dataset.setting); }

  // Sorting: the first click on a header puts the best mean first (by the column's arrow), the
  // next click reverses. Each tbody sorts on its own, so the reference rows stay on top; a
  // missing value sorts last either way; equal values keep the original order.
  function badness(td, dir) {
    var v = td ? td.dataset.value : undefined;
    if (v === undefined || v === "") { return null; }
    if (dir === "text") { return v.toLowerCase(); }
    var x = parseFloat(v);
    return dir === "up" ? -x : (dir === "zero" ? Math.abs(x) : x);
  }
  function sortBy(table, th) {
    var heads = Array.from(th.parentNode.children), col = heads.indexOf(th), dir = th.dataset.direction;
    var order = th.dataset.sorted === "best" ? "worst" : "best", sign = order === "best" ? 1 : -1;
    heads.forEach(function (h) { delete h.dataset.sorted; });
    th.dataset.sorted = order;
    table.querySelectorAll("tbody").forEach(function (tb) {
      var rows = Array.from(tb.rows);
      rows.sort(function (a, b) {
        var x = badness(a.cells[col], dir), y = badness(b.cells[col], dir);
        var tie = a.dataset.index - b.dataset.index;
        if (x === null || y === null) { return (x === null) - (y === null) || tie; }
        return x < y ? -sign : (x > y ? sign : tie);
      });
      rows.forEach(function (r) { tb.appendChild(r); });
    });
  }
  document.querySelectorAll("table.leaderboard").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th) {
      th.addEventListener("click", function () { sortBy(table, th); });
    });
  });
})();
"""


def _attrs(a: dict[str, Any]) -> str:
    """`` name="value"`` for every attribute that is not None, escaped."""
    return "".join(f' {k}="{html.escape(str(v), quote=True)}"' for k, v in a.items() if v is not None)


def _html_cell(r: Row, key: str, mark: str | None) -> str:
    """One metric cell: mean ± std as in the other formats, the CI below it (and as a tooltip),
    and data-key / data-value (the mean) for the sorting script and the tests."""
    if key not in r.mean:
        return f"<td{_attrs({'data-key': key})}>-</td>"
    text = html.escape(_cell(r, key, " ± "))
    text = f"<b>{text}</b>" if mark == "best" else (html.escape(TIE) + text if mark == "tie" else text)
    a = {"data-key": key, "data-value": repr(round(r.mean[key], 6)), "class": mark}
    if r.kind == "method":
        lo, hi = r.ci.get(key, (r.mean[key], r.mean[key]))
        a |= {"data-ci-low": repr(round(lo, 6)), "data-ci-high": repr(round(hi, 6)),
              "title": f"95 % CI of the mean: [{_fmt(lo)}, {_fmt(hi)}] (bootstrap over {r.n} seed(s))"}
        text += f'<small class="ci">[{_fmt(lo)}, {_fmt(hi)}]</small>'
    return f"<td{_attrs(a)}>{text}</td>"


def _html_row(g: Group, r: Row, index: int, marks: dict[str, dict[str, str]]) -> str:
    ref = r.kind == "reference"
    cells = [f"<td{_attrs({'data-key': 'method', 'data-value': r.label})}>{html.escape(_label(r))}</td>",
             f"<td{_attrs({'data-key': 'n', 'data-value': None if ref else r.n})}>{'-' if ref else r.n}</td>"]
    cells += [_html_cell(r, k, marks[k].get(r.label)) for k in g.keys]
    a = {"data-row": r.label, "data-kind": r.kind, "data-index": index}
    return f"<tr{_attrs(a)}>" + "".join(cells) + "</tr>"


def _html_table(g: Group) -> str:
    """The group's table: a header row, then the reference rows and the method rows in two
    tbody blocks (each sorts on its own, so the references stay on top)."""
    heads = [("method", "method", "text"), ("n", "n", "up")] + \
        [(column_label(k, g.setting_name), k, direction(k, g.setting_name)) for k in g.keys]
    th = "".join(f"<th{_attrs({'data-key': k, 'data-direction': d, 'title': 'sort: best first, again: reversed'})}>"
                 f"{html.escape(label)}</th>" for label, k, d in heads)
    marks = {k: g.marks(k) for k in g.keys}
    blocks = []
    for kind in ("reference", "method"):
        rows = [_html_row(g, r, i, marks) for i, r in enumerate(g.rows) if r.kind == kind]
        if rows:
            blocks.append(f'<tbody class="{kind}">\n' + "\n".join(rows) + "\n</tbody>")
    return (f"<table{_attrs({'class': 'leaderboard', 'id': 'table-' + g.slug})}>\n<thead><tr>{th}</tr></thead>\n"
            + "\n".join(blocks) + "\n</table>")


def _html_figures(g: Group, plots: list[Path]) -> str:
    """The group's PNG plots (named ``<slug>.*.png`` by :func:`plot`), embedded as base64."""
    import base64

    out = []
    for p in plots:
        if p.name.startswith(g.slug + ".") and p.suffix == ".png":
            data = base64.b64encode(p.read_bytes()).decode("ascii")
            out.append(f'<figure><img src="data:image/png;base64,{data}"{_attrs({"alt": p.name})}/>'
                       f"<figcaption>{html.escape(p.name)}</figcaption></figure>")
    return "\n".join(out)


def _render_html(g: Group, plots: list[Path] | None = None) -> str:
    return (f"<div{_attrs({'class': 'group', 'id': g.slug})}>\n<h3>{html.escape(g.title)}</h3>\n"
            f"<p class=\"caption\">{html.escape(g.caption())}</p>\n{_html_table(g)}\n"
            f"{_html_figures(g, plots or [])}\n</div>\n")


def _html_page(groups: list[Group], provenance: list[str] | None, title: str | None,
               plots: list[Path] | None) -> str:
    """One self-contained page: title, provenance, a tab per setting holding its tables (and
    their plots), the inline sorting / tab script."""
    settings = list(dict.fromkeys(g.setting_name for g in groups))
    tabs = "".join(f"<button{_attrs({'type': 'button', 'data-setting': s, 'aria-selected': 'false'})}>"
                   f"setting {html.escape(s)}</button>" for s in settings)
    panels = "".join(f"<section{_attrs({'class': 'setting', 'data-setting': s, 'id': 'setting-' + s})}>\n"
                     + "".join(_render_html(g, plots) for g in groups if g.setting_name == s) + "</section>\n"
                     for s in settings)
    name = html.escape(title or "mmu-bench leaderboard")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
            f"<title>{name}</title>\n<style>{_HTML_CSS}</style>\n</head>\n<body>\n"
            + (f"<h2>{name}</h2>\n" if title else "")
            + "".join(f"<p class=\"provenance\">{html.escape(line)}</p>\n" for line in provenance or [])
            + "<p class=\"help\">Click a column header to sort by its mean, best first; click again to "
              "reverse. Reference rows sort among themselves and stay on top. Under each value: its 95 % "
              "bootstrap CI.</p>\n"
            + f"<nav class=\"tabs\">{tabs}</nav>\n{panels}<script>{_HTML_JS}</script>\n</body>\n</html>\n")
