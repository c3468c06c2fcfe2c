"""benchmarks/gpu_check.py in --smoke mode: the GPU check's code path end to end on a CPU, with a
toy architecture (the real check builds LLaVA-1.5-7B on an H200; see docs/scaling.md)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow  # integration: trains or spawns processes (the fast tier skips it)
def test_gpu_check_smoke_runs_every_phase(tmp_path, capsys):
    gpu_check = _load()
    out = tmp_path / "gpu_check.json"
    results = gpu_check.main(["--smoke", "--out", str(out), "--budget", "120"])
    printed = capsys.readouterr().out
    failed = {k: v.get("error") for k, v in results.items() if not k.startswith("_") and not v.get("ok")}
    assert not failed, failed
    assert list(results["_run"]["phases"]) == list(gpu_check.PHASES)
    saved = json.loads(out.read_text())
    assert set(saved) == set(results)
    # the phases measured what they report
    assert results["build"]["image_tokens"] == 4 and results["build"]["params"] > 0
    for name in ("cvf", "cvf_null", "ga_lora", "ga_lora_gc"):
        assert results[name]["steps"] == gpu_check.SMOKE.steps, name
    assert results["ga_lora"]["merged"] and results["ga_lora_gc"]["merged"]
    assert {"mcq", "gen", "cloze"} <= set(results["eval"]) and results["eval"]["items_per_s"] > 0
    assert results["e2e"]["dry"]
    assert "== summary" in printed and "gpu_check: done" in printed


def test_gpu_check_rejects_unknown_phases(capsys):
    import pytest

    gpu_check = _load()
    with pytest.raises(SystemExit):
        gpu_check.main(["--smoke", "--only", "bulid"])
    assert "unknown phase(s) bulid" in capsys.readouterr().err


def test_gpu_check_shell_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_check.sh")]).returncode == 0
