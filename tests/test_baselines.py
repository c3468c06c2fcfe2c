"""The field's baselines (methods/simnpo.py, idkdpo.py, rmu.py, mmunlearner.py): exact loss values on
toy tensors (no zoo), and a few slow runs on the shared small zoo."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mmu_bench.errors import MMUError
from mmu_bench.methods.idkdpo import answer_loglik, dpo_loss, with_answers
from mmu_bench.methods.mmunlearner import (Saliency, base_name, build_saliency, gradient_masks, saliency_mask,
                                           squared_grads)
from mmu_bench.methods.npo import NPO
from mmu_bench.methods.rmu import control_vector, masked_mse, rmu_loss
from mmu_bench.methods.simnpo import SimNPO, simnpo_forget_loss
from mmu_bench.method import UnlearnContext


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


# ------------------------------------------------------------------ a stub adapter (no zoo)
class StubLM(nn.Module):
    """Logits are a free (seq, vocab) table, the same for every row: NLLs are hand-computable."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table.clone())

    def forward(self, input_ids, attention_mask=None, **kw):
        class Out:
            pass
        out = Out()
        out.logits = self.table[: input_ids.size(1)].unsqueeze(0).expand(input_ids.size(0), -1, -1)
        return out


class StubAdapter:
    def __init__(self, table):
        self.model = StubLM(table)


def token_nll(table: torch.Tensor, pos: int, tok: int) -> float:
    return float(-torch.log_softmax(table[pos], -1)[tok])


TABLE = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, -1.0], [0.5, 0.5, 0.0], [2.0, -1.0, 0.0]])
# row 0: prompt [0, 1], answer [2, 1]; row 1: prompt [0], answer [1], padded
BATCH = {"input_ids": torch.tensor([[0, 1, 2, 1], [0, 1, 0, 0]]),
         "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]),
         "labels": torch.tensor([[-100, -100, 2, 1], [-100, 1, -100, -100]])}
# token t at position j is predicted by the logits at j - 1
NLL_ROWS = [(token_nll(TABLE, 1, 2) + token_nll(TABLE, 2, 1)) / 2, token_nll(TABLE, 0, 1)]


def test_npo_at_reference_is_two_over_beta_log_two():
    model = StubAdapter(TABLE)
    npo = NPO(beta=0.4)
    ctx = UnlearnContext(retain=[], reference=lambda name: model)
    assert float(npo.loss(model, BATCH, None, ctx).detach()) == pytest.approx(2 / 0.4 * math.log(2), rel=1e-6)


def test_simnpo_loss_hand_computed():
    nll = torch.tensor([1.0, 3.0])
    want = -(2 / 2.0) * (log_sigmoid(2.0 * (1.0 - 0.5)) + log_sigmoid(2.0 * (3.0 - 0.5))) / 2
    assert float(simnpo_forget_loss(nll, beta=2.0, delta=0.5)) == pytest.approx(want, rel=1e-6)
    # the whole method loss on the stub: gamma * forget term + alpha * retain NLL
    model = StubAdapter(TABLE)
    m = SimNPO(beta=4.5, delta=0.0, gamma=0.125, alpha=2.0)
    forget_term = -(2 / 4.5) * sum(log_sigmoid(4.5 * n) for n in NLL_ROWS) / 2
    want = 0.125 * forget_term + 2.0 * sum(NLL_ROWS) / 2
    assert float(m.loss(model, BATCH, BATCH, UnlearnContext(retain=[])).detach()) == pytest.approx(want, rel=1e-5)
    # minimising it raises the forget NLL: d loss / d nll_bar < 0
    nll = torch.tensor([1.0, 3.0], requires_grad=True)
    simnpo_forget_loss(nll, 4.5, 0.0).backward()
    assert (nll.grad < 0).all()


def test_dpo_loss_hand_computed():
    win, win_ref = torch.tensor([-2.0]), torch.tensor([-3.0])
    lose, lose_ref = torch.tensor([-1.0]), torch.tensor([-0.5])
    want = -(2 / 0.1) * log_sigmoid(0.1 * ((-2 + 3) - (-1 + 0.5)))
    assert float(dpo_loss(win, win_ref, lose, lose_ref, beta=0.1)) == pytest.approx(want, rel=1e-6)
    same = torch.tensor([-4.0, -7.0])
    assert float(dpo_loss(same, same, same - 1, same - 1, beta=0.1)) == pytest.approx(2 / 0.1 * math.log(2))


def test_answer_loglik_sum_and_mean():
    model = StubAdapter(TABLE)
    s = answer_loglik(model, BATCH, "sum")
    m = answer_loglik(model, BATCH, "mean")
    assert s.tolist() == pytest.approx([-2 * NLL_ROWS[0], -NLL_ROWS[1]], rel=1e-5)
    assert m.tolist() == pytest.approx([-NLL_ROWS[0], -NLL_ROWS[1]], rel=1e-5)


def test_with_answers_keeps_prompts_and_swaps_answers():
    px = torch.randn(2, 3, 4, 4)
    out = with_answers(dict(BATCH, pixel_values=px), [[7, 8, 9], [5]], pad_id=0)
    assert out["input_ids"].tolist() == [[0, 1, 7, 8, 9], [0, 5, 0, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert out["labels"].tolist() == [[-100, -100, 7, 8, 9], [-100, 5, -100, -100, -100]]
    assert out["pixel_values"] is px


def test_rmu_loss_zero_at_targets_and_hand_value():
    torch.manual_seed(0)
    c = control_vector(8, 6.5, seed=3)
    assert float(c.norm()) == pytest.approx(6.5) and (c >= 0).all()
    assert torch.equal(c, control_vector(8, 6.5, seed=3))
    mask = torch.tensor([[True, False, True], [False, True, False]])
    h_f = c.expand(2, 3, 8).clone()
    h_f[~mask] = 100.0  # positions outside the mask do not count
    h_r = torch.randn(2, 3, 8)
    assert float(rmu_loss(h_f, mask, c, h_r, h_r.clone(), mask, alpha=5.0)) == 0.0
    # zero hidden states: mse to c u is |c u|^2 / d = c^2 / d
    zeros = torch.zeros(2, 3, 8)
    assert float(rmu_loss(zeros, mask, c, None, None, None, 1.0)) == pytest.approx(6.5 ** 2 / 8, rel=1e-6)
    # retain term: example means over masked positions, then the mean over examples
    ref = torch.zeros(2, 3, 8)
    h = torch.zeros(2, 3, 8)
    h[0, 0] = 1.0  # row 0: positions 0 (mse 1) and 2 (mse 0) -> 0.5; row 1: 0
    assert float(masked_mse(h, ref, mask)) == pytest.approx(0.25)
    with pytest.raises(MMUError, match="no example"):
        masked_mse(h, ref, torch.zeros(2, 3, dtype=torch.bool))


def test_mmunlearner_mask_on_two_layer_toy():
    # y = w2 . (W1 x): dL/dW1 = w2^T x^T, dL/dw2 = (W1 x)^T, per batch (loss = y).
    W1 = nn.Parameter(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    w2 = nn.Parameter(torch.tensor([[3.0, -1.0]]))
    params = {"l1.weight": W1, "l2.weight": w2}

    def loss(x):
        return (w2 @ (W1 @ x)).sum()

    xf = [torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0])]
    xp = [torch.tensor([0.0, 1.0])]
    ff = squared_grads(params, xf, loss)
    fp = squared_grads(params, xp, loss)
    # forget: grads W1 = [[3x0, 3x1], [-x0, -x1]], w2 = [x0, 2 x1]; mean of squares over 2 batches
    assert torch.allclose(ff["l1.weight"], torch.tensor([[(9 + 36) / 2, 0.0], [(1 + 4) / 2, 0.0]]))
    assert torch.allclose(ff["l2.weight"], torch.tensor([[(1 + 4) / 2, 0.0]]))
    assert torch.allclose(fp["l1.weight"], torch.tensor([[0.0, 9.0], [0.0, 1.0]]))
    assert torch.allclose(fp["l2.weight"], torch.tensor([[0.0, 4.0]]))
    sal = build_saliency(ff, fp, tau=1.0, eps=1e-15)
    # column 0 (x0) is forget-only: salient; column 1 preserve-only: not
    assert sal["l1.weight"].mask.tolist() == [[True, False], [True, False]]
    assert sal["l2.weight"].mask.tolist() == [[True, False]]
    assert sal["l1.weight"].cols.tolist() == [True, False]
    assert sal["l1.weight"].rows.tolist() == [True, True]  # row sums 22.5 / 9 and 2.5 / 1
    # equal Fishers: ratio 1 >= tau 1; zero everywhere: eps / eps = 1 (the reference's convention)
    assert saliency_mask(torch.ones(2), torch.ones(2), 1.0, 1e-15).all()
    assert saliency_mask(torch.zeros(1), torch.zeros(1), 1.0, 1e-15).all()
    assert not saliency_mask(torch.tensor([1.0]), torch.tensor([2.0]), 1.0, 1e-15).any()


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(4, 3, bias=False)
        self.norm = nn.LayerNorm(3)


def test_mask_keyed_by_base_names_reaches_lora_factors():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    ff = {"q_proj.weight": torch.rand(3, 4)}
    fp = {"q_proj.weight": torch.rand(3, 4)}
    sal = build_saliency(ff, fp, 1.0, 1e-15)
    plain = Toy()
    full = gradient_masks(list(plain.named_parameters()), sal)
    assert torch.equal(full[id(plain.q_proj.weight)], sal["q_proj.weight"].mask.float())
    peft_model = get_peft_model(Toy(), LoraConfig(r=2, lora_alpha=2, target_modules=["q_proj"]))
    named = list(peft_model.named_parameters())
    # The reference's lookup (`name in grad_mask`) finds none of the LoRA model's parameters.
    assert not [n for n, _ in named if n in sal]
    assert base_name("base_model.model.q_proj.lora_A.default.weight") == ("q_proj.weight", "lora_A")
    assert base_name("base_model.model.q_proj.base_layer.weight") == ("q_proj.weight", "base_layer")
    masks = gradient_masks(named, sal)
    lora = peft_model.base_model.model.q_proj
    A, B = lora.lora_A["default"].weight, lora.lora_B["default"].weight
    assert set(masks) == {id(A), id(B)}  # the frozen base weight gets nothing
    assert torch.equal(masks[id(B)], sal["q_proj.weight"].rows[:, None].float().expand(3, 1))
    assert torch.equal(masks[id(A)], sal["q_proj.weight"].cols[None, :].float())
    assert masks[id(B)].shape == (3, 1) and masks[id(A)].shape == (1, 4)
    assert not gradient_masks(named, {"other.weight": Saliency(torch.ones(1, dtype=torch.bool), None, None)})


def test_saliency_memory_analytic():
    from mmu_bench.methods.mmunlearner import saliency_memory_bytes

    b = saliency_memory_bytes(n_params=1000, n_masked=300, weight_bytes=2)
    assert b == {"weights": 2000, "grads": 600, "buffers": 2400, "mask": 300, "total": 5300}


def test_gpu_check_saliency_estimate_counts_the_linear_layers():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gc = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = gc
    spec.loader.exec_module(gc)
    s = gc.SMOKE
    est = gc.saliency_estimate(s)
    h, i, H, I = s.vision_hidden, s.vision_intermediate, s.text_hidden, s.text_intermediate
    vision = s.vision_layers * (4 * (h * h + h) + (h * i + i) + (i * h + h)) + (h * H + H) + (H * H + H)
    language = s.text_layers * (4 * H * H + 3 * H * I) + s.vocab_size * H
    assert est["vision"]["masked_params"] == vision
    assert est["language"]["masked_params"] == language
    assert est["both"]["masked_params"] == vision + language
    assert est["language"]["bytes"]["total"] == 2 * est["params"] + 11 * language


# ------------------------------------------------------------------ slow: a few steps on the small zoo
SPLIT = "forget_10"


def _mcq_acc(model, items) -> float:
    from mmu_bench.evaluate import EvalConfig, score_mcq_loglik

    mcq = [it for it in items if it["kind"] == "mcq"]
    return sum(r["correct"] for r in score_mcq_loglik(model, mcq, EvalConfig(batch_size=32))) / len(mcq)


class Spy:
    """Wraps a method's loss: records the batches it received."""

    def __init__(self, method):
        self.batches = []
        inner = method.loss

        def loss(model, forget, retain, context):
            self.batches.append((forget, retain))
            return inner(model, forget, retain, context)

        method.loss = loss


def _unlearn(small_zoo, small_world, method, setting="visual"):
    from mmu_bench.method import UnlearnContext, UnlearnRequest
    from mmu_bench.settings import get_setting

    refs = {}

    def reference(name):
        if name not in refs:
            refs[name] = small_zoo.load(name)
            for p in refs[name].model.parameters():
                p.requires_grad_(False)
        return refs[name]

    model = small_zoo.load("finetuned")
    forget = get_setting(setting).forget_items(small_world.split_items(SPLIT))  # what the protocol hands out
    retain = small_world.split_items(small_world.retain_split(SPLIT))
    ctx = UnlearnContext(retain=retain, seed=0, progress=False, reference=reference, setting=setting)
    method.unlearn(model, UnlearnRequest(forget=forget, forget_entities=list(small_world.forget_ids[SPLIT]),
                                         setting=setting), ctx)
    return model, forget, retain, ctx


def _nll(model, items) -> float:
    from mmu_bench.method import per_example_nll

    with torch.no_grad():
        return float(per_example_nll(model, model.collate(model.encode(items))).mean())


VISUAL = dict()  # the visual setting's defaults: trainable=auto is the vision side


@pytest.mark.slow
def test_simnpo_raises_forget_nll_keeps_llm(small_zoo, small_world):
    from mmu_bench.methods.simnpo import SimNPO

    before = small_zoo.load("finetuned")
    m = SimNPO(steps=16, lr=5e-3, batch_size=8, gamma=1.0, **VISUAL)  # gamma 1: the forget term at full weight
    spy = Spy(m)
    model, forget, retain, _ = _unlearn(small_zoo, small_world, m)
    assert all(b[1] is not None for b in spy.batches)  # alpha 1: a retain batch every step
    assert _nll(model, forget[:16]) > _nll(before, forget[:16]) + 0.5
    for p, q in zip(model.model.model.language_model.parameters(), before.model.model.language_model.parameters()):
        assert torch.equal(p, q)  # trainable=vision: the LLM is untouched


@pytest.mark.slow
def test_idkdpo_prefers_refusals(small_zoo, small_world):
    from mmu_bench.methods.idkdpo import IdkDPO
    from mmu_bench.refusals import REFUSALS

    before = small_zoo.load("finetuned")
    model, forget, retain, _ = _unlearn(small_zoo, small_world, IdkDPO(steps=8, lr=2e-3, batch_size=8, **VISUAL))
    probe = forget[:16]
    refused = [dict(it, answer=REFUSALS[0]) for it in probe]
    # the margin log p(refusal) - log p(truth) grows
    assert _nll(model, probe) - _nll(model, refused) > _nll(before, probe) - _nll(before, refused) + 0.5


@pytest.mark.slow
def test_rmu_visual_steers_visual_tokens_only_vqa(small_zoo, small_world):
    from mmu_bench.methods.rmu import RMU

    m = RMU(steps=16, lr=3e-3, batch_size=8, **VISUAL)
    spy = Spy(m)
    before = small_zoo.load("finetuned")
    model, forget, retain, _ = _unlearn(small_zoo, small_world, m)
    assert m._tokens == "visual"
    image = model.image_token_id
    for fb, rb in spy.batches:  # no text-only item reached the method, forget or retain
        assert ((fb["input_ids"] == image).sum(1) > 0).all() and ((rb["input_ids"] == image).sum(1) > 0).all()
    batch = model.collate(model.encode(forget[:16]))
    with torch.no_grad():
        def dist(mdl):
            h = m.hidden(mdl, batch)
            return float(masked_mse(h, m._control, m.positions(mdl, batch)))
        assert dist(model) < 0.5 * dist(before)


@pytest.mark.slow
def test_mmunlearner_ascent_moves_salient_entries_only(small_zoo, small_world):
    from mmu_bench.methods.mmunlearner import MMUnlearner, linear_parameters

    m = MMUnlearner(steps=4, lr=1e-3, batch_size=8, descent_steps=0, saliency_max_batches=8, **VISUAL)
    before = {n: p.detach().clone() for n, p in linear_parameters(small_zoo.load("finetuned"), "vision").items()}
    model, *_ = _unlearn(small_zoo, small_world, m)
    after = linear_parameters(model, "vision")
    assert set(m._saliency) == set(before)
    moved_salient = 0
    for n, s in m._saliency.items():
        changed = after[n].detach() != before[n]
        assert not (changed & ~s.mask).any(), n  # masked-out entries did not move
        moved_salient += int((changed & s.mask).sum())
    assert moved_salient > 0
    density = sum(int(s.mask.sum()) for s in m._saliency.values()) / sum(s.mask.numel() for s in m._saliency.values())
    assert 0 < density < 1


@pytest.mark.slow
def test_mmunlearner_lora_mask_restricts_rows(small_zoo, small_world):
    from mmu_bench.methods.mmunlearner import MMUnlearner

    m = MMUnlearner(steps=4, lr=1e-3, batch_size=8, descent_steps=0, saliency_max_batches=8, trainable="llm",
                    lora=True, lora_targets="q_proj,v_proj,down_proj")
    before = dict(small_zoo.load("finetuned").model.named_parameters())
    model, *_ = _unlearn(small_zoo, small_world, m, setting="full")
    after = dict(model.model.named_parameters())
    frozen_rows = moved_rows = 0
    for n, s in m._saliency.items():
        if not any(n.endswith(f"{t}.weight") for t in ("q_proj", "v_proj", "down_proj")):
            continue
        rows_changed = (after[n].detach() != before[n]).any(1)
        assert not (rows_changed & ~s.rows).any(), n  # a masked-out row of the merged weight is unchanged
        frozen_rows += int((~s.rows).sum())
        moved_rows += int((rows_changed & s.rows).sum())
    assert frozen_rows > 0 and moved_rows > 0  # the test is not vacuous
