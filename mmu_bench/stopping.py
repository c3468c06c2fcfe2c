"""One stopping rule for every method: train until the forget entities' held-out validation items
are forgotten to a target level, checked every k steps, within a step budget.

The rule only ever looks at validation items (fresh renderings of the forget entities, and in the
``full`` setting their text questions in other trained wordings), never at the reported evaluation
items. It is what makes rows comparable at matched forgetting: ``mmu-bench run --stop-at
forget=0.3`` gives every method, built-in or plugin, the same target, the same check interval and
the same budget. CVF's own ``stop_rule`` hyper-parameters go through the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import MMUError


@dataclass(frozen=True)
class StopRule:
    """Stop at the first check where every validation group's mcq accuracy is <= ``target``.

    Args:
        target: forget validation mcq accuracy to reach (chance is 0.25 with 4 options).
        every: steps between checks.
        budget: at most this many steps; the method's schedule (warmup, cosine) runs over them.
    """

    target: float = 0.3
    every: int = 5
    budget: int = 200

    def __post_init__(self):
        if not 0.0 <= self.target <= 1.0:
            raise MMUError(f"stop rule: forget target {self.target!r} must be in [0, 1]")
        if self.every < 1 or self.budget < 1:
            raise MMUError(f"stop rule: every={self.every} and budget={self.budget} must be >= 1")

    @classmethod
    def parse(cls, text: str) -> "StopRule":
        """``forget=0.3[,every=5][,budget=200]`` (the ``--stop-at`` syntax)."""
        values: dict[str, Any] = {}
        for part in str(text).split(","):
            key, sep, raw = part.strip().partition("=")
            if not sep or key not in ("forget", "every", "budget"):
                raise MMUError(f"--stop-at {text!r}: expected forget=<acc>[,every=<steps>][,budget=<steps>], "
                               f"e.g. forget=0.3,every=5,budget=200")
            try:
                values[key] = float(raw) if key == "forget" else int(raw)
            except ValueError:
                raise MMUError(f"--stop-at {text!r}: {key}={raw!r} is not a "
                               f"{'number' if key == 'forget' else 'whole number'}") from None
        if "forget" not in values:
            raise MMUError(f"--stop-at {text!r}: the forget=<acc> target is required")
        return cls(target=values.pop("forget"), **values)

    @property
    def tag(self) -> str:
        """Names the rule in run directories (``static-stopforget0.3e5b200``)."""
        return f"forget{self.target:g}e{self.every}b{self.budget}"

    def describe(self) -> str:
        return (f"train until the forget entities' validation mcq accuracy <= {self.target:g} (checked every "
                f"{self.every} steps on held-out renderings, never on reported items), at most {self.budget} steps")

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "every": self.every, "budget": self.budget}


def validation_groups(validation: dict[str, list[dict]], setting: str) -> list[list[dict]]:
    """The validation item groups the rule waits for: the forget entities' image renderings and, in
    the full setting (which forgets the text route too), their text questions when the benchmark
    has them."""
    groups = [validation.get("forget", [])]
    if setting == "full":
        groups.append(validation.get("forget_text", []))
    return [g for g in groups if g]


@dataclass
class ValidationStopper:
    """``should_stop(step)`` for the engine: every ``rule.every`` steps, score each group's mcq items
    by log-likelihood and stop when every accuracy is <= the target. ``trajectory`` records
    (step, acc per group) of every check; ``reached`` whether the target was met."""

    model: Any
    groups: list[list[dict]]
    rule: StopRule
    trajectory: list[tuple] = field(default_factory=list)
    reached: bool = False

    def accuracies(self) -> list[float]:
        from .evaluate import mcq_accuracy

        training = self.model.model.training
        self.model.model.eval()  # no dropout while checking; back to the caller's mode after
        try:
            return [mcq_accuracy(self.model, g) for g in self.groups]
        finally:
            self.model.model.train(training)

    def __call__(self, step: int) -> bool:
        if not self.groups or (step + 1) % self.rule.every:
            return False
        accs = self.accuracies()
        self.trajectory.append((step + 1, *[round(a, 4) for a in accs]))
        self.reached = max(accs) <= self.rule.target
        return self.reached

    def log_to(self, log: Callable[[str, Any], None], source: str) -> None:
        log("stop_rule", self.rule.as_dict() | {"source": source})
        log("validation_forget_acc", self.trajectory)
        log("stop_target_reached", self.reached)
