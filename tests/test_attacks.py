"""Attacks that try to get unlearned knowledge back (mmu_bench/attacks, --protocol attacks).

Each attack must separate the finetuned model (knows the forget set) from the oracle (never
saw it) -- else the attack is broken, not the method. These tests assert that on the small zoo.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import SMALL_ZOO
from mmu_bench.attacks import ATTACK_NAMES, make_attacks
from mmu_bench.attacks.base import AttackContext
from mmu_bench.errors import MMUError
from mmu_bench.evaluate import EvalConfig
from mmu_bench.tasks.synthetic.benchmark import eval_tasks
from mmu_bench.tasks.synthetic.world import HELDOUT_WORDINGS, TRAIN_WORDINGS, World, WorldConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SPLIT = "forget_10"


class _Bench:
    """The little of a benchmark the attacks read, over the small zoo."""

    def __init__(self, zoo):
        self.zoo, self.world = zoo, zoo.world
        self._models = {}

    def tasks(self, split):
        return eval_tasks(self.world, split)

    def request(self, split):
        from mmu_bench.method import UnlearnRequest

        return UnlearnRequest(forget=self.world.split_items(split), forget_entities=list(self.world.forget_ids[split]))

    def load(self, name, split):
        if name not in self._models:
            self._models[name] = self.zoo.load(name, split if name.startswith("retrain") else None)
        return self._models[name]


@pytest.fixture(scope="module")
def bench(small_zoo):
    return _Bench(small_zoo)


@pytest.fixture(scope="module")
def ctx(bench):
    return AttackContext(bench, SPLIT, bench.tasks(SPLIT), EvalConfig(), "visual", 0)


@pytest.fixture(scope="module")
def ref(ctx):
    """Every attack on finetuned / retrain / retrain_visual: the protocol's sanity rows (computed
    once, cached in the zoo like a run's, so the tests read what runs read)."""
    from mmu_bench.attacks.protocol import AttacksProtocol

    return AttacksProtocol("all").reference(ctx)


# ------------------------------------------------------------------ options and the world
def test_attack_options_are_checked():
    assert [a.name for a in make_attacks("all")] == list(ATTACK_NAMES)
    assert [a.name for a in make_attacks("quant_int4,probe")] == ["quant_int4", "probe"]
    with pytest.raises(MMUError, match="unknown attack 'quant_int3'.*Did you mean"):
        make_attacks("quant_int3")
    with pytest.raises(MMUError, match="listed twice"):
        make_attacks("probe,probe")
    with pytest.raises(MMUError, match="empty"):
        make_attacks(",")


def test_world_keeps_its_items_and_adds_wordings(small_world):
    from mmu_bench.tasks.synthetic import world as w

    assert w.WORLD_VERSION == 4
    items = small_world.split_items("full")
    # the reported items keep the one trained wording per fact
    for it in items:
        if it["kind"] == "mcq":
            assert it["question"] == w._QUESTIONS[it["fact"]].format(
                s=w.VQA_SUBJECT if it["modality"] == "vqa" else small_world.by_id[it["entity_id"]].name)
    held = small_world.wording_items(items, "heldout")
    train = small_world.wording_items(items, "train")
    trained_questions = {it["question"] for it in items} | {it["question"] for it in train}
    assert held and not ({it["question"] for it in held} & trained_questions)  # never trained
    assert all(it["answer"] == small_world.by_id[it["entity_id"]].facts[it["fact"]] for it in held)
    for table in (TRAIN_WORDINGS, HELDOUT_WORDINGS):
        assert set(table) == set(w.FACTS)
    corpus = set(small_world.corpus())
    assert {it["question"] for it in held} <= corpus and w.MEMORY_PREFIX in corpus
    # every reported item is the one world v3 drew (ids, questions, answers, options): the hash
    # was taken from v3's code, so today's numbers stay comparable
    import hashlib
    import json

    blob = [[(it["id"], it["question"], it["answer"], it["options"], it["answer_index"])
             for it in World(WorldConfig(size=20)).split_items(s)] for s in w.SPLIT_NAMES]
    assert hashlib.sha256(json.dumps(blob).encode()).hexdigest()[:16] == "f93b0ad27ec81c50"


def test_permute_moves_the_gold_option():
    from mmu_bench.attacks.permute import permuted

    it = {"id": "x.vqa.mcq.job.train0", "options": ["a", "b", "c", "d"], "answer_index": 2, "answer": "c"}
    (p,) = permuted([it])
    assert p["options"] != it["options"] and p["options"][p["answer_index"]] == "c"


# ------------------------------------------------------------------ each attack separates finetuned from the oracle
def test_quantization_covers_every_part_and_changes_vision_weights(bench):
    from mmu_bench.attacks.quant import quantize_adapter

    ft = bench.load("finetuned", SPLIT)
    name = "model.vision_tower.encoder.layers.0.self_attn.q_proj"
    before = ft.model.get_submodule(name).weight.detach().clone()
    q, coverage = quantize_adapter(ft, 4)
    assert all(done == total > 0 for done, total in coverage.values()), coverage
    qw = q.model.get_submodule(name).weight
    assert type(qw).__name__ == "WeightQBitsTensor"  # int4 packed by quanto
    deq = qw.dequantize()
    assert not torch.equal(deq, before) and torch.allclose(deq, before, atol=0.2 * before.abs().max())
    assert torch.equal(ft.model.get_submodule(name).weight, before)  # the original is untouched


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_finetuned_still_knows_and_oracle_does_not(ref, bits):
    from mmu_bench.attacks.quant import QuantAttack

    rows = ref[f"quant_int{bits}"]
    ft, orc = rows["finetuned"], rows["retrain_visual"]
    assert ft["coverage"] == 1.0 and all(ft[f"coverage.{p}"] == 1.0 for p in ("vision", "projector", "language"))
    assert ft["forget.vqa.acc"] >= 0.8 and ft["retain.vqa.acc"] >= 0.8
    assert orc["forget.vqa.acc"] <= 0.45 and rows["retrain"]["forget.vqa.acc"] <= 0.45
    for setting in ("visual", "full"):
        assert QuantAttack(bits).sanity(rows, setting)["ok"]


def test_logit_lens_last_layer_is_the_models_own_answer(bench, ctx, ref):
    from mmu_bench.attacks.base import mcq_acc

    ft = bench.load("finetuned", SPLIT)
    vals = ref["probe"]["finetuned"]
    last = max(int(k.split("layer")[1].split(".")[0]) for k in vals if k.startswith("lens.vqa.layer"))
    assert last == ft.model.config.text_config.num_hidden_layers
    assert vals[f"lens.vqa.layer{last}.acc"] == pytest.approx(mcq_acc(ft, ctx.items("forget", "vqa"), ctx.eval_cfg))
    assert vals["lens.vqa.layer0.acc"] <= 0.45  # the embedding of "ASSISTANT:" knows nothing


def test_probe_separates_finetuned_from_the_oracle(ref, tmp_path):
    from mmu_bench.attacks.probe import ProbeAttack, plot_probe

    ft, orc = ref["probe"]["finetuned"], ref["probe"]["retrain_visual"]
    assert ft["lens.vqa.best_acc"] >= 0.8 and ft["readout.vqa.best_acc"] >= 0.8, ft
    for oracle in ("retrain_visual", "retrain"):
        o = ref["probe"][oracle]
        assert o["lens.vqa.best_acc"] <= 0.45 and o["readout.vqa.best_acc"] <= 0.45, (oracle, o)
    assert 0 < ft["readout.vqa.train_items"] <= 600
    assert ProbeAttack().sanity(ref["probe"], "visual")["ok"]
    plot_probe(orc, ref["probe"], tmp_path / "probe.png", "retrain_visual", "retrain_visual")
    assert (tmp_path / "probe.png").stat().st_size > 0


def test_finetuned_answers_heldout_wordings(ref):
    ft, orc = ref["paraphrase"]["finetuned"], ref["paraphrase"]["retrain"]
    assert ft["forget.vqa.acc"] >= 0.9 and ft["forget.qa.acc"] >= 0.9 and ft["retain.vqa.acc"] >= 0.9, ft
    assert orc["forget.vqa.acc"] <= 0.45 and orc["forget.qa.acc"] <= 0.45, orc  # knows nothing of them
    assert ref["paraphrase"]["retrain_visual"]["forget.vqa.acc"] <= 0.45


def test_prompt_attacks_keep_finetuned_high_and_oracle_low(bench, ref):
    from mmu_bench.attacks.permute import PermuteAttack
    from mmu_bench.attacks.prefix import PrefixAttack, conversation_adapter

    text = conversation_adapter(bench.load("finetuned", SPLIT)).prompt_text("Q one?\x1fA one\x1fQ two?", True)
    assert text.count("USER:") == 2 and "A one" in text and text.index("Q one?") < text.index("Q two?")
    for a in (PermuteAttack(), PrefixAttack()):
        f, o = ref[a.name]["finetuned"], ref[a.name]["retrain_visual"]
        assert f[a.headline] >= 0.8 and o[a.headline] <= 0.45, (a.name, f, o)
    assert ref["prefix"]["finetuned"]["memory.forget.vqa.acc"] >= 0.8
    assert ref["prefix"]["retrain_visual"]["memory.forget.vqa.acc"] <= 0.45


def test_neighbours_are_look_alikes(bench, ctx, ref):
    from dataclasses import asdict

    from mmu_bench.attacks.neighbours import NeighboursAttack

    a = NeighboursAttack()
    near = a.neighbours(ctx)
    w = bench.world
    assert set(near) == set(w.forget_ids[SPLIT])
    for f, rs in near.items():
        lf = asdict(w.by_id[f].look)
        shared = [sum(lf[k] == v for k, v in asdict(w.by_id[r].look).items()) for r in rs]
        others = [sum(lf[k] == v for k, v in asdict(w.by_id[r].look).items())
                  for r in w.split_entities(w.retain_split(SPLIT)) if r not in rs]
        assert min(shared) >= max(others)
    ft = ref["neighbours"]["finetuned"]
    assert ft["retain.vqa.acc"] >= 0.8 and ft["n_neighbours"] >= 1
    assert a.sanity(ref["neighbours"], "visual")["ok"] and a.sanity(ref["neighbours"], "full")["ok"]


def test_consistency_tables(ref):
    from mmu_bench.attacks.consistency import ConsistencyAttack

    a = ConsistencyAttack()
    ft, vis, full = (ref["consistency"][m] for m in ("finetuned", "retrain_visual", "retrain"))
    assert ft["both_kept"] == 1.0
    assert vis["image_gone_text_kept"] == 1.0  # knows them by name, never saw them
    assert full["both_gone"] == 1.0
    for row in (ft, vis, full):
        assert sum(row[c] for c in ("both_kept", "image_gone_text_kept", "image_kept_text_gone", "both_gone")) == pytest.approx(1)
    ref = {"finetuned": ft, "retrain_visual": vis, "retrain": full}
    assert a.sanity(ref, "visual")["ok"] and a.sanity(ref, "full")["ok"]


# ------------------------------------------------------------------ the protocol
def test_attacks_protocol_records_method_and_sanity_rows(cache_dir, small_zoo, tmp_path):
    from mmu_bench.run import RunSpec, run

    # The visual oracle as "method": its attack numbers must equal its own cached sanity row.
    o = run(RunSpec(method="retrain_visual", protocol="attacks", world_size=20, cache_dir=str(cache_dir),
                    out=str(tmp_path), progress=False, max_new_tokens=24,
                    protocol_options={"attacks": "quant_int8,consistency,neighbours"},
                    zoo=dict(SMALL_ZOO)))
    m, details = o.metrics, o.doc["protocol"]
    assert details["attacks"] == ["quant_int8", "consistency", "neighbours"] and details["oracle"] == "retrain_visual"
    for name in details["attacks"]:
        assert set(details["reference"][name]) == {"finetuned", "retrain", "retrain_visual"}
        for k, v in details["reference"][name]["retrain_visual"].items():
            assert m[f"attack.{name}.{k}"] == pytest.approx(v, abs=1e-6), k
        assert details["sanity"][name]["ok"], details["sanity"][name]
    assert "forget.vqa.mcq.acc" in m  # the static metrics come too
    assert list((small_zoo.root / "reference").glob("attack-quant_int8-*"))  # sanity rows cached per zoo


def test_readout_learns_an_answer_agnostic_rule_and_finds_nothing_in_noise():
    """The readout trains on some items and names the right option of unseen ones when one
    feature marks it, whatever its position; on pure noise it stays near chance."""
    from mmu_bench.attacks.probe import readout_accuracy

    rng = np.random.default_rng(0)

    def batch(n, signal):
        x = rng.normal(size=(n, 4, 8))
        gold = rng.integers(0, 4, n)
        x[np.arange(n), gold, 3] += signal
        return x, gold

    (tr, gtr), (te, gte) = batch(300, 3.0), batch(200, 3.0)
    assert readout_accuracy(tr, gtr, te, gte) >= 0.9
    (tr, gtr), (te, gte) = batch(300, 0.0), batch(400, 0.0)
    assert abs(readout_accuracy(tr, gtr, te, gte) - 0.25) <= 0.08
