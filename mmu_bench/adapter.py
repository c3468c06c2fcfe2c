"""Model adapter: one object that turns benchmark items into model inputs and scores.

Items are plain dicts with the fields of ARCHITECTURE.md section 4 (``question``, ``answer``,
``image`` (PIL or None), ``options``, ``kind``, ``modality``...). Every text goes through the
processor's chat template, so training and evaluation see the same prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from .errors import MMUError


@dataclass
class Encoded:
    """One tokenised example: prompt ids, target ids (answer + eos) and an image slot."""

    prompt_ids: list[int]
    target_ids: list[int]
    pixel_values: torch.Tensor | None  # (3, H, W) or None for text-only items
    #: images stacked in ``pixel_values`` along a new first dim (official few-shot prompts), else 0
    n_images: int = 0
    #: training only: labels of the prompt's own tokens (-100 where unlabeled; the official few-shot
    #: prefix's answers with ``ZooRecipe.label_shots``), else the prompt is unlabeled
    prompt_labels: list[int] | None = None


def pick_device(device: str | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class LlavaAdapter:
    """Adapter for LLaVA-style models (``LlavaForConditionalGeneration`` and friends).

    The base of every model family (mmu_bench/families/): a family overrides only what differs
    (module map, pixel layout and extra vision inputs, image-token count, option scoring).
    """

    family = "llava"
    #: text between the prompt (which ends with the chat template's generation prompt) and an answer
    answer_prefix = " "
    #: score mcq options with the prompt's KV cache and explicit 1-D position ids (else full sequences)
    kv_option_scoring = True

    def __init__(self, model: nn.Module, processor: Any, device: str | torch.device | None = None):
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.device = pick_device(device) if not isinstance(device, torch.device) else device
        self.model.to(self.device)
        self.image_token = getattr(processor, "image_token", "<image>")
        self.n_image_tokens = self._count_image_tokens()
        self._prompt_cache: dict[tuple[str, bool], list[int]] = {}

    # ------------------------------------------------------------ module map
    @property
    def vision_modules(self) -> nn.Module:
        return self.model.model.vision_tower

    @property
    def projector_modules(self) -> nn.Module:
        return self.model.model.multi_modal_projector

    @property
    def language_modules(self) -> list[nn.Module]:
        return [self.model.model.language_model, self.model.lm_head]

    # ------------------------------------------------------------ encoding
    def _count_image_tokens(self) -> int:
        from PIL import Image

        size = self._probe_size()
        probe = self.processor(text=[self.image_token], images=[Image.new("RGB", (size, size))],
                               return_tensors="pt")
        return int((probe["input_ids"] == self.image_token_id).sum())

    def _probe_size(self) -> int:
        """Side of the square image used to count the visual tokens of one image."""
        cfg = self.processor.image_processor
        return cfg.crop_size["height"] if getattr(cfg, "crop_size", None) else 32

    @property
    def image_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(self.image_token)

    def prompt_text(self, question: str, has_image: bool) -> str:
        content = ([{"type": "image"}] if has_image else []) + [{"type": "text", "text": question}]
        return self.processor.apply_chat_template([{"role": "user", "content": content}],
                                                  add_generation_prompt=True, tokenize=False)

    def prompt_ids(self, question: str, has_image: bool) -> list[int]:
        key = (question, has_image)
        if key not in self._prompt_cache:
            text = self.prompt_text(question, has_image)
            # The processor expands one <image> into n visual tokens; do the same without
            # re-processing the image for every question.
            text = text.replace(self.image_token, self.image_token * self.n_image_tokens)
            self._prompt_cache[key] = self.tokenizer(text)["input_ids"]
        return list(self._prompt_cache[key])

    def answer_ids(self, answer: str) -> list[int]:
        return self.tokenizer(self.answer_prefix + answer, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]

    def pixel_values(self, images: Sequence[Any]) -> list[torch.Tensor]:
        """One pixel tensor per PIL image (same shape for every image of a model)."""
        out: list[torch.Tensor] = []
        for i in range(0, len(images), 256):
            chunk = list(images[i:i + 256])
            px = self.processor.image_processor(images=chunk, return_tensors="pt")["pixel_values"]
            out.extend(px)
        return out

    def encode(self, items: Sequence[dict], answers: Sequence[str] | None = None) -> list[Encoded]:
        """Tokenise ``items`` (with their gold answers, or ``answers`` when given)."""
        with_image = [i for i, it in enumerate(items) if it.get("image") is not None]
        pixels: dict[int, torch.Tensor] = {}
        if with_image:
            # Items from the same rendering share one PIL object: process each image once.
            uniq: dict[int, int] = {}
            imgs = []
            for i in with_image:
                key = id(items[i]["image"])
                if key not in uniq:
                    uniq[key] = len(imgs)
                    imgs.append(items[i]["image"])
            px = self.pixel_values(imgs)
            for i in with_image:
                pixels[i] = px[uniq[id(items[i]["image"])]]
        out = []
        for i, it in enumerate(items):
            ans = it["answer"] if answers is None else answers[i]
            out.append(Encoded(self.prompt_ids(it["question"], i in pixels), self.answer_ids(ans),
                               pixels.get(i)))
        return out

    def collate(self, batch: Sequence[Encoded], with_targets: bool = True, left_pad: bool = False) -> dict[str, torch.Tensor]:
        """Pad a batch. Labels are -100 everywhere but the target tokens."""
        pad = self.tokenizer.pad_token_id
        seqs, labels = [], []
        for e in batch:
            ids = e.prompt_ids + (e.target_ids if with_targets else [])
            lab = (e.prompt_labels or [-100] * len(e.prompt_ids)) + (e.target_ids if with_targets else [])
            seqs.append(ids)
            labels.append(lab)
        n = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), n), pad, dtype=torch.long)
        attn = torch.zeros((len(seqs), n), dtype=torch.long)
        lab_t = torch.full((len(seqs), n), -100, dtype=torch.long)
        for r, (s, l) in enumerate(zip(seqs, labels)):
            sl = slice(n - len(s), n) if left_pad else slice(0, len(s))
            input_ids[r, sl] = torch.tensor(s)
            attn[r, sl] = 1
            lab_t[r, sl] = torch.tensor(l)
        out = {"input_ids": input_ids, "attention_mask": attn}
        if with_targets:
            out["labels"] = lab_t
        px = [e.pixel_values for e in batch if e.pixel_values is not None]
        if px:
            # Mixed batches are fine: LLaVA scatters image features onto image-token positions in
            # order, so only rows that have an image contribute pixel_values.
            # A multi-image example (official few-shot prompts, ``n_images`` > 0) holds its images
            # stacked along a first dim: they fill its image tokens in order. A single image's own
            # shape varies by family (LLaVA-NeXT: patches x 3 x H x W), so only the flag decides.
            multi = [e.n_images > 0 for e in batch if e.pixel_values is not None]
            if any(multi):
                out.update(self.vision_inputs(torch.cat([p if m else p.unsqueeze(0) for p, m in zip(px, multi)]),
                                              input_ids))
            else:
                out.update(self.vision_inputs(torch.stack(px), input_ids))
        return {k: v.to(self.device) for k, v in out.items()}

    def vision_inputs(self, pixel_values: torch.Tensor, input_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Forward kwargs for stacked per-image pixel tensors (``torch.stack(self.pixel_values(imgs))``),
        one image per row of ``input_ids`` that holds image tokens. Families add what their model
        needs besides ``pixel_values`` (image sizes, patch grids, token types)."""
        return {"pixel_values": pixel_values}

    # ------------------------------------------------------------ scoring
    def forward_loss(self, batch: dict[str, torch.Tensor], per_example: bool = False) -> torch.Tensor:
        """Token-mean NLL over the target tokens of the batch; with ``per_example``, the mean of
        each example's token-mean NLL (a one-letter answer weighs as much as a sentence)."""
        labels = batch["labels"]
        out = self.model(**{k: v for k, v in batch.items() if k != "labels"})
        logits = out.logits[:, :-1].float()
        tgt = labels[:, 1:]
        if not per_example:
            return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt.reshape(-1),
                                               ignore_index=-100)
        nll = nn.functional.cross_entropy(logits.transpose(1, 2), tgt, ignore_index=-100, reduction="none")
        mask = (tgt != -100).float()
        return ((nll * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()

    def token_logprobs(self, encoded: Sequence[Encoded], batch_size: int = 64,
                       with_distribution: bool = False) -> list[dict[str, torch.Tensor]]:
        """Per-token log-probs of each example's target tokens (eos included), on CPU.

        With ``with_distribution``, also the mean and std of log p under the model's own
        next-token distribution at each target position (Min-K%++).
        """
        results: list[dict[str, torch.Tensor]] = []
        self.model.eval()
        with torch.no_grad():
            for i in range(0, len(encoded), batch_size):
                chunk = encoded[i:i + batch_size]
                batch = self.collate(chunk)
                labels = batch.pop("labels")
                logits = self.model(**batch).logits[:, :-1].float()
                logp = torch.log_softmax(logits, dim=-1)
                tgt = labels[:, 1:]
                mask = tgt != -100
                tok = logp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
                if with_distribution:
                    p = logp.exp()
                    mu = (p * logp).sum(-1)
                    var = (p * logp.pow(2)).sum(-1) - mu.pow(2)
                for r in range(len(chunk)):
                    rec = {"logprobs": tok[r][mask[r]].cpu()}
                    if with_distribution:
                        rec["mu"] = mu[r][mask[r]].cpu()
                        rec["sigma"] = var[r][mask[r]].clamp(min=1e-6).sqrt().cpu()
                    results.append(rec)
        return results

    def option_logprobs(self, items: Sequence[dict], batch_size: int = 64) -> list[list[torch.Tensor]]:
        """Per-token log-probs of every option text of every item (no eos), on CPU.

        The prompt (image included) runs once per item; its KV cache is repeated for the options,
        which are scored in one more pass. Same numbers as scoring prompt + option as full
        sequences (up to float error), at a fraction of the cost when prompts are long.
        """
        if not self.kv_option_scoring:
            return self.full_option_logprobs(items, batch_size)
        results: list[list[torch.Tensor]] = []
        self.model.eval()
        with torch.no_grad():
            for i in range(0, len(items), batch_size):
                chunk = list(items[i:i + batch_size])
                k = len(chunk[0]["options"])
                if any(len(it["options"]) != k for it in chunk):
                    raise MMUError("items scored together must have the same number of options")
                enc = self.encode(chunk, answers=[""] * len(chunk))
                batch = self.collate(enc, with_targets=False, left_pad=True)
                attn = batch["attention_mask"]
                pos = (attn.cumsum(-1) - 1).clamp(min=0)
                # only the last prompt position's logits are used: the LM head skips the rest
                out = self.model(**batch, position_ids=pos, use_cache=True, logits_to_keep=1)
                first = torch.log_softmax(out.logits[:, -1].float(), dim=-1).repeat_interleave(k, 0)
                cache = out.cache
                cache.batch_repeat_interleave(k)
                opts = [self.tokenizer(self.answer_prefix + o, add_special_tokens=False)["input_ids"]
                        for it in chunk for o in it["options"]]
                n = max(len(o) for o in opts)
                ids = torch.full((len(opts), n), self.tokenizer.pad_token_id, dtype=torch.long)
                oattn = torch.zeros((len(opts), n), dtype=torch.long)
                for r, o in enumerate(opts):
                    ids[r, :len(o)] = torch.tensor(o)
                    oattn[r, :len(o)] = 1
                ids, oattn = ids.to(self.device), oattn.to(self.device)
                full_attn = torch.cat([attn.repeat_interleave(k, 0), oattn], dim=1)
                opos = attn.sum(-1, keepdim=True).repeat_interleave(k, 0) + torch.arange(n, device=self.device)
                logits = self.model(input_ids=ids, attention_mask=full_attn, position_ids=opos,
                                    cache=cache, use_cache=False).logits.float()
                logp = torch.log_softmax(logits, dim=-1)
                # token 0 is predicted by the prompt's last position, token j by option position j-1
                pred = torch.cat([first.unsqueeze(1), logp[:, :-1]], dim=1)
                tok = pred.gather(-1, ids.unsqueeze(-1)).squeeze(-1).cpu()
                for j in range(len(chunk)):
                    results.append([tok[j * k + q][: len(opts[j * k + q])] for q in range(k)])
        return results

    def full_option_logprobs(self, items: Sequence[dict], batch_size: int = 64) -> list[list[torch.Tensor]]:
        """``option_logprobs`` by scoring every prompt + option as one right-padded sequence (the
        reference computation; the fallback of families whose positions the model computes itself)."""
        flat = [it for it in items for _ in it["options"]]
        answers = [o for it in items for o in it["options"]]
        scored = self.token_logprobs(self.encode(flat, answers=answers), batch_size=batch_size)
        out, n = [], 0
        for it in items:
            k = len(it["options"])
            out.append([r["logprobs"][:-1] for r in scored[n:n + k]])  # without eos
            n += k
        return out

    def generate(self, items: Sequence[dict], max_new_tokens: int = 50, batch_size: int = 64) -> list[str]:
        """Greedy decoding of answers (text after the prompt, special tokens stripped)."""
        encoded = self.encode(items)
        texts: list[str] = []
        self.model.eval()
        with torch.no_grad():
            for i in range(0, len(encoded), batch_size):
                chunk = encoded[i:i + batch_size]
                batch = self.collate(chunk, with_targets=False, left_pad=True)
                out = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id,
                                          eos_token_id=self.tokenizer.eos_token_id)
                new = out[:, batch["input_ids"].shape[1]:]
                texts += [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        return texts

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projector output per visual token, (batch, tokens, dim), with gradients."""
        out = self.model.model.get_image_features(pixel_values=pixel_values).pooler_output
        return torch.stack(list(out)) if isinstance(out, (list, tuple)) else out

    def visual_features(self, images: Sequence[Any]) -> torch.Tensor:
        """``image_features`` of PIL images."""
        return self.image_features(torch.stack(self.pixel_values(images)).to(self.device))
