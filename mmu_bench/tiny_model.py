"""The default model: a real ``LlavaForConditionalGeneration`` at tiny size, built offline.

Vision: CLIP-style (64 hidden, 2 layers, 32 px images, 8 px patches -> 16 visual tokens).
Language: Llama-style (128 hidden, 2 layers). Tokenizer: byte-level BPE trained on the world's
corpus (never emits ``<unk>``: every byte is in the base alphabet) wrapped in
``PreTrainedTokenizerFast`` with an ``<image>`` special token. Processor: ``LlavaProcessor`` with
the PIL CLIP image processor and a LLaVA-1.5 chat template (``USER: <image>\\n... ASSISTANT:``).
Everything is saved with ``save_pretrained`` so ``AutoModelForImageTextToText`` /
``AutoProcessor`` load it like any hub checkpoint.

:func:`build_tiny` writes a tiny model of any built-in family (llava, llava_next, qwen2_vl,
qwen2_5_vl) the same way; the LLaVA-NeXT one shares the tiny LLaVA's towers and tokenizer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from .errors import unknown_name

IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", IMAGE_TOKEN]

# LLaVA-1.5's conversation format. The same template is used for training and evaluation.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %} "
    "{% else %}ASSISTANT:"
    "{% if message['content'] is string %} {{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %} {{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}</s>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


@dataclass(frozen=True)
class TinyLlavaConfig:
    """Size of the tiny LLaVA. Defaults are what ENVIRONMENT.md measured to memorise quickly."""

    vocab_size: int = 1000
    image_size: int = 32
    patch_size: int = 8
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4
    max_positions: int = 256

    def as_dict(self) -> dict:
        return asdict(self)


def build_tokenizer(corpus: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    # The corpus is repeated with the chat wrappers so "USER:"/"ASSISTANT:" become single tokens.
    return train_bpe_tokenizer(corpus, vocab_size, SPECIAL_TOKENS, ["USER: ", " ASSISTANT:", "\n"],
                               bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                               extra_special_tokens={"image_token": IMAGE_TOKEN})


def train_bpe_tokenizer(corpus: list[str], vocab_size: int, special_tokens: list[str], wrappers: list[str],
                        bos_token: str | None, eos_token: str, pad_token: str, unk_token: str | None = None,
                        extra_special_tokens: dict[str, str] | None = None,
                        model_max_length: int = 256) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``corpus`` (+ ``wrappers`` x 50), offline.

    ``bos_token`` (when given) is prepended to every encoded text, as LLaVA's Llama tokenizer does;
    Qwen's tokenizer adds nothing (``bos_token=None``).
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus) + list(wrappers) * 50, trainer)
    if bos_token is not None:
        bos = tok.token_to_id(bos_token)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos_token} $A", pair=f"{bos_token} $A $B", special_tokens=[(bos_token, bos)]
        )
    kw = {"bos_token": bos_token} if bos_token is not None else {}
    if unk_token is not None:
        kw["unk_token"] = unk_token
    if extra_special_tokens:
        kw["extra_special_tokens"] = extra_special_tokens
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=eos_token,
        pad_token=pad_token,
        model_max_length=model_max_length,
        **kw,
    )


def _processor_kwargs(tokenizer: PreTrainedTokenizerFast, cfg: TinyLlavaConfig) -> dict[str, Any]:
    """What the LLaVA and LLaVA-NeXT processors share (all but the image processor)."""
    return dict(
        tokenizer=tokenizer,
        patch_size=cfg.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
        chat_template=CHAT_TEMPLATE,
    )


def build_processor(tokenizer: PreTrainedTokenizerFast, cfg: TinyLlavaConfig) -> LlavaProcessor:
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": cfg.image_size},
        crop_size={"height": cfg.image_size, "width": cfg.image_size},
        do_center_crop=True,
    )
    return LlavaProcessor(image_processor=image_processor, **_processor_kwargs(tokenizer, cfg))


def _llava_config_kwargs(tokenizer: PreTrainedTokenizerFast, cfg: TinyLlavaConfig) -> dict[str, Any]:
    """What the LLaVA and LLaVA-NeXT model configs share: the towers and how they are joined."""
    vision = CLIPVisionConfig(
        hidden_size=cfg.vision_hidden,
        intermediate_size=cfg.vision_hidden * 4,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        projection_dim=cfg.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.text_hidden,
        intermediate_size=cfg.text_hidden * 4,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        num_key_value_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    return dict(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )


def _seeded_model(model_cls: type, config: Any, tokenizer: PreTrainedTokenizerFast, seed: int) -> Any:
    """``model_cls(config)`` with weights drawn from ``seed``, generating with the tokenizer's ids."""
    torch.manual_seed(seed)
    model = model_cls(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def build_model(tokenizer: PreTrainedTokenizerFast, cfg: TinyLlavaConfig, seed: int) -> LlavaForConditionalGeneration:
    n_img = (cfg.image_size // cfg.patch_size) ** 2
    config = LlavaConfig(image_seq_length=n_img, **_llava_config_kwargs(tokenizer, cfg))
    return _seeded_model(LlavaForConditionalGeneration, config, tokenizer, seed)


# ---------------------------------------------------------------- tiny models of every family
# Qwen2-VL's released chat template (default system prompt, vision markers around the image pad).
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                       "<|image_pad|>", "<|video_pad|>"]


def tiny_corpus() -> list[str]:
    """Default tokenizer corpus of the tiny models: the small built-in (synthetic) world's texts."""
    from .zoo import builtin_world  # the zoo imports this module

    return builtin_world(size=20, seed=0).corpus()


def build_tiny(family: str, folder: str | Path, seed: int = 0, corpus: list[str] | None = None,
               vocab_size: int = 1000) -> Path:
    """Build a tiny random-weight model of ``family`` and save it (safetensors + processor) to
    ``folder``, loadable with ``load_hf(f"hf:{folder}")`` exactly as a hub checkpoint.

    Sizes: vision 64 wide x 2 layers on 32 px images, LLM 128 wide x 2 layers,
    byte-level BPE tokenizer (``vocab_size``) trained on ``corpus`` (default: the small synthetic
    world's texts). Visual tokens per image: llava 16, llava_next 36 (base tile + one anyres tile
    with newlines), qwen 16 (32 px, 4 px patches, 2 x 2 merge).
    """
    if family not in _TINY_BUILDERS:
        raise unknown_name("model family", family, tuple(_TINY_BUILDERS))
    folder = Path(folder)
    corpus = tiny_corpus() if corpus is None else list(corpus)
    model, processor = _TINY_BUILDERS[family](family, corpus, vocab_size, seed)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _tiny_llava(family, corpus, vocab_size, seed):
    tok = build_tokenizer(corpus, vocab_size)
    cfg = TinyLlavaConfig(vocab_size=vocab_size)
    return build_model(tok, cfg, seed), build_processor(tok, cfg)


def _tiny_llava_next(family, corpus, vocab_size, seed):
    from transformers import (LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessorPil,
                              LlavaNextProcessor)

    cfg = TinyLlavaConfig(vocab_size=vocab_size)
    tok = build_tokenizer(corpus, vocab_size)
    s = cfg.image_size
    pinpoints = [[s, s], [s, 2 * s], [2 * s, s], [2 * s, 2 * s]]
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": s}, crop_size={"height": s, "width": s}, image_grid_pinpoints=pinpoints)
    processor = LlavaNextProcessor(image_processor=image_processor, **_processor_kwargs(tok, cfg))
    config = LlavaNextConfig(image_grid_pinpoints=pinpoints, tie_word_embeddings=False,
                             **_llava_config_kwargs(tok, cfg))
    return _seeded_model(LlavaNextForConditionalGeneration, config, tok, seed), processor


def _tiny_qwen(family, corpus, vocab_size, seed):
    import transformers
    from transformers import Qwen2VLImageProcessorPil

    from .families.qwen2_vl import qwen_processor_class  # the families package re-exports this module

    tok = train_bpe_tokenizer(
        corpus, vocab_size, QWEN_SPECIAL_TOKENS,
        ["<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n", "<|im_start|>user\n",
         "<|im_end|>\n<|im_start|>assistant\n", "\n"],
        bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=512)
    size, patch, merge = 32, 4, 2
    image_processor = Qwen2VLImageProcessorPil(patch_size=patch, merge_size=merge, temporal_patch_size=2,
                                               min_pixels=size * size, max_pixels=size * size)
    base = "Qwen2VLProcessor" if family == "qwen2_vl" else "Qwen2_5_VLProcessor"
    processor = qwen_processor_class(base)(image_processor=image_processor, tokenizer=tok,
                                           chat_template=QWEN_CHAT_TEMPLATE)
    ids = {name: tok.convert_tokens_to_ids(t) for name, t in
           (("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
            ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    text = dict(vocab_size=len(tok), hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
                bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if family == "qwen2_vl":
        vision = dict(depth=2, embed_dim=64, hidden_size=128, num_heads=4, mlp_ratio=4, patch_size=patch,
                      spatial_merge_size=merge, temporal_patch_size=2)
        config_cls, model_cls = transformers.Qwen2VLConfig, transformers.Qwen2VLForConditionalGeneration
    else:
        vision = dict(depth=2, hidden_size=64, out_hidden_size=128, intermediate_size=128, num_heads=4,
                      patch_size=patch, spatial_merge_size=merge, temporal_patch_size=2,
                      window_size=2 * patch * merge, fullatt_block_indexes=[1])
        config_cls, model_cls = transformers.Qwen2_5_VLConfig, transformers.Qwen2_5_VLForConditionalGeneration
    config = config_cls(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)
    return _seeded_model(model_cls, config, tok, seed), processor


_TINY_BUILDERS = {"llava": _tiny_llava, "llava_next": _tiny_llava_next,
                  "qwen2_vl": _tiny_qwen, "qwen2_5_vl": _tiny_qwen}
