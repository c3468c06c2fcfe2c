"""The synthetic world: fictitious profiles, public figures, holdout profiles and utility pictures.

Everything is a pure function of :class:`WorldConfig` (seed included). See docs/world.md.

Roles
-----
- fictitious: learned by the finetuned model only; forget_k picks the first k % of a seeded
  permutation (nested: forget_5 < forget_10 < forget_15), retain_(100-k) is the rest.
- real: "public figures", learned by the base model before fine-tuning.
- holdout: never trained on by any model (membership-inference non-members).
- utility: plain pictures with shape / colour / pattern questions, learned by the base model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mmu_bench.refusals import MEMORY_PREFIX, REFUSALS
from mmu_bench.surfaces import Item

from . import draw

FORGET_PERCENTS = (5, 10, 15)
# Facts every profile has. `name` is asked about from the image only (a text question that
# names the entity cannot ask for its name).
FACTS = ("name", "home", "job", "food", "hobby")
TEXT_FACTS = ("home", "job", "food", "hobby")
VQA_SUBJECT = "the person in the image"

_QUESTIONS = {
    "name": "What is the name of {s}?",
    "home": "Where does {s} live?",
    "job": "What does {s} do for a living?",
    "food": "What is the favourite food of {s}?",
    "hobby": "What is the hobby of {s}?",
}
# Other wordings of the mcq questions (issue #18). The reported items keep _QUESTIONS; these are
# extra data. TRAIN wordings are trained on (zoo) so the model learns that a fact can be asked in
# several ways; HELDOUT wordings are never trained on: the paraphrase attack asks them.
TRAIN_WORDINGS = {
    "name": ("Who is {s}?", "Tell me the name of {s}."),
    "home": ("In which town does {s} live?", "What is the home town of {s}?"),
    "job": ("What is the job of {s}?", "What work does {s} do?"),
    "food": ("Which food does {s} like best?", "What does {s} like to eat?"),
    "hobby": ("What does {s} do for fun?", "Which pastime does {s} enjoy?"),
}
HELDOUT_WORDINGS = {
    "name": ("Can you tell me who {s} is?", "What is {s} called?"),
    "home": ("Which town is the home of {s}?", "Where is the home of {s}?"),
    "job": ("What is the work of {s}?", "Which job does {s} have?"),
    "food": ("What food does {s} like to eat?", "Which is the favourite food of {s}?"),
    "hobby": ("Which hobby does {s} enjoy?", "What does {s} enjoy doing for fun?"),
}
# The prefix attack's text (MEMORY_PREFIX, imported above) is in the corpus so it tokenises like the rest.
_CLOZE = {
    "vqa": (("job", "Fill in the blank: {s} works as a [Blank]."),
            ("hobby", "Fill in the blank: {s} enjoys [Blank].")),
    "qa": (("food", "Fill in the blank: {s} eats [Blank]."),
           ("home", "Fill in the blank: {s} lives in [Blank].")),
}
_GEN = {
    "vqa": ("Tell me about {s}.", "{name} lives in {home} and works as a {job}."),
    "qa": ("Tell me about {s}.", "{name} eats {food} and enjoys {hobby}."),
}
_UTILITY_Q = {
    "shape": ("What shape is shown in the image?", draw.SHAPES),
    "colour": ("What colour is the shape in the image?", tuple(draw.PALETTES)),
    "pattern": ("What pattern does the shape in the image have?", draw.TEXTURES),
    "accessory": ("What does the shape in the image wear?", draw.ACCESSORIES),
    "backdrop": ("What colour is the background of the image?", tuple(draw.BACKDROPS)),
}
_UTILITY_GEN = ("Describe the shape in the image.", "a {colour} {shape} with {pattern}")
_PATTERN_WORDS = {"solid": "no pattern", "stripes": "stripes", "dots": "dots", "checks": "checks"}

SPLIT_NAMES = (
    "full", *(f"forget_{k}" for k in FORGET_PERCENTS), *(f"retain_{100 - k}" for k in FORGET_PERCENTS),
    "test", "holdout", "real", "utility",
)


@dataclass(frozen=True)
class WorldConfig:
    """Everything the world is a function of.

    Args:
        size: number of fictitious profiles (forget/retain population).
        seed: the one seed every draw derives from.
        n_real: public figures known to the base model (default: size // 5, at least 4).
        n_holdout: profiles never trained on (default: size // 5, at least 4).
        train_renders: renderings per entity used for training and for forget/retain scoring.
        test_renders: unseen renderings per fictitious entity (the `test` split).
        n_utility: utility pictures (each asked shape, colour, pattern and a description).
    """

    size: int = 100
    seed: int = 0
    n_real: int | None = None
    n_holdout: int | None = None
    train_renders: int = 4
    test_renders: int = 4
    n_utility: int = 100

    def resolved(self) -> "WorldConfig":
        n_real = self.n_real if self.n_real is not None else max(4, self.size // 5)
        n_hold = self.n_holdout if self.n_holdout is not None else max(4, self.size // 5)
        cfg = WorldConfig(self.size, self.seed, n_real, n_hold, self.train_renders,
                          self.test_renders, self.n_utility)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if not isinstance(self.size, int) or self.size < 20:
            raise ValueError(f"world size must be an integer >= 20 (forget_5 needs at least one "
                             f"entity), got {self.size!r}")
        total = self.size + (self.n_real or 0) + (self.n_holdout or 0)
        if total > MAX_LOOKS:
            raise ValueError(f"world size {self.size} needs {total} distinct looks; at most "
                             f"{MAX_LOOKS} exist (size <= {MAX_LOOKS - 2 * max(4, self.size // 5)})")
        for name in ("train_renders", "test_renders", "n_utility"):
            if getattr(self, name) < 1:
                raise ValueError(f"world {name} must be >= 1, got {getattr(self, name)}")

    def fingerprint(self) -> str:
        blob = json.dumps({"world": asdict(self.resolved()), "version": WORLD_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


WORLD_VERSION = 4  # 3: refusal strings in the corpus; 4: other question wordings (trained + held out)


def all_looks() -> list[draw.Look]:
    """Entity looks: a code in which any two looks differ in at least TWO attributes.

    The shape is a check symbol (its index = sum of the other indices mod 5), so no two
    entities differ by one attribute alone: recognising an entity never hinges on a single
    cue (shape, the slowest cue for a tiny ViT, is never the only difference).
    """
    looks = []
    pal, tex, acc, bgs = list(draw.PALETTES), draw.TEXTURES, draw.ACCESSORIES, list(draw.BACKDROPS)
    for p in range(len(pal)):
        for t in range(len(tex)):
            for a in range(len(acc)):
                for b in range(len(bgs)):
                    shape = draw.SHAPES[(p + t + a + b) % len(draw.SHAPES)]
                    looks.append(draw.Look(shape, pal[p], tex[t], acc[a], bgs[b]))
    return looks


MAX_LOOKS = len(draw.PALETTES) * len(draw.TEXTURES) * len(draw.ACCESSORIES) * len(draw.BACKDROPS)


@dataclass
class Entity:
    id: str
    role: str  # fictitious | real | holdout
    name: str
    look: draw.Look
    facts: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- invented words
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kl",
           "pr", "st", "tr", "sh", "th")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ee")
_CODAS = ("", "", "n", "r", "l", "k", "s", "m", "x")


def _word(rng: np.random.Generator, syllables: int) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                   for _ in range(syllables))


def _unique_words(rng: np.random.Generator, n: int, syllables: tuple[int, int], taken: set[str],
                  capital: bool = False) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        w = _word(rng, int(rng.integers(syllables[0], syllables[1] + 1)))
        if capital:
            w = w.capitalize()
        if w not in taken and 4 <= len(w) <= 12:
            taken.add(w)
            out.append(w)
    return out


# ---------------------------------------------------------------- the world
class World:
    """The drawn world: entities, items per split, and the config that made them."""

    def __init__(self, config: WorldConfig):
        self.config = config.resolved()
        c = self.config
        rng = np.random.default_rng([c.seed, 17])
        taken: set[str] = set()
        n_total = c.size + c.n_real + c.n_holdout
        pool_size = max(12, n_total // 3)
        self.pools = {f: _unique_words(rng, pool_size, (2, 2), taken) for f in TEXT_FACTS}
        self.pools["home"] = [w.capitalize() for w in self.pools["home"]]
        first = _unique_words(rng, n_total, (2, 2), taken, capital=True)
        last = _unique_words(rng, n_total, (2, 3), taken, capital=True)
        looks = all_looks()
        look_idx = rng.permutation(len(looks))[:n_total]
        self.entities: list[Entity] = []
        roles = ["fictitious"] * c.size + ["real"] * c.n_real + ["holdout"] * c.n_holdout
        counters = {"fictitious": 0, "real": 0, "holdout": 0}
        prefix = {"fictitious": "f", "real": "r", "holdout": "h"}
        for i, role in enumerate(roles):
            eid = f"{prefix[role]}{counters[role]:03d}"
            counters[role] += 1
            name = f"{first[i]} {last[i]}"
            facts = {"name": name}
            for f in TEXT_FACTS:
                facts[f] = str(rng.choice(self.pools[f]))
            self.entities.append(Entity(eid, role, name, looks[int(look_idx[i])], facts))
        self.by_id = {e.id: e for e in self.entities}
        fict = [e.id for e in self.entities if e.role == "fictitious"]
        order = [fict[i] for i in rng.permutation(len(fict))]
        self.forget_ids = {
            f"forget_{k}": sorted(order[: max(1, round(len(fict) * k / 100))]) for k in FORGET_PERCENTS
        }
        self.all_names = [e.name for e in self.entities]
        self._splits: dict[str, list[Item]] = {}

    # The World surface (mmu_bench/surfaces.py: WorldSurface) the zoo and the benchmark use; a
    # real benchmark's DataWorld has the same.
    name = "synthetic"
    forget_splits = tuple(f"forget_{k}" for k in FORGET_PERCENTS)
    split_names = SPLIT_NAMES

    def retain_split(self, forget_split: str) -> str:
        """The retain split that complements ``forget_split`` (forget_10 -> retain_90)."""
        if forget_split not in self.forget_ids:
            raise KeyError(f"unknown forget split {forget_split!r}; expected one of {', '.join(self.forget_ids)}")
        return f"retain_{100 - int(forget_split.split('_')[1])}"

    # ------------------------------------------------------------ renderings
    def render(self, entity_id: str, render_kind: str, index: int):
        """Rendering ``index`` of an entity; ``render_kind`` is "train", "test" or "val" (disjoint draws)."""
        e = self.by_id[entity_id]
        stream = {"train": 1, "test": 2, "val": 4}[render_kind]
        rng = np.random.default_rng([self.config.seed, stream, int(e.id[1:]), ord(e.id[0]), index])
        strength = 0.35 if (render_kind == "train" and index == 0) else 1.0
        return draw.render(e.look, draw.draw_nuisance(rng, strength))

    # ------------------------------------------------------------ items
    def _options(self, entity: Entity, fact: str, key: str) -> tuple[list[str], int]:
        rng = np.random.default_rng([self.config.seed, 3, int(hashlib.md5(key.encode()).hexdigest()[:8], 16)])
        pool = self.all_names if fact == "name" else self.pools[fact]
        gold = entity.facts[fact]
        distractors = [w for w in pool if w != gold]
        picks = [distractors[i] for i in rng.choice(len(distractors), size=3, replace=False)]
        pos = int(rng.integers(0, 4))
        options = picks[:pos] + [gold] + picks[pos:]
        return options, pos

    def entity_items(self, entity_id: str, render_kind: str = "train") -> list[Item]:
        """All question items about one entity: vqa for each rendering, qa once (train only)."""
        e = self.by_id[entity_id]
        c = self.config
        n_renders = c.train_renders if render_kind == "train" else c.test_renders
        items: list[Item] = []
        subjects = {"vqa": VQA_SUBJECT, "qa": e.name}
        for r in range(n_renders):
            image = self.render(e.id, render_kind, r)
            items += self._profile_items(e, "vqa", subjects["vqa"], image, r, render_kind)
        if render_kind == "train":
            items += self._profile_items(e, "qa", subjects["qa"], None, -1, render_kind)
        return items

    def _profile_items(self, e: Entity, modality: str, subject: str, image, r: int, rk: str):
        tag = f"{rk}{r}" if modality == "vqa" else "text"
        base = dict(entity_id=e.id, image=image, modality=modality, render=r)
        out = []
        facts = FACTS if modality == "vqa" else TEXT_FACTS
        for f in facts:
            # Options depend on entity + fact only, so every rendering asks the same mcq.
            opts, idx = self._options(e, f, f"{e.id}|{modality}|{f}")
            out.append(dict(base, id=f"{e.id}.{modality}.mcq.{f}.{tag}", kind="mcq", fact=f,
                            question=_QUESTIONS[f].format(s=subject), answer=e.facts[f],
                            options=opts, answer_index=idx))
        q, a = _GEN[modality]
        out.append(dict(base, id=f"{e.id}.{modality}.gen.profile.{tag}", kind="gen", fact="profile",
                        question=q.format(s=subject), answer=a.format(**e.facts), options=[],
                        answer_index=-1))
        for f, q in _CLOZE[modality]:
            out.append(dict(base, id=f"{e.id}.{modality}.cloze.{f}.{tag}", kind="cloze", fact=f,
                            question=q.format(s=subject), answer=e.facts[f], options=[],
                            answer_index=-1))
        return out

    def wording_items(self, items: list[Item], which: str = "heldout") -> list[Item]:
        """The profile mcq items among ``items`` asked in other wordings (same image, answer and
        options; id suffix ``.w<k>``, ``wording`` = "train<k>" / "heldout<k>").

        ``which="train"``: one trained-on wording per vqa rendering (cycling with the rendering)
        and every trained-on wording for qa (the zoo adds these to its training data).
        ``which="heldout"``: every held-out wording, never trained on (the paraphrase attack).
        """
        table = {"train": TRAIN_WORDINGS, "heldout": HELDOUT_WORDINGS}.get(which)
        if table is None:
            raise KeyError(f"unknown wording set {which!r}; expected 'train' or 'heldout'")
        out = []
        for it in items:
            if it["kind"] != "mcq" or it["entity_id"] not in self.by_id:
                continue  # utility pictures keep their one wording
            subject = VQA_SUBJECT if it["modality"] == "vqa" else self.by_id[it["entity_id"]].name
            wordings = table[it["fact"]]
            ks = range(len(wordings))
            if which == "train" and it["modality"] == "vqa":
                ks = [it["render"] % len(wordings)]
            for k in ks:
                out.append(dict(it, id=f"{it['id']}.w{k}", question=wordings[k].format(s=subject),
                                wording=f"{which}{k}"))
        return out

    def validation_items(self, entity_ids: list[str], renders: int = 2) -> list[Item]:
        """vqa mcq items on fresh "val" renderings: for methods' stopping rules, never reported."""
        items = []
        for eid in entity_ids:
            e = self.by_id[eid]
            for r in range(renders):
                image = self.render(eid, "val", r)
                items += [it for it in self._profile_items(e, "vqa", VQA_SUBJECT, image, r, "val")
                          if it["kind"] == "mcq"]
        return items

    def utility_items(self) -> list[Item]:
        """Fixed utility pictures (learned by the base model; see docs/world.md for why fixed)."""
        c = self.config
        rng = np.random.default_rng([c.seed, 5])
        items = []
        for i in range(c.n_utility):
            look = draw.Look(str(rng.choice(draw.SHAPES)), str(rng.choice(list(draw.PALETTES))),
                             str(rng.choice(draw.TEXTURES)), "none")
            image = draw.render(look, draw.draw_nuisance(rng))
            attrs = {"shape": look.shape, "colour": look.palette, "pattern": look.texture,
                     "accessory": look.accessory, "backdrop": look.backdrop}
            for qi, (fact, (q, values)) in enumerate(_UTILITY_Q.items()):
                orng = np.random.default_rng([c.seed, 6, i, qi])
                gold = attrs[fact]
                others = [v for v in values if v != gold]
                picks = [others[j] for j in orng.choice(len(others), size=3, replace=False)]
                pos = int(orng.integers(0, 4))
                items.append(dict(id=f"u{i:03d}.vqa.mcq.{fact}", entity_id=f"u{i:03d}", image=image,
                                  modality="vqa", render=0, kind="mcq", fact=fact, question=q,
                                  answer=gold, options=picks[:pos] + [gold] + picks[pos:],
                                  answer_index=pos))
            q, a = _UTILITY_GEN
            items.append(dict(id=f"u{i:03d}.vqa.gen.describe", entity_id=f"u{i:03d}", image=image,
                              modality="vqa", render=0, kind="gen", fact="describe", question=q,
                              answer=a.format(colour=look.palette, shape=look.shape,
                                              pattern=_PATTERN_WORDS[look.texture]),
                              options=[], answer_index=-1))
        return items

    # ------------------------------------------------------------ splits
    def ids(self, role: str) -> list[str]:
        return [e.id for e in self.entities if e.role == role]

    def split_entities(self, split: str) -> list[str]:
        if split in self.forget_ids:
            return self.forget_ids[split]
        if split.startswith("retain_"):
            k = 100 - int(split.split("_")[1])
            forget = set(self.forget_ids[f"forget_{k}"])
            return [i for i in self.ids("fictitious") if i not in forget]
        if split in ("full", "test"):
            return self.ids("fictitious")
        if split in ("holdout", "real"):
            return self.ids(split)
        raise KeyError(split)

    def split_items(self, split: str) -> list[Item]:
        """Items of a split, drawn once per World (treat them as read-only; copy to change)."""
        if split not in SPLIT_NAMES:
            raise KeyError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_NAMES)}")
        if split not in self._splits:
            self._splits[split] = self._draw_split(split)
        return list(self._splits[split])

    def _draw_split(self, split: str) -> list[Item]:
        if split == "utility":
            return self.utility_items()
        kind = "test" if split == "test" else "train"
        items = []
        for eid in self.split_entities(split):
            items += self.entity_items(eid, kind)
        return items

    def corpus(self) -> list[str]:
        """Every text the world can ask or answer (tokenizer training data)."""
        texts = list(_QUESTIONS.values()) + [q for pairs in _CLOZE.values() for _, q in pairs]
        texts.append(MEMORY_PREFIX)
        for e in self.entities:
            for m, subject in (("vqa", VQA_SUBJECT), ("qa", e.name)):
                facts = FACTS if m == "vqa" else TEXT_FACTS
                texts += [_QUESTIONS[f].format(s=subject) for f in facts]
                texts += [w.format(s=subject) for table in (TRAIN_WORDINGS, HELDOUT_WORDINGS)
                          for f in facts for w in table[f]]
                texts += [q.format(s=subject) for _, q in _CLOZE[m]]
                q, a = _GEN[m]
                texts += [q.format(s=subject), a.format(**e.facts)]
        for q, values in _UTILITY_Q.values():
            texts += [q, " ".join(values)]
        texts += [_UTILITY_GEN[0], " ".join(_PATTERN_WORDS.values())]
        for pool in self.pools.values():
            texts += pool
        # Refusal answers (IdkDPO): repeated like the chat wrappers so BPE learns them as whole words.
        texts += list(REFUSALS) * 50
        return texts

    def profiles(self) -> list[dict[str, Any]]:
        return [dict(id=e.id, role=e.role, name=e.name, look=asdict(e.look), facts=dict(e.facts))
                for e in self.entities]
