"""The shared training engine: schedule, seeded batching, determinism, divergence, projection."""

from __future__ import annotations

import math

import pytest
import torch

from mmu_bench.engine import Diverged, MixtureSampler, TrainConfig, make_scheduler, train


def _toy(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(8, 1)


def _loss_fn(model):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 8, generator=g)
    y = x @ torch.arange(8.0).unsqueeze(1)
    return lambda step: torch.nn.functional.mse_loss(model(x), y)


def _lrs(cfg: TrainConfig) -> list[float]:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = make_scheduler(opt, cfg)
    out = []
    for _ in range(cfg.steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_then_cosine_decay():
    f = _lrs(TrainConfig(steps=100, warmup=0.1, min_lr_ratio=0.02))
    assert f[0] == pytest.approx(0.0) and f[5] == pytest.approx(0.5)  # transformers' linear warmup from 0
    assert f[10] == pytest.approx(1.0)
    assert f[55] == pytest.approx(0.51, abs=0.02)
    assert f[99] == pytest.approx(0.02, abs=1e-3)  # decays to min_lr_ratio x lr, not to 0
    assert _lrs(TrainConfig(steps=20, warmup=0.1, schedule="constant"))[2:] == [1.0] * 18


def test_training_lowers_the_loss_and_is_deterministic():
    a, b = _toy(), _toy()
    ra = train(list(a.parameters()), _loss_fn(a), TrainConfig(steps=200, lr=0.05, progress=False))
    rb = train(list(b.parameters()), _loss_fn(b), TrainConfig(steps=200, lr=0.05, progress=False))
    assert ra.losses[-1] < 0.05 * ra.losses[0]
    assert ra.losses == rb.losses
    assert torch.equal(a.weight, b.weight)


def test_non_finite_loss_restores_the_last_finite_state():
    m = _toy()
    base = _loss_fn(m)
    seen = []

    def loss(step):
        seen.append(m.weight.detach().clone())
        # the loss blows up once the weights have moved past a point (as a diverging run does)
        return base(step) * (float("inf") if step == 3 else 1.0)

    with pytest.raises(Diverged) as e:
        train(list(m.parameters()), loss, TrainConfig(steps=10, lr=0.05, progress=False))
    assert e.value.step == 3 and math.isinf(e.value.loss)
    # back to the parameters of step 2, whose loss was finite
    assert torch.equal(m.weight, seen[2]) and not torch.equal(m.weight, seen[3])


def test_after_step_transforms_the_final_optimizer_update():
    m = _toy()
    before = m.weight.detach().clone()
    mask = torch.zeros_like(before)
    mask[0, :4] = 1.0

    def project(p, delta):
        return delta * mask if p.shape == mask.shape else delta * 0

    train(list(m.parameters()), _loss_fn(m), TrainConfig(steps=20, lr=0.05, weight_decay=0.0, progress=False),
          after_step=project)
    change = (m.weight - before).abs()
    assert change[0, :4].sum() > 0
    assert torch.equal(change[0, 4:], torch.zeros(4))


def test_before_step_edits_gradients_before_clipping_and_the_update():
    m = _toy()
    before = m.weight.detach().clone()
    seen = []

    def mask(params):
        seen.append(all(p.grad is not None for p in params))
        for p in params:
            if p.shape == before.shape:
                p.grad[0, 4:] = 0  # a saliency-style mask: these weights never move
            else:
                p.grad.zero_()

    train(list(m.parameters()), _loss_fn(m), TrainConfig(steps=20, lr=0.05, weight_decay=0.0, progress=False),
          before_step=mask)
    change = (m.weight - before).abs()
    assert all(seen) and len(seen) == 20
    assert change[0, :4].sum() > 0 and torch.equal(change[0, 4:], torch.zeros(4))


def test_stop_rule_ends_training_early():
    m = _toy()
    r = train(list(m.parameters()), _loss_fn(m), TrainConfig(steps=50, progress=False),
              should_stop=lambda step: step == 4)
    assert r.steps == 5 and r.stopped_early


def test_mixture_sampler_shares_and_coverage():
    s = MixtureSampler([(list(range(10)), 0.75), (list(range(100, 104)), 0.25)], batch_size=8, seed=0)
    seen = []
    for _ in range(5):
        b = s.next()
        assert len(b) == 8 and sum(x >= 100 for x in b) == 2
        seen += [x for x in b if x < 100]
    # every new example is seen equally often (epochs, not sampling with replacement)
    assert sorted(seen) == sorted(list(range(10)) * 3)
    again = MixtureSampler([(list(range(10)), 0.75), (list(range(100, 104)), 0.25)], batch_size=8, seed=0)
    s2 = MixtureSampler([(list(range(10)), 0.75), (list(range(100, 104)), 0.25)], batch_size=8, seed=0)
    assert [again.next() for _ in range(3)] == [s2.next() for _ in range(3)]


def test_accumulation_steps_equal_one_step_on_the_whole_batch():
    # two micro-batches of 4 per step train like one batch of 8 made of the same examples
    g = torch.Generator().manual_seed(2)
    x = torch.randn(40, 8, generator=g)
    y = x @ torch.arange(8.0).unsqueeze(1)
    whole, parts = _toy(), _toy()
    calls = []

    def big(step):
        b = slice(8 * step, 8 * step + 8)
        return (whole(x[b]) - y[b]).pow(2).mean()

    def micro(step):
        calls.append(step)
        i = 8 * step + 4 * (calls.count(step) - 1)
        return (parts(x[i:i + 4]) - y[i:i + 4]).pow(2).mean()

    cfg = dict(steps=5, lr=0.05, progress=False)
    ra = train(list(whole.parameters()), big, TrainConfig(**cfg))
    rb = train(list(parts.parameters()), micro, TrainConfig(**cfg, accumulation_steps=2))
    assert calls == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # loss_fn twice per optimizer step
    assert rb.steps == 5 and rb.losses == pytest.approx(ra.losses, rel=1e-6)
    assert torch.allclose(whole.weight, parts.weight, atol=1e-6)
    with pytest.raises(ValueError, match="accumulation_steps must be >= 1"):
        train(list(parts.parameters()), micro, TrainConfig(**cfg, accumulation_steps=0))
