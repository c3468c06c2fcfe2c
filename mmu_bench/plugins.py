"""Plugin loading and the name registries built on it (pluggy, entry-point group ``mmu_bench``).

Entry points are loaded one by one rather than with ``load_setuptools_entrypoints`` so that a
plugin which fails to import is reported by name and skipped while the rest still load: one
broken third-party package must not take the whole suite down. Third-party loading can be
switched off (``MMU_BENCH_DISABLE_PLUGINS=1``, ``--no-plugins`` or ``set_disabled``) for
hermetic runs; entry points of the ``mmu-bench`` distribution itself always load.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import threading
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, NamedTuple

import pluggy

from . import hookspecs
from .errors import MMUError, unknown_name

ENTRY_POINT_GROUP = "mmu_bench"
DISABLE_ENV = "MMU_BENCH_DISABLE_PLUGINS"
BUILTIN_DIST = "mmu-bench"

KINDS: tuple[str, ...] = ("methods", "benchmarks", "models", "metrics", "protocols", "settings")
_TRUTHY = {"1", "true", "yes", "on"}


class PluginFailure(NamedTuple):
    """A plugin that could not be loaded: entry point name, distribution name, error string."""

    name: str
    distribution: str | None
    error: str


@dataclass(frozen=True)
class PluginSource:
    """Where a registered plugin came from (kept because pluggy only tracks its own loader)."""

    distribution: str | None
    version: str | None
    builtin: bool


class MMUPluginManager(pluggy.PluginManager):
    """A pluggy manager that also remembers plugin provenance, load failures and skipped plugins."""

    def __init__(self, third_party_disabled: bool = False) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.third_party_disabled = third_party_disabled
        self.sources: dict[str, PluginSource] = {}
        self.failures: list[PluginFailure] = []
        self.skipped: list[str] = []  # third-party entry points not loaded because disabled


# ---------------------------------------------------------------- discovery and caching

_lock = threading.Lock()
_managers: dict[bool, MMUPluginManager] = {}
_registries: dict[bool, Registry] = {}
_forced_disabled: bool | None = None


def _canonical(dist_name: str | None) -> str:
    return re.sub(r"[-_.]+", "-", dist_name or "").lower()


def _is_builtin(ep: EntryPoint) -> bool:
    return ep.dist is not None and _canonical(ep.dist.name) == _canonical(BUILTIN_DIST)


def set_disabled(value: bool | None = True) -> None:
    """Force third-party loading off (True), on (False), or back to the environment (None)."""
    global _forced_disabled
    _forced_disabled = value


def third_party_disabled(disable_third_party: bool | None = None) -> bool:
    """Resolve the setting: explicit argument, then ``set_disabled``, then ``$MMU_BENCH_DISABLE_PLUGINS``."""
    if disable_third_party is not None:
        return bool(disable_third_party)
    if _forced_disabled is not None:
        return _forced_disabled
    return os.environ.get(DISABLE_ENV, "").strip().lower() in _TRUTHY


def reset() -> None:
    """Forget cached managers, registries and the forced setting, so the next call rediscovers (tests)."""
    global _forced_disabled
    with _lock:
        _managers.clear()
        _registries.clear()
        _forced_disabled = None
    importlib.invalidate_caches()  # also drops importlib.metadata's directory caches


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return " ".join(text.split())


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Hook implementations with no matching spec: almost always a typo in the hook name."""
    bad = []
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.has_spec():
            continue
        if any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls()):
            bad.append(caller.name)
    return sorted(bad)


def _load_entry_point(pm: MMUPluginManager, ep: EntryPoint) -> None:
    dist = ep.dist
    dist_name = dist.name if dist is not None else None
    try:
        plugin = ep.load()
        pm.register(plugin, name=ep.name)
        bad = _unknown_hooks(pm, plugin)
        if bad:
            pm.unregister(plugin)
            raise MMUError(f"unknown hook(s) {', '.join(bad)}; known hooks: "
                           f"{', '.join(sorted(h for h in dir(hookspecs) if h.startswith('mmu_bench_')))}")
    except Exception as e:  # noqa: BLE001 -- any import-time error of a plugin is reported and skipped
        failure = PluginFailure(ep.name, dist_name, _one_line(e))
        pm.failures.append(failure)
        print(f"mmu-bench: plugin {ep.name!r} (dist {dist_name}) failed to load: {failure.error}; skipped",
              file=sys.stderr)
        return
    pm.sources[ep.name] = PluginSource(dist_name, dist.version if dist is not None else None, _is_builtin(ep))


def _build_manager(disabled: bool) -> MMUPluginManager:
    pm = MMUPluginManager(third_party_disabled=disabled)
    eps = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (not _is_builtin(ep), ep.name))
    for ep in eps:
        if disabled and not _is_builtin(ep):
            pm.skipped.append(ep.name)
            continue
        _load_entry_point(pm, ep)
    return pm


def get_plugin_manager(disable_third_party: bool | None = None) -> MMUPluginManager:
    """The plugin manager with all entry points of group ``mmu_bench`` loaded (cached per setting)."""
    disabled = third_party_disabled(disable_third_party)
    with _lock:
        pm = _managers.get(disabled)
        if pm is None:
            pm = _managers[disabled] = _build_manager(disabled)
        return pm


def get_registry(disable_third_party: bool | None = None) -> Registry:
    """The registry over ``get_plugin_manager(disable_third_party)`` (cached alongside it)."""
    disabled = third_party_disabled(disable_third_party)
    pm = get_plugin_manager(disabled)
    with _lock:
        reg = _registries.get(disabled)
        if reg is None or reg.pm is not pm:
            reg = _registries[disabled] = Registry(pm)
        return reg


# ---------------------------------------------------------------- registries


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise unknown_name("kind", kind, KINDS)
    return kind


def _singular(kind: str) -> str:
    return kind[:-1]


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


class Registry:
    """Name -> object maps per kind, collected from every plugin's hooks, with provenance.

    Hook implementations are called one by one (not through ``pm.hook``) so each name can be
    attributed to the plugin that provided it, which is what duplicate and listing messages need.
    """

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm if pm is not None else get_plugin_manager()
        self._objects: dict[str, dict[str, Any]] = {}
        self._providers: dict[str, dict[str, str]] = {}

    def _collect(self, kind: str) -> None:
        hook_name = f"mmu_bench_{kind}"
        objects: dict[str, Any] = {}
        providers: dict[str, str] = {}
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            if impl.hookwrapper or getattr(impl, "wrapper", False):
                continue  # wrappers modify results; they provide nothing themselves
            plugin = impl.plugin_name
            try:
                result = impl.function()
            except Exception as e:
                raise MMUError(f"plugin {plugin!r} failed in hook {hook_name}: {_one_line(e)}") from e
            if result is None:
                continue
            items = result if isinstance(result, (list, tuple)) else [result]
            for obj in items:
                name = getattr(obj, "name", None)
                if not isinstance(name, str) or not name or not isinstance(getattr(obj, "description", None), str):
                    raise MMUError(f"plugin {plugin!r} returned {obj!r} from {hook_name}; every "
                                   f"{_singular(kind)} needs string attributes 'name' and 'description'")
                if name in providers:
                    other = providers[name]
                    where = (f"plugin {plugin!r} provides it twice" if other == plugin
                             else f"plugins {other!r} and {plugin!r} both provide it")
                    raise MMUError(f"duplicate {_singular(kind)} name {name!r}: {where}; uninstall one "
                                   f"(or use --no-plugins / {DISABLE_ENV}=1 to load only built-ins)")
                objects[name] = obj
                providers[name] = plugin
        names = sorted(objects)
        self._objects[kind] = {n: objects[n] for n in names}
        self._providers[kind] = {n: providers[n] for n in names}

    def registry(self, kind: str) -> dict[str, Any]:
        """All registered objects of ``kind`` by name (sorted); MMUError on a duplicate name."""
        _check_kind(kind)
        if kind not in self._objects:
            self._collect(kind)
        return dict(self._objects[kind])

    def get(self, kind: str, name: str) -> Any:
        """The object registered as ``name``; an unknown name lists what exists and the closest match."""
        objects = self.registry(kind)
        if kind == "protocols" and name not in objects and "+" in name:
            from .protocols import compose  # static+mia+attacks: one unlearning, every part measured

            return compose(name, lambda part: self.get(kind, part))
        try:
            return objects[name]
        except KeyError:
            raise unknown_name(_singular(kind), name, list(objects)) from None

    def provider(self, kind: str, name: str) -> str:
        """Name of the plugin that registered ``name``."""
        self.get(kind, name)
        return self._providers[kind][name]

    def describe(self, kind: str) -> list[tuple[str, str, str]]:
        """``(name, one-line description, plugin)`` for every object of ``kind``, sorted by name."""
        objects = self.registry(kind)
        return [(n, _first_line(obj.description), self._providers[kind][n]) for n, obj in objects.items()]


# ---------------------------------------------------------------- introspection


def list_plugins(pm: pluggy.PluginManager | None = None) -> list[dict[str, Any]]:
    """Registered plugins: name, distribution, version, hooks (sorted), builtin; built-ins first."""
    pm = pm if pm is not None else get_plugin_manager()
    sources = getattr(pm, "sources", {})
    rows = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked name
            continue
        src = sources.get(name, PluginSource(None, None, False))
        hooks = sorted(c.name for c in pm.get_hookcallers(plugin) or [])
        rows.append({"name": name, "distribution": src.distribution, "version": src.version,
                     "hooks": hooks, "builtin": src.builtin})
    return sorted(rows, key=lambda r: (not r["builtin"], r["name"]))


def failures(pm: pluggy.PluginManager | None = None) -> list[PluginFailure]:
    """Plugins that failed to load, in load order."""
    pm = pm if pm is not None else get_plugin_manager()
    return list(getattr(pm, "failures", []))


# ---------------------------------------------------------------- command line


def _cli_disabled(args: argparse.Namespace) -> bool | None:
    return True if getattr(args, "no_plugins", False) else None


def cmd_plugins(args: argparse.Namespace) -> int:
    """``mmu-bench plugins``: each plugin with distribution, version and hooks; then failures."""
    from tabulate import tabulate

    pm = get_plugin_manager(_cli_disabled(args))
    rows = [(p["name"], p["distribution"] or "-", p["version"] or "-",
             ", ".join(h.removeprefix("mmu_bench_") for h in p["hooks"]) or "-") for p in list_plugins(pm)]
    if rows:
        print(tabulate(rows, headers=["plugin", "distribution", "version", "hooks"]))
    else:
        print("no plugins installed")
    if pm.skipped:
        print(f"\nthird-party plugins disabled (--no-plugins or {DISABLE_ENV}); not loaded: "
              f"{', '.join(pm.skipped)}")
    if pm.failures:
        print("\nfailed plugins (skipped):")
        print(tabulate([(f.name, f.distribution or "-", f.error) for f in pm.failures],
                       headers=["plugin", "distribution", "error"]))
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    """``mmu-bench ls KIND``: registered names of one kind with description and providing plugin."""
    from tabulate import tabulate

    reg = Registry(get_plugin_manager(_cli_disabled(args)))
    rows = reg.describe(args.kind)
    if rows and args.kind == "metrics":  # pattern, direction(s), stage: what the tables read
        from .metrics import _as_spec

        objs = reg.registry("metrics")
        specs = {n: _as_spec(o) for n, o in objs.items()}
        print(tabulate([(n, specs[n].directions_text() or "-", specs[n].stage, d, plugin) for n, d, plugin in rows],
                       headers=["pattern", "better", "stage", "description", "plugin"]))
    elif rows:
        print(tabulate(rows, headers=["name", "description", "plugin"]))
    else:
        print(f"no {args.kind} registered")
    return 0


def add_commands(subparsers: Any) -> None:
    """Add the ``plugins`` and ``ls`` sub-commands to the CLI's sub-parser set."""
    p = subparsers.add_parser("plugins", help="list installed plugins with distribution, version and hooks")
    p.set_defaults(func=cmd_plugins)
    ls = subparsers.add_parser("ls", help="list registered methods, benchmarks, models, metrics, protocols or settings")
    ls.add_argument("kind", choices=KINDS)
    ls.set_defaults(func=cmd_ls)


def add_global_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-plugins``; ``main`` should call ``set_disabled(True)`` when it is given."""
    parser.add_argument("--no-plugins", action="store_true", help="disable third-party plugin autoloading")
