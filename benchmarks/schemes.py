"""Every distillation scheme on Fashion-MNIST against its own comparison, 3 seeds.

    python benchmarks/schemes.py                          # all experiments, seeds 0 1 2
    python benchmarks/schemes.py --experiments dml --seeds 0
    python benchmarks/schemes.py --report runs/bench_schemes/results.json

Experiments (each one recipe per seed; the data are read once and shared):
    dml            two small CNNs learning together (online) vs each trained alone
    byot           a 3-stage CNN with BYOT heads: each exit and the full depth vs the same CNN alone
    born_again     generations 1-3 of a small CNN; generation 0 is the same CNN trained alone
    multi_teacher  three pre-trained teachers of different architectures (CNN, MLP, ResNet-8),
                   combined (mean, confidence) vs KD from each single teacher
    assistant      a large gap (CNN teacher -> tiny CNN): the chain through a small-CNN assistant vs
                   direct KD

The pre-trained teachers come from `potstill train recipes/fmnist/teacher_{cnn,mlp,resnet8}.yaml`
(trained once on the full 60k, seed 0, and shared by every seed). Accuracy is top-1 on the 10k
test images after the last epoch, mean ± std (sample std) over seeds; "gain" is the paired
per-seed difference to the row named in the table.

It keeps its own loop over seeds rather than `potstill distill --seeds`: its recipes are built here
from the tables below and run in this one process on data read once, every variant of a seed in turn.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import yaml
from common import add_import_option, import_modules

from potstill import config
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.pipeline import Runner
from potstill.recipe import Recipe
from potstill.startup import open_workbench

ROOT = Path(__file__).resolve().parents[1]
BASE = {
    "name": "bench_schemes",
    # an 8k-image subset and 3 epochs (as benchmarks/methods.py): every scheme x 3 seeds in about an hour on 2 cores
    "data": {"name": "fashion_mnist", "train_size": 8000, "batch_size": 128, "hflip": True},
    "student": {"name": "small_cnn", "args": {"channels": [16, 32], "hidden": 64, "dropout": 0.1}},
    "train": {"epochs": 3, "optimizer": "adamw", "lr": 3.0e-3, "weight_decay": 5.0e-4, "scheduler": "onecycle"},
    "distill": {"loss": "kd", "temperature": 4.0, "alpha": 0.5, "beta": 0.5},
    "report": {"latency_repeats": 5},
}
CNN = {"name": "cnn", "args": {"channels": [32, 64], "hidden": 256, "dropout": 0.3}}
MLP = {"name": "mlp", "args": {"hidden": [1024, 1024]}}
RESNET8 = {"name": "resnet8", "args": {}}
TEACHERS = {"cnn": (CNN, "runs/fmnist_teacher_cnn"), "mlp": (MLP, "runs/fmnist_teacher_mlp"), "resnet8": (RESNET8, "runs/fmnist_teacher_resnet8")}
TINY = {"name": "small_cnn", "args": {"channels": [4, 8], "hidden": 16, "dropout": 0.0}}


def teacher(name: str) -> dict:
    model, checkpoint = TEACHERS[name]
    return {"model": model, "checkpoint": str(ROOT / checkpoint)}


# experiment -> variant -> (recipe changes, the rows compared: [(role, label, compared with)])
EXPERIMENTS: dict[str, dict[str, tuple[dict, list[tuple[str, str, str | None]]]]] = {
    "dml": {"dml": (
        {"scheme": {"name": "online", "peers": [BASE["student"]]},
         "distill": {"loss": "kd", "temperature": 1.0, "alpha": 1.0, "beta": 1.0}},  # the DML paper's CE + KL
        [("baseline", "peer 0 alone", None), ("peer1_alone", "peer 1 alone", None),
         ("student", "peer 0, mutual", "baseline"), ("peer1", "peer 1, mutual", "peer1_alone")],
    )},
    "byot": {"byot": (
        {"scheme": {"name": "byot", "args": {"hint_weight": 0.03}},
         "student": {"name": "cnn", "args": {"channels": [16, 32, 64], "hidden": 128, "dropout": 0.1}},
         "distill": {"loss": "kd", "temperature": 3.0, "alpha": 0.7, "beta": 0.3}},  # the paper's 0.3 KL, 0.03 hint, T 3
        [("baseline", "CNN alone (full depth)", None), ("exit1", "exit 1 (block1)", "baseline"),
         ("exit2", "exit 2 (block2)", "baseline"), ("student", "full depth, BYOT", "baseline")],
    )},
    "born_again": {"born_again": (
        {"scheme": {"name": "born_again", "args": {"generations": 3}}},
        [("baseline", "generation 0 (alone)", None), ("gen1", "generation 1", "baseline"),
         ("gen2", "generation 2", "baseline"), ("gen3", "generation 3", "baseline")],
    )},
    "multi_teacher": {
        **{f"single_{name}": (
            {"teacher": teacher(name), "distill": {"baseline": name == "cnn"}},
            [("teacher", f"teacher {name}", None)] + ([("baseline", "student alone", None)] if name == "cnn" else [])
            + [("student", f"KD from {name}", "baseline")],
        ) for name in TEACHERS},
        **{f"combined_{rule}": (
            {"scheme": {"name": "multi_teacher", "args": {"combine": rule}, "teachers": [teacher(n) for n in TEACHERS]},
             "distill": {"baseline": False}},
            [("teacher", f"teachers combined ({rule})", None), ("student", f"KD from 3 teachers ({rule})", "baseline")],
        ) for rule in ("mean", "confidence")},
    },
    "assistant": {"assistant": (
        {"scheme": {"name": "assistant", "assistants": [BASE["student"]]}, "teacher": teacher("cnn"), "student": TINY},
        [("teacher", "teacher CNN", None), ("baseline", "tiny CNN alone", None), ("direct", "direct KD", "baseline"),
         ("assistant1", "assistant (small CNN)", None), ("student", "chain via assistant", "baseline"),
         ("student", "chain vs direct", "direct")],
    )},
}


def merge(base: dict, changes: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key not in ("scheme", "student", "teacher"):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def run_variant(base: dict, changes: dict, seed: int, folder: Path, bench) -> dict:
    recipe = config.validate(merge({**base, "seed": seed}, changes), Recipe, source=folder.name)
    run = RunDir(folder)
    run.create(resume=False)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(config.to_dict(recipe), sort_keys=False))
    start = time.perf_counter()
    summary = Runner(recipe, run, Reporter(quiet=True), bench=bench).run_distill()
    rows = {row["role"]: row for row in summary["models"]}
    return {"seed": seed, "wall_s": time.perf_counter() - start, "rows": rows}


def spread(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * std:.2f}"


def table(experiment: str, results: dict[str, list[dict]]) -> list[str]:
    lines = [f"### {experiment}", "", "| model | top-1 % (mean ± std) | gain (points, per seed) | params | CPU ms / 128 |", "|---|---|---|---|---|"]
    # the comparison row of a gain may live in another variant (e.g. the student alone of single_cnn)
    by_seed: dict[int, dict[str, dict]] = {}
    for runs in results.values():
        for run in runs:
            for role, row in run["rows"].items():
                by_seed.setdefault(run["seed"], {}).setdefault(role, row)
    for variant, (_, rows) in EXPERIMENTS[experiment].items():
        runs = results.get(variant, [])
        if not runs:
            continue
        for role, label, against in rows:
            values = [run["rows"][role]["test_acc"] for run in runs]
            gain = ""
            if against is not None:
                gains = [100 * (run["rows"][role]["test_acc"] - (run["rows"].get(against) or by_seed[run["seed"]][against])["test_acc"]) for run in runs]
                gain = f"{statistics.mean(gains):+.2f} vs {against} ({', '.join(f'{g:+.2f}' for g in gains)})"
            first = runs[0]["rows"][role]
            lines.append(f"| {label} | {spread(values)} | {gain} | {first['params']:,} | {first['latency_ms']:.2f} |")
    return lines + [""]


def exit_latency(run_folder: Path, repeats: int, rounds: int = 5) -> list[str]:
    """Re-time a finished BYOT run's exits and full depth, interleaved in rounds (median per model),
    so the ratios hold even on a busy machine."""
    from potstill.engine.checkpoint import load_into, load_tensors
    from potstill.engine.metrics import cpu_latency_ms
    from potstill.schemes.base import create_scheme
    from potstill.schemes.byot import EarlyExit, ExitHead

    saved = run_folder / "recipe.yaml"  # written by run_variant; older runs: rebuilt from the table
    recipe = config.load(saved, Recipe) if saved.is_file() else config.validate(merge(BASE, EXPERIMENTS["byot"]["byot"][0]), Recipe)
    runner = Runner(recipe, RunDir(run_folder), Reporter(quiet=True))
    student, scheme = runner.student(), create_scheme(recipe.scheme.name, recipe.scheme.args)
    exits, deepest, shapes = scheme.sections(runner, student)
    load_into(student, load_tensors(run_folder / "student" / "model.safetensors")[0], "model.safetensors", "student")
    heads = load_tensors(run_folder / "student" / "heads.safetensors")[0]
    models = {}
    for index, name in enumerate(exits, start=1):
        head = ExitHead(shapes[name], shapes[deepest], runner.bench.splits.num_classes)
        load_into(head, {k.split(".", 1)[1]: v for k, v in heads.items() if k.startswith(f"exit{index}.")}, "heads.safetensors", f"exit{index}")
        models[f"exit {index} ({name})"] = EarlyExit(student, head, name).eval()
    models["full depth"] = student.eval()
    batch = recipe.report.latency_batch_size
    times = {label: [] for label in models}
    for _ in range(rounds):
        for label, model in models.items():
            times[label].append(cpu_latency_ms(model, runner.bench.splits.input_shape, batch, repeats))
    full = statistics.median(times["full depth"])
    lines = [f"| model | CPU ms / {batch} (median of {rounds} rounds x {repeats}) | ÷ full depth |", "|---|---|---|"]
    for label, values in times.items():
        lines.append(f"| {label} | {statistics.median(values):.2f} | {statistics.median(values) / full:.2f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the base recipe, e.g. train.epochs=2")
    parser.add_argument("--report", type=Path, nargs="+", help="only print the tables of finished runs' results.json")
    parser.add_argument("--exit-latency", type=Path, metavar="RUN", help="re-time a finished BYOT run's exits (e.g. OUT/byot/byot/seed0)")
    add_import_option(parser)
    args = parser.parse_args()
    import_modules(args)
    if args.exit_latency:
        print("\n".join(exit_latency(args.exit_latency, repeats=20)))
        return
    if args.report:
        for path in args.report:
            results = json.loads(path.read_text())
            for experiment in results:
                print("\n".join(table(experiment, results[experiment])))
        return
    out = args.out or ROOT / "runs" / f"bench_schemes_{time.strftime('%Y%m%d-%H%M%S')}"
    base = config.apply_overrides(BASE, args.set)
    bench = open_workbench(config.validate(merge(base, {"teacher": teacher("cnn")}), Recipe))  # data read once
    results: dict[str, dict[str, list[dict]]] = {}
    for experiment in args.experiments:
        for seed in args.seeds:
            for variant, (changes, _) in EXPERIMENTS[experiment].items():
                result = run_variant(base, changes, seed, out / experiment / variant / f"seed{seed}", bench)
                results.setdefault(experiment, {}).setdefault(variant, []).append(result)
                accuracies = ", ".join(f"{role} {100 * row['test_acc']:.2f}" for role, row in result["rows"].items())
                print(f"{experiment}/{variant} seed {seed}: {accuracies}  ({result['wall_s']:.0f} s)", flush=True)
                out.mkdir(parents=True, exist_ok=True)
                (out / "results.json").write_text(json.dumps(results, indent=1))
        print("\n".join(table(experiment, results[experiment])), flush=True)


if __name__ == "__main__":
    main()
