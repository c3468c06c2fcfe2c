"""``--protocol attacks``: static unlearning, every task evaluated, then a list of attacks."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from ..evaluate import EvalConfig
from ..method import Method
from . import make_attacks
from .base import ORACLES, REFERENCE_MODELS, AttackContext

SETTINGS = tuple(ORACLES)


class AttacksProtocol:
    """Static unlearning, then each attack of ``attacks`` (comma-separated, default all) on the
    unlearned model: keys ``attack.<name>.<metric>``. Every attack's sanity rows (the finetuned
    model and both oracles under the same attack) are cached per zoo and stored in the run's
    protocol details (``reference``, ``sanity``); a failed sanity check is reported on stderr.

    The setting (its oracle, the consistency target) is the run's (``--setting``), read from the
    benchmark; a benchmark without one is scored as visual.
    """

    name = "attacks"
    description = "attacks that try to get the knowledge back: quantization, probes, paraphrase/prompt, neighbours, consistency"

    @staticmethod
    def columns(setting) -> list[str]:
        """The run table's and the leaderboard's columns (those present are shown)."""
        from .report import HEADLINES

        return [f"attack.{h}" for h in HEADLINES] + ["forget.vqa.mcq.acc", "retain.vqa.mcq.acc"]

    def __init__(self, attacks: str | None = "all"):
        self.attacks = make_attacks(attacks)

    @staticmethod
    def _setting(benchmark) -> str:
        s = getattr(benchmark, "setting", None)
        s = getattr(s, "name", s)  # a Setting object or its name
        return s if s in SETTINGS else "visual"

    def _context(self, benchmark, split: str, eval_cfg: EvalConfig, seed: int) -> AttackContext:
        return AttackContext(benchmark, split, benchmark.tasks(split), eval_cfg, self._setting(benchmark), seed)

    def reference(self, ctx: AttackContext) -> dict[str, dict[str, dict[str, Any]]]:
        """{attack: {model: measured values}} for finetuned / retrain / retrain_visual, cached
        per zoo, split and attack version. Attacks score mcq by log-likelihood whatever the run's
        mcq mode, and measure nothing that depends on the setting, so neither is in the key."""
        from ..cache import write_json_atomic

        root = getattr(getattr(ctx.benchmark, "zoo", None), "root", None)
        out, loaded = {}, {}
        for attack in self.attacks:
            path = root / "reference" / f"attack-{attack.name}-v{attack.version}-{ctx.split}.json" if root else None
            if path is not None and path.exists():
                try:
                    out[attack.name] = json.loads(path.read_text())
                    continue
                except ValueError:
                    pass  # half-written: recompute
            rows = {}
            for name in REFERENCE_MODELS:
                if name not in loaded:
                    loaded[name] = ctx.benchmark.load(name, ctx.split)
                rows[name] = attack.measure(loaded[name], ctx)
            out[attack.name] = rows
            if path is not None:
                write_json_atomic(path, rows)
        return out

    def prepare(self, benchmark, split: str) -> None:
        """Compute and cache the sanity rows (sweeps call this before runs fan out)."""
        self.reference(self._context(benchmark, split, EvalConfig(), 0))

    def run(self, method: Method, benchmark, split: str, seed: int, eval_cfg: EvalConfig,
            progress: bool = True):
        from ..protocols import StaticProtocol

        result = StaticProtocol().run(method, benchmark, split, seed, eval_cfg, progress)
        self.extend(result, method, benchmark, split, seed, eval_cfg)
        return result

    def extend(self, result, method: Method, benchmark, split: str, seed: int, eval_cfg: EvalConfig) -> None:
        """Run every attack on ``result.model`` and add its keys, timings, sanity rows and plot to
        ``result`` (a composed protocol's later part: ``static+attacks``)."""
        from .probe import plot_probe

        t1 = time.time()
        ctx = self._context(benchmark, split, eval_cfg, seed)
        reference = self.reference(ctx)
        result.timings["attack_reference"] = round(time.time() - t1, 2)
        measured, sanity, metrics = {}, {}, {}
        for attack in self.attacks:
            ta = time.time()
            measured[attack.name] = attack.measure(result.model, ctx)
            result.timings[f"attack.{attack.name}"] = round(time.time() - ta, 2)
            metrics.update({f"attack.{attack.name}.{k}": v for k, v in measured[attack.name].items()})
            sanity[attack.name] = attack.sanity(reference[attack.name], ctx.setting)
            if not sanity[attack.name]["ok"]:
                print(f"mmu-bench: attack {attack.name!r} failed its sanity check on this zoo "
                      f"({'; '.join(sanity[attack.name]['problems'])}): its numbers say nothing about the method",
                      file=sys.stderr)
        result.metrics = dict(sorted((result.metrics | metrics).items()))
        result.details.update({"setting": ctx.setting, "oracle": ctx.oracle, "attacks": [a.name for a in self.attacks],
                               "reference": reference, "sanity": sanity})
        if "probe" in measured:
            result.plots["probe.png"] = lambda path: plot_probe(measured["probe"], reference["probe"], path,
                                                                method.name, ctx.oracle)
