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
import textwrap
from pathlib import Path

import pytest
import torch

from mmu_bench import distributed
from mmu_bench.errors import MMUError

# Run by `accelerate launch` (2 processes) and, in the test's own process, as one process. Both
# train ga_diff (forget + retain batches of 5: split 3 + 2, so the example weighting matters) on
# the full tiny LLaVA from the same saved start; then toy engine runs: divergence on one rank,
# the stopping rule, a token-weighted loss (weigh), and rank-0-first work inside local().
SCRIPT = textwrap.dedent('''
    import json, sys
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from mmu_bench import distributed
    from mmu_bench.adapter import LlavaAdapter
    from mmu_bench.engine import Diverged, TrainConfig, train
    from mmu_bench.method import UnlearnContext, UnlearnRequest
    from mmu_bench.methods.ga_diff import GADiff
    from mmu_bench.tasks.synthetic.world import World, WorldConfig


    def main(model_dir, out):
        torch.set_num_threads(1)
        distributed.BUCKET_ELEMS = 50_000  # many all-reduce buckets (the tiny LLaVA has ~1M weights)
        world = World(WorldConfig(size=20, seed=0))
        forget = world.split_items("forget_10")[:24]
        retain = world.split_items(world.retain_split("forget_10"))[:40]
        adapter = LlavaAdapter(AutoModelForImageTextToText.from_pretrained(model_dir),
                               AutoProcessor.from_pretrained(model_dir), "cpu")
        real_shard = distributed.shard
        def counting(record):  # a shard() that records the size of each part it hands out
            def spy(batch):
                part = real_shard(batch)
                record.append(len(part))
                return part
            return spy
        seen = []
        import mmu_bench.method as method_module
        method_module.shard = counting(seen)
        try:
            method = GADiff(steps=4, lr=1e-4, batch_size=5, trainable="all", warmup=0.25)
            ctx = UnlearnContext(retain=retain, seed=0, progress=True)
            method.unlearn(adapter, UnlearnRequest(forget=forget, forget_entities=[]), ctx)
        finally:
            method_module.shard = real_shard

        # CVF (frozen LLM, null-space projected updates) shards its forget / retain / NLL batches
        import mmu_bench.methods.cvf as cvf_module
        from mmu_bench.methods.cvf import CVF
        cvf_model = LlavaAdapter(AutoModelForImageTextToText.from_pretrained(model_dir),
                                 AutoProcessor.from_pretrained(model_dir), "cpu")
        frozen = LlavaAdapter(AutoModelForImageTextToText.from_pretrained(model_dir),
                              AutoProcessor.from_pretrained(model_dir), "cpu")
        cvf_seen = []
        cvf_module.shard = counting(cvf_seen)
        try:
            cvf = CVF(steps=3, lr=1e-3, batch_size=4, retain_batch_size=4, stop_rule=False, warmup=0.0)
            cvf_ctx = UnlearnContext(retain=retain, seed=0, progress=False, reference=lambda name: frozen)
            all_forget = world.split_items("forget_10")  # 8 images: forget batches of 4 split 2 + 2
            cvf.unlearn(cvf_model, UnlearnRequest(forget=all_forget, forget_entities=[]), cvf_ctx)
        finally:
            cvf_module.shard = real_shard

        # divergence on one rank only: every rank stops at the same step, restored
        lin = torch.nn.Linear(4, 1)
        x = torch.ones(8, 4)
        def loss_fn(step):
            part = distributed.shard(x)
            bad = step == 2 and distributed.rank() == distributed.world_size() - 1
            return lin(part).pow(2).mean() * (float("nan") if bad else 1.0)
        try:
            train(list(lin.parameters()), loss_fn, TrainConfig(steps=6, lr=0.1, progress=False))
            diverged = None
        except Diverged as e:
            diverged = e.step
        # stopping rule: rank 0 decides for everyone
        r = train(list(lin.parameters()), lambda step: lin(distributed.shard(x)).pow(2).mean(),
                  TrainConfig(steps=6, lr=0.1, progress=False),
                  should_stop=lambda step: step == (1 if distributed.rank() == 0 else 4))
        # a token-mean loss (examples of 1..7 tokens, split 4 + 3) declares its tokens with weigh()
        g = torch.Generator().manual_seed(3)
        xs, ys = torch.randn(7, 4, generator=g), torch.randn(7, 1, generator=g)
        tokens = torch.arange(1.0, 8.0).unsqueeze(1)
        torch.manual_seed(5)
        lin3 = torch.nn.Linear(4, 1)
        def token_mean(step):
            x, y, t = distributed.shard(xs), distributed.shard(ys), distributed.shard(tokens)
            distributed.weigh(float(t.sum()))
            return ((lin3(x) - y).pow(2) * t).sum() / t.sum()
        r3 = train(list(lin3.parameters()), token_mean, TrainConfig(steps=5, lr=0.05, progress=False))
        token_run = {"losses": r3.losses, "weight": lin3.weight.tolist()}

        # rank 0 alone first (as when it builds a cached zoo model), the others after: no collectives
        import time
        with distributed.main_process_first(), distributed.local():
            t_in = time.time()
            lin2 = torch.nn.Linear(2, 1)
            target = 5.0 if distributed.is_main_process() else -5.0
            train(list(lin2.parameters()), lambda step: (lin2(torch.ones(4, 2)) - target).pow(2).mean(),
                  TrainConfig(steps=3, progress=False))
            local = {"world": distributed.world_size(), "in": t_in, "out": time.time(),
                     "weight": lin2.weight.sum().item()}
        print(json.dumps({"rank": distributed.rank(), "world": distributed.world_size(), "seen": seen,
                          "cvf_seen": cvf_seen, "cvf_loss": cvf_ctx.logs["final_loss"],
                          "diverged": diverged, "stopped_at": r.steps, "local": local, "token_run": token_run}),
              flush=True)
        if distributed.is_main_process():
            state = {k: v.contiguous() for k, v in adapter.model.state_dict().items()}
            save_file(state, out + "/weights.safetensors")
            save_file({k: v.contiguous() for k, v in cvf_model.model.state_dict().items()}, out + "/cvf.safetensors")
            with open(out + "/logs.json", "w") as f:
                json.dump(ctx.logs, f)


    if __name__ == "__main__":
        main(sys.argv[1], sys.argv[2])
''')


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
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
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
    old, old_bucket = torch.get_num_threads(), distributed.BUCKET_ELEMS
    try:
        runpy.run_path(str(script), run_name="one_process")["main"](str(tiny_dir), str(tmp_path / "one"))
    finally:
        torch.set_num_threads(old)
        distributed.BUCKET_ELEMS = old_bucket
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
def test_shard_is_identity_in_one_process_and_bounds_cover_the_batch():
    batch = list(range(7))
    assert distributed.shard(batch) is batch and distributed.world_size() == 1
    for world in (1, 2, 3, 4):
        parts = [distributed.shard_bounds(7, world, r) for r in range(world)]
        assert parts[0][0] == 0 and parts[-1][1] == 7
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
        sizes = [e - s for s, e in parts]
        assert max(sizes) - min(sizes) <= 1


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
    # an old-style RuntimeError that says CUDA OOM counts too
    seen = []

    def old_style(b):
        seen.append(b)
        if b == 4:
            raise RuntimeError("CUDA error: out of memory")
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
