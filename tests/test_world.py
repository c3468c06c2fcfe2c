"""The synthetic world: determinism, unique looks, splits, DatasetDict round trip, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mmu_bench.errors import MMUError
from mmu_bench.tasks.synthetic import draw
from mmu_bench.tasks.synthetic.dataset import build_world, load_split, to_dataset_dict
from mmu_bench.tasks.synthetic.world import SPLIT_NAMES, World, WorldConfig, all_looks

from conftest import SMALL_WORLD


def _fingerprint(items):
    return [(it["id"], it["question"], it["answer"], tuple(it["options"]), it["answer_index"],
             None if it["image"] is None else np.asarray(it["image"]).tobytes()) for it in items]


def test_same_seed_gives_identical_world(small_world):
    again = World(SMALL_WORLD)
    for split in ("forget_10", "test", "utility", "holdout"):
        assert _fingerprint(small_world.split_items(split)) == _fingerprint(again.split_items(split))


def test_other_seed_gives_another_world(small_world):
    other = World(WorldConfig(size=20, seed=1))
    assert [e.name for e in other.entities] != [e.name for e in small_world.entities]


def test_looks_differ_in_at_least_two_attributes():
    looks = all_looks()
    assert len(set(looks)) == len(looks)
    for a, b in itertools.combinations(looks[:120], 2):
        diff = sum(x != y for x, y in zip(
            (a.shape, a.palette, a.texture, a.accessory, a.backdrop),
            (b.shape, b.palette, b.texture, b.accessory, b.backdrop)))
        assert diff >= 2


def test_entities_are_unique_and_roles_disjoint(small_world):
    looks = [e.look for e in small_world.entities]
    assert len(set(looks)) == len(looks)
    names = [e.name for e in small_world.entities]
    assert len(set(names)) == len(names)
    forget = set(small_world.forget_ids["forget_10"])
    retain = set(small_world.split_entities("retain_90"))
    assert forget and not forget & retain
    assert forget | retain == set(small_world.ids("fictitious"))
    # nested forget splits
    assert set(small_world.forget_ids["forget_5"]) <= forget <= set(small_world.forget_ids["forget_15"])


def test_vqa_questions_never_name_the_entity(small_world):
    for it in small_world.split_items("forget_15"):
        name = small_world.by_id[it["entity_id"]].name
        if it["modality"] == "vqa":
            assert name.split()[0] not in it["question"] and it["image"] is not None
        else:
            assert name in it["question"] and it["image"] is None


def test_test_renderings_are_unseen(small_world):
    eid = small_world.forget_ids["forget_10"][0]
    train = {np.asarray(small_world.render(eid, "train", r)).tobytes() for r in range(4)}
    test = {np.asarray(small_world.render(eid, "test", r)).tobytes() for r in range(4)}
    assert len(test) == 4 and not train & test


def test_mcq_items_have_four_fixed_options_with_the_gold(small_world):
    items = [it for it in small_world.split_items("full") if it["kind"] == "mcq"]
    assert items
    for it in items:
        assert len(it["options"]) == 4 and len(set(it["options"])) == 4
        assert it["options"][it["answer_index"]] == it["answer"]
    # the gold position is spread over A-D, not always the same letter
    assert len({it["answer_index"] for it in items}) == 4


def test_default_world_scores_forget_10_on_100_items_each():
    w = World(WorldConfig())
    n_forget = len(w.forget_ids["forget_10"]) * w.config.train_renders * 5
    n_test = len(w.forget_ids["forget_10"]) * w.config.test_renders * 5
    assert n_forget >= 100 and n_test >= 100


def test_cloze_questions_show_a_blank(small_world):
    cloze = [it for it in small_world.split_items("forget_10") if it["kind"] == "cloze"]
    assert cloze and all("[Blank]" in it["question"] for it in cloze)


def test_dataset_dict_round_trip(small_world, cache_dir):
    path = build_world(SMALL_WORLD, cache_dir)
    assert build_world(SMALL_WORLD, cache_dir) == path  # cached
    for split in ("forget_10", "real", "utility"):
        assert _fingerprint(load_split(path, split)) == _fingerprint(small_world.split_items(split))
    dd = to_dataset_dict(small_world)
    assert set(dd) == set(SPLIT_NAMES)
    assert dd["forget_10"].features["image"].__class__.__name__ == "Image"


@pytest.mark.parametrize("size", [0, -3, 5])
def test_bad_size_is_a_clear_error(size):
    with pytest.raises(ValueError, match="world size must be an integer >= 20"):
        WorldConfig(size=size).resolved()


def test_unknown_split_is_a_clear_error(small_world):
    with pytest.raises(KeyError, match="unknown split 'forget_7'"):
        small_world.split_items("forget_7")
    with pytest.raises(MMUError, match="unknown split"):
        load_split(build_world(SMALL_WORLD), "nope")


def test_render_is_deterministic_and_varies():
    look = draw.Look("circle", "red", "dots", "hat", "sky")
    rng = np.random.default_rng(0)
    a = draw.render(look, draw.draw_nuisance(np.random.default_rng(1)))
    b = draw.render(look, draw.draw_nuisance(np.random.default_rng(1)))
    c = draw.render(look, draw.draw_nuisance(rng))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    assert a.size == (32, 32) and a.mode == "RGB"
