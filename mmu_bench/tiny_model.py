"""The default model: a real ``LlavaForConditionalGeneration`` at tiny size, built offline.

Vision: CLIP-style (64 hidden, 2 layers, 32 px images, 8 px patches -> 16 visual tokens).
Language: Llama-style (128 hidden, 2 layers). Tokenizer: byte-level BPE trained on the world's
corpus (never emits ``<unk>``: every byte is in the base alphabet) wrapped in
``PreTrainedTokenizerFast`` with an ``<image>`` special token. Processor: ``LlavaProcessor`` with
the PIL CLIP image processor and a LLaVA-1.5 chat template (``USER: <image>\\n... ASSISTANT:``).
Everything is saved with ``save_pretrained`` so ``AutoModelForImageTextToText`` /
``AutoProcessor`` load it like any hub checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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


def build_processor(tokenizer: PreTrainedTokenizerFast, cfg: TinyLlavaConfig) -> LlavaProcessor:
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": cfg.image_size},
        crop_size={"height": cfg.image_size, "width": cfg.image_size},
        do_center_crop=True,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=cfg.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
        chat_template=CHAT_TEMPLATE,
    )


def build_model(tokenizer: PreTrainedTokenizerFast, cfg: TinyLlavaConfig, seed: int) -> LlavaForConditionalGeneration:
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
    n_img = (cfg.image_size // cfg.patch_size) ** 2
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=n_img,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model
