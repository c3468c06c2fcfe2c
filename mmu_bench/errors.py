"""User-facing errors: the CLI prints these as one line (no traceback) and exits non-zero."""

from __future__ import annotations

import difflib


class MMUError(Exception):
    """An error caused by input the user can fix; the message names the thing and what was expected."""


def unknown_name(kind: str, name: str, known: list[str] | tuple[str, ...]) -> MMUError:
    """An error for an unknown registered name that lists what exists and the closest match."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return MMUError(f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(known)}")
