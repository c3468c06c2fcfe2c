"""Protocols own the evaluation schedule. ``static``: one forget request, evaluate after.

Each protocol has the :class:`mmu_bench.surfaces.EvalProtocol` surface (``name``,
``description``, ``run(method, benchmark, split, seed, eval_cfg, progress)``) and takes any
benchmark with the :class:`mmu_bench.surfaces.BenchmarkSurface`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .engine import Diverged
from .evaluate import EvalConfig, evaluate
from .method import Method, UnlearnContext
from .surfaces import BenchmarkSurface, Item


@dataclass
class ProtocolResult:
    metrics: dict[str, float]
    samples: list[dict]
    method_logs: dict[str, Any] = field(default_factory=dict)
    diverged: dict | None = None
    timings: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # e.g. per-step curves, saved in metrics.json
    plots: dict[str, Callable[[Path], None]] = field(default_factory=dict)  # file name -> writer
    model: Any = None  # the final unlearned model (for extra utility evaluations); not stored


def setting_of(benchmark: BenchmarkSurface):
    """The run's setting (mmu_bench/settings.py), set on the benchmark by the run; visual if none."""
    from .settings import VISUAL

    return getattr(benchmark, "setting", None) or VISUAL


def forget_request(benchmark: BenchmarkSurface, split: str):
    """``benchmark.request(split)`` with only the items the setting lets a method see (a
    benchmark that does not filter by setting itself is filtered here)."""
    setting = setting_of(benchmark)
    req = benchmark.request(split)
    req.forget = setting.forget_items(req.forget)
    req.setting = setting.name
    return req


def make_context(benchmark: BenchmarkSurface, split: str, seed: int, progress: bool, device=None) -> UnlearnContext:
    cache: dict[str, Any] = {}

    def reference(name: str):
        if name not in cache:
            adapter = benchmark.load(name, split)
            for p in adapter.model.parameters():
                p.requires_grad_(False)
            adapter.model.eval()
            cache[name] = adapter
        return cache[name]

    validation = benchmark.validation(split) if hasattr(benchmark, "validation") else {}
    return UnlearnContext(retain=benchmark.retain_items(split), seed=seed, progress=progress,
                          reference=reference, device=device, validation=validation,
                          setting=setting_of(benchmark).name, stop=getattr(benchmark, "stop_rule", None))


def unlearn_once(method: Method, benchmark: BenchmarkSurface, split: str, seed: int, progress: bool):
    """Load the method's starting model, unlearn the whole split once; returns (model, context,
    divergence or None, seconds spent unlearning)."""
    model = benchmark.load(getattr(method, "zoo_model", "finetuned"), split)
    context = make_context(benchmark, split, seed, progress, model.device)
    diverged = None
    t0 = time.time()
    try:
        method.unlearn(model, forget_request(benchmark, split), context)
    except Diverged as e:
        diverged = {"step": e.step, "loss": str(e.loss)}
    model.model.eval()
    return model, context, diverged, round(time.time() - t0, 2)


def evaluation_columns(setting) -> list[str]:
    """Headline columns of an evaluation in ``setting`` (the static protocol's table)."""
    return ["forget.vqa.mcq.acc", "test.vqa.mcq.acc", "forget.vqa.gen.rougeL", "forget.qa.mcq.acc",
            "retain.vqa.mcq.acc", "retain.qa.mcq.acc", "real.vqa.mcq.acc", "utility.vqa.mcq.acc",
            "retain.vqa.gen.rougeL", setting.oracle_key("forget_quality.js")]  # ks_p: not a headline (docs/metric-meta-eval.md)


class StaticProtocol:
    name = "static"
    description = "one forget request from the finetuned model, then every task is evaluated"

    def __init__(self, matched_retention: float | None = None):
        """``matched_retention``: also report ``matched.*``, the forgetting of the weight
        interpolation between finetuned and unlearned that keeps this share of the finetuned
        model's validation retention (mmu_bench/matched.py)."""
        if matched_retention is not None and not 0 < matched_retention <= 1:
            from .errors import MMUError

            raise MMUError(f"static: matched_retention must be in (0, 1], got {matched_retention}")
        self.matched_retention = matched_retention

    @staticmethod
    def columns(setting) -> list[str]:
        """The evaluation's columns, then the matched-retention ones (shown where present)."""
        return evaluation_columns(setting) + ["matched.forget.vqa.mcq.acc", "matched.test.vqa.mcq.acc",
                                              "matched.retain.vqa.mcq.acc", "matched.alpha"]

    def run(self, method: Method, benchmark: BenchmarkSurface, split: str, seed: int, eval_cfg: EvalConfig,
            progress: bool = True) -> ProtocolResult:
        model, context, diverged, t_unlearn = unlearn_once(method, benchmark, split, seed, progress)
        t0 = time.time()
        tasks = benchmark.tasks(split)
        metrics, samples = evaluate(model, tasks, eval_cfg)
        timings = {"unlearn": t_unlearn, "evaluate": round(time.time() - t0, 2)}
        details = {}
        if self.matched_retention is not None and not diverged:
            from .matched import matched_retention

            t1 = time.time()
            extra, details["matched"] = matched_retention(model, context.reference("finetuned"),
                                                          context.validation.get("retain", []), tasks, eval_cfg,
                                                          self.matched_retention)
            metrics = dict(sorted((metrics | extra).items()))
            timings["matched"] = round(time.time() - t1, 2)
        return ProtocolResult(metrics, samples, context.logs, diverged, timings, details, model=model)


class MIAProtocol:
    """Static unlearning, every task evaluated, plus membership inference (see mmu_bench/mia.py):
    members = forget items, non-members = holdout items, per modality and attack; AUC and
    PrivLeak against the retrain and retrain_visual oracles measured on the same items."""

    name = "mia"
    description = "membership inference after unlearning: LOSS / ZLib / Min-K% / Min-K%++ AUC and PrivLeak"

    @staticmethod
    def columns(setting) -> list[str]:
        return ["mia.vqa.loss.auc", setting.oracle_key("mia.vqa.loss.privleak"), "mia.vqa.mink40.auc",
                "mia.vqa.minkpp20.auc", "mia.qa.loss.auc", setting.oracle_key("mia.qa.loss.privleak"),
                "forget.vqa.mcq.acc", "retain.vqa.mcq.acc"]

    def __init__(self, reference_attack: bool = False, attacks: str | None = None):
        from .mia import check_attacks

        self.reference_attack = reference_attack
        self.attacks = check_attacks(attacks.split(",")) if attacks else None

    def _aucs(self, model, benchmark: BenchmarkSurface, split: str, samples: list | None = None) -> dict[str, float]:
        from .mia import mia_aucs

        tasks = benchmark.tasks(split)
        ref = benchmark.load("base", split) if self.reference_attack else None
        return mia_aucs(model, tasks["forget"], tasks["holdout"], reference=ref, attacks=self.attacks,
                        samples=samples)

    def oracle_aucs(self, benchmark: BenchmarkSurface, split: str) -> dict[str, dict[str, float]]:
        import json

        from .cache import write_json_atomic

        root = getattr(getattr(benchmark, "zoo", None), "root", None)
        path = root / "reference" / f"mia2-{split}-ref{int(self.reference_attack)}.json" if root else None
        if path is not None and path.exists():
            try:
                return json.loads(path.read_text())
            except ValueError:
                pass
        out = {name: self._aucs(benchmark.load(name, split), benchmark, split)
               for name in ("finetuned", "retrain", "retrain_visual")}
        if path is not None:
            write_json_atomic(path, out)
        return out

    def prepare(self, benchmark: BenchmarkSurface, split: str) -> None:
        """Compute and cache the oracles' AUCs (sweeps call this before runs fan out)."""
        self.oracle_aucs(benchmark, split)

    def run(self, method: Method, benchmark: BenchmarkSurface, split: str, seed: int, eval_cfg: EvalConfig,
            progress: bool = True) -> ProtocolResult:
        result = StaticProtocol().run(method, benchmark, split, seed, eval_cfg, progress)
        self.extend(result, method, benchmark, split, seed, eval_cfg)
        return result

    def extend(self, result: ProtocolResult, method: Method, benchmark: BenchmarkSurface, split: str,
               seed: int, eval_cfg: EvalConfig) -> None:
        """Add membership inference against ``result.model`` to ``result`` (a composed protocol's
        later part: ``static+mia``)."""
        from .mia import mia_metrics

        t1 = time.time()
        oracle = self.oracle_aucs(benchmark, split)
        mia_samples: list[dict] = []  # per-item attack scores: any AUC can be recomputed from samples.jsonl
        result.metrics = dict(sorted((result.metrics | mia_metrics(
            self._aucs(result.model, benchmark, split, mia_samples), oracle["retrain"],
            oracle["retrain_visual"])).items()))
        result.samples = result.samples + mia_samples
        result.timings["mia"] = round(time.time() - t1, 2)
        result.details["oracle_auc"] = oracle


def _sample_acc(samples: list[dict], split: str, entities: set | None = None) -> float:
    """vqa mcq accuracy of an evaluation's per-sample records (optionally of some entities)."""
    hits = [s["correct"] for s in samples if s["split"] == split and s["modality"] == "vqa" and s["kind"] == "mcq"
            and (entities is None or s["entity_id"] in entities)]
    return float(np.mean(hits)) if hits else float("nan")


def _finetuned_retain_acc(benchmark: BenchmarkSurface, split: str, tasks: dict[str, list[Item]], eval_cfg: EvalConfig) -> float:
    """The finetuned model's retain vqa mcq acc: from the cached reference table when the
    benchmark has one, else measured."""
    if hasattr(benchmark, "reference_metrics"):
        value = benchmark.reference_metrics(split, eval_cfg)["finetuned"].get("retain.vqa.mcq.acc")
        if value is not None:
            return float(value)
    return _mcq_acc(benchmark.load("finetuned", split), tasks["retain"], eval_cfg)


def _mcq_acc(model, items: list[Item], eval_cfg: EvalConfig) -> float:
    from .evaluate import score_mcq_loglik

    mcq = [it for it in items if it["kind"] == "mcq" and it["modality"] == "vqa"]
    if not mcq:
        return float("nan")
    return float(np.mean([s["correct"] for s in score_mcq_loglik(model, mcq, eval_cfg)]))


class ContinualProtocol:
    """T forget requests in sequence, each from the previous model, the method's state kept.

    After each request: vqa mcq accuracy on every request so far (forget renderings), and on
    retain, real and utility. At the end, every task is evaluated as in ``static``. Summary:

    - ``continual.forget_acc_mean``: forget vqa mcq acc averaged over all requests, at the end (down).
    - ``continual.retention_final``: retain vqa mcq acc at the end / the finetuned model's (up).
    - ``continual.retention_auc``: mean over steps of that ratio, clipped to [0, 1] (the area under
      the retention curve with the step axis scaled to [0, 1]) (up).
    - ``continual.rebound_max``: largest rise of an earlier request's forget acc above its value
      right after it was unlearned (down; 0 = nothing came back).
    """

    name = "continual"
    description = "sequential forget requests (default 5), per-step curves, retention and rebound"

    @staticmethod
    def columns(setting) -> list[str]:
        return ["continual.forget_acc_mean", "continual.retention_final", "continual.retention_auc",
                "continual.rebound_max", "forget.vqa.mcq.acc", "forget.qa.mcq.acc", "retain.vqa.mcq.acc",
                "utility.vqa.mcq.acc"]

    def __init__(self, requests: int = 5):
        if requests < 1:
            from .errors import MMUError

            raise MMUError(f"continual needs at least 1 request, got {requests}")
        self.requests = requests

    def run(self, method: Method, benchmark: BenchmarkSurface, split: str, seed: int, eval_cfg: EvalConfig,
            progress: bool = True) -> ProtocolResult:
        from .errors import MMUError

        t0 = time.time()
        model = benchmark.load(getattr(method, "zoo_model", "finetuned"), split)
        full = forget_request(benchmark, split)
        entities = list(full.forget_entities)
        if self.requests > len(entities):
            raise MMUError(f"continual: {self.requests} requests but {split} has only {len(entities)} entities")
        chunks = [list(c) for c in np.array_split(np.array(entities, dtype=object), self.requests)]
        context = make_context(benchmark, split, seed, progress, model.device)
        all_val = context.validation
        tasks = benchmark.tasks(split)
        probe = {r: [it for it in tasks["forget"] if it["entity_id"] in set(c)] for r, c in enumerate(chunks)}
        ft_retain = _finetuned_retain_acc(benchmark, split, tasks, eval_cfg)
        curves: dict[str, list] = {"forget": [], "retain": [], "real": [], "utility": []}
        diverged = None
        logs: dict[str, Any] = {}
        for r, chunk in enumerate(chunks):
            keep = set(chunk)
            request = type(full)(forget=[it for it in full.forget if it["entity_id"] in keep],
                                 forget_entities=chunk, index=r, setting=full.setting)
            context.validation = {k: [it for it in v if not k.startswith("forget") or it["entity_id"] in keep]
                                  for k, v in all_val.items()}
            context.logs = {}
            try:
                method.unlearn(model, request, context)
            except Diverged as e:
                diverged = {"step": e.step, "loss": str(e.loss), "request": r}
            model.model.eval()
            logs[f"request{r}"] = context.logs
            if diverged or r == len(chunks) - 1:
                break  # the last point of the curves comes from the full evaluation below
            curves["forget"].append([_mcq_acc(model, probe[q], eval_cfg) for q in range(r + 1)])
            for role in ("retain", "real", "utility"):
                curves[role].append(_mcq_acc(model, tasks[role], eval_cfg))
        t1 = time.time()
        metrics, samples = evaluate(model, tasks, eval_cfg)
        # same model, same items, same scorer: the final evaluation's vqa mcq samples are the curves' last point
        last = len(curves["retain"])
        curves["forget"].append([_sample_acc(samples, "forget", set(chunks[q])) for q in range(last + 1)])
        for role in ("retain", "real", "utility"):
            curves[role].append(_sample_acc(samples, role))
        metrics.update(continual_summary(curves, ft_retain))
        details = {"requests": [list(c) for c in chunks], "curves": curves, "finetuned_retain_acc": ft_retain}
        return ProtocolResult(metrics, samples, logs, diverged,
                              {"unlearn": round(t1 - t0, 2), "evaluate": round(time.time() - t1, 2)},
                              details, {"continual.png": lambda path: plot_continual(details, path, method.name)},
                              model=model)


def continual_summary(curves: dict[str, list], finetuned_retain_acc: float) -> dict[str, float]:
    """Summary keys from per-step curves (see :class:`ContinualProtocol`)."""
    steps = len(curves["retain"])
    ratios = [min(1.0, a / finetuned_retain_acc) if finetuned_retain_acc > 0 else 0.0 for a in curves["retain"]]
    rebound = 0.0
    for q in range(steps):
        after = curves["forget"][q][q]
        for t in range(q + 1, steps):
            rebound = max(rebound, curves["forget"][t][q] - after)
    return {
        "continual.forget_acc_mean": round(float(np.mean(curves["forget"][-1])), 6),
        "continual.retention_final": round(ratios[-1], 6),
        "continual.retention_auc": round(float(np.mean(ratios)), 6),
        "continual.rebound_max": round(float(rebound), 6),
    }


def plot_continual(details: dict, path: Path, label: str) -> None:
    """Per-request forget accuracy and retain / real / utility accuracy over the requests."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = details["curves"]
    steps = np.arange(1, len(curves["retain"]) + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for q in range(len(curves["forget"])):
        xs = steps[q:]
        ys = [curves["forget"][t][q] for t in range(q, len(curves["forget"]))]
        a.plot(xs, ys, marker="o", label=f"request {q + 1}")
    a.axhline(0.25, color="grey", ls=":", lw=1, label="chance")
    a.set(title=f"{label}: forget vqa mcq acc per request", xlabel="after request", ylabel="acc", ylim=(0, 1.05))
    a.legend(fontsize=7)
    for role in ("retain", "real", "utility"):
        b.plot(steps, curves[role], marker="o", label=role)
    b.set(title="kept knowledge (vqa mcq acc)", xlabel="after request", ylim=(0, 1.05))
    for ax in (a, b):
        ax.set_xticks(steps)
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class RelearnProtocol:
    """Relearning attack (VKD): after unlearning, fine-tune briefly (all weights, answer NLL) on
    the items of a fraction of the forget entities and measure how much forget vqa mcq accuracy
    comes back on the OTHER forget entities, which the attack never shows.

    ``relearn.recovery`` = (acc after relearn - acc after unlearn) / (finetuned acc - acc after
    unlearn) on the held-back entities (down: 0 = nothing comes back, 1 = fully back).
    """

    name = "relearn"
    description = "relearning attack: brief fine-tune on part of the forget set, recovery on the rest"

    @staticmethod
    def columns(setting) -> list[str]:
        return ["relearn.recovery", "relearn.acc_after_unlearn", "relearn.acc_after_relearn",
                "relearn.acc_finetuned", "forget.vqa.mcq.acc", "forget.qa.mcq.acc", "retain.vqa.mcq.acc"]

    def __init__(self, relearn_steps: int = 30, relearn_fraction: float = 0.5, relearn_lr: float = 5e-4):
        from .errors import MMUError

        if not 0 < relearn_fraction < 1:
            raise MMUError(f"relearn_fraction must be in (0, 1), got {relearn_fraction}")
        self.steps, self.fraction, self.lr = relearn_steps, relearn_fraction, relearn_lr

    def run(self, method: Method, benchmark: BenchmarkSurface, split: str, seed: int, eval_cfg: EvalConfig,
            progress: bool = True) -> ProtocolResult:
        from .engine import MixtureSampler, TrainConfig, train
        from .errors import MMUError

        model, context, diverged, t_unlearn = unlearn_once(method, benchmark, split, seed, progress)
        t0 = time.time()
        tasks = benchmark.tasks(split)
        metrics, samples = evaluate(model, tasks, eval_cfg)
        entities = list(forget_request(benchmark, split).forget_entities)
        n_attack = int(round(len(entities) * self.fraction))
        if n_attack < 1 or n_attack >= len(entities):
            raise MMUError(f"relearn: {split} has {len(entities)} forget entities; cannot hold back a "
                           f"fraction {1 - self.fraction:.2f} of them")
        attack, held = set(entities[:n_attack]), set(entities[n_attack:])
        held_items = [it for it in tasks["forget"] if it["entity_id"] in held]
        before = _mcq_acc(model, held_items, eval_cfg)
        finetuned = _mcq_acc(benchmark.load("finetuned", split), held_items, eval_cfg)
        relearn_items = [it for it in forget_request(benchmark, split).forget if it["entity_id"] in attack]
        for p in model.model.parameters():
            p.requires_grad_(True)
        sampler = MixtureSampler([(model.encode(relearn_items), 1.0)], 16, seed + 101)
        model.model.train()
        train(list(model.model.parameters()), lambda step: model.forward_loss(model.collate(sampler.next())),
              TrainConfig(steps=self.steps, lr=self.lr, warmup=0.1, seed=seed, progress=progress, desc="relearn"),
              device=model.device)
        model.model.eval()
        after = _mcq_acc(model, held_items, eval_cfg)
        attacked = _mcq_acc(model, [it for it in tasks["forget"] if it["entity_id"] in attack], eval_cfg)
        gap = finetuned - before
        metrics.update({
            "relearn.acc_after_unlearn": round(before, 6),
            "relearn.acc_after_relearn": round(after, 6),
            "relearn.acc_finetuned": round(finetuned, 6),
            "relearn.acc_attack_entities": round(attacked, 6),  # sanity: the attack itself worked
            "relearn.recovery": round((after - before) / gap, 6) if gap > 0.05 else float("nan"),
        })
        return ProtocolResult(dict(sorted(metrics.items())), samples, context.logs, diverged,
                              {"unlearn": t_unlearn, "evaluate+relearn": round(time.time() - t0, 2)},
                              {"attack_entities": sorted(attack), "held_back_entities": sorted(held)})


class ComposedProtocol:
    """``<first>+<part>+...`` (e.g. ``static+mia+attacks``): the first protocol unlearns and
    evaluates once; every later part (one with an ``extend`` step: ``mia``, ``attacks``) measures
    the same unlearned model. Same numbers as running the parts one by one (same seed, same
    model), for the cost of one unlearning and one evaluation; the leaderboard files the run under
    each part's table. An option goes to the part whose constructor takes it; ``<part>.<option>``
    names the part where several take it (``attacks.attacks=quant_int8``)."""

    parts: tuple = ()  # the part classes, set by :func:`compose`
    name = ""
    description = ""

    def __init__(self, **options: Any):
        taken = split_options(self.name, self.parts, options)
        self.instances = [cls(**taken[cls]) for cls in self.parts]

    @classmethod
    def columns(cls, setting) -> list[str]:
        from .report import protocol_columns

        out: list[str] = []
        for part in cls.parts:
            out += [k for k in protocol_columns(part.name, setting) if k not in out]
        return out

    def prepare(self, benchmark: BenchmarkSurface, split: str) -> None:
        for part in self.instances:
            if hasattr(part, "prepare"):
                part.prepare(benchmark, split)

    def run(self, method: Method, benchmark: BenchmarkSurface, split: str, seed: int, eval_cfg: EvalConfig,
            progress: bool = True) -> ProtocolResult:
        result = self.instances[0].run(method, benchmark, split, seed, eval_cfg, progress)
        for part in self.instances[1:]:
            part.extend(result, method, benchmark, split, seed, eval_cfg)
        return result


def split_options(name: str, parts: tuple, options: dict[str, Any]) -> dict[type, dict[str, Any]]:
    """Each part's share of a composed protocol's ``options``: an option goes to the one part whose
    constructor takes it; ``<part>.<option>`` names the part where several do."""
    import inspect

    from .errors import MMUError

    taken: dict[type, dict[str, Any]] = {cls: {} for cls in parts}
    for key, value in options.items():
        part, _, opt = key.rpartition(".")  # "mia.attacks": that part's option of that name
        owners = [cls for cls in parts if (not part or cls.name == part)
                  and opt in inspect.signature(cls.__init__).parameters]
        if len(owners) != 1:
            hint = f"; name the part: {', '.join(f'{c.name}.{opt}' for c in owners)}" if owners else ""
            raise MMUError(f"protocol {name!r}: option {key!r} is taken by "
                           f"{'none' if not owners else 'more than one'} of its parts "
                           f"({', '.join(c.name for c in parts)}){hint}")
        taken[owners[0]][opt] = value
    return taken


def compose(name: str, lookup: Callable[[str], Any]) -> type:
    """The protocol class named ``a+b+...``: ``lookup`` finds each registered part. Later parts
    need an ``extend`` step (they measure the first part's model, they do not unlearn)."""
    from .errors import MMUError

    names = name.split("+")
    if len(set(names)) != len(names) or not all(names):
        raise MMUError(f"protocol {name!r}: expected distinct protocol names joined by '+', e.g. static+mia+attacks")
    parts = tuple(lookup(n) for n in names)
    for n, cls in zip(names[1:], parts[1:]):
        if not callable(getattr(cls, "extend", None)):
            raise MMUError(f"protocol {name!r}: {n!r} cannot follow another protocol (it has no extend step); "
                           f"parts after the first measure the model as it is, e.g. mia, attacks")
    return type("ComposedProtocol", (ComposedProtocol,), {
        "parts": parts, "name": name,
        "description": f"{names[0]}, then {', '.join(names[1:])} on the same unlearned model"})
