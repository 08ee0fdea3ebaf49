"""What each CLI command does; parsing lives in main.py."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from rich.markup import escape
from rich.table import Table

from potstill import config
from potstill.cache.reader import check_cache, read_manifest
from potstill.data import DATASETS
from potstill.distributed_check import check_data, check_recipe
from potstill.encoders import eager_attention, encoder_layout
from potstill.engine import distributed
from potstill.engine.checkpoint import atomic_write, guarded
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.engine.stamp import check_resume
from potstill.errors import PotstillError
from potstill.knowledge import LOSSES
from potstill.knowledge.wiring import build_terms, check_explicit_pairs, example_features
from potstill.models import MODELS, create_model, model_modality
from potstill.pipeline import Runner
from potstill.recipe import Recipe
from potstill.report import measure_latency, model_row, print_result, result_console, summarize
from potstill.report.samples import text_samples
from potstill.report.seeds import aggregate, seed_lines
from potstill.run_models import saved_models
from potstill.compress.export_run import export_run
from potstill.compress.onnx_file import require
from potstill.schemes import SCHEMES, create_scheme
from potstill.startup import check_before_writing, open_workbench, preflight
from potstill.taps import dry_run, embedding_tap, stage_taps
from potstill.tracking import check_tracking


def resolve_recipe(args: argparse.Namespace) -> tuple[Recipe, RunDir]:
    """The recipe (from the file, or the run's saved copy when resuming) and its run folder."""
    if args.resume:
        run = RunDir(args.resume)
        saved_path = run.path / "recipe.yaml"
        if not (saved_path.is_file() and (run.path / "run.json").is_file()):
            raise PotstillError(f"cannot resume {run.path}: it holds no recipe.yaml and run.json, so it is not a potstill run folder")
        saved = config.load(saved_path, Recipe)
        if args.recipe or args.overrides:
            given = config.load(args.recipe, Recipe, args.overrides) if args.recipe else config.validate(
                config.apply_overrides(config.to_dict(saved), args.overrides), Recipe, source="--set")
            if config.to_dict(given) != config.to_dict(saved):
                raise PotstillError(
                    f"the recipe differs from the one {run.path} was started with; resume without a recipe or "
                    "--set (the saved recipe.yaml is used), or start a new run with --run-dir"
                )
        return saved, run
    if not args.recipe:
        raise PotstillError("give a recipe file, e.g. potstill distill recipes/digits/kd_cnn_to_mlp.yaml")
    recipe = config.load(args.recipe, Recipe, args.overrides)
    return recipe, RunDir(args.run_dir or Path(recipe.output_dir) / recipe.name)


def start(args: argparse.Namespace) -> tuple[Runner | None, Reporter]:
    """Check everything a run needs, then create (or reopen) and lock its folder. None for a run
    that is already finished: its files are left exactly as they are."""
    recipe, run = resolve_recipe(args)
    resume = bool(args.resume)
    reporter = Reporter(quiet=args.quiet or not distributed.is_main())  # under torchrun rank 0 alone prints
    world = distributed.launched_world_size()  # torchrun's process count (docs/distributed.md)
    if resume:
        check_resume(run.path, recipe)  # recipe.yaml edited since the checkpoints were written
        if (run.path / "summary.json").is_file():
            reporter.message(f"{run.path} is finished (summary.json); nothing to resume, its files are left as they are")
            args.run_path = run.path
            return None, reporter
    preflight(recipe, args.command)  # bad names and arguments fail before anything is written
    check_recipe(recipe, args.command, world)  # so do a batch size or a scheme torchrun cannot split
    bench = open_workbench(recipe)  # so do missing or damaged data files
    check_data(bench.splits, recipe.data.batch_size, world)
    bench.device = distributed.setup(bench.device)  # under torchrun: join the process group (its own GPU on CUDA)
    check_before_writing(recipe, bench)  # so do models too large and teacher files that do not load
    check_tracking(recipe.logging, recipe.name, reach=not resume)  # so do missing tracking packages and a wrong MLflow URI
    if not distributed.is_main():
        recipe.logging = None  # rank 0 alone writes, tracking included
    distributed.on_main(lambda: create_run(run, recipe, resume))  # the other ranks wait, or stop with its error
    args.run_path = run.path  # for the message if the run is interrupted
    reporter.message(f"run folder: {run.path}" + (f" ({world} processes)" if world > 1 else ""))
    return Runner(recipe, run, reporter, resume=resume, bench=bench), reporter


def create_run(run: RunDir, recipe: Recipe, resume: bool) -> None:
    """Make (or reopen) and lock the run folder; a new run gets its recipe.yaml."""
    run.create(resume=resume)
    if not resume:
        text = config.dump_yaml(config.to_dict(recipe))
        guarded(lambda: atomic_write(run.path / "recipe.yaml", text), run.path / "recipe.yaml")


def cmd_train(args: argparse.Namespace) -> int:
    runner, _ = start(args)
    if runner is not None:
        runner.run_train()
    if distributed.is_main():
        show_result(args, args.run_path / "summary.json")
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    if getattr(args, "seeds", None):
        return distill_seeds(args)
    runner, reporter = start(args)
    if runner is not None:
        quantize = runner.recipe.student.quantize if runner.recipe.student is not None else None
        if quantize is not None:
            require("onnxruntime")  # the int8 model is ONNX Runtime's: missing, it fails before training
        runner.run_distill()
        if quantize is not None and distributed.is_main():
            int8_models(args.run_path, quantize.deploy, reporter)
    if distributed.is_main():
        show_result(args, args.run_path / "summary.json")
    return 0


def distill_seeds(args: argparse.Namespace) -> int:
    """--seeds: the recipe once per seed in RUN/seed<N> (a finished seed is kept, an unfinished one
    continues from its checkpoint), then RUN/seeds.json with mean ± std and the paired gain."""
    seeds = args.seeds
    if len(set(seeds)) != len(seeds):
        raise PotstillError(f"--seeds {' '.join(map(str, seeds))}: each seed once (duplicates would only repeat a run)")
    if any(seed < 0 for seed in seeds):
        raise PotstillError(f"--seeds {' '.join(map(str, seeds))}: seeds are non-negative integers")
    if args.resume:
        raise PotstillError("--seeds with --resume: run the same command again instead; finished seeds are kept and an "
                            "unfinished one continues from its checkpoint")
    recipe, base = resolve_recipe(args)
    summaries = {}
    for seed in seeds:
        folder = base.path / f"seed{seed}"
        one = argparse.Namespace(**{**vars(args), "seeds": None, "run_dir": str(folder),
                                    "overrides": [*args.overrides, f"seed={seed}"], "resume": None})
        if (folder / "recipe.yaml").is_file() and (folder / "run.json").is_file():
            one.resume, one.recipe, one.overrides = str(folder), None, []  # finished: left as is; else continued
        print(f"seed {seed}: {folder}", file=sys.stderr)
        cmd_distill(one)
        summaries[seed] = json.loads((folder / "summary.json").read_text())
    result = aggregate(summaries)
    base.write_json("seeds.json", result)
    console = result_console(stderr=args.json)
    for line in seed_lines(result):
        console.print(line, highlight=False, markup=False)
    console.print(f"aggregate: {base.path / 'seeds.json'}", highlight=False, markup=False)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


def int8_models(run: Path, mode: str, reporter: Reporter) -> None:
    """After quantization-aware training: the real int8 models (ONNX Runtime), their test
    accuracy and latency added to summary.json (`potstill export RUN --int8` does the same)."""
    roles = [row["role"] for row in json.loads((run / "summary.json").read_text())["models"]
             if row["role"] in ("baseline", "student", "refine") and row.get("weights")]
    reporter.message(f"int8: exporting {', '.join(roles)} to ONNX Runtime int8 ({mode}), checked on the test split")
    export_run(run, int8=True, mode=mode, roles=roles, reporter=reporter)


def show_result(args: argparse.Namespace, summary_file: Path, extra: Sequence[str] = ()) -> None:
    """The end of train/distill/eval: the table (with --quiet only the headline lines) and where
    the summary is. With --json the summary file's content is the only stdout output and the
    human-readable lines go to stderr."""
    text = summary_file.read_text()
    console = result_console(stderr=args.json)
    print_result(json.loads(text), summary_file, args.quiet, console)
    for line in extra:
        console.print(line, highlight=False, markup=False)
    if args.json:
        sys.stdout.write(text)
        sys.stdout.flush()


def cmd_eval(args: argparse.Namespace) -> int:
    """Rebuild the run's models from its saved recipe and weights and measure them again."""
    run = RunDir(args.run)
    if not (run.path / "recipe.yaml").is_file():
        raise PotstillError(f"{run.path} holds no recipe.yaml; give a run folder made by potstill train/distill")
    recipe = config.load(run.path / "recipe.yaml", Recipe)
    runner = Runner(recipe, run, Reporter(quiet=True), resume=True)
    rows, teacher_logits, times, skipped = [], None, runner.stage_times(), []
    found = list(saved_models(runner))
    measured = [(role, model) for role, _, model, _ in found if model is not None]
    latency = measure_latency(measured, runner.bench.splits.example_batch, recipe.report)  # interleaved, as in the run
    for role, title, model, weights in found:
        if model is None:
            skipped.append(title)
            continue
        row, logits = model_row(role, model, runner.bench, recipe.report, teacher_logits, weights, times.get(role), latency[role])
        row["title"] = title or row["title"]
        teacher_logits = logits if role == "teacher" else teacher_logits
        rows.append(row)
    if not rows:
        raise PotstillError(f"{run.path} holds no finished models (no */model.safetensors); finish it with --resume")
    summary_file = run.path / "summary.json"
    final = json.loads(summary_file.read_text()).get("final_role", "student") if summary_file.is_file() else "student"
    summary = summarize(rows, runner.bench.splits.describe(), final)
    summary["not_re_measured"] = skipped
    if runner.bench.splits.task == "causal_lm":  # a language model: what each writes after the same prompts
        summary["samples"] = text_samples(dict(measured), runner.bench.splits.test, runner.bench.device)
    run.write_json("eval.json", summary)
    note = [f"not re-measured (no single weights file; summary.json keeps them): {', '.join(skipped)}"] if skipped else []
    note += sample_lines(summary.get("samples", []))
    show_result(args, run.path / "eval.json", note)
    return 0


def sample_lines(samples: list[dict[str, str]]) -> list[str]:
    """Each prompt, then each model's greedy continuation, one line each (newlines shown as ⏎)."""
    lines = []
    for number, sample in enumerate(samples, 1):
        lines.append(f"sample {number}: ...{sample['prompt'][-60:]!r}".replace("\\n", "⏎"))
        lines += [f"  {role:<9} {text[:100]!r}".replace("\\n", "⏎") for role, text in sample.items() if role != "prompt"]
    return lines


def cmd_list(args: argparse.Namespace) -> int:
    if args.what == "taps":
        return list_taps(args)
    registry = {"models": MODELS, "losses": LOSSES, "datasets": DATASETS, "schemes": SCHEMES}[args.what]
    table = Table(title=f"registered {args.what}")
    table.add_column("name")
    if args.what == "losses":
        table.add_column("kind")
        table.add_column("pairs: auto")
    if args.what == "schemes":
        table.add_column("args (defaults)")
    table.add_column("description")
    for name in registry.names():
        extra = [LOSSES.get(name).kind, LOSSES.get(name).pairing] if args.what == "losses" else []
        if args.what == "schemes":
            extra = [", ".join(f"{key}={value.default!r}" if value.default is not inspect.Parameter.empty else f"{key} (required)"
                               for key, value in SCHEMES.parameters(name).items()) or "-"]
        table.add_row(*(escape(text) for text in (name, *extra, registry.describe(name))))
    result_console().print(table)
    return 0


def list_taps(args: argparse.Namespace) -> int:
    """Every module of a model in execution order, with its output shape for one dry run, and
    what automatic pairing picks (stage ends and the embedding)."""
    if not args.model:
        raise PotstillError(f"give a model: potstill list taps MODEL (registered: {', '.join(MODELS.names())})")
    model_args = config.parse_yaml(args.model_args)
    if not isinstance(model_args, dict):
        raise PotstillError(f"--args must be a YAML mapping such as '{{channels: [16, 32]}}', got {args.model_args!r}")
    name = args.model
    if name.startswith("hf:"):  # hf:FOLDER is the `hf` model with path FOLDER
        name, model_args = "hf", {**model_args, "path": name[3:]}
    MODELS.check_kwargs(name, model_args, where="--args")
    text = model_modality(name) == "text"
    shape = tuple(args.input_shape or ((16,) if text else (1, 28, 28)))
    model = create_model(name, input_shape=shape, num_classes=args.num_classes, **model_args)
    if text:
        return list_encoder_taps(model, args.model, shape[0])
    infos, _ = dry_run(model, torch.zeros(2, *shape))
    stages = stage_taps(model, infos)
    embedding = embedding_tap(model, infos)
    table = Table(title=f"{args.model} on input (B, {', '.join(map(str, shape))}): tappable modules")
    for column in ("name", "module", "output shape", "automatic pairing"):
        table.add_column(column)
    modules = dict(model.named_modules())
    for info in infos:
        role = f"stage end {stages.index(info.name) + 1}" if info.name in stages else ""
        cells = ("  " * (info.depth - 1) + info.name, type(modules[info.name]).__name__, str(("B", *info.shape[1:])), role)
        table.add_row(*(escape(text) for text in cells))
    result_console().print(table)
    print(f"embedding (pairs: embedding): {embedding}; append :input to any name to tap what enters that module")
    return 0


def list_encoder_taps(model, title: str, length: int) -> int:
    """A transformer's taps as transformer losses pair them: embeddings, each layer's hidden state,
    attention maps and values (potstill.encoders), with shapes from one dry run on `length` tokens."""
    layout = encoder_layout(model)
    if layout is None:
        raise PotstillError(f"{title}: found no encoder layers with query/key/value self-attention to list")
    names = [layout.embeddings, *layout.layers, *layout.attentions, *layout.values]
    labels = {layout.embeddings: "embeddings"} | {n: f"layer {i} hidden state" for i, n in enumerate(layout.layers)}
    labels |= {n: f"layer {i} attention maps" for i, n in enumerate(layout.attentions)}
    labels |= {n: f"layer {i} values" for i, n in enumerate(layout.values)}
    eager_attention(model, "model")
    ids = torch.ones(2, length, dtype=torch.long)
    features = example_features(model, names, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, "model")
    table = Table(title=f"{title} on (B, {length}) token ids: taps of the transformer losses")
    for column in ("name", "what", "output shape"):
        table.add_column(column)
    for name in names:
        table.add_row(*(escape(text) for text in (name, labels[name], str(("B", *features[name].shape[1:])))))
    result_console().print(table)
    print("attention maps (NAME:1) need eager attention, which potstill sets when a loss taps them; any module name "
          "(model.named_modules()) can also be tapped in distill.pairs")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    """`cache build RECIPE`: run the teacher once over the training views; `cache info DIR`: check and describe."""
    if args.action == "info":
        return cache_info(Path(args.target), args.quiet)
    recipe = config.load(args.target, Recipe, args.overrides)
    preflight(recipe, "distill")
    spec = recipe.distill.cache
    scheme = create_scheme(recipe.scheme.name, recipe.scheme.args)
    if not scheme.cache:
        raise PotstillError(f"cache build: scheme '{scheme.name}' has no single frozen teacher whose outputs could be cached")
    if recipe.teacher is None or recipe.teacher.checkpoint is None:
        raise PotstillError(
            "cache build needs a trained teacher: set teacher.checkpoint (train one with `potstill train RECIPE`), "
            "or let `potstill distill` build the cache after training the teacher (distill.cache.enabled: true)"
        )
    folder = Path(args.out) if args.out else Path(spec.path) if spec.path else None
    if folder is None:
        raise PotstillError("say where the cache goes: set distill.cache.path in the recipe (shared by its runs) or give --out DIR")
    if args.workers:
        recipe.distill.cache.workers = args.workers
    reporter = Reporter(quiet=args.quiet)
    runner = Runner(recipe, RunDir(folder), reporter)  # writes nothing but the cache
    terms = build_terms(recipe.distill, recipe.train.epochs)
    student, teacher = runner.student(), runner.teacher()
    check_explicit_pairs(terms, student, teacher)
    runner.connect(terms, student, teacher)
    manifest = runner.build_cache(runner.cache_job(teacher, terms, folder), rebuild=args.rebuild)
    if not args.quiet:
        print_cache(folder, manifest)
    return 0


def token_lines(layout: dict, per_view: dict) -> list[str]:
    """A language model's cache: bytes per token (its logits fields hold one row per position)."""
    shapes = [field["shape"] for name, field in layout["fields"].items() if not name.startswith("tap:")]
    if not shapes or len(shapes[0]) != 2:
        return []
    positions, kept = shapes[0]
    what = f"top {kept} of {layout['num_classes']} tokens" if "log_probs" in layout["fields"] else "every token's logit"
    return [f"  per token        {per_view['logits'] / positions:g} B ({what}, {positions} positions per row)"]


def cache_info(folder: Path, quiet: bool) -> int:
    manifest = read_manifest(folder)
    check_cache(folder, manifest, current=None)  # every file's checksum
    if not quiet:
        print_cache(folder, manifest)
    return 0


def print_cache(folder: Path, manifest: dict) -> None:
    layout, size, build = manifest["layout"], manifest["bytes"], manifest.get("build", {})
    stamp = manifest["fingerprint"]
    per_view = size["per_sample_view"]
    fields = ", ".join(f"{name} {tuple(f['shape'])} {f['dtype']}" for name, f in layout["fields"].items())
    lines = [
        f"teacher cache {folder} (intact: every file matches its SHA-256)",
        f"  samples x views  {layout['num_samples']} x {layout['views']} in {len(manifest['shards'])} shards",
        f"  fields           {fields}",
        (f"  bytes            {per_view['logits']} logits + {per_view['features']} features + {per_view['view']} view "
         f"per sample-view; {size['total'] / 2**20:.2f} MiB in all"),
        *token_lines(layout, per_view),
        f"  teacher          {stamp['teacher']['architecture']['name']} weights {stamp['teacher']['weights_sha256'][:12]}",
        f"  data             {stamp['data']['dataset']} {stamp['data']['samples']} samples, content {stamp['data']['content_sha256'][:12]}",
        f"  views            {stamp['views']}",
        (f"  last build       {build.get('seconds')} s, {build.get('shards_built')} shards built, {build.get('shards_kept')} kept, "
         f"{build.get('workers')} worker(s) on {build.get('device')}"),
    ]
    print("\n".join(lines))
