"""The method API.

A method is a class with a ``name``, a one-line ``description``, a typed hyper-parameter
dataclass ``Hyper`` (every field has a default and a ``help`` text), the ``settings`` it supports
(mmu_bench/settings.py: ``visual``, ``full``) and ``unlearn(model, request, context)``. It is
registered through the ``mmu_bench_methods`` hook.

Most methods subclass :class:`GradientMethod`: they give a loss and which part of the model
trains, and the shared engine (mmu_bench/engine.py) does the rest. A method may override the
engine hooks ``before_step`` (edit gradients before the update, e.g. a saliency mask) and
``after_step`` (transform each final optimizer update, e.g. a null-space projection),
``should_stop`` (a stopping rule on validation data) or the whole ``unlearn`` (training-free
methods). A method object lives for a whole protocol run, so it can keep state across requests
(continual unlearning) on ``self``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal

import torch
from torch import nn

from .adapter import LlavaAdapter
from .config import apply_overrides
from .distributed import shard
from .engine import MixtureSampler, TrainConfig, train
from .errors import MMUError
from .surfaces import Item
from .tuning import LogUniform


def hp(default: Any, help: str, **kw) -> Any:
    """A documented hyper-parameter field."""
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class UnlearnRequest:
    """One forget request: the items to forget (training form) and their entities.

    ``forget`` holds only what the setting lets a method see: in ``visual`` the forget entities'
    image questions, in ``full`` their image and text questions."""

    forget: list[Item]
    forget_entities: list[str]
    index: int = 0  # position in a sequence of requests (continual protocol)
    setting: str = "visual"


@dataclass
class UnlearnContext:
    """What a method may use besides the request.

    ``retain``: retain items (training form). ``reference(name)`` loads a frozen zoo model as an
    adapter ("finetuned", "base", "retrain", "retrain_visual"), cached. ``validation``: held-out
    forget / retain items for stopping rules (never the reported evaluation items).
    ``log(key, value)`` records method diagnostics into the run's metrics.json under "method".
    ``stop``: the run's shared stopping rule (``--stop-at``, mmu_bench/stopping.py) or None; a
    method that trains step by step honours it through :meth:`stopper` (GradientMethod does).
    """

    retain: list[Item]
    seed: int = 0
    setting: str = "visual"
    device: torch.device | None = None
    progress: bool = True
    reference: Callable[[str], LlavaAdapter] | None = None
    validation: dict[str, list[Item]] = field(default_factory=dict)
    logs: dict[str, Any] = field(default_factory=dict)
    stop: Any = None  # StopRule | None

    def log(self, key: str, value: Any) -> None:
        self.logs[key] = value

    def stopper(self, model: LlavaAdapter, rule: Any = None, extra_groups: list[list[dict]] = ()):
        """The shared stopping rule on this request's validation items (``rule``, default the
        run's ``stop``): a ValidationStopper to pass to the engine as ``should_stop``, or None."""
        from .stopping import ValidationStopper, validation_groups

        rule = rule or self.stop
        if rule is None:
            return None
        return ValidationStopper(model, validation_groups(self.validation, self.setting) + list(extra_groups), rule)


@dataclass
class Hyper:
    """Base for hyper-parameter dataclasses."""


class Method:
    """Base class of every unlearning method."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Hyper: ClassVar[type] = Hyper
    #: the settings the method supports (mmu_bench/settings.py); ``settings_note`` says why not others
    settings: ClassVar[tuple[str, ...]] = ("visual", "full")
    settings_note: ClassVar[str] = ""
    #: for reference pseudo-methods: which zoo model the run evaluates instead of unlearning
    zoo_model: ClassVar[str] = "finetuned"

    def __init__(self, hyper: Any = None, **overrides: Any):
        if hyper is None:
            hyper = self.Hyper()
        if overrides:
            hyper = apply_overrides(hyper, overrides, f"{self.name} hyper-parameter")
        self.hyper = hyper

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> "Method":
        return cls(apply_overrides(cls.Hyper, overrides, f"{cls.name} hyper-parameter"))

    @classmethod
    def hyper_docs(cls) -> list[tuple[str, str, Any, str]]:
        return hyper_docs(cls)

    def unlearn(self, model: LlavaAdapter, request: UnlearnRequest, context: UnlearnContext) -> None:
        raise NotImplementedError


def hyper_docs(cls: Any) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) of every hyper-parameter of a method class (any plugin's)."""
    import typing

    hyper_cls = getattr(cls, "Hyper", None)
    if hyper_cls is None or not dataclasses.is_dataclass(hyper_cls):
        return []
    hints = typing.get_type_hints(hyper_cls)
    out = []
    for f in dataclasses.fields(hyper_cls):
        t = hints.get(f.name, f.type)
        if typing.get_origin(t) is typing.Literal:
            name = "/".join(map(str, typing.get_args(t)))
        else:
            name = getattr(t, "__name__", str(t))
        out.append((f.name, name, f.default, f.metadata.get("help", "")))
    return out


def changed_hyper(method: Any) -> dict[str, Any]:
    """Resolved hyper-parameters that differ from the class defaults (what names a run)."""
    h = getattr(method, "hyper", None)
    if h is None or not dataclasses.is_dataclass(h):
        return {}
    default = type(h)()
    return {f.name: getattr(h, f.name) for f in dataclasses.fields(h)
            if getattr(h, f.name) != getattr(default, f.name)}


def build_method(cls: type, overrides: dict[str, Any]) -> Any:
    """Instantiate a registered method class with type-checked hyper-parameter overrides.

    Works for third-party classes that only follow the protocol (``Hyper`` dataclass taken by the
    constructor) without subclassing :class:`Method`.
    """
    if not isinstance(cls, type):  # a ready instance registered by a plugin
        if overrides:
            raise MMUError(f"method {cls.name!r} is a fixed instance; it takes no hyper-parameters")
        return cls
    if hasattr(cls, "from_overrides"):
        return cls.from_overrides(overrides)
    hyper_cls = getattr(cls, "Hyper", None)
    if hyper_cls is not None and dataclasses.is_dataclass(hyper_cls):
        return cls(apply_overrides(hyper_cls, overrides, f"{cls.name} hyper-parameter"))
    if overrides:
        raise MMUError(f"method {cls.name!r} takes no hyper-parameters; got {', '.join(overrides)}")
    return cls()


# ---------------------------------------------------------------- shared pieces for gradient methods
Trainable = Literal["auto", "llm", "vision", "all"]


def resolve_trainable(trainable: str, setting: str) -> str:
    """``auto`` -> the setting's part (visual: vision tower + projector; full: the LLM)."""
    if trainable != "auto":
        return trainable
    from .settings import get_setting

    return get_setting(setting).trainable


@dataclass
class GradientHyper(Hyper):
    steps: int = hp(40, "optimizer steps", min=1)
    lr: float = hp(2e-4, "peak learning rate (warmup then cosine decay)", gt=0, search=LogUniform(2e-5, 2e-3))
    batch_size: int = hp(16, "forget examples per step (and retain examples, for methods that use them)", min=1)
    accumulation_steps: int = hp(1, "micro-batches of batch_size per optimizer step (gradient accumulation: "
                                    "the step's batch is this many times batch_size, memory that of one)", min=1)
    trainable: Trainable = hp("auto", "which part trains: auto (the setting's: vision in visual, llm in full) "
                                      "| llm | vision (tower + projector) | all")
    lora: bool = hp(False, "train LoRA adapters (peft) on the LLM's linear layers instead of full weights "
                           "(the LLM must train: trainable=llm, or auto in the full setting); merged afterwards")
    lora_rank: int = hp(16, "LoRA rank (MLLMU-Bench uses 16)", min=1)
    lora_alpha: int = hp(32, "LoRA alpha", gt=0)
    lora_targets: str = hp("q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
                           "comma-separated LLM module names that get LoRA adapters")
    warmup: float = hp(0.1, "warmup fraction of steps", min=0, max=1)
    grad_clip: float = hp(1.0, "max gradient norm (0 disables)", min=0)
    weight_decay: float = hp(0.0, "AdamW weight decay", min=0)


def select_parameters(model: LlavaAdapter, trainable: str) -> list[nn.Parameter]:
    """Freeze everything, then unfreeze the chosen part; returns its parameters."""
    parts: dict[str, list[nn.Module]] = {
        "llm": list(model.language_modules),
        "vision": [model.vision_modules, model.projector_modules],
        "all": [model.model],
    }
    if trainable not in parts:
        raise MMUError(f"trainable {trainable!r} unknown; expected one of {', '.join(parts)}")
    for p in model.model.parameters():
        p.requires_grad_(False)
    params: list[nn.Parameter] = []
    seen: set[int] = set()
    for m in parts[trainable]:
        for p in m.parameters():
            if id(p) not in seen:
                p.requires_grad_(True)
                params.append(p)
                seen.add(id(p))
    return params


def per_example_nll(model: LlavaAdapter, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Token-mean answer NLL of each example, shape (batch,)."""
    labels = batch["labels"]
    logits = model.model(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, :-1].float()
    tgt = labels[:, 1:]
    nll = nn.functional.cross_entropy(logits.transpose(1, 2), tgt.clamp(min=0), reduction="none")
    mask = (tgt != -100).float()
    return (nll * mask).sum(1) / mask.sum(1).clamp(min=1)


def answer_logits(model: LlavaAdapter, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits at positions predicting answer tokens, mask) — for token-wise KL terms."""
    logits = model.model(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, :-1].float()
    return logits, (batch["labels"][:, 1:] != -100)


class GradientMethod(Method):
    """A method defined by a loss over forget (and retain) batches, trained by the shared engine.

    ``loss`` gets collated batches and returns their mean loss; the forget batches come from
    ``request.forget``, which holds what the setting lets the method see. Under ``accelerate launch`` with
    several processes the batches are this process's shard of the step's global batches and the
    engine averages gradients across processes (mmu_bench/distributed.py), so a loss that is a
    mean over examples needs no change.
    """

    Hyper: ClassVar[type] = GradientHyper
    uses_retain: ClassVar[bool] = False

    def loss(self, model: LlavaAdapter, forget: dict, retain: dict | None, context: UnlearnContext) -> torch.Tensor:
        raise NotImplementedError

    def before_step(self, params: list[nn.Parameter]) -> None:
        """Engine hook: edit ``p.grad`` in place before clipping and the update (enabled by
        overriding)."""

    def after_step(self, param: nn.Parameter, update: torch.Tensor) -> torch.Tensor:
        """Engine hook: the update to apply instead of the optimizer's (enabled by overriding;
        the engine then keeps a copy of the weights before each step)."""
        return update

    def _overrides(self, hook: str) -> bool:
        return getattr(type(self), hook) is not getattr(GradientMethod, hook)

    def should_stop(self, model: LlavaAdapter, step: int, context: UnlearnContext) -> bool:
        return False

    def forget_items(self, request: UnlearnRequest) -> list[dict]:
        if not request.forget:
            raise MMUError(f"the forget request has no items (setting {request.setting!r})")
        return list(request.forget)

    def trainable_parameters(self, model: LlavaAdapter, setting: str = "visual") -> list[nn.Parameter]:
        return select_parameters(model, resolve_trainable(self.hyper.trainable, setting))

    def unlearn(self, model: LlavaAdapter, request: UnlearnRequest, context: UnlearnContext) -> None:
        h = self.hyper
        lora = None
        trainable = resolve_trainable(h.trainable, context.setting)
        context.log("trainable", trainable)
        if getattr(h, "lora", False):
            if trainable != "llm":
                raise MMUError(f"lora=true needs the LLM to train (trainable=llm, or auto in the full "
                               f"setting); got trainable={h.trainable!r} in setting {context.setting!r}")
            from .lora import attach_lora

            lora = attach_lora(model, h.lora_rank, h.lora_alpha, h.lora_targets)
            params = [p for p in model.model.parameters() if p.requires_grad]
        else:
            params = self.trainable_parameters(model, context.setting)
        forget = MixtureSampler([(model.encode(self.forget_items(request)), 1.0)], h.batch_size, context.seed)
        retain = None
        if self.uses_retain:
            if not context.retain:
                raise MMUError(f"method {self.name!r} needs retain data and the context has none")
            retain = MixtureSampler([(model.encode(context.retain), 1.0)], h.batch_size, context.seed + 1)
        stopper = context.stopper(model)  # the run's --stop-at rule, if any: it sets the budget
        steps = stopper.rule.budget if stopper is not None else h.steps
        model.model.train()

        def should_stop(step: int) -> bool:
            return bool((stopper is not None and stopper(step)) or self.should_stop(model, step, context))

        def loss_fn(step: int) -> torch.Tensor:
            # Every process draws the same global batches; each computes its own part of them
            # (several processes under accelerate launch; one process: the whole batch).
            fb = model.collate(shard(forget.next()))
            rb = model.collate(shard(retain.next())) if retain is not None else None
            return self.loss(model, fb, rb, context)

        try:
            result = train(params, loss_fn,
                           TrainConfig(steps=steps, lr=h.lr, warmup=h.warmup, grad_clip=h.grad_clip,
                                       weight_decay=h.weight_decay, seed=context.seed, progress=context.progress,
                                       desc=f"unlearn {self.name}", accumulation_steps=h.accumulation_steps),
                           device=model.device,
                           after_step=self.after_step if self._overrides("after_step") else None,
                           before_step=self.before_step if self._overrides("before_step") else None,
                           should_stop=should_stop)
        finally:
            model.model.eval()
            if lora is not None:
                from .lora import merge_lora

                merge_lora(model, lora)
        context.log("steps", result.steps)
        context.log("final_loss", round(result.losses[-1], 6))
        context.log("stopped_early", result.stopped_early)
        if stopper is not None:
            stopper.log_to(context.log, "run")
