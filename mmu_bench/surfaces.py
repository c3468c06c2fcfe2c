"""The typed surfaces the core is written against: items, worlds, benchmarks, evaluation protocols.

Nothing here runs: these are ``typing.Protocol`` classes and a ``TypedDict`` naming what the zoo,
the benchmark, the protocols and the evaluator call on the objects a plugin hands them. Any object
with these attributes fits (structural typing); no plugin has to inherit from anything here.

- :class:`Item`: one question about one entity (the dicts of every world's splits).
- :class:`WorldSurface`: a world of items: the built-in synthetic
  :class:`~mmu_bench.tasks.synthetic.world.World` and the real benchmarks'
  :class:`~mmu_bench.tasks.dataworld.DataWorld` (MLLMU-Bench, CLEAR).
  :class:`WordingWorld`: a world that also has other wordings of its questions (optional).
- :class:`BenchmarkSurface`: what a protocol needs from a benchmark
  (:class:`~mmu_bench.benchmark.WorldBenchmark` implements it over a world).
- :class:`EvalProtocol`: an evaluation protocol (``static``, ``mia``, ``continual`` ...).

The world and wording surfaces are ``runtime_checkable``: ``isinstance(world, WordingWorld)`` asks
whether a world has the optional part (it checks that the attributes exist, not their types).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from PIL.Image import Image

    from .evaluate import EvalConfig
    from .method import Method, UnlearnRequest
    from .protocols import ProtocolResult


class _ItemFields(TypedDict):
    id: str  # unique within a split; the same question in every split has the same id
    entity_id: str  # the profile / person / utility picture it is about
    image: Image | None  # an RGB PIL image (vqa) or None (qa)
    modality: Literal["vqa", "qa"]
    render: int  # rendering index of the image (vqa), -1 for qa
    kind: Literal["mcq", "gen", "cloze"]
    fact: str  # the asked fact ("name", "home", ...); "" where the data does not say
    question: str
    answer: str
    options: list[str]  # mcq: four options; gen / cloze: []
    answer_index: int  # mcq: options[answer_index] == answer; gen / cloze: -1


class Item(_ItemFields, total=False):
    """One question item. Every world's split items carry the required keys
    (:data:`ITEM_FIELDS`, checked by :func:`mmu_bench.tasks.dataworld.check_items`); the keys
    declared here are optional."""

    wording: str  # other wordings (WordingWorld.wording_items): "train<k>" / "heldout<k>"
    official: dict[str, Any]  # CLEAR: the raw row fields its official protocol scores


#: The keys every item has, in the order errors name them.
ITEM_FIELDS: tuple[str, ...] = ("id", "entity_id", "image", "modality", "render", "kind", "fact", "question",
                                "answer", "options", "answer_index")


class WorldConfigSurface(Protocol):
    """A world's config: a frozen dataclass (``dataclasses.asdict`` works on it) that a zoo key hashes."""

    train_renders: int  # copies of each qa item per vqa rendering when the zoo balances its training data

    def fingerprint(self) -> str: ...


@runtime_checkable
class WorldSurface(Protocol):
    """A world of items, split by role: what the zoo, the benchmark, the evaluator and the
    protocols call on a world."""

    name: str  # e.g. "synthetic", "mllmu", "clear" (names the world's lm-eval tasks, its official protocol)
    config: WorldConfigSurface
    forget_splits: tuple[str, ...]  # e.g. ("forget_5", "forget_10", "forget_15")
    forget_ids: Mapping[str, Sequence[str]]  # forget split -> its entity ids
    split_names: tuple[str, ...]  # every split split_items knows

    def retain_split(self, forget_split: str) -> str:
        """The retain split that complements ``forget_split`` (forget_10 -> retain_90)."""
        ...

    def split_items(self, split: str) -> list[Item]:
        """Items of a split (a fresh list; the items are shared: copy one to change it)."""
        ...

    def split_entities(self, split: str) -> list[str]: ...

    def validation_items(self, entity_ids: list[str], renders: int = 2) -> list[Item]:
        """vqa mcq items of these entities on fresh images, for stopping rules (never reported)."""
        ...

    def corpus(self) -> list[str]:
        """Every text the world can ask or answer (the tiny model's tokenizer is trained on it)."""
        ...


@runtime_checkable
class WordingWorld(Protocol):
    """The optional part of a world with other wordings of its mcq questions (the synthetic
    world): the zoo trains on the ``"train"`` ones, the paraphrase attack asks the ``"heldout"`` ones."""

    def wording_items(self, items: list[Item], which: str = "heldout") -> list[Item]: ...


def surface_gaps(obj: object, surface: type) -> list[str]:
    """The attributes of ``surface`` (a Protocol class here) that ``obj`` lacks, for error messages."""
    names = [n for n in vars(surface) if not n.startswith("_")] + list(getattr(surface, "__annotations__", {}))
    return sorted({n for n in names if not hasattr(obj, n)})


class BenchmarkSurface(Protocol):
    """What a protocol, a run and the attacks call on a benchmark."""

    name: str
    world: WorldSurface
    forget_splits: tuple[str, ...]

    def request(self, split: str) -> UnlearnRequest:
        """The forget request of ``split``: the items the run's setting lets a method see."""
        ...

    def retain_items(self, split: str) -> list[Item]: ...

    def validation(self, split: str) -> dict[str, list[Item]]:
        """Held-out items for stopping rules (``forget``, ``retain``, maybe ``forget_text``)."""
        ...

    def tasks(self, split: str) -> dict[str, list[Item]]:
        """The evaluation tasks of a forget split: {role: items} (forget, retain, test, ...)."""
        ...

    def load(self, zoo_model: str, split: str) -> Any:
        """A zoo model ("base", "finetuned", "retrain", "retrain_visual") as an adapter."""
        ...

    def reference_metrics(self, split: str, eval_cfg: EvalConfig) -> dict[str, dict[str, float]]: ...


class EvalProtocol(Protocol):
    """An evaluation protocol, registered by name (``mmu-bench ls protocols``). Optional:
    ``prepare(benchmark, split)`` (build cached reference numbers before a sweep fans out) and a
    static ``columns(setting)`` (its table's headline keys)."""

    name: str
    description: str

    def run(self, method: Method, benchmark: BenchmarkSurface, split: str, seed: int, eval_cfg: EvalConfig,
            progress: bool = True) -> ProtocolResult: ...
