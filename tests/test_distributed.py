"""Data-parallel training under `accelerate launch` (2 CPU processes, gloo) equals one process,
and the helpers of mmu_bench/distributed.py (sharding, OOM batch halving, checkpointing)."""

from __future__ import annotations

import json
import os
import runpy
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmu_bench import distributed
from mmu_bench.errors import MMUError

SCRIPT = Path(__file__).with_name("distributed_script.py")  # one file, run both ways


def _reports(text: str) -> list[dict]:
    """Every process's JSON report in ``text`` (two processes' lines may share a line of a pipe)."""
    decoder, out, i = json.JSONDecoder(), [], text.find('{"rank"')
    while i >= 0:
        obj, end = decoder.raw_decode(text, i)
        out.append(obj)
        i = text.find('{"rank"', end)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from conftest import save_tiny_llava
    from mmu_bench.tasks.synthetic.world import World, WorldConfig

    return save_tiny_llava(World(WorldConfig(size=20, seed=0)), tmp_path_factory.mktemp("tiny"))


def _start_weights(path: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForImageTextToText

    return {k: v.contiguous() for k, v in AutoModelForImageTextToText.from_pretrained(path).state_dict().items()}


def _weights(path: Path, name: str = "weights") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / f"{name}.safetensors"))


@pytest.mark.slow  # integration: trains or spawns processes (the fast tier skips it)
def test_two_processes_train_like_one(tiny_dir, tmp_path, capsys):
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or shutil.which("accelerate")
    if accelerate is None:
        pytest.skip("accelerate's launcher is not installed")
    script = SCRIPT
    (tmp_path / "ddp").mkdir()
    (tmp_path / "one").mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(script), str(tiny_dir), str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reports = sorted(_reports(proc.stdout), key=lambda r: r["rank"])
    assert [r["rank"] for r in reports] == [0, 1] and all(r["world"] == 2 for r in reports)
    # each process computed its own part: 5 forget + 5 retain per step split 3 + 2
    assert reports[0]["seen"] == [3, 3] * 4 and reports[1]["seen"] == [2, 2] * 4
    # a non-finite loss on rank 1 only stops both ranks at that step; rank 0 decides stopping
    assert all(r["diverged"] == 2 for r in reports)
    assert all(r["stopped_at"] == 2 for r in reports)
    # inside local(): alone (world 1), rank 0 done before rank 1 started, different data kept apart
    a, b = reports[0]["local"], reports[1]["local"]
    assert a["world"] == b["world"] == 1 and b["in"] >= a["out"] and a["weight"] != b["weight"]
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["cvf.safetensors", "logs.json",
                                                                     "weights.safetensors"]
    # CVF: forget, retain-image and retain-NLL batches of 4 split 2 + 2 on every step
    assert reports[0]["cvf_seen"] == reports[1]["cvf_seen"] == [2, 2, 2] * 3

    # the same script as one process, in this process
    old = torch.get_num_threads()
    try:
        runpy.run_path(str(script), run_name="one_process")["main"](str(tiny_dir), str(tmp_path / "one"))
    finally:
        torch.set_num_threads(old)
    printed = capsys.readouterr().out
    (single,) = _reports(printed)
    for r in reports:  # the token-weighted run: the global token mean, as one process computes it
        assert r["token_run"]["losses"] == pytest.approx(single["token_run"]["losses"], abs=1e-6)
        assert torch.allclose(torch.tensor(r["token_run"]["weight"]), torch.tensor(single["token_run"]["weight"]),
                              atol=1e-6)
    ddp, one = _weights(tmp_path / "ddp"), _weights(tmp_path / "one")
    start = _start_weights(tiny_dir)
    assert ddp.keys() == one.keys()
    # AdamW divides by sqrt(v) + 1e-8, so float error in near-zero gradients reaches the weights
    # at about lr x 1e-2: equal up to 1e-5 at lr 1e-4, while training moved weights by ~3e-4.
    diff = max(float((ddp[k] - one[k]).abs().max()) for k in one)
    change = max(float((one[k] - start[k]).abs().max()) for k in one)
    moved = sum(not torch.equal(one[k], start[k]) for k in one)
    print(f"max |ddp - one| = {diff:.2e}, max change = {change:.2e}, tensors moved: {moved}")
    assert diff < 1e-5 and change > 50 * diff
    assert moved > 10  # the run trained (vision, projector and LLM)
    cvf_ddp, cvf_one = _weights(tmp_path / "ddp", "cvf"), _weights(tmp_path / "one", "cvf")
    cvf_diff = max(float((cvf_ddp[k] - cvf_one[k]).abs().max()) for k in cvf_one)
    cvf_change = max(float((cvf_one[k] - start[k]).abs().max()) for k in cvf_one)
    print(f"cvf: max |ddp - one| = {cvf_diff:.2e}, max change = {cvf_change:.2e}")
    assert cvf_diff < 1e-5 and cvf_change > 50 * cvf_diff
    llm = [k for k in cvf_one if k.startswith("model.language_model.") or k.startswith("lm_head.")]
    assert llm and all(torch.equal(cvf_ddp[k], start[k]) for k in llm)  # the frozen LLM, on both
    assert all(r["cvf_loss"] == pytest.approx(single["cvf_loss"], abs=1e-4) for r in reports)
    logs_ddp = json.loads((tmp_path / "ddp" / "logs.json").read_text())
    logs_one = json.loads((tmp_path / "one" / "logs.json").read_text())
    assert logs_ddp["steps"] == logs_one["steps"] == 4
    assert logs_ddp["final_loss"] == pytest.approx(logs_one["final_loss"], abs=1e-4)


# ------------------------------------------------------------------ single-process helpers
def test_shard_is_identity_in_one_process():
    batch = list(range(7))
    assert distributed.shard(batch) is batch and distributed.world_size() == 1


def test_only_the_main_process_shows_progress(monkeypatch, capsys):
    from mmu_bench.engine import TrainConfig, train

    lin = torch.nn.Linear(2, 1)
    cfg = TrainConfig(steps=3, progress=True, desc="bar-label")
    train(list(lin.parameters()), lambda s: lin(torch.ones(1, 2)).sum(), cfg)
    assert "bar-label" in capsys.readouterr().err
    monkeypatch.setattr(distributed, "is_main_process", lambda: False)
    train(list(lin.parameters()), lambda s: lin(torch.ones(1, 2)).sum(), cfg)
    assert "bar-label" not in capsys.readouterr().err


def test_auto_batch_size_halves_on_cuda_oom():
    tried = []

    def fn(b):
        tried.append(b)
        if b > 12:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return f"ok at {b}"

    told = []
    assert distributed.auto_batch_size(fn, 64, on_retry=lambda a, b: told.append((a, b))) == "ok at 8"
    assert tried == [64, 32, 16, 8] and told == [(64, 32), (32, 16), (16, 8)]


def test_auto_batch_size_gives_up_at_the_minimum_and_passes_other_errors():
    def always_oom(b):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        distributed.auto_batch_size(always_oom, 8, minimum=2)
    calls = []

    def broken(b):
        calls.append(b)
        raise ValueError("not memory")

    with pytest.raises(ValueError):
        distributed.auto_batch_size(broken, 8)
    assert calls == [8]
    # accelerate's notion of out-of-memory: an old-style RuntimeError saying so, or the CPU allocator's
    for message in ("CUDA out of memory. Tried to allocate 20.00 MiB", "DefaultCPUAllocator: can't allocate memory"):
        seen = []

        def old_style(b):
            seen.append(b)
            if b == 4:
                raise RuntimeError(message)
            return b

        assert distributed.auto_batch_size(old_style, 4) == 2 and seen == [4, 2]
    with pytest.raises(MMUError):
        distributed.auto_batch_size(old_style, 0)


def test_resolve_device():
    assert distributed.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(MMUError, match="device 'gpu0'"):
        distributed.resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(MMUError, match="no CUDA"):
            distributed.resolve_device("cuda")
        assert distributed.resolve_device("auto") == torch.device("cpu")


@pytest.mark.slow  # integration: trains or spawns processes (the fast tier skips it)
def test_gradient_checkpointing_trains_the_same_on_cpu(tiny_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from mmu_bench.adapter import LlavaAdapter
    from mmu_bench.method import per_example_nll
    from mmu_bench.tasks.synthetic.world import World, WorldConfig

    items = World(WorldConfig(size=20, seed=0)).split_items("forget_10")[:6]
    grads = []
    for checkpointing in (False, True):
        ad = LlavaAdapter(AutoModelForImageTextToText.from_pretrained(tiny_dir),
                          AutoProcessor.from_pretrained(tiny_dir), "cpu")
        if checkpointing:
            base = distributed.enable_gradient_checkpointing(ad)
            assert base.config.text_config.use_cache is False
            assert any(getattr(m, "gradient_checkpointing", False) for m in base.modules())
        ad.model.train()
        # frozen embeddings, trainable LLM layers: the case where reentrant checkpointing breaks
        for p in ad.model.parameters():
            p.requires_grad_(False)
        layer = ad.model.model.language_model.layers[0].self_attn.q_proj.weight
        layer.requires_grad_(True)
        per_example_nll(ad, ad.collate(ad.encode(items))).mean().backward()
        grads.append(layer.grad.clone())
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
