"""Command line: a thin layer over the Python API (every command is a plain function call)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .errors import MMUError


def _world_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=100, help="number of fictitious profiles (default 100)")
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument("--cache-dir", default=None, help="cache directory (default $MMU_BENCH_CACHE or ~/.cache/mmu-bench)")
    p.add_argument("--zoo-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a zoo training recipe field (repeatable), e.g. base_steps=600")
    _zoo_weights_arg(p)


def _zoo_weights_arg(p: argparse.ArgumentParser, default: str = "pinned") -> None:
    p.add_argument("--zoo", dest="zoo_weights", choices=["pinned", "local"], default=default,
                   help="pinned (default): the canonical zoo shipped with the package where it matches "
                        "(the default world and recipe), so every user scores against the same checkpoints; "
                        "local: train the zoo from its recipe into the cache")


def _builtin():
    """The built-in synthetic benchmark, as registered. The ``world`` commands and ``tune`` are its
    own: they ask the plugin registry for it (built-ins only: it is one, and --no-plugins is not
    parsed yet when argparse checks a forget split) instead of importing the plugin."""
    from .plugins import get_registry

    return get_registry(disable_third_party=True).get("benchmarks", "synthetic")


def _forget_split(value: str) -> str:
    splits = _builtin().forget_splits
    if value not in splits:
        raise argparse.ArgumentTypeError(f"unknown forget split {value!r}; expected one of {', '.join(splits)}")
    return value


def _zoo(args):
    from .config import apply_overrides, parse_pairs
    from .zoo import Zoo, ZooRecipe

    world = _builtin().draw_world(args.size, args.seed)
    recipe = apply_overrides(ZooRecipe, parse_pairs(args.zoo_set, "zoo recipe"), "zoo recipe")
    return Zoo(world, recipe=recipe, cache_dir=args.cache_dir, progress=not args.quiet,
               device=getattr(args, "device", None), weights=args.zoo_weights)


def cmd_world_build(args) -> int:
    t0 = time.time()
    zoo = _zoo(args)
    path = _builtin().build_dataset(zoo.world, args.cache_dir)
    print(f"world {zoo.world.config.fingerprint()}: {path}")
    if args.pin:
        from .zoo import pin

        if zoo.weights != "local":
            raise MMUError("world build --pin retrains the zoo from its recipe: pass --zoo local too")
        dest = pin(zoo)
        print(f"pinned the zoo (every forget split) to {dest}")
    elif not args.no_zoo:
        print(f"zoo {zoo.key} ({zoo.weights}{': shipped with the package' if zoo.weights == 'pinned' else ''})")
        for name in ("base", "finetuned", "retrain", "retrain_visual"):
            split = args.forget_split if name.startswith("retrain") else None
            p = zoo.path(name, split)
            print(f"  {name:<15} {p}")
    print(f"done in {time.time() - t0:.1f} s")
    return 0


def cmd_world_check(args) -> int:
    from .cache import write_json_atomic
    from .worldcheck import format_check, world_check

    zoo = _zoo(args)
    t0 = time.time()
    for name in ("base", "finetuned", "retrain", "retrain_visual"):  # build first: timings stay honest
        zoo.path(name, args.forget_split if name.startswith("retrain") else None)
    t1 = time.time()
    report = world_check(zoo, args.forget_split)
    report["build_seconds"] = round(t1 - t0, 2)
    report["check_seconds"] = round(time.time() - t1, 2)
    print(format_check(report))
    print(f"built/verified zoo in {report['build_seconds']} s; evaluated in {report['check_seconds']} s")
    if args.out:
        write_json_atomic(args.out, {m: v for m, v in report["models"].items()} | {"_report": {
            k: v for k, v in report.items() if k != "models"}})
        print(f"wrote {args.out}")
    return 0 if report["valid"] or not args.strict else 1


def cmd_world_export(args) -> int:
    zoo_world = _zoo(args).world
    out = _builtin().export(zoo_world, Path(args.out), args.format, overwrite=args.overwrite)
    print(f"wrote the world in MLLMU-Bench layout to {out}")
    return 0


def cmd_run(args) -> int:
    from . import distributed
    from .config import parse_pairs

    distributed.init()  # under accelerate launch: join the process group before any model loads

    hyper = parse_pairs(args.set, "--set")
    if args.config:
        hyper = _read_hyper_file(args.config) | hyper
    splits = [s.strip() for s in args.forget_split.split(",") if s.strip()]
    if splits == ["all"]:
        splits = _all_splits(args)
    rc, summary = 0, {}
    for split in splits:
        rc_one, metrics = _run_one(args, hyper, split)
        rc = max(rc, rc_one)
        summary[f"{args.method} @ {split}"] = metrics
    if len(splits) > 1:  # scalability: the same method and finetuned model over forget sizes
        from .report import protocol_columns, results_table
        from .settings import get_setting

        setting = get_setting(args.setting)
        print(f"\nscalability (one finetuned model, growing forget sets; setting {setting.name}):")
        keys = [k for k in protocol_columns(args.protocol, setting) if any(k in m for m in summary.values())]
        print(results_table(summary, keys, setting.name))
    return rc


def _run_one(args, hyper: dict, split: str) -> tuple[int, dict]:
    from .config import parse_pairs
    from .report import protocol_columns, results_table
    from .run import RunSpec, run
    from .settings import get_setting

    spec = RunSpec(method=args.method, setting=args.setting, benchmark=args.benchmark, model=args.model, protocol=args.protocol,
                   forget_split=split, seed=args.seed, hyper=hyper, out=args.out,
                   overwrite=args.overwrite, world_size=args.size, world_seed=args.world_seed,
                   zoo=parse_pairs(args.zoo_set, "zoo recipe"), zoo_weights=args.zoo_weights,
                   cache_dir=args.cache_dir, device=args.device,
                   dtype=args.dtype, data=args.data, utility=args.utility, mcq_mode=args.mcq_mode,
                   gradient_checkpointing=args.gradient_checkpointing, max_new_tokens=args.max_new_tokens,
                   progress=not args.quiet, protocol_options=_protocol_options(args),
                   eval_protocol=args.eval_protocol, shots=args.shots, stop_at=args.stop_at, label=args.label)
    outcome = run(spec)
    rows = dict(outcome.reference)
    label = args.method if args.method not in rows else f"{args.method} (run)"
    rows[label] = outcome.metrics
    setting = get_setting(spec.setting)
    notes = {label: "DIVERGED"} if outcome.diverged else {}
    if setting.oracle in rows:
        notes[setting.oracle] = "oracle"
    keys = protocol_columns(spec.protocol, setting)
    if spec.eval_protocol == "official" and spec.benchmark == "clear":  # TOFU-style keys of its own
        from .official_clear import columns

        keys = columns(setting)
    oracle = outcome.doc.get("protocol", {}).get("oracle_auc", {})
    for name in ("finetuned", "retrain", "retrain_visual"):  # the mia protocol's reference AUCs
        if name in rows and name in oracle:
            rows[name] = rows[name] | {f"mia.{k}.auc": v for k, v in oracle[name].items()}
    if any(k.startswith("attack.") for k in outcome.metrics):  # the attacks' sanity rows
        from .attacks.report import attack_rows

        rows = attack_rows(rows, outcome.doc.get("protocol", {}).get("reference", {}))
    keys = [k for k in keys if any(k in r for r in rows.values())] + \
        [k for k in ("stop.reached", "stop.steps") if k in outcome.metrics]  # what this run measured
    print(f"{spec.benchmark} / {spec.model} / setting {setting.name} / {spec.protocol} / {split} / seed {spec.seed}")
    print(results_table(rows, keys, setting.name, notes=notes))
    timings = outcome.doc.get("timings", {})
    print(f"\n{'reused finished run' if outcome.reused else 'wrote'} {outcome.path}"
          + ("" if outcome.reused else "  (" + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()) + ")"))
    if outcome.diverged:
        d = outcome.diverged
        print(f"mmu-bench: method {args.method!r} diverged (loss {d['loss']} at step {d['step']}); "
              f"metrics are those of the last state whose loss was finite", file=sys.stderr)
        return 3, outcome.metrics
    return 0, outcome.metrics


def cmd_sweep(args) -> int:
    from .config import parse_pairs
    from .sweep import SweepSpec, summary_line, sweep

    if args.spec:
        spec = SweepSpec.from_file(args.spec)
    else:
        if not args.methods:
            raise MMUError("sweep needs --methods a,b (or --spec FILE)")
        spec = SweepSpec(methods=_csv(args.methods), seeds=_seeds(args.seeds),
                         forget_splits=_csv(args.forget_splits), protocols=_csv(args.protocols),
                         settings=_csv(args.settings))
    for pair, value in parse_pairs(args.set, "--set").items():
        method, _, key = pair.rpartition(":")
        for m in ([method] if method else spec.methods):
            spec.hyper.setdefault(m, {})[key] = value
    if args.requests is not None:
        spec.protocol_options.setdefault("continual", {})["requests"] = args.requests
    spec.common = {"out": args.out, "world_size": args.size, "cache_dir": args.cache_dir,
                   "zoo": parse_pairs(args.zoo_set, "zoo recipe"), "zoo_weights": args.zoo_weights,
                   "max_new_tokens": args.max_new_tokens,
                   "progress": False} | ({"stop_at": args.stop_at} if args.stop_at else {}) | spec.common
    result = sweep(spec, executor=args.executor, ray_address=args.ray_address, num_cpus=args.cpus_per_run,
                   num_gpus=args.gpus_per_run, jobs=args.jobs)
    print(summary_line(result["counts"], result["seconds"]))
    for r in result["results"]:
        if r["status"] == "failed":
            print(f"  failed: {r['run']}: {r['error']}", file=sys.stderr)
    return 1 if result["counts"]["failed"] else 0


def _all_splits(args) -> list[str]:
    """Every forget split of the chosen benchmark (a real benchmark's come with its data)."""
    from .plugins import get_registry

    cls = get_registry().get("benchmarks", args.benchmark)
    splits = getattr(cls, "forget_splits", None)
    if isinstance(splits, (tuple, list)):
        return list(splits)
    return list(_benchmark(args).forget_splits)


def _benchmark(args):
    """The benchmark object of a run / finetune command (builds nothing yet: the zoo is lazy)."""
    from .config import apply_overrides, parse_pairs
    from .plugins import get_registry
    from .run import RunSpec, make_benchmark
    from .zoo import ZooRecipe

    spec = RunSpec(method="-", benchmark=args.benchmark, model=args.model, world_size=args.size,
                   world_seed=getattr(args, "world_seed", 0), cache_dir=args.cache_dir, device=args.device,
                   dtype=args.dtype, data=args.data, progress=not args.quiet,
                   gradient_checkpointing=args.gradient_checkpointing)
    recipe = apply_overrides(ZooRecipe, parse_pairs(args.zoo_set, "zoo recipe"), "zoo recipe")
    return make_benchmark(get_registry().get("benchmarks", args.benchmark), spec, recipe)


def cmd_finetune(args) -> int:
    """Build a benchmark's finetuned model and its oracles (retrain, retrain_visual) per forget split."""
    from .evaluate import EvalConfig

    from . import distributed

    distributed.init()
    t0 = time.time()
    bench = _benchmark(args)
    splits = _csv(args.forget_splits) if args.forget_splits != "all" else list(bench.forget_splits)
    for split in splits:
        bench.check_split(split)
    print(f"{bench.name} / {args.model}: zoo {bench.zoo.root}")
    print(f"  {'base':<24} {bench.zoo.path('base')}")
    print(f"  {'finetuned':<24} {bench.zoo.path('finetuned')}")
    for split in splits:
        for name in ("retrain", "retrain_visual"):
            print(f"  {name + '@' + split:<24} {bench.zoo.path(name, split)}")
    if not args.no_check:
        from .protocols import evaluation_columns
        from .report import results_table
        from .settings import VISUAL

        for split in splits:
            ref = bench.reference_metrics(split, EvalConfig(max_new_tokens=args.max_new_tokens))
            print(f"\nreference models on {split}:")
            print(results_table(ref, evaluation_columns(VISUAL), VISUAL.name))
    print(f"done in {time.time() - t0:.1f} s")
    return 0


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _seeds(text: str) -> list[int]:
    out = []
    for t in _csv(text):
        try:
            v = int(t)
        except ValueError:
            raise MMUError(f"--seeds: {t!r} is not an integer; expected comma-separated seeds >= 0, e.g. 0,1,2") from None
        if v < 0:
            raise MMUError(f"--seeds: {v} is negative; seeds are integers >= 0")
        out.append(v)
    if not out:
        raise MMUError("--seeds: no seed given; expected e.g. 0,1,2")
    return out


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{v} is negative; expected an integer >= 0")
    return v


def _stop_at_arg(p: argparse.ArgumentParser) -> None:
    def check(text: str) -> str:
        from .errors import MMUError
        from .stopping import StopRule

        try:
            StopRule.parse(text)
        except MMUError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return text

    p.add_argument("--stop-at", type=check, default=None, metavar="forget=ACC[,every=K][,budget=N]",
                   help="the shared stopping rule for every method (matched forgetting): train until the forget "
                        "entities' held-out validation mcq accuracy <= ACC, checked every K steps (default 5), "
                        "at most N steps (default 200), never looking at reported items (docs/protocols.md)")


def _protocol_options(args) -> dict:
    names = {"requests": "requests", "relearn_steps": "relearn_steps", "relearn_fraction": "relearn_fraction",
             "attacks": "attacks", "matched_retention": "matched_retention"}
    opts = {k: getattr(args, a) for k, a in names.items() if getattr(args, a, None) is not None}
    parts = (getattr(args, "protocol", None) or "").split("+")
    if "attacks" in opts and len(parts) > 1:  # mia and attacks both take it: --attacks means the attacks part's
        opts["attacks.attacks" if "attacks" in parts else "mia.attacks"] = opts.pop("attacks")
    return opts


def _read_hyper_file(path: str) -> dict:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise MMUError(f"hyper-parameter file {path!r} cannot be read ({e.strerror or e})") from None
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # yaml.YAMLError / json.JSONDecodeError
        raise MMUError(f"hyper-parameter file {path!r} is not valid {'YAML' if p.suffix in ('.yaml', '.yml') else 'JSON'}: "
                       f"{str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise MMUError(f"hyper-parameter file {path!r} must hold a mapping of key: value, got {type(data).__name__}")
    return data


def cmd_tune(args) -> int:
    from .config import parse_pairs
    from .plugins import get_registry
    from .settings import check_method_setting
    from .stopping import StopRule
    from .tuning import tune_many

    stop = StopRule.parse(args.stop_at) if args.stop_at else StopRule()
    bench = {"world_size": args.size, "world_seed": args.world_seed, "cache_dir": args.cache_dir,
             "zoo": parse_pairs(args.zoo_set, "zoo recipe"), "zoo_weights": args.zoo_weights,
             "progress": not args.quiet}
    methods = _csv(args.method)
    for m in methods:  # every name and the setting checked before any trial runs
        check_method_setting(get_registry().get("methods", m), get_registry().get("settings", args.setting))
    results = tune_many(methods, args.jobs, setting=args.setting, trials=args.trials, seed=args.seed, stop=stop,
                        out=args.out, split=args.forget_split, benchmark_kwargs=bench, progress=not args.quiet)
    for m, r in zip(methods, results):
        b = r.best
        print(f"{m} ({args.setting}): best of {len(r.trials)} trials #{b['number']} {b['params']} -> retain "
              f"validation acc {b.get('retain_val_acc')}, forget validation acc {b.get('forget_val_acc')} "
              f"(target {stop.target:g} {'reached' if b.get('reached') else 'MISSED'}, {b.get('steps')} steps)")
        print(f"wrote {r.config_path} (run --config / sweep spec hyper) and {r.trials_path}")
    return 0


def cmd_hparams(args) -> int:
    from tabulate import tabulate

    from .method import hyper_docs
    from .plugins import get_registry

    cls = get_registry().get("methods", args.method)
    print(f"{cls.name}: {cls.description}")
    from .tuning import search_space

    docs = hyper_docs(cls)
    space = search_space(cls)
    if docs:
        print(tabulate([[n, t, repr(d), str(space.get(n, "")), h] for n, t, d, h in docs],
                       headers=["key", "type", "default", "tune search", "meaning"], tablefmt="simple"))
    else:
        print("(no hyper-parameters)")
    return 0


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--benchmark", default="synthetic", help="synthetic (default), mllmu, clear (mmu-bench ls benchmarks)")
    p.add_argument("--data", default=None, help="data folder of a real benchmark (mllmu, clear)")
    p.add_argument("--model", default="tiny-llava",
                   help="tiny-llava (default, built by the zoo) or hf:<hub id or local folder> (any "
                        "transformers image-text-to-text model: LLaVA, LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    p.add_argument("--dtype", default=None, choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights dtype of hf: models (default: bfloat16 on CUDA, float32 on CPU)")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="trade compute for memory when training hf: models (LLM methods, zoo fine-tuning)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="mmu-bench", description="Benchmark suite for unlearning in multimodal LLMs.")
    parser.add_argument("--version", action="version", version=f"mmu-bench {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)
    from . import plugins

    plugins.add_global_flag(parser)
    plugins.add_commands(sub)

    r = sub.add_parser("run", help="unlearn with one method and evaluate every task")
    r.add_argument("--method", required=True, help="registered method name (mmu-bench ls methods)")
    _model_args(r)
    r.add_argument("--setting", default="visual",
                   help="visual (default: forget the image route, keep text knowledge) | full (forget both) "
                        "(mmu-bench ls settings)")
    r.add_argument("--protocol", default="static", help="static | continual | mia | relearn | attacks (mmu-bench ls protocols), or parts joined by '+' that share one unlearning: static+mia+attacks")
    r.add_argument("--relearn-steps", type=int, default=None, help="relearn: fine-tuning steps of the attack (default 30)")
    r.add_argument("--relearn-fraction", type=float, default=None,
                   help="relearn: fraction of forget entities the attack trains on (default 0.5)")
    r.add_argument("--attacks", default=None,
                   help="attacks: comma-separated attacks (default all: quant_int8, quant_int4, probe, paraphrase, "
                        "permute, prefix, neighbours, consistency); mia: its MIA attacks; in a composed protocol "
                        "(static+mia+attacks) the attacks part's")
    r.add_argument("--requests", type=int, default=None, help="continual: number of sequential requests (default 5)")
    r.add_argument("--forget-split", default="forget_10",
                   help="forget_5 | forget_10 | forget_15, a comma-separated list, or all (scalability)")
    r.add_argument("--seed", type=_nonneg_int, default=0, help="the method's seed (default 0)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="hyper-parameter override (repeatable); mmu-bench hparams METHOD lists them")
    r.add_argument("--config", default=None, help="YAML or JSON file of hyper-parameters (--set wins)")
    r.add_argument("--out", default="runs", help="results directory (default runs/)")
    r.add_argument("--overwrite", action="store_true", help="redo a finished run")
    r.add_argument("--size", type=int, default=100, help="synthetic world size (default 100)")
    r.add_argument("--world-seed", type=int, default=0)
    r.add_argument("--zoo-set", action="append", default=[], metavar="KEY=VALUE")
    _zoo_weights_arg(r)
    r.add_argument("--cache-dir", default=None)
    r.add_argument("--utility", default=None, metavar="lmeval:TASK,...",
                   help="extra text-utility evaluation of the unlearned model through lm-eval, e.g. "
                        "lmeval:mmu_synthetic_real_qa_mcq (keys utility.lmeval.<task>.<metric>)")
    r.add_argument("--mcq-mode", choices=["loglik", "generate"], default="loglik")
    r.add_argument("--max-new-tokens", type=int, default=50, help="generation budget for gen / cloze (default 50)")
    r.add_argument("--eval-protocol", choices=["loglik", "official"], default="loglik",
                   help="loglik (default: this suite's prompts) or official (mllmu, clear: the benchmark's "
                        "released prompts, parsing and metrics; docs/benchmarks.md)")
    r.add_argument("--shots", type=int, default=None, help="official protocol: few-shot profiles per task")
    _stop_at_arg(r)
    r.add_argument("--label", default=None, help="name the run's row METHOD-LABEL (e.g. tuned) instead of a hash "
                                                 "of its changed hyper-parameters")
    r.add_argument("--matched-retention", type=float, default=None, metavar="RATIO",
                   help="static: also report matched.* (forgetting of the finetuned/unlearned weight interpolation "
                        "that keeps RATIO x the finetuned model's validation retention, e.g. 0.95)")
    r.set_defaults(func=cmd_run)
    sw = sub.add_parser("sweep", help="run a grid of settings x methods x seeds x forget splits x protocols (resumable)")
    sw.add_argument("--methods", default=None, help="comma-separated method names")
    sw.add_argument("--seeds", default="0")
    sw.add_argument("--forget-splits", default="forget_10")
    sw.add_argument("--protocols", default="static")
    sw.add_argument("--settings", default="visual", help="comma-separated settings, a grid axis (default visual; mmu-bench ls settings)")
    sw.add_argument("--spec", default=None, help="YAML sweep spec (methods, seeds, forget_splits, protocols, hyper, common)")
    sw.add_argument("--set", action="append", default=[], metavar="[METHOD:]KEY=VALUE",
                    help="hyper-parameter for every method, or for one with METHOD:KEY=VALUE")
    sw.add_argument("--requests", type=int, default=None, help="continual requests")
    sw.add_argument("--executor", choices=["local", "ray"], default="local")
    sw.add_argument("--jobs", type=int, default=1,
                    help="local executor: runs at once in worker processes, cores shared between them (default 1)")
    sw.add_argument("--ray-address", default=None, help="join an existing Ray cluster")
    sw.add_argument("--cpus-per-run", type=float, default=1)
    sw.add_argument("--gpus-per-run", type=float, default=0)
    sw.add_argument("--out", default="runs")
    sw.add_argument("--size", type=int, default=100)
    sw.add_argument("--cache-dir", default=None)
    sw.add_argument("--zoo-set", action="append", default=[], metavar="KEY=VALUE")
    _zoo_weights_arg(sw)
    sw.add_argument("--max-new-tokens", type=int, default=50)
    _stop_at_arg(sw)
    sw.set_defaults(func=cmd_sweep)
    f = sub.add_parser("finetune", help="build a benchmark's finetuned model and retrain oracles for a model")
    _model_args(f)
    f.add_argument("--forget-splits", default="all", help="comma-separated forget splits, or all (default)")
    f.add_argument("--size", type=int, default=100, help="synthetic world size (default 100)")
    f.add_argument("--world-seed", type=int, default=0)
    f.add_argument("--zoo-set", action="append", default=[], metavar="KEY=VALUE",
                   help="zoo recipe field (repeatable): batch_size, lr, base_steps, finetune_steps, replay_share")
    f.add_argument("--cache-dir", default=None)
    f.add_argument("--max-new-tokens", type=int, default=50)
    f.add_argument("--no-check", action="store_true", help="do not evaluate the reference models afterwards")
    f.set_defaults(func=cmd_finetune)
    t = sub.add_parser("tune", help="budgeted hyper-parameter search on validation items only (Optuna TPE)",
                       description="Seeded Optuna search over each method's declared space (mmu-bench hparams "
                                   "METHOD shows it). Every trial runs under the shared stopping rule and is "
                                   "scored on validation items only: retain validation accuracy at the forget "
                                   "target. Writes <method>-<setting>-<split>.yaml (run --config) and "
                                   ".trials.json (fronts). Resumable.")
    t.add_argument("--method", required=True, help="method name, or a comma-separated list")
    t.add_argument("--setting", default="visual")
    t.add_argument("--trials", type=int, default=8, help="trials per method (the same for every method: the budget)")
    t.add_argument("--jobs", type=int, default=1, help="methods tuned at once in worker processes (2 on 2 cores); "
                   "each method's trials stay sequential, so the choices equal a serial run's")
    t.add_argument("--seed", type=_nonneg_int, default=0, help="the sampler's and the trials' seed")
    t.add_argument("--forget-split", type=_forget_split, default="forget_10")
    t.add_argument("--out", default="tuning", help="output folder (default tuning/)")
    t.add_argument("--size", type=int, default=100)
    t.add_argument("--world-seed", type=int, default=0)
    t.add_argument("--cache-dir", default=None)
    t.add_argument("--zoo-set", action="append", default=[], metavar="KEY=VALUE")
    _zoo_weights_arg(t)
    _stop_at_arg(t)
    t.set_defaults(func=cmd_tune)
    h = sub.add_parser("hparams", help="list a method's hyper-parameters with types, defaults and meaning")
    h.add_argument("method")
    h.set_defaults(func=cmd_hparams)

    world = sub.add_parser("world", help="the built-in synthetic world and its model zoo")
    wsub = world.add_subparsers(dest="world_command", required=True)
    b = wsub.add_parser("build", help="draw the world and build its zoo (cached)")
    _world_args(b)
    b.add_argument("--forget-split", type=_forget_split, default="forget_10")
    b.add_argument("--no-zoo", action="store_true", help="only draw the world")
    b.add_argument("--pin", action="store_true",
                   help="with --zoo local: train every forget split's zoo and copy it into the package's "
                        "pinned folder with a manifest (maintainers: this is how the canonical zoo is made)")
    b.set_defaults(func=cmd_world_build)
    c = wsub.add_parser("check", help="evaluate base / finetuned / retrain / retrain_visual and check validity")
    _world_args(c)
    c.add_argument("--forget-split", type=_forget_split, default="forget_10")
    c.add_argument("--out", default=None, help="write {model: {metric: value}} JSON here")
    c.add_argument("--strict", action="store_true", help="exit 1 when a validity relation fails")
    c.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when present)")
    c.set_defaults(func=cmd_world_check)
    e = wsub.add_parser("export", help="write the world in another benchmark's layout")
    _world_args(e)
    e.add_argument("--format", choices=["mllmu"], default="mllmu")
    e.add_argument("--out", required=True, help="output directory")
    e.add_argument("--overwrite", action="store_true")
    e.set_defaults(func=cmd_world_export)
    from . import leaderboard

    leaderboard.add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "no_plugins", False):
        from .plugins import set_disabled

        set_disabled(True)
    if args.quiet:  # transformers' own "Loading weights" bars too
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        return int(args.func(args) or 0)
    except MMUError as e:
        print(f"mmu-bench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmu-bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
