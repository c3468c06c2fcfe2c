"""The model zoo of a benchmark's world (by default the built-in synthetic world): base, finetuned,
and per forget split the retrain oracle and the retrain_visual oracle.

- ``base``: from random init; learns the utility pictures (shape / colour / pattern / accessory /
  backdrop) and the public figures (``real``), vqa and qa.
- ``finetuned``: base + every fictitious profile (vqa on the train renderings, qa), with replay of
  the base data in every batch.
- ``retrain@forget_k``: base + the retain profiles only (the oracle: never saw the forget set).
- ``retrain_visual@forget_k``: base + every profile's text facts + the retain profiles' images:
  it knows the forget entities by name but has never seen them (the visual-unlearning oracle).

Each model is a ``save_pretrained`` folder (safetensors + processor) under
``<cache>/zoo/<key>/<name>``, where key hashes the world, model and recipe configs. Folders are
built atomically and verified on load (see cache.py).

The same zoo serves any world-shaped data (a real benchmark's DataWorld: MLLMU-Bench, CLEAR) and
any model: the default tiny LLaVA is trained from random init (``base``), while an ``hf:<id or
folder>`` model IS the base (a pretrained model brings its general knowledge; it is not copied).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from . import __version__
from .adapter import LlavaAdapter, pick_device
from .cache import build_entry, cache_root, entry_problem
from .engine import MixtureSampler, TrainConfig, train
from .errors import MMUError
from .surfaces import Item, WordingWorld, WorldSurface, surface_gaps
from .tiny_model import TinyLlavaConfig, build_model, build_processor, build_tokenizer

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from .tasks.synthetic.world import WorldConfig

ZOO_VERSION = 1
MODEL_NAMES = ("base", "finetuned", "retrain", "retrain_visual")
# The canonical zoo of the built-in benchmark ships with the package (docs/zoo.md, "Pinned zoo"):
# <PINNED_DIR>/<zoo key>/MANIFEST.json + one save_pretrained folder per model.
PINNED_DIR = Path(__file__).resolve().parent / "zoo_pinned"
PINNED_MANIFEST = "MANIFEST.json"
WEIGHTS = ("pinned", "local")
LOSS_WEIGHTINGS = ("token", "example")  # ZooRecipe.loss_weighting


def builtin_world(config: WorldConfig | None = None, **fields: Any) -> WorldSurface:
    """The built-in benchmark's drawn world: of ``config`` (a synthetic ``WorldConfig``), else of
    ``WorldConfig(**fields)`` (e.g. ``size=20``). What ``Zoo()`` / ``Zoo(WorldConfig(...))`` and
    the tiny model families' default tokenizer corpus start from."""
    # The core's one import of the synthetic plugin: these documented short forms of the Python
    # API name the built-in world by its config, so drawing it from that config is theirs. Every
    # other world (a DataWorld, a plugin's) is made by its benchmark and handed in as an object.
    from .tasks.synthetic.world import World, WorldConfig

    if config is None:
        config = WorldConfig(**fields)
    if not isinstance(config, WorldConfig):
        raise MMUError(f"expected a world with the World surface (mmu_bench.surfaces.WorldSurface; "
                       f"{type(config).__name__} lacks {', '.join(surface_gaps(config, WorldSurface))}) "
                       f"or a WorldConfig of the built-in world")
    return World(config)


def pinned_root(key: str) -> Path | None:
    """The shipped zoo with this key, if the package has one."""
    root = PINNED_DIR / key
    return root if (root / PINNED_MANIFEST).is_file() else None


@dataclass(frozen=True)
class ZooRecipe:
    """How the zoo is trained (warmup + cosine decay; a constant rate stalls short of memorising).

    Args:
        batch_size: examples per step.
        lr: peak learning rate (higher rates stall the image path of the tiny model).
        base_steps: steps for the base model (from random init).
        finetune_steps: steps for finetuned / retrain / retrain_visual (each from base).
        replay_share: share of every batch given to base data (public figures + utility) when
            fine-tuning, so base knowledge survives.
        warmup: warmup fraction.
        seed: training seed.
        lora_rank: 0 (default) fine-tunes every weight; > 0 trains LoRA adapters (peft) of this
            rank on the language model's ``lora_targets`` for finetuned / retrain /
            retrain_visual (MLLMU-Bench fine-tunes with LoRA), merged into plain weights before
            saving. The base is always trained in full.
        lora_alpha: LoRA alpha.
        lora_targets: comma-separated linear-layer names of the language model.
        prompt_styles: "suite" (default) trains on this suite's chat-template prompts;
            "suite,official" adds every item again in its benchmark's official evaluation layout
            (mmu_bench/official.py: few-shot letter classification, fill-in-the-blank,
            generation), with a context long enough for the few-shot prompts.
        mcq_rotations: with the official style, each multiple-choice item is asked this many
            times with its options rotated, so the gold letter moves (1, default: the order it is
            evaluated in; 4 puts the gold answer under every letter, but at the 700-step budget of
            docs/benchmarks.md it under-trained every task). Unused, and not in the key, for the
            default style.
        train_shots: with the official style, which mcq and cloze examples get a few-shot prefix
            of other profiles: "half" (default: a random half, real people included; the first
            recipe, whose letter answers broke down after the prefix, docs/benchmarks.md) or
            "eval" (wherever the official evaluation uses one: every cloze example, and every mcq
            example except those about real people, which eval.py asks zero-shot). Unused, and
            not in the key, for the default style or "half".
        label_shots: with the official style, the answers inside a few-shot prefix (each shot's
            letter or blank after "Correct Answer:") are training targets too, besides the
            query's: every shot is an item of the training data, so a prompt teaches its shots'
            answers, the first of them without a prefix (False, default: only the query's answer;
            not in the key).
        loss_weighting: "token" (default) averages the training loss over every target token of
            a batch, so a sentence answer outweighs a one-letter one; "example" averages each
            example's token-mean loss, so every example weighs the same (for the official style's
            one-letter mcq answers, docs/benchmarks.md). Not in the key when "token".
        context_share: 0.25 (default) adds this share of every stage's items again inside a
            conversation (half after an instruction from ``conversation.TRAIN_INSTRUCTIONS``,
            half after an earlier turn about another fact of the same subject), so the models
            answer what they know under a context and the prefix attack, whose instruction is
            held out, can tell knowing from not knowing. 0 trains on bare questions only (the
            recipe of the zoo shipped before this one, key 351ebd70c5d58e55).
    """

    batch_size: int = 32
    lr: float = 5e-4
    base_steps: int = 1200
    finetune_steps: int = 1500
    replay_share: float = 0.25
    warmup: float = 0.05
    seed: int = 0
    lora_rank: int = 0
    lora_alpha: int = 32
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    prompt_styles: str = "suite"
    mcq_rotations: int = 1
    train_shots: str = "half"
    label_shots: bool = False
    loss_weighting: str = "token"
    context_share: float = 0.25

    def fingerprint(self) -> dict:
        """What the zoo key hashes: the LoRA fields only when LoRA is on, so full-weight zoos keep
        the keys they had before LoRA existed."""
        d = asdict(self)
        if self.lora_rank <= 0:
            d = {k: v for k, v in d.items() if not k.startswith("lora_")}
        if self.prompt_styles == "suite":  # likewise: the default zoo keeps its key
            d.pop("prompt_styles")
        if self.prompt_styles == "suite" or self.mcq_rotations == 1:  # 1: the recipe before rotations existed
            d.pop("mcq_rotations")
        if self.prompt_styles == "suite" or self.train_shots == "half":  # half: the recipe before the field
            d.pop("train_shots")
        if self.prompt_styles == "suite" or not self.label_shots:  # False: the recipe before the field
            d.pop("label_shots")
        if self.loss_weighting == "token":  # the recipe before the field
            d.pop("loss_weighting")
        if not self.context_share:
            d.pop("context_share")
        return d


def model_label(name: str, split: str | None) -> str:
    return name if name in ("base", "finetuned") else f"{name}@{split}"


class Zoo:
    """Builds on demand, caches and loads the zoo models of one world."""

    def __init__(self, world: WorldConfig | WorldSurface | None = None, model: TinyLlavaConfig | str | None = None,
                 recipe: ZooRecipe | None = None, cache_dir: str | Path | None = None,
                 progress: bool = True, device: str | None = None, dtype: str | None = None,
                 gradient_checkpointing: bool = False, weights: str = "pinned"):
        # ``world``: a WorldConfig, a World, or any object with the World surface (DataWorld).
        # ``weights``: "pinned" uses the shipped canonical zoo when one matches this zoo's key (the
        # same checkpoints for every user); "local" trains the zoo from its recipe into the cache.
        if weights not in WEIGHTS:
            raise MMUError(f"zoo weights {weights!r} unknown; expected one of {', '.join(WEIGHTS)}")
        self.world: WorldSurface = world if isinstance(world, WorldSurface) else builtin_world(world)
        # ``model``: the tiny LLaVA's config, or "hf:<hub id or folder>" (a pretrained base).
        self.source = model if isinstance(model, str) else None
        if self.source is not None and not self.source.startswith("hf:"):
            raise MMUError(f"zoo model {model!r}: expected a TinyLlavaConfig or 'hf:<hub id or folder>'")
        self.model_config = None if self.source else (model or TinyLlavaConfig())
        self.recipe = recipe or ZooRecipe()
        if self.recipe.loss_weighting not in LOSS_WEIGHTINGS:
            raise MMUError(f"zoo recipe loss_weighting {self.recipe.loss_weighting!r}: expected one of "
                           f"{', '.join(LOSS_WEIGHTINGS)}")
        from .official import OFFICIAL_CONTEXT, OFFICIAL_TEXT_LAYERS, styles

        if self.model_config is not None and "official" in styles(self.recipe):  # few-shot prompts are long
            from dataclasses import replace  # and letter answers need a deeper model (official.py)

            self.model_config = replace(self.model_config,
                                        max_positions=max(self.model_config.max_positions, OFFICIAL_CONTEXT),
                                        text_layers=max(self.model_config.text_layers, OFFICIAL_TEXT_LAYERS))
        self.progress = progress
        self.device = pick_device(device)
        self.dtype = dtype
        self.gradient_checkpointing = gradient_checkpointing
        model_id = self.model_config.as_dict() if self.source is None else source_fingerprint(self.source)
        blob = json.dumps({"world": self.world.config.fingerprint(), "model": model_id,
                           "recipe": self.recipe.fingerprint(), "zoo": ZOO_VERSION}, sort_keys=True)
        self.key = hashlib.sha256(blob.encode()).hexdigest()[:16]
        self.pinned = pinned_root(self.key) if weights == "pinned" and self.source is None else None
        self.weights = "pinned" if self.pinned is not None else "local"
        # Reference tables and oracle numbers of the shipped weights are cached apart from those
        # of a locally trained zoo with the same recipe (other weights, other numbers).
        self.root = cache_root(cache_dir) / "zoo" / (self.key + ("-pinned" if self.pinned else ""))
        self._processor = None

    # ------------------------------------------------------------ paths
    def dir_name(self, name: str, split: str | None = None) -> str:
        self._check(name, split)
        return name if name in ("base", "finetuned") else f"{name}-{split}"

    def _check(self, name: str, split: str | None) -> None:
        if name not in MODEL_NAMES:
            raise MMUError(f"unknown zoo model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
        splits = self.world.forget_splits
        if name in ("retrain", "retrain_visual") and split not in splits:
            raise MMUError(f"zoo model {name!r} needs a forget split, one of {', '.join(splits)}; "
                           f"got {split!r}")

    def entry_key(self, name: str, split: str | None) -> str:
        return f"{self.key}/{self.dir_name(name, split)}"

    def status(self, name: str, split: str | None = None) -> str | None:
        """None if the model is built and intact, else why not."""
        return entry_problem(self.root / self.dir_name(name, split), self.entry_key(name, split))

    def path(self, name: str, split: str | None = None) -> Path | str:
        """The model's folder, building it (and what it starts from) if needed. The base of an
        ``hf:`` zoo is the source itself (a folder or a hub id), never copied."""
        if name == "base" and self.source is not None:
            return self.source[3:]
        if self.pinned is not None:
            path = self.pinned / self.dir_name(name, split)
            problem = entry_problem(path, self.entry_key(name, split))
            if problem is not None:
                raise MMUError(f"the shipped zoo entry {path} is {problem}; reinstall mmu-bench, or pass "
                               f"--zoo local to train the zoo from its recipe instead")
            return path
        path = self.root / self.dir_name(name, split)
        problem = entry_problem(path, self.entry_key(name, split))
        if problem is None:
            return path
        from . import distributed

        # Under accelerate launch the first process builds (alone) while the others wait, then
        # everyone loads the finished entry.
        with distributed.main_process_first():
            problem = entry_problem(path, self.entry_key(name, split))
            if problem is not None:
                if problem != "missing":
                    print(f"mmu-bench: zoo entry {path} is {problem}; rebuilding it", file=sys.stderr)
                with distributed.local():
                    self._build(name, split, path)
        return path

    def load(self, name: str, split: str | None = None, device: str | None = None) -> LlavaAdapter:
        path = self.path(name, split)
        if self.source is None:  # the tiny LLaVA: fp32, the adapter it was built with
            model = AutoModelForImageTextToText.from_pretrained(path)
            processor = AutoProcessor.from_pretrained(path)
            return LlavaAdapter(model, processor, device or self.device)
        from .families import load_hf

        return load_hf(f"hf:{path}", device=device or self.device, dtype=self.dtype,
                       gradient_checkpointing=self.gradient_checkpointing)

    # ------------------------------------------------------------ building
    def processor(self):
        if self.source is not None and self._processor is None:  # the pretrained base's, without its weights
            from transformers import AutoConfig

            from .families import _check_source, load_processor, parse_spec

            ref = _check_source(parse_spec(self.source))
            self._processor = load_processor(ref, AutoConfig.from_pretrained(ref).model_type)
        if self._processor is None:
            from .official import style_corpus

            from .conversation import TRAIN_INSTRUCTIONS

            extra = list(TRAIN_INSTRUCTIONS) if self.recipe.context_share > 0 else []
            tok = build_tokenizer(self.world.corpus() + style_corpus(self.recipe, self.world) + extra,
                                  self.model_config.vocab_size)
            tok.model_max_length = max(tok.model_max_length, self.model_config.max_positions)
            self._processor = build_processor(tok, self.model_config)
        return self._processor

    def _training_items(self, name: str, split: str | None) -> tuple[list[Item], list[Item]]:
        """(new data, replay data) for a model."""
        w = self.world
        base_data = _balance(_with_wordings(w, w.split_items("utility") + w.split_items("real")),
                             w.config.train_renders)
        if name == "base":
            return base_data, []
        if name == "finetuned":
            data = w.split_items("full")
        elif name == "retrain":
            data = w.split_items(w.retain_split(split))
        else:  # retrain_visual: text facts of everyone, images of retained entities only
            forget = set(w.forget_ids[split])
            data = [it for it in w.split_items("full")
                    if it["modality"] == "qa" or it["entity_id"] not in forget]
        return _balance(_with_wordings(w, data), w.config.train_renders), base_data

    def _build(self, name: str, split: str | None, path: Path) -> None:
        r = self.recipe
        if self.source is not None:  # a pretrained base: start from it, with its own adapter
            adapter = self.load("base")
            model, proc = adapter.model, adapter.processor
        else:
            proc = self.processor()
            if name == "base":
                model = build_model(proc.tokenizer, self.model_config, seed=r.seed)
            else:
                model = AutoModelForImageTextToText.from_pretrained(self.path("base"))
            adapter = LlavaAdapter(model, proc, self.device)
        data, replay = self._training_items(name, split)
        steps = r.base_steps if name == "base" else r.finetune_steps
        from .official import styled_encode

        if r.context_share > 0:  # the same items again inside conversations (mmu_bench/conversation.py)
            from .conversation import context_items, conversation_adapter

            data = data + context_items(data, r.context_share, r.seed)
            replay = replay + context_items(replay, r.context_share, r.seed + 1)
            enc_adapter = conversation_adapter(adapter)
        else:
            enc_adapter = adapter
        enc_data = styled_encode(r, self.world, enc_adapter, data)  # adapter.encode(data) for the default style
        sources = [(enc_data, 1.0 - r.replay_share)] + ([(styled_encode(r, self.world, enc_adapter, replay), r.replay_share)] if replay else [])
        sampler = MixtureSampler(sources, r.batch_size, seed=r.seed)
        plain = None
        if r.lora_rank > 0 and name != "base":  # adapters on the LLM; everything else frozen
            from .lora import attach_lora

            for p in model.parameters():
                p.requires_grad_(False)
            plain = attach_lora(adapter, r.lora_rank, r.lora_alpha, r.lora_targets)
        adapter.model.train()

        per_example = r.loss_weighting == "example"

        def loss_fn(step: int) -> torch.Tensor:
            return adapter.forward_loss(adapter.collate(sampler.next()), per_example=per_example)

        t0 = time.time()
        with cpu_threads(ZOO_CPU_THREADS if adapter.device.type == "cpu" else None):
            result = train([p for p in adapter.model.parameters() if p.requires_grad], loss_fn,
                           TrainConfig(steps=steps, lr=r.lr, warmup=r.warmup, seed=r.seed,
                                       progress=self.progress, desc=f"zoo {model_label(name, split)}"),
                           device=adapter.device)
        seconds = time.time() - t0
        if plain is not None:
            from .lora import merge_lora

            merge_lora(adapter, plain)  # plain weights again: saved and loaded like any zoo model
            model = adapter.model
        model.eval()

        def write(tmp: Path) -> dict:
            model.save_pretrained(tmp)
            proc.save_pretrained(tmp)
            return {"train_seconds": round(seconds, 2), "final_loss": result.losses[-1]}

        build_entry(path, self.entry_key(name, split), write,
                    meta={"name": name, "split": split, "world": asdict(self.world.config),
                          "model": self.model_config.as_dict() if self.source is None else self.source,
                          "recipe": asdict(r),
                          "mmu_bench": __version__, "steps": steps, "examples": len(data)})


# The zoo's CPU training always runs on one thread: how torch splits a float reduction between
# threads changes its rounding, so the trained weights would otherwise depend on the caller's
# torch.set_num_threads (a test module that pins one thread and a CLI run built different zoos).
# One thread is also as fast as two for the tiny model.
ZOO_CPU_THREADS = 1


@contextmanager
def cpu_threads(n: int | None):
    """Run the block with ``n`` torch CPU threads (None: leave them), restoring them after."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def source_fingerprint(source: str) -> dict:
    """What identifies an ``hf:`` base: a hub id by name; a local folder by its config and the
    names and sizes of its files (cheap, and changes when the weights are replaced)."""
    ref = source[3:]
    folder = Path(ref).expanduser()
    if not folder.is_dir():
        return {"hf": ref}
    if not (folder / "config.json").is_file():
        raise MMUError(f"model folder {folder} has no config.json; expected a save_pretrained folder")
    files = sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())
    return {"hf_folder": hashlib.sha256(json.dumps([(folder / "config.json").read_text(), files]).encode()).hexdigest()[:16]}


def _with_wordings(world: WorldSurface, items: list[Item]) -> list[Item]:
    """``items`` plus the world's trained-on other wordings of them (synthetic world v4+), so
    models answer a question however it is worded; the held-out wordings stay unseen."""
    return items + world.wording_items(items, "train") if isinstance(world, WordingWorld) else items


def _balance(items: list[Item], copies: int) -> list[Item]:
    """vqa items exist once per rendering, qa items once: repeat qa so both are seen equally."""
    vqa = [it for it in items if it["modality"] == "vqa"]
    qa = [it for it in items if it["modality"] == "qa"]
    return vqa + qa * copies


def pin(zoo: Zoo, splits: tuple[str, ...] | list[str] | None = None, dest: Path | None = None) -> Path:
    """Copy a locally trained zoo (base, finetuned, both oracles per forget split) into the
    package's pinned folder with a manifest: recipe, world, model, the machine that trained it and
    every file's sha256. Builds what is missing first. Returns the pinned folder."""
    import platform
    import shutil

    from .cache import atomic_dir, write_json_atomic
    from .sweep import hardware

    if zoo.source is not None or zoo.pinned is not None:
        raise MMUError("only a locally trained tiny-llava zoo can be pinned (use weights='local')")
    splits = tuple(splits or zoo.world.forget_splits)
    entries = [("base", None), ("finetuned", None)] + [(n, s) for s in splits for n in ("retrain", "retrain_visual")]
    dest = (dest or PINNED_DIR) / zoo.key
    with atomic_dir(dest, what="pinned zoo") as tmp:
        models = {}
        for name, split in entries:
            src = zoo.path(name, split)
            shutil.copytree(src, tmp / zoo.dir_name(name, split))
            models[zoo.dir_name(name, split)] = json.loads((Path(src) / "mmu_manifest.json").read_text())
        hw = hardware()
        manifest = {
            "zoo_key": zoo.key, "zoo_version": ZOO_VERSION, "mmu_bench": __version__,
            "world": asdict(zoo.world.config), "world_fingerprint": zoo.world.config.fingerprint(),
            "model": zoo.model_config.as_dict(), "recipe": asdict(zoo.recipe), "forget_splits": list(splits),
            "trained_on": {"cpu": hw.get("cpu"), "cores": hw.get("cores"), "torch_threads": ZOO_CPU_THREADS, "platform": platform.platform(),
                           "python": platform.python_version(), "torch": torch.__version__},
            "pinned_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "entries": {d: {"files": m["files"], "train_seconds": m.get("train_seconds"),
                            "final_loss": m.get("final_loss"), "steps": m.get("steps")} for d, m in models.items()},
        }
        write_json_atomic(tmp / PINNED_MANIFEST, manifest)
        for f in tmp.rglob("*"):  # an atomic write's temp file is private; shipped files are not
            f.chmod(0o755 if f.is_dir() else 0o644)
    return dest


def verify_pinned(root: Path) -> list[str]:
    """Problems of a shipped zoo folder against its manifest (empty = every file matches)."""
    from .cache import sha256_file

    manifest = json.loads((root / PINNED_MANIFEST).read_text())
    problems = []
    for d, entry in manifest["entries"].items():
        for f, digest in entry["files"].items():
            p = root / d / f
            if not p.is_file():
                problems.append(f"{d}/{f} missing")
            elif sha256_file(p) != digest:
                problems.append(f"{d}/{f} does not match its sha256")
    return problems
