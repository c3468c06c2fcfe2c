"""Typed ``key=value`` overrides for dataclass configs (zoo recipes, method hyper-parameters)."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any

from .errors import MMUError

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _convert(value: Any, typ: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, where)
            except MMUError as e:
                errors.append(str(e))
        raise MMUError(errors[0] if errors else f"{where}: cannot convert {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise MMUError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise MMUError(f"{where}: expected a boolean (true/false), got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise MMUError(f"{where}: expected an integer, got {value!r}")
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise MMUError(f"{where}: expected an integer, got {value!r}") from None
    if typ is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise MMUError(f"{where}: expected a number, got {value!r}") from None
    if typ is str:
        return str(value)
    return value


def apply_overrides(cls_or_obj: Any, overrides: dict[str, Any], what: str):
    """A new instance of the dataclass with ``overrides`` applied, each value type-checked.

    Unknown keys raise :class:`MMUError` naming the valid keys and the closest match.
    """
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    current = {} if isinstance(cls_or_obj, type) else {k: getattr(cls_or_obj, k) for k in fields}
    for key, value in overrides.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            valid = f"Valid keys: {', '.join(fields)}" if fields else "It takes no keys."
            raise MMUError(f"unknown {what} key {key!r}.{hint} {valid}")
        current[key] = _convert(value, hints[key], f"{what} key {key!r}")
        _check_bounds(current[key], fields[key].metadata, f"{what} key {key!r}")
    try:
        return cls(**current)
    except (TypeError, ValueError) as e:
        raise MMUError(f"{what}: {e}") from None


def _check_bounds(value: Any, meta: Any, what: str) -> None:
    """Bounds declared on a field (``hp(..., min=1)``, ``gt=0``, ``max=1``) as one clear error."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if "min" in meta and value < meta["min"]:
        raise MMUError(f"{what}: {value!r} is below its minimum; expected >= {meta['min']}")
    if "gt" in meta and value <= meta["gt"]:
        raise MMUError(f"{what}: {value!r} is out of range; expected > {meta['gt']}")
    if "max" in meta and value > meta["max"]:
        raise MMUError(f"{what}: {value!r} is above its maximum; expected <= {meta['max']}")


def parse_pairs(pairs: list[str] | None, what: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a malformed pair is a clear error."""
    out: dict[str, str] = {}
    for p in pairs or []:
        if "=" not in p:
            raise MMUError(f"{what} override {p!r} is not key=value")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out
