"""Run by tests/test_distributed.py: under `accelerate launch` (2 processes) and, in the test's
own process, as one process. Both train ga_diff (forget + retain batches of 5: split 3 + 2, so the
example weighting matters) on the full tiny LLaVA from the same saved start, then CVF; then toy
engine runs: divergence on one rank, the stopping rule, a token-weighted loss (weigh), and
rank-0-first work inside local(). Prints one JSON report per process.

    accelerate launch --multi_gpu --num_processes 2 tests/distributed_script.py MODEL_DIR OUT_DIR
"""
import json
import sys

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
        cvf = CVF(steps=3, lr=1e-3, batch_size=4, retain_batch_size=4, nll_batch_size=4, stop_rule=False,
                  warmup=0.0)
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
