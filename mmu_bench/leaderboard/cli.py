"""``mmu-bench leaderboard``: tables and plots from run directories on the command line."""

from __future__ import annotations

import sys

from ..errors import MMUError
from .aggregate import aggregate
from .collect import collect
from .plots import plot
from .provenance import provenance
from .render import FORMATS, format_for, render


def cmd_leaderboard(args) -> int:
    from ..cache import write_text_atomic

    keys = args.keys.split(",") if args.keys else None
    records = collect(args.runs)
    groups = aggregate(records, keys, setting=args.setting)
    import shlex

    command = "mmu-bench " + shlex.join(sys.argv[1:]) if sys.argv[1:] and sys.argv[1] == "leaderboard" else None
    lines = provenance(args.runs, records, command)
    fronts_md, front_pngs = "", []
    if args.tuning:
        from .. import fronts

        from ..tuning import load_trials

        docs = load_trials(args.tuning)
        if not docs:
            raise MMUError(f"--tuning: no *.trials.json under {', '.join(args.tuning)} (written by mmu-bench tune)")
        rows = fronts.front_rows(docs)
        lines += fronts.provenance_lines(docs)
        fronts_md = fronts.markdown(rows)
        front_pngs = fronts.plot(rows, args.plots) if args.plots else []
    outs = args.out or []
    if args.format and len(outs) > 1:
        raise MMUError("--format applies to one --out; with several, each file's extension names its format")
    fmts = [args.format or format_for(out, "md" if len(outs) == 1 else None) for out in outs]
    # plots first, so that the html page can embed them
    pngs = (plot(groups, args.plots) if args.plots else []) + front_pngs
    for p in pngs:
        print(f"wrote {p}")
    for out, fmt in zip(outs, fmts):
        text = render(groups, fmt, lines, args.title, plots=pngs) + ("\n" + fronts_md if fmt == "md" and fronts_md else "")
        write_text_atomic(out, text)
        print(f"wrote {out} ({len(groups)} table{'s' if len(groups) != 1 else ''})")
    if not outs:
        text = render(groups, args.format or "md", lines, args.title, plots=pngs) + \
            ("\n" + fronts_md if (args.format or "md") == "md" and fronts_md else "")
        print(text, end="" if text.endswith("\n") else "\n")
    return 0


def add_command(subparsers) -> None:
    p = subparsers.add_parser("leaderboard", help="tables (md, latex, csv, html) and plots from run directories",
                              description="Aggregate finished runs (mean ± std over seeds) into one table per "
                                          "benchmark / model / protocol / forget split. See docs/leaderboard.md.")
    p.add_argument("runs", nargs="+", metavar="RUNS",
                   help="run directories (searched recursively) or metrics.json files")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="table format (default: from --out's extension, else md)")
    p.add_argument("--out", action="append", default=None, metavar="FILE",
                   help="write the tables here (default: print); repeat for several formats, each named by "
                        "its extension: .md .tex .csv .html")
    p.add_argument("--plots", default=None, metavar="DIR", help="also write PNG plots into DIR")
    p.add_argument("--title", default=None, help="a title line on top (md heading, html h2, LaTeX comment)")
    p.add_argument("--setting", default=None,
                   help="make a leaderboard of this setting only; a run of another setting is an error "
                        "(default: one table per setting found)")
    p.add_argument("--tuning", action="append", default=None, metavar="DIR",
                   help="folders of mmu-bench tune output: their trials become trade-off fronts (plot, table) "
                        "and their budget, space and choice go into the provenance")
    p.add_argument("--keys", default=None, metavar="K1,K2,...",
                   help="metric columns (default: the protocol's main keys); the aggregates are always added")
    p.set_defaults(func=cmd_leaderboard)
