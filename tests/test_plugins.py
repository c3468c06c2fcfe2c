"""Plugin system: entry-point discovery, failure isolation, disabling, registries, example plugin.

Fake plugin distributions are real ``*.dist-info`` directories on ``sys.path`` so discovery goes
through ``importlib.metadata`` exactly as for pip-installed packages. Assertions only concern the
plugins a test creates, so built-in or other installed plugins may exist alongside.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from mmu_bench import plugins
from mmu_bench.errors import MMUError
from mmu_bench.hookspecs import hookimpl

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_DIR = REPO / "examples" / "mmu-bench-example-plugin"
EXAMPLE_DIST = "mmu-bench-example-plugin"

METHOD_MODULE = '''
from mmu_bench.hookspecs import hookimpl

class {cls}:
    name = "{name}"
    description = "{desc}"

@hookimpl
def mmu_bench_methods():
    return [{cls}]
'''


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    """Each test discovers plugins from scratch, with third-party loading enabled by default."""
    monkeypatch.delenv(plugins.DISABLE_ENV, raising=False)
    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture
def fake_dist(tmp_path, monkeypatch):
    """Factory: write an installed-looking distribution (dist-info + modules) onto sys.path."""
    created: list[str] = []

    def make(dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str],
             root: Path | None = None) -> Path:
        root = root or tmp_path
        root.mkdir(parents=True, exist_ok=True)
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        eps = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text(f"[{plugins.ENTRY_POINT_GROUP}]\n{eps}")
        for mod, src in modules.items():
            (root / f"{mod}.py").write_text(textwrap.dedent(src))
            created.append(mod)
        if str(root) not in sys.path:
            monkeypatch.syspath_prepend(str(root))
        plugins.reset()
        return root

    yield make
    for mod in created:
        sys.modules.pop(mod, None)


def _plugin(**hooks: list) -> types.ModuleType:
    """A plugin object implementing ``mmu_bench_<kind>`` hooks that return the given items."""
    mod = types.ModuleType("fake_plugin")
    for hook, items in hooks.items():
        def impl(items=tuple(items)):
            return list(items)
        setattr(mod, f"mmu_bench_{hook}", hookimpl(impl))
    return mod


def _item(name: str, description: str = "a test object") -> types.SimpleNamespace:
    return types.SimpleNamespace(name=name, description=description)


def _by_name(rows: list[dict]) -> dict[str, dict]:
    return {r["name"]: r for r in rows}


# ---------------------------------------------------------------- discovery


def test_fake_distribution_is_discovered_registered_and_listed(fake_dist):
    fake_dist("mmu-bench-fake-plugin", "1.2.3", {"fake": "fake_mmu_plugin"}, {"fake_mmu_plugin": """
        from mmu_bench.hookspecs import hookimpl

        class FakeMethod:
            name = "fake_method"
            description = "does nothing, loudly\\nsecond line is not shown"

        class FakeMetric:
            name = "fake_metric"
            description = "always 0.5"

        @hookimpl
        def mmu_bench_methods():
            return [FakeMethod]

        @hookimpl
        def mmu_bench_metrics():
            return [FakeMetric()]
        """})

    pm = plugins.get_plugin_manager()
    assert pm is plugins.get_plugin_manager(), "the manager is cached per setting"
    reg = plugins.Registry(pm)
    methods = reg.registry("methods")
    assert methods["fake_method"].__name__ == "FakeMethod"
    assert reg.get("metrics", "fake_metric").description == "always 0.5"
    assert reg.provider("methods", "fake_method") == "fake"
    assert ("fake_method", "does nothing, loudly", "fake") in reg.describe("methods")
    assert "fake_method" in plugins.get_registry().registry("methods")

    info = _by_name(plugins.list_plugins())["fake"]
    assert info == {"name": "fake", "distribution": "mmu-bench-fake-plugin", "version": "1.2.3",
                    "hooks": ["mmu_bench_methods", "mmu_bench_metrics"], "builtin": False}
    assert not [f for f in plugins.failures() if f.name == "fake"]


def test_broken_plugin_is_reported_by_name_and_others_still_load(fake_dist, capsys):
    fake_dist("mmu-bench-mixed", "0.3", {"good": "good_mmu_plugin", "broken": "broken_mmu_plugin",
                                         "typo": "typo_mmu_plugin"}, {
        "good_mmu_plugin": METHOD_MODULE.format(cls="Good", name="good_method", desc="works"),
        "broken_mmu_plugin": 'raise ImportError("needs libfoo\\n(not installed)")\n',
        "typo_mmu_plugin": """
            from mmu_bench.hookspecs import hookimpl

            @hookimpl
            def mmu_bench_method():  # misspelt: should be mmu_bench_methods
                return []
            """,
    })

    pm = plugins.get_plugin_manager()
    failed = {f.name: f for f in plugins.failures(pm)}
    assert failed["broken"] == ("broken", "mmu-bench-mixed", "ImportError: needs libfoo (not installed)")
    assert "unknown hook(s) mmu_bench_method;" in failed["typo"].error
    assert "mmu_bench_methods" in failed["typo"].error  # the message lists the real hook names

    err = capsys.readouterr().err
    line = "mmu-bench: plugin 'broken' (dist mmu-bench-mixed) failed to load: " \
           "ImportError: needs libfoo (not installed); skipped"
    assert line in err.splitlines()
    assert "plugin 'typo' (dist mmu-bench-mixed) failed to load" in err

    listed = _by_name(plugins.list_plugins(pm))
    assert "good" in listed and "broken" not in listed and "typo" not in listed
    assert "good_method" in plugins.Registry(pm).registry("methods")

    plugins.get_plugin_manager()  # cached: the warning is not repeated
    assert "broken" not in capsys.readouterr().err


# ---------------------------------------------------------------- disabling third-party plugins


@pytest.mark.parametrize("value, disabled", [("1", True), ("true", True), ("YES", True),
                                             ("0", False), ("", False), ("no", False)])
def test_env_var_disables_third_party_plugins(fake_dist, monkeypatch, value, disabled):
    fake_dist("mmu-bench-fake-plugin", "1.0", {"fake": "fake_env_plugin"},
              {"fake_env_plugin": METHOD_MODULE.format(cls="M", name="env_method", desc="d")})
    monkeypatch.setenv(plugins.DISABLE_ENV, value)

    pm = plugins.get_plugin_manager()
    assert pm.third_party_disabled is disabled
    assert ("fake" not in _by_name(plugins.list_plugins(pm))) is disabled
    assert ("fake" in pm.skipped) is disabled
    assert ("env_method" not in plugins.Registry(pm).registry("methods")) is disabled


def test_explicit_flag_and_set_disabled_disable_third_party_plugins(fake_dist, monkeypatch):
    fake_dist("mmu-bench-fake-plugin", "1.0", {"fake": "fake_flag_plugin"},
              {"fake_flag_plugin": METHOD_MODULE.format(cls="M", name="flag_method", desc="d")})

    off = plugins.get_plugin_manager(disable_third_party=True)
    on = plugins.get_plugin_manager(disable_third_party=False)
    assert "fake" not in _by_name(plugins.list_plugins(off)) and "fake" in off.skipped
    assert "fake" in _by_name(plugins.list_plugins(on))
    assert "flag_method" not in plugins.get_registry(True).registry("methods")

    monkeypatch.setenv(plugins.DISABLE_ENV, "1")  # the explicit argument wins over the environment
    assert plugins.get_plugin_manager(disable_third_party=False) is on

    monkeypatch.delenv(plugins.DISABLE_ENV)
    plugins.set_disabled(True)  # what the CLI does for --no-plugins
    assert plugins.get_plugin_manager() is off
    plugins.set_disabled(None)
    assert plugins.get_plugin_manager() is on


def test_builtin_entry_points_load_even_when_third_party_is_disabled(fake_dist, tmp_path):
    # A dist-info named mmu-bench earlier on sys.path shadows the real one's metadata for this test.
    fake_dist("mmu-bench", "9.9", {"builtin_fake": "builtin_fake_plugin"},
              {"builtin_fake_plugin": METHOD_MODULE.format(cls="B", name="builtin_method", desc="d")},
              root=tmp_path / "builtin")
    fake_dist("mmu-bench-fake-plugin", "1.0", {"fake": "fake_tp_plugin"},
              {"fake_tp_plugin": METHOD_MODULE.format(cls="T", name="tp_method", desc="d")},
              root=tmp_path / "third_party")

    pm = plugins.get_plugin_manager(disable_third_party=True)
    listed = _by_name(plugins.list_plugins(pm))
    assert listed["builtin_fake"]["builtin"] is True
    assert listed["builtin_fake"]["distribution"] == "mmu-bench"
    assert "fake" not in listed
    assert set(plugins.Registry(pm).registry("methods")) >= {"builtin_method"}
    assert list(listed)[0] == "builtin_fake", "built-ins are listed first"


# ---------------------------------------------------------------- registry errors


def test_unknown_name_suggests_closest_match_and_lists_known():
    pm = plugins.MMUPluginManager()
    pm.register(_plugin(methods=[_item("example_noise"), _item("grad_ascent")]), name="example")
    reg = plugins.Registry(pm)

    with pytest.raises(MMUError) as exc:
        reg.get("methods", "exampel_noise")
    msg = str(exc.value)
    assert "unknown method 'exampel_noise'" in msg
    assert "Did you mean 'example_noise'?" in msg
    assert "Known methods: example_noise, grad_ascent" in msg

    with pytest.raises(MMUError, match="Did you mean 'metrics'"):
        reg.registry("metric")


def test_duplicate_names_across_plugins_name_both_plugins():
    pm = plugins.MMUPluginManager()
    pm.register(_plugin(metrics=[_item("accuracy")]), name="alpha")
    pm.register(_plugin(metrics=[_item("accuracy"), _item("rouge")]), name="beta")

    with pytest.raises(MMUError) as exc:
        plugins.Registry(pm).registry("metrics")
    msg = str(exc.value)
    assert "duplicate metric name 'accuracy'" in msg
    assert "'alpha'" in msg and "'beta'" in msg


def test_invalid_objects_and_failing_hooks_name_the_plugin():
    pm = plugins.MMUPluginManager()
    pm.register(_plugin(models=[types.SimpleNamespace(name="no_description")]), name="sloppy")
    with pytest.raises(MMUError, match="plugin 'sloppy'.*'name' and 'description'"):
        plugins.Registry(pm).registry("models")

    def boom():
        raise RuntimeError("kaput")

    bad = types.ModuleType("bad")
    bad.mmu_bench_protocols = hookimpl(boom)
    pm.register(bad, name="bad")
    with pytest.raises(MMUError, match="plugin 'bad' failed in hook mmu_bench_protocols: RuntimeError: kaput"):
        plugins.Registry(pm).registry("protocols")


# ---------------------------------------------------------------- command line


def test_cli_helpers_print_plugins_and_names(fake_dist, capsys):
    import argparse

    fake_dist("mmu-bench-fake-plugin", "1.2.3", {"fake": "fake_cli_plugin", "broken": "broken_cli_plugin"}, {
        "fake_cli_plugin": METHOD_MODULE.format(cls="C", name="cli_method", desc="shown by ls"),
        "broken_cli_plugin": "import this_module_does_not_exist_anywhere\n",
    })
    parser = argparse.ArgumentParser(prog="mmu-bench")
    plugins.add_global_flag(parser)
    plugins.add_commands(parser.add_subparsers(dest="command", required=True))

    args = parser.parse_args(["plugins"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    fake_row = next(line for line in out.splitlines() if line.startswith("fake "))
    assert fake_row.split() == ["fake", "mmu-bench-fake-plugin", "1.2.3", "methods"]
    assert "failed plugins" in out and "ModuleNotFoundError" in out

    args = parser.parse_args(["ls", "methods"])
    assert args.func(args) == 0
    assert any(line.split()[0] == "cli_method" and line.endswith("fake")
               for line in capsys.readouterr().out.splitlines() if line.strip())

    args = parser.parse_args(["--no-plugins", "ls", "methods"])
    assert args.no_plugins is True
    args.func(args)
    assert "cli_method" not in capsys.readouterr().out


# ---------------------------------------------------------------- the example third-party package


def _activate_editable_install(dist: importlib.metadata.Distribution, monkeypatch) -> None:
    """Apply the dist's own ``.pth`` file as a fresh interpreter's ``site`` would at start-up.

    Editable installs work through a ``.pth`` file (a path line, or an import line installing an
    import finder), which the already-running test interpreter has not processed.
    """
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))  # undo finder installs afterwards
    for f in dist.files or []:
        if not f.name.endswith(".pth"):
            continue
        for line in Path(dist.locate_file(f)).read_text().splitlines():
            line = line.strip()
            if line.startswith(("import ", "import\t")):
                exec(line, {})  # same as site.addpackage does
            elif line and not line.startswith("#") and line not in sys.path:
                monkeypatch.syspath_prepend(line)


@pytest.mark.slow  # integration: trains or spawns processes (the fast tier skips it)
@pytest.mark.timeout(300)
@pytest.mark.skipif(importlib.util.find_spec("pip") is None, reason="pip is not installed in this environment")
def test_example_plugin_pip_installs_and_is_discovered(monkeypatch):
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index",
           "--no-deps", "--no-build-isolation", "-e", str(EXAMPLE_DIR)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    importlib.invalidate_caches()
    dist = importlib.metadata.distribution(EXAMPLE_DIST)
    _activate_editable_install(dist, monkeypatch)
    plugins.reset()

    info = _by_name(plugins.list_plugins())["example"]
    assert info == {"name": "example", "distribution": EXAMPLE_DIST, "version": "0.1.0",
                    "hooks": ["mmu_bench_methods"], "builtin": False}
    reg = plugins.get_registry()
    method_cls = reg.get("methods", "example_noise")
    assert reg.provider("methods", "example_noise") == "example"
    assert Path(sys.modules[method_cls.__module__].__file__).resolve().is_relative_to(EXAMPLE_DIR)
    assert ("example_noise", "adds Gaussian noise to the vision tower (example third-party method)",
            "example") in reg.describe("methods")
    assert "example_noise" not in plugins.get_registry(disable_third_party=True).registry("methods")

    class Stub:
        """Stand-in for an adapter: a vision tower that should change, a language part that should not."""

        def __init__(self) -> None:
            torch.manual_seed(0)
            self.tower = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 8))
            self.language = nn.Linear(8, 8)

        @property
        def vision_modules(self) -> nn.Module:
            return self.tower

    method = method_cls(method_cls.Hyper(sigma=0.05))
    assert method_cls.Hyper().sigma == 0.01
    a, b = Stub(), Stub()
    before = [p.detach().clone() for p in a.tower.parameters()]
    lang_before = [p.detach().clone() for p in a.language.parameters()]
    assert method.unlearn(a, request=None, context={"seed": 3}) is None
    diffs = torch.cat([(p.detach() - q).flatten() for p, q in zip(a.tower.parameters(), before)])
    assert diffs.abs().min() > 0, "every vision parameter moved"
    assert 0.03 < diffs.std().item() < 0.07, "noise has the requested scale"
    assert all(torch.equal(p, q) for p, q in zip(a.language.parameters(), lang_before))
    method.unlearn(b, request=None, context={"seed": 3})
    assert all(torch.equal(p, q) for p, q in zip(a.tower.parameters(), b.tower.parameters())), "seeded"

    # A fresh interpreter finds it through the entry point alone, and the switch still turns it off.
    probe = ("import json; from mmu_bench import plugins; "
             "print(json.dumps(sorted(p['name'] for p in plugins.list_plugins())))")
    env_on = {k: v for k, v in os.environ.items() if k != plugins.DISABLE_ENV}
    names = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                      env=env_on, check=True, timeout=120).stdout)
    assert "example" in names
    names_off = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                          env=env_on | {plugins.DISABLE_ENV: "1"}, check=True,
                                          timeout=120).stdout)
    assert "example" not in names_off
