"""Model families: one adapter per ``config.model_type``, ``hf:`` loading and tiny test models.

Every family's adapter subclasses :class:`~mmu_bench.adapter.LlavaAdapter` and overrides only
what differs (docs/models.md has the table):

- ``llava`` (LLaVA-1.5): the base adapter itself.
- ``llava_next`` (LLaVA-NeXT / 1.6): pixel_values carry a patch dimension (anyres tiles) and the
  model needs ``image_sizes``; every image is resized to one fixed square first, so each image
  gives the same tiles and the same number of visual tokens; ``image_newline`` counts as projector.
- ``qwen2_vl`` / ``qwen2_5_vl``: pixel_values are flattened patches (one row per 14 px patch x 2
  frames) plus ``image_grid_thw`` and ``mm_token_type_ids``; images are resized to a fixed square
  (a multiple of patch x merge) so every image gives the same grid. The model computes its 3-D
  (mrope) positions itself, so mcq options are scored as full sequences rather than with the
  KV-cached prompt and explicit 1-D positions of the base adapter.

``adapter_for(model, processor)`` picks the adapter by ``model.config.model_type``; plugins add
or replace families through the ``mmu_bench_models`` hook with items that have ``model_types``
and ``adapter``. ``load_hf("hf:<hub id or folder>")`` loads any supported model and wraps it;
``build_tiny(family, folder)`` writes a tiny random model of a family that loads the same way.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .adapter import LlavaAdapter, pick_device
from .errors import MMUError, unknown_name


class ModuleGroup(nn.Module):
    """A view over existing sub-modules (and loose parameters) of a model, as one module.

    Lets a family's ``vision_modules`` / ``projector_modules`` be "these children but not that
    one" without copying anything: the members stay owned by the model.
    """

    def __init__(self, modules: dict[str, nn.Module], parameters: dict[str, nn.Parameter] | None = None):
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)
        for name, param in (parameters or {}).items():
            self.register_parameter(name, param)


def _resize_square(images: Sequence[Any], size: int) -> list[Any]:
    from PIL import Image

    out = []
    for im in images:
        if im.mode != "RGB":
            im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BICUBIC)
        out.append(im)
    return out


# ---------------------------------------------------------------- LLaVA-NeXT
class LlavaNextAdapter(LlavaAdapter):
    """LLaVA-NeXT (``LlavaNextForConditionalGeneration``): anyres tiles, ``image_sizes``.

    ``image_size``: side of the square every image is resized to before the processor (default:
    the processor's crop size, 336 for the released checkpoints), so the tiling and the number of
    visual tokens are the same for every image.
    """

    family = "llava_next"

    def __init__(self, model: nn.Module, processor: Any, device: str | torch.device | None = None,
                 image_size: int | None = None):
        self.image_size = int(image_size or _llava_next_size(processor.image_processor))
        super().__init__(model, processor, device)

    @property
    def projector_modules(self) -> nn.Module:
        inner = self.model.model
        return ModuleGroup({"multi_modal_projector": inner.multi_modal_projector},
                           {"image_newline": inner.image_newline})

    def _probe_size(self) -> int:
        return self.image_size

    def pixel_values(self, images: Sequence[Any]) -> list[torch.Tensor]:
        return super().pixel_values(_resize_square(images, self.image_size))

    def _image_sizes(self, n: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.tensor([[self.image_size, self.image_size]] * n, dtype=torch.long, device=device)

    def vision_inputs(self, pixel_values: torch.Tensor, input_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"pixel_values": pixel_values, "image_sizes": self._image_sizes(len(pixel_values), pixel_values.device)}

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model.model.get_image_features(
            pixel_values=pixel_values, image_sizes=self._image_sizes(len(pixel_values), pixel_values.device)).pooler_output
        return torch.stack(list(out)) if isinstance(out, (list, tuple)) else out


def _llava_next_size(ip: Any) -> int:
    crop = getattr(ip, "crop_size", None)
    if crop:
        return int(crop["height"])
    size = getattr(ip, "size", None) or {}
    return int(size.get("shortest_edge") or size.get("height") or 336)


# ---------------------------------------------------------------- Qwen2-VL / Qwen2.5-VL
class Qwen2VLAdapter(LlavaAdapter):
    """Qwen2-VL (``Qwen2VLForConditionalGeneration``): flattened patches + ``image_grid_thw``.

    ``image_size``: side of the square every image is resized to (a multiple of patch x merge,
    28 for the released checkpoints). Default: 448 (16 x 16 = 256 visual tokens) or less when the
    processor's ``max_pixels`` is smaller. Vision = the ViT without its merger; projector = the
    merger (``visual.merger``, the patch-merging MLP into the LLM's width).
    """

    family = "qwen2_vl"
    answer_prefix = ""  # the generation prompt ends with "<|im_start|>assistant\n"
    kv_option_scoring = False  # mrope positions are the model's own: score full sequences
    default_image_size = 448

    def __init__(self, model: nn.Module, processor: Any, device: str | torch.device | None = None,
                 image_size: int | None = None):
        ip = processor.image_processor
        self.factor = int(ip.patch_size) * int(ip.merge_size)
        self.image_size = int(image_size or _qwen_size(ip, self.default_image_size))
        if self.image_size % self.factor:
            raise MMUError(f"{self.family}: image_size {self.image_size} is not a multiple of patch x merge "
                           f"= {self.factor}")
        super().__init__(model, processor, device)

    @property
    def vision_modules(self) -> nn.Module:
        visual = self.model.model.visual
        return ModuleGroup({n: m for n, m in visual.named_children() if n != "merger"},
                           dict(visual.named_parameters(recurse=False)))

    @property
    def projector_modules(self) -> nn.Module:
        return self.model.model.visual.merger

    def _probe_size(self) -> int:
        return self.image_size

    def _size_kwargs(self) -> dict[str, Any]:
        # min = max = the square's area: a square image keeps exactly this size (whatever the
        # processor's own min_pixels / max_pixels, which stay untouched)
        area = self.image_size * self.image_size
        return {"size": {"shortest_edge": area, "longest_edge": area}}

    def _count_image_tokens(self) -> int:
        from PIL import Image

        ip = self.processor.image_processor
        blank = Image.new("RGB", (self.image_size, self.image_size))
        probe = ip(images=[blank], return_tensors="pt", **self._size_kwargs())
        self.grid_thw = probe["image_grid_thw"][0].clone()
        self.patches_per_image = int(self.grid_thw.prod())
        text = self.processor(text=[self.image_token], images=[blank], return_tensors="pt", **self._size_kwargs())
        n = int((text["input_ids"] == self.image_token_id).sum())
        if n != self.patches_per_image // int(ip.merge_size) ** 2:
            raise MMUError(f"{self.family}: the processor expands one image into {n} tokens; expected "
                           f"{self.patches_per_image // int(ip.merge_size) ** 2}")
        return n

    def pixel_values(self, images: Sequence[Any]) -> list[torch.Tensor]:
        """Per image: its flattened patches, (patches, channels x temporal x patch x patch)."""
        out: list[torch.Tensor] = []
        images = list(images)
        for i in range(0, len(images), 64):
            chunk = _resize_square(images[i:i + 64], self.image_size)
            px = self.processor.image_processor(images=chunk, return_tensors="pt", **self._size_kwargs())["pixel_values"]
            out.extend(px.split(self.patches_per_image))
        return out

    def vision_inputs(self, pixel_values: torch.Tensor, input_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if pixel_values.dim() == 2:  # already flat: the patches of consecutive images
            pixel_values = pixel_values.reshape(-1, self.patches_per_image, pixel_values.shape[-1])
        n = pixel_values.shape[0]
        out = {"pixel_values": pixel_values.reshape(-1, pixel_values.shape[-1]),
               "image_grid_thw": self.grid_thw.to(pixel_values.device).repeat(n, 1)}
        if input_ids is not None:
            out["mm_token_type_ids"] = (input_ids == self.image_token_id).long()
        return out

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        kw = self.vision_inputs(pixel_values)
        out = self.model.model.get_image_features(pixel_values=kw["pixel_values"],
                                                  image_grid_thw=kw["image_grid_thw"]).pooler_output
        return torch.stack(list(out)) if isinstance(out, (list, tuple)) else out


class Qwen2_5_VLAdapter(Qwen2VLAdapter):
    """Qwen2.5-VL: as Qwen2-VL (windowed ViT with an RMSNorm + SwiGLU, same interface)."""

    family = "qwen2_5_vl"


def _qwen_size(ip: Any, default: int) -> int:
    factor = int(ip.patch_size) * int(ip.merge_size)
    size = getattr(ip, "size", None) or {}
    max_pixels = size.get("longest_edge") or getattr(ip, "max_pixels", None) or default * default
    min_pixels = size.get("shortest_edge") or getattr(ip, "min_pixels", None) or factor * factor
    side = min(default, int(math.isqrt(int(max_pixels))) // factor * factor)
    while side * side < min_pixels:
        side += factor
    return max(side, factor)


# ---------------------------------------------------------------- registry
ADAPTERS: dict[str, type] = {
    "llava": LlavaAdapter,
    "llava_next": LlavaNextAdapter,
    "qwen2_vl": Qwen2VLAdapter,
    "qwen2_5_vl": Qwen2_5_VLAdapter,
}


def registered_adapters() -> dict[str, type]:
    """model_type -> adapter class: the built-ins, then every ``mmu_bench_models`` item that has
    ``model_types`` and ``adapter`` (a plugin's entry replaces a built-in for its model types)."""
    from .plugins import get_registry

    out = dict(ADAPTERS)
    for item in get_registry().registry("models").values():
        types = getattr(item, "model_types", None)
        adapter = getattr(item, "adapter", None)
        if not types or adapter is None:
            continue
        for t in ([types] if isinstance(types, str) else types):
            out[t] = adapter
    return out


def adapter_for(model: nn.Module, processor: Any, device: str | torch.device | None = None, **kwargs: Any):
    """The adapter of ``model``'s family (by ``config.model_type``), wrapping model and processor.

    ``kwargs`` go to the adapter (e.g. ``image_size`` for llava_next / qwen families).
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    adapters = registered_adapters()
    if model_type not in adapters:
        raise unknown_name("model family (config.model_type)", str(model_type), list(adapters))
    return _construct(adapters[model_type], model_type, model, processor, device, kwargs)


def _check_kwargs(cls: type, model_type: str, kwargs: dict[str, Any]) -> None:
    if kwargs:
        import inspect

        params = inspect.signature(cls.__init__).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        bad = [k for k in kwargs if k not in params and not takes_any]
        if bad:
            raise MMUError(f"the {model_type} adapter takes no {', '.join(bad)}")


def _construct(cls: type, model_type: str, model, processor, device, kwargs: dict[str, Any]):
    _check_kwargs(cls, model_type, kwargs)
    return cls(model, processor, device, **kwargs)


# ---------------------------------------------------------------- hf: loading
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype | str:
    """None: bf16 on CUDA, float32 elsewhere; "auto": the checkpoint's own dtype; or a name."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).lower().removeprefix("torch.")
    name = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16", "float": "float32"}.get(name, name)
    if name == "auto":
        return "auto"
    if name not in DTYPES:
        raise MMUError(f"dtype {dtype!r} unknown; expected auto, float32, bfloat16 or float16")
    return DTYPES[name]


def parse_spec(spec: str) -> str:
    """The hub id or folder of an ``hf:<hub id or folder>`` spec; MMUError for anything else."""
    if not isinstance(spec, str) or not spec.startswith("hf:"):
        raise MMUError(f"model spec {spec!r}: expected 'hf:<hub id or local folder>' (e.g. hf:llava-hf/llava-1.5-7b-hf "
                       f"or hf:/path/to/save_pretrained/folder)")
    ref = spec[3:].strip()
    if not ref:
        raise MMUError("model spec 'hf:' names no hub id or folder; expected 'hf:<hub id or local folder>'")
    return ref


def _looks_like_path(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~", ".\\")) or ref.count("/") > 1 or os.sep != "/" and os.sep in ref


def _check_source(ref: str) -> str:
    path = Path(ref).expanduser()
    if path.exists():
        if not path.is_dir():
            raise MMUError(f"model folder {path} is a file; expected a save_pretrained folder")
        if not (path / "config.json").is_file():
            raise MMUError(f"model folder {path} has no config.json; expected a save_pretrained folder "
                           f"(model + processor)")
        return str(path)
    if _looks_like_path(ref):
        raise MMUError(f"model folder {path} does not exist")
    return ref  # a hub id


def load_processor(ref: str, model_type: str | None = None, trust_remote_code: bool = False) -> Any:
    """``AutoProcessor``, or a processor built by hand where the auto one needs torchvision (Qwen)."""
    from transformers import AutoProcessor

    error: Exception | None = None
    try:
        proc = AutoProcessor.from_pretrained(ref, trust_remote_code=trust_remote_code)
        if hasattr(proc, "image_processor") and hasattr(proc, "tokenizer"):
            return proc
    except Exception as e:  # noqa: BLE001 -- e.g. a video processor that needs torchvision
        error = e
    builder = _HAND_PROCESSORS.get(model_type or "")
    if builder is None:
        why = f": {type(error).__name__}: {error}" if error else " (it has no image processor)"
        raise MMUError(f"could not load the processor of {ref!r}{why}")
    return builder().from_pretrained(ref, trust_remote_code=trust_remote_code)


def load_hf(spec: str, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
            trust_remote_code: bool = False, attn_implementation: str | None = None,
            gradient_checkpointing: bool = False, **adapter_kwargs: Any) -> LlavaAdapter:
    """Load ``hf:<hub id or local folder>`` with ``AutoModelForImageTextToText`` + its processor and
    wrap it in its family's adapter.

    Args:
        device: "cuda", "cpu", ... (default: CUDA when present).
        dtype: "auto" (the checkpoint's), "float32", "bfloat16", "float16" (default: bfloat16 on
            CUDA, float32 on CPU).
        trust_remote_code: passed to transformers (default False: only built-in architectures).
        attn_implementation: e.g. "sdpa", "eager", "flash_attention_2" (default: "sdpa" on CUDA,
            transformers' choice elsewhere).
        gradient_checkpointing: recompute activations in the backward pass (non-reentrant).
        adapter_kwargs: passed to the adapter (``image_size`` for llava_next / qwen families).
    """
    from transformers import AutoConfig, AutoModelForImageTextToText

    ref = _check_source(parse_spec(spec))
    dev = pick_device(device) if not isinstance(device, torch.device) else device
    torch_dtype = resolve_dtype(dtype, dev)
    if attn_implementation is None and dev.type == "cuda":
        attn_implementation = "sdpa"
    try:
        config = AutoConfig.from_pretrained(ref, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise MMUError(f"could not load the config of {ref!r} ({'folder' if Path(ref).exists() else 'hub id; offline?'}): "
                       f"{' '.join(str(e).split())[:300]}") from None
    adapters = registered_adapters()
    if config.model_type not in adapters:
        raise unknown_name("model family (config.model_type)", str(config.model_type), list(adapters))
    _check_kwargs(adapters[config.model_type], config.model_type, adapter_kwargs)  # before a long load
    kw: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
    if attn_implementation is not None:
        kw["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForImageTextToText.from_pretrained(ref, **kw)
    except (OSError, ValueError) as e:
        raise MMUError(f"could not load model {ref!r}: {' '.join(str(e).split())[:300]}") from None
    processor = load_processor(ref, config.model_type, trust_remote_code)
    tok = processor.tokenizer
    if tok.pad_token_id is None:  # e.g. some Mistral / Llama tokenizers: pad with eos (masked anyway)
        tok.pad_token = tok.eos_token
    if gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    model.eval()
    return _construct(adapters[config.model_type], config.model_type, model, processor, dev, adapter_kwargs)


# ---------------------------------------------------------------- Qwen processors without torchvision
def _qwen_processor_class(base_name: str) -> type:
    """A subclass of transformers' Qwen processor without the (torchvision) video processor.

    It saves itself under the original class name, so the folder is what a hub checkpoint holds
    and an environment with torchvision loads it with plain ``AutoProcessor``.
    """
    import transformers
    from transformers.processing_utils import ProcessorMixin

    base = getattr(transformers, base_name)

    class ImageOnlyProcessor(base):  # type: ignore[misc, valid-type]
        saved_as = base_name

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
            self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

        def save_pretrained(self, save_directory, *args, **kwargs):
            files = super().save_pretrained(save_directory, *args, **kwargs)
            for name in ("processor_config.json", "tokenizer_config.json", "preprocessor_config.json"):
                path = Path(save_directory) / name
                if path.is_file():
                    data = json.loads(path.read_text())
                    if data.get("processor_class") == type(self).__name__:
                        data["processor_class"] = self.saved_as
                        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
            return files

    ImageOnlyProcessor.__name__ = ImageOnlyProcessor.__qualname__ = f"ImageOnly{base_name}"
    return ImageOnlyProcessor


_PROCESSOR_CLASSES: dict[str, type] = {}


def qwen_processor_class(base_name: str = "Qwen2VLProcessor") -> type:
    if base_name not in _PROCESSOR_CLASSES:
        _PROCESSOR_CLASSES[base_name] = _qwen_processor_class(base_name)
    return _PROCESSOR_CLASSES[base_name]


_HAND_PROCESSORS = {
    "qwen2_vl": lambda: qwen_processor_class("Qwen2VLProcessor"),
    "qwen2_5_vl": lambda: qwen_processor_class("Qwen2_5_VLProcessor"),
}


# ---------------------------------------------------------------- tiny models
FAMILIES = tuple(ADAPTERS)

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
    from .zoo import builtin_world

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
    if family not in FAMILIES:
        raise unknown_name("model family", family, FAMILIES)
    folder = Path(folder)
    corpus = tiny_corpus() if corpus is None else list(corpus)
    builders = {"llava": _tiny_llava, "llava_next": _tiny_llava_next,
                "qwen2_vl": _tiny_qwen, "qwen2_5_vl": _tiny_qwen}
    model, processor = builders[family](family, corpus, vocab_size, seed)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _tiny_llava(family, corpus, vocab_size, seed):
    from .tiny_model import TinyLlavaConfig, build_model, build_processor, build_tokenizer

    tok = build_tokenizer(corpus, vocab_size)
    cfg = TinyLlavaConfig(vocab_size=vocab_size)
    return build_model(tok, cfg, seed), build_processor(tok, cfg)


def _tiny_llava_next(family, corpus, vocab_size, seed):
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration,
                              LlavaNextImageProcessorPil, LlavaNextProcessor)

    from .tiny_model import CHAT_TEMPLATE, IMAGE_TOKEN, TinyLlavaConfig, build_tokenizer

    cfg = TinyLlavaConfig(vocab_size=vocab_size)
    tok = build_tokenizer(corpus, vocab_size)
    s = cfg.image_size
    pinpoints = [[s, s], [s, 2 * s], [2 * s, s], [2 * s, 2 * s]]
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": s}, crop_size={"height": s, "width": s}, image_grid_pinpoints=pinpoints)
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tok, patch_size=cfg.patch_size,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   chat_template=CHAT_TEMPLATE)
    vision = CLIPVisionConfig(hidden_size=cfg.vision_hidden, intermediate_size=cfg.vision_hidden * 4,
                              num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.vision_heads,
                              image_size=s, patch_size=cfg.patch_size, projection_dim=cfg.vision_hidden)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=cfg.text_hidden, intermediate_size=cfg.text_hidden * 4,
                       num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
                       num_key_value_heads=cfg.text_heads, max_position_embeddings=cfg.max_positions,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                       tie_word_embeddings=False)
    config = LlavaNextConfig(vision_config=vision, text_config=text,
                             image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN),
                             image_grid_pinpoints=pinpoints, vision_feature_layer=-1,
                             vision_feature_select_strategy="default", projector_hidden_act="gelu",
                             tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(config)
    _generation_ids(model, tok)
    return model, processor


def _tiny_qwen(family, corpus, vocab_size, seed):
    import transformers
    from transformers import Qwen2VLImageProcessorPil

    from .tiny_model import train_bpe_tokenizer

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
    torch.manual_seed(seed)
    model = model_cls(config)
    _generation_ids(model, tok)
    return model, processor


def _generation_ids(model: nn.Module, tok: Any) -> None:
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
