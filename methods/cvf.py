"""CVF + null space: contrastive visual forgetting with null-space-constrained updates.

After "Null Space Constrained Contrastive Visual Forgetting for MLLM Unlearning" (arXiv
2605.05909). No official code exists; docs/methods/cvf.md says which parts the paper fixes and
which are our formulation. Reads top to bottom:

1. Freeze the LLM. Train only the weights of the vision tower's and projector's linear layers
   (conv patch embedding, norms and biases stay frozen: the projection does not cover them).
2. z(x) = L2-normalised mean of the visual tokens at a feature point (projector output, or an
   LLM layer over the visual positions with gradients through the frozen LLM).
3. Forget term, InfoNCE with temperature tau: pull z_theta(x_f) towards a positive p where an
   unknown identity lives (base model's embedding / mean of the k nearest retain images /
   a blank image) and away from the finetuned model's embeddings of the target's images.
4. Retain term: keep retain images where they were (feature distillation, or InfoNCE with the
   current forget embeddings as negatives); optional retain NLL through the frozen LLM (its
   batch size and frequency are the step's cost lever: benchmarks/cvf_step_timing.py).
5. Every AdamW update of a layer's weight is right-multiplied by P, the projector onto the null
   space of that layer's retained inputs (uncentred covariance, energy rule by default).
6. Stop by a rule on held-out validation renderings of the forget entities (never on the
   reported numbers): stop at the first check where their vqa mcq accuracy <= stop_forget_acc.
7. Continual: the layer-input moments accumulate across requests (retain data + already
   forgotten images after their unlearning) and P is rebuilt for every request. With
   ``replay`` (default) the forget term keeps acting on earlier requests' images: without it,
   the features of earlier targets drift back while later requests are served (rebound). The
   stopping rule watches the current request only (``replay_stop`` also waits for the earlier
   ones: slower, and no better, docs/methods/cvf.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from PIL import Image

from mmu_bench.distributed import shard
from mmu_bench.engine import TrainConfig, train
from mmu_bench.errors import MMUError
from mmu_bench.stopping import StopRule
from mmu_bench.tuning import LogUniform
from mmu_bench.method import Hyper, Method, hp, per_example_nll
from mmu_bench.nullspace import Moments, build_projection, collect_moments, linear_layers


@dataclass
class CVFHyper(Hyper):
    steps: int = hp(450, "maximum optimizer steps (the stopping rule usually ends earlier)", min=1)
    lr: float = hp(3e-3, "peak learning rate (warmup then cosine decay); AdamW, weight decay 0", gt=0,
                   search=LogUniform(3e-4, 3e-2))
    batch_size: int = hp(16, "forget images per step", min=1)
    retain_batch_size: int = hp(32, "retain images per step", min=1)
    tau: float = hp(0.07, "InfoNCE temperature", gt=0)
    target: Literal["knn", "base", "blank"] = hp("knn", "positive for forget images: knn (mean of the k nearest "
                                                 "retain embeddings), base (base model's embedding), blank")
    knn_k: int = hp(5, "neighbours for target=knn", min=1)
    feature: str = hp("projector", "feature point: projector, or llm_layer:N (LLM hidden state N over the visual tokens)")
    retain_loss: Literal["distill", "infonce"] = hp("distill", "retain term: feature distillation or InfoNCE")
    retain_weight: float = hp(1.0, "lambda_r, weight of the retain term", search=LogUniform(0.1, 10.0))
    nll_weight: float = hp(0.1, "lambda_nll, retain VQA NLL through the frozen LLM (0 turns it off); "
                                "keeps retained answers right while the features move")
    nll_batch_size: int = hp(16, "retain VQA items in the NLL term's batch (the NLL backpropagates through the "
                                 "frozen LLM: the costly part of a step)", min=1)
    nll_every: int = hp(1, "compute the NLL term every k-th step only (its weight unchanged)", min=1)
    trainable: Literal["vision", "projector"] = hp("vision", "vision: tower + projector linears; projector: projector only")
    null_space: bool = hp(True, "project every weight update into the null space of retained inputs")
    rule: Literal["energy", "relative", "absolute"] = hp("energy", "null-basis rule (see mmu_bench/nullspace.py)")
    threshold: float = hp(0.02, "energy: eps of the trace left unprotected; relative: r; absolute: a")
    covariance: Literal["uncentred", "centred"] = hp("uncentred", "input covariance for the null space")
    bias_compensation: bool = hp(False, "with covariance=centred: db = -dW mu keeps retained outputs put")
    subspace: Literal["null", "forget_selective"] = hp("null", "null space, or top generalized eigenvectors "
                                                       "of (forget, retain) covariances")
    selective_k: int = hp(8, "directions per layer for subspace=forget_selective")
    stop_rule: bool = hp(True, "stop on validation renderings of the forget entities")
    stop_forget_acc: float = hp(0.3, "stop when forget validation vqa mcq accuracy <= this (chance 0.25)")
    eval_every: int = hp(10, "steps between stopping-rule checks", min=1)
    replay: bool = hp(True, "continual: keep the forget term on earlier requests' images")
    replay_stop: bool = hp(False, "continual with replay: the stopping rule also waits for earlier requests' "
                                 "validation renderings")
    warmup: float = hp(0.05, "warmup fraction")
    grad_clip: float = hp(1.0, "max gradient norm")


class CVF(Method):
    name = "cvf"
    description = "contrastive visual forgetting, frozen LLM, null-space projected updates (reference method)"
    Hyper = CVFHyper
    settings = ("visual",)
    settings_note = "CVF freezes the LLM, where text knowledge lives, so it cannot forget the text route"

    def __init__(self, hyper=None, **overrides):
        super().__init__(hyper, **overrides)
        h = self.hyper
        if h.bias_compensation and h.covariance != "centred":
            raise MMUError("bias_compensation=true needs covariance=centred")
        if not (h.feature == "projector" or (h.feature.startswith("llm_layer:") and h.feature[10:].lstrip("-").isdigit())):
            raise MMUError(f"feature {h.feature!r}: expected 'projector' or 'llm_layer:N'")
        self.moments: dict[str, Moments] | None = None  # continual state
        self.requests_seen = 0
        self.earlier: dict | None = None  # replay: earlier requests' pixels, positives, negatives, validation

    # ------------------------------------------------------------ components
    def layers(self, model) -> dict[str, torch.nn.Linear]:
        mods = [("projector." + n, m) for n, m in model.projector_modules.named_modules()]
        if self.hyper.trainable == "vision":
            mods = [("vision." + n, m) for n, m in model.vision_modules.named_modules()] + mods
        return linear_layers(mods)

    def features(self, model, pixels: torch.Tensor) -> torch.Tensor:
        """z(x): L2-normalised mean of the visual tokens at the chosen feature point."""
        if self.hyper.feature == "projector":
            z = model.image_features(pixels).mean(1)
        else:
            layer = int(self.hyper.feature.split(":")[1])
            ids = torch.tensor([model.prompt_ids("", True)] * pixels.shape[0], device=pixels.device)
            # the family's vision kwargs (LLaVA: pixel_values; NeXT: + image_sizes; Qwen: + grid, token types)
            vision = model.vision_inputs(pixels, ids) if hasattr(model, "vision_inputs") else {"pixel_values": pixels}
            out = model.model(input_ids=ids, **vision, output_hidden_states=True)
            mask = (ids == model.model.config.image_token_id).unsqueeze(-1).float()
            z = (out.hidden_states[layer] * mask).sum(1) / mask.sum(1)
        return F.normalize(z.float(), dim=-1)

    def embed(self, model, pixels: torch.Tensor, batch: int = 128) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([self.features(model, pixels[i:i + batch]) for i in range(0, len(pixels), batch)])

    @staticmethod
    def images(model, items: list[dict]) -> tuple[torch.Tensor, list[str]]:
        """Unique images of the vqa items (one per entity rendering), as pixel tensors."""
        seen, imgs, ents = set(), [], []
        for it in items:
            key = (it["entity_id"], it.get("render"))
            if it["modality"] != "vqa" or it.get("image") is None or key in seen:
                continue
            seen.add(key)
            imgs.append(it["image"])
            ents.append(it["entity_id"])
        if not imgs:
            raise MMUError("CVF needs image items (vqa) in the forget request and retain data")
        return torch.stack(model.pixel_values(imgs)).to(model.device), ents

    def positives(self, model, context, zf_orig, zr_orig, px_f) -> torch.Tensor:
        h = self.hyper
        if h.target == "base":
            return self.embed(context.reference("base"), px_f)
        if h.target == "blank":
            size = px_f.shape[-1]
            blank = torch.stack(model.pixel_values([Image.new("RGB", (size, size), (212, 212, 212))])).to(model.device)
            return self.embed(context.reference("finetuned"), blank).expand_as(zf_orig)
        sims = zf_orig @ zr_orig.T
        idx = sims.topk(min(h.knn_k, zr_orig.shape[0]), dim=1).indices
        return F.normalize(zr_orig[idx].mean(1), dim=-1)

    @staticmethod
    def info_nce(anchor, positive, negatives, neg_mask, tau) -> torch.Tensor:
        """-log e^{s(a,p)/tau} / (e^{s(a,p)/tau} + sum_n e^{s(a,n)/tau}), s = cosine."""
        pos = (anchor * positive).sum(-1, keepdim=True) / tau
        neg = anchor @ negatives.T / tau
        neg = neg.masked_fill(~neg_mask, float("-inf"))
        return -torch.log_softmax(torch.cat([pos, neg], dim=1), dim=1)[:, 0].mean()

    @staticmethod
    def _remember(earlier: dict | None, px, pos, neg, ents, val) -> dict:
        """Append one request's tensors to the replay memory (entity ids kept distinct)."""
        if earlier is not None:
            ents = ents + int(earlier["ents"].max()) + 1
            px, pos, neg = (torch.cat([earlier[k], t]) for k, t in (("px", px), ("pos", pos), ("neg", neg)))
            ents, val = torch.cat([earlier["ents"], ents]), earlier["val"] + list(val)
        return {"px": px, "pos": pos, "neg": neg, "ents": ents, "same": ents.unsqueeze(1) == ents.unsqueeze(0),
                "val": list(val)}

    # ------------------------------------------------------------ unlearning
    def unlearn(self, model, request, context) -> None:
        h = self.hyper
        torch.manual_seed(context.seed + self.requests_seen)
        for p in model.model.parameters():
            p.requires_grad_(False)
        layers = self.layers(model)
        params = [l.weight for l in layers.values()]
        for p in params:
            p.requires_grad_(True)

        px_f, ent_f = self.images(model, request.forget)
        px_r, _ = self.images(model, context.retain)
        finetuned = context.reference("finetuned")
        zf_orig, zr_orig = self.embed(finetuned, px_f), self.embed(finetuned, px_r)
        positives = self.positives(model, context, zf_orig, zr_orig, px_f)
        index = {e: i for i, e in enumerate(dict.fromkeys(ent_f))}
        ents = torch.tensor([index[e] for e in ent_f])
        same_entity = ents.unsqueeze(1) == ents.unsqueeze(0)  # negatives: the target's own images

        projection = None
        if h.null_space:
            def feed(pixels):
                return lambda: [self.features(model, pixels[i:i + 128]) for i in range(0, len(pixels), 128)]

            if self.moments is None:
                self.moments = collect_moments(layers, feed(px_r))
            forget_moments = collect_moments(layers, feed(px_f)) if h.subspace == "forget_selective" else None
            projection = build_projection(
                layers, self.moments, rule=h.rule, threshold=h.threshold, centred=h.covariance == "centred",
                bias_compensation=h.bias_compensation,
                selective_k=h.selective_k if h.subspace == "forget_selective" else 0, forget=forget_moments)
            context.log("null_fraction", projection.null_fraction)
            context.log("null_fraction_mean", round(sum(projection.null_fraction.values()) / len(layers), 4))

        retain_vqa = [it for it in context.retain if it["modality"] == "vqa"]
        encoded_retain = model.encode(retain_vqa) if h.nll_weight > 0 else None
        gen = torch.Generator().manual_seed(context.seed + 7919 * self.requests_seen)

        earlier = self.earlier if h.replay else None

        def loss_fn(step: int) -> torch.Tensor:
            # every process draws the same global batch and works on its shard (accelerate launch);
            # one process: the whole batch. Every term is a mean over its shard.
            fi = torch.randint(0, len(px_f), (min(h.batch_size, len(px_f)),), generator=gen)
            ri = torch.randint(0, len(px_r), (min(h.retain_batch_size, len(px_r)),), generator=gen)
            fi, ri = shard(fi), shard(ri)
            za = self.features(model, px_f[fi])
            loss = self.info_nce(za, positives[fi], zf_orig, same_entity[fi], h.tau)
            if earlier is not None:  # earlier targets stay forgotten (same term, their own tensors)
                ei = torch.randint(0, len(earlier["px"]), (min(h.batch_size, len(earlier["px"])),), generator=gen)
                ei = shard(ei)
                ze = self.features(model, earlier["px"][ei])
                loss = loss + self.info_nce(ze, earlier["pos"][ei], earlier["neg"], earlier["same"][ei], h.tau)
            zr = self.features(model, px_r[ri])
            if h.retain_loss == "distill":
                retain = (zr - zr_orig[ri]).pow(2).sum(-1).mean()
            else:
                retain = self.info_nce(zr, zr_orig[ri], za.detach(), torch.ones(len(ri), len(fi), dtype=torch.bool), h.tau)
            loss = loss + h.retain_weight * retain
            if encoded_retain is not None and step % h.nll_every == 0:
                pick = shard(torch.randint(0, len(encoded_retain), (h.nll_batch_size,), generator=gen).tolist())
                loss = loss + h.nll_weight * per_example_nll(model, model.collate([encoded_retain[i] for i in pick])).mean()
            return loss

        # The shared stopping rule (mmu_bench/stopping.py): the run's --stop-at when given, else
        # CVF's own hyper-parameters. With replay_stop the earlier requests' validation renderings
        # must be at or below the bar too.
        rule = context.stop or (StopRule(h.stop_forget_acc, h.eval_every, h.steps) if h.stop_rule else None)
        val_earlier = earlier["val"] if earlier is not None and rule is not None and h.replay_stop else []
        stopper = context.stopper(model, rule, [val_earlier] if val_earlier else [])

        model.model.eval()  # no dropout; the tiny model has none, real ones must not add noise here
        result = train(params, loss_fn,
                       TrainConfig(steps=stopper.rule.budget if stopper else h.steps, lr=h.lr, warmup=h.warmup, grad_clip=h.grad_clip, weight_decay=0.0,
                                   seed=context.seed, progress=context.progress, desc="unlearn cvf"),
                       device=model.device, after_step=projection.apply if projection else None,
                       should_stop=stopper)
        for p in params:
            p.requires_grad_(False)
        if h.null_space:
            # Continual: what was just forgotten joins the protected inputs of the next request.
            collect_moments(layers, lambda: [self.features(model, px_f[i:i + 128]) for i in range(0, len(px_f), 128)],
                            into=self.moments)
        if h.replay:
            self.earlier = self._remember(self.earlier, px_f, positives, zf_orig, ents, context.validation.get("forget", []))
        self.requests_seen += 1
        context.log("steps", result.steps)
        context.log("stopped_early", result.stopped_early)
        context.log("final_loss", round(result.losses[-1], 6))
        if stopper is not None:
            stopper.log_to(context.log, "run" if context.stop else "cvf")
        else:
            context.log("validation_forget_acc", [])
