"""The tiny LLaVA: a real transformers model, processor and tokenizer that round-trip."""

from __future__ import annotations

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, LlavaForConditionalGeneration

from mmu_bench.adapter import LlavaAdapter
from mmu_bench.tiny_model import TinyLlavaConfig, build_model, build_processor, build_tokenizer


def _tiny(world):
    tok = build_tokenizer(world.corpus(), 1000)
    cfg = TinyLlavaConfig()
    return build_processor(tok, cfg), build_model(tok, cfg, seed=0)


def test_tokenizer_never_emits_unk(small_world):
    proc, _ = _tiny(small_world)
    tok = proc.tokenizer
    for text in ["Zürich — naïve café 東京 🙂", "What is the name of the person in the image?",
                 small_world.entities[-1].name]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text


def test_holdout_words_are_in_vocabulary_like_member_words(small_world):
    # Members and non-members must tokenise alike (no <unk>, similar lengths) or MIA is trivial.
    proc, _ = _tiny(small_world)
    tok = proc.tokenizer
    lens = {role: [len(tok(" " + e.name, add_special_tokens=False)["input_ids"])
                   for e in small_world.entities if e.role == role] for role in ("fictitious", "holdout")}
    mean = {r: sum(v) / len(v) for r, v in lens.items()}
    assert abs(mean["fictitious"] - mean["holdout"]) < 1.5


def test_chat_template_is_llava_style(small_world):
    proc, model = _tiny(small_world)
    ad = LlavaAdapter(model, proc, "cpu")
    assert ad.prompt_text("Q?", True) == "USER: <image>\nQ? ASSISTANT:"
    assert ad.prompt_text("Q?", False) == "USER: Q? ASSISTANT:"
    assert ad.n_image_tokens == 16


def test_save_and_auto_load_round_trip(small_world, tmp_path):
    proc, model = _tiny(small_world)
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path)
    loaded_proc = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, LlavaForConditionalGeneration)
    item = small_world.split_items("forget_10")[0]
    a = LlavaAdapter(model, proc, "cpu")
    b = LlavaAdapter(loaded, loaded_proc, "cpu")
    ea, eb = a.encode([item]), b.encode([item])
    assert ea[0].prompt_ids == eb[0].prompt_ids
    assert torch.equal(ea[0].pixel_values, eb[0].pixel_values)
    la = a.token_logprobs(ea)[0]["logprobs"]
    lb = b.token_logprobs(eb)[0]["logprobs"]
    assert torch.equal(la, lb)


def test_processor_expansion_matches_adapter_encoding(small_world):
    proc, model = _tiny(small_world)
    ad = LlavaAdapter(model, proc, "cpu")
    item = small_world.split_items("forget_10")[0]
    text = ad.prompt_text(item["question"], True)
    ref = proc(text=[text], images=[item["image"]], return_tensors="pt")
    enc = ad.encode([item])[0]
    assert ref["input_ids"][0].tolist() == enc.prompt_ids
    assert torch.allclose(ref["pixel_values"][0], enc.pixel_values)


def test_option_scoring_with_kv_cache_matches_full_sequences(small_world):
    proc, model = _tiny(small_world)
    ad = LlavaAdapter(model, proc, "cpu")
    items = [it for it in small_world.split_items("forget_15") if it["kind"] == "mcq"][:24]
    fast = ad.option_logprobs(items, batch_size=7)
    flat = [it for it in items for _ in it["options"]]
    answers = [o for it in items for o in it["options"]]
    slow = ad.token_logprobs(ad.encode(flat, answers=answers))
    for n in range(len(items)):
        for q in range(4):
            ref = slow[4 * n + q]["logprobs"][:-1]  # without eos
            assert torch.allclose(fast[n][q], ref, atol=1e-4)


def test_per_example_loss_weighs_every_example_alike(small_world):
    """forward_loss(per_example=True) is the mean of each example's own token-mean NLL, so a
    short answer counts as much as a long one; the default stays the token mean of the batch."""
    proc, model = _tiny(small_world)
    ad = LlavaAdapter(model, proc, "cpu")
    items = small_world.split_items("forget_10")
    short = min(items, key=lambda it: len(it["answer"]))
    long = max(items, key=lambda it: len(it["answer"]))
    enc = ad.encode([short, long])
    assert len(enc[0].target_ids) < len(enc[1].target_ids)
    model.eval()
    with torch.no_grad():
        each = [ad.forward_loss(ad.collate([e])) for e in enc]
        per_example = ad.forward_loss(ad.collate(enc), per_example=True)
        token = ad.forward_loss(ad.collate(enc))
    n = [len(e.target_ids) for e in enc]
    assert torch.allclose(per_example, (each[0] + each[1]) / 2, atol=1e-5)
    assert torch.allclose(token, (each[0] * n[0] + each[1] * n[1]) / sum(n), atol=1e-5)
    assert not torch.allclose(per_example, token, atol=1e-4)
