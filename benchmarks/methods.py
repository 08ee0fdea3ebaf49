"""Every distillation loss on one teacher-student pair, 3 seeds, ranked.

    python benchmarks/methods.py                                   # Fashion-MNIST, all methods
    python benchmarks/methods.py --methods kd at crd --seeds 0     # a quick look

Each method runs with its paper's setting (the table METHODS below: CE weight alpha, the loss's
weight, stages). The student alone is trained once per seed with the same budget. Accuracy is
top-1 on the test split after the last epoch, mean ± std (sample std) over seeds; "gain" is the
paired per-seed difference to the student alone; "train s" is the run's training time
(preparation + initialisation + distillation stages, evaluation excluded), median over seeds.
`--report runs/.../results.json` prints the table again from a finished run.

It keeps its own loop over seeds rather than `potstill distill --seeds`: per seed the student alone
is trained once (with the first method) and shared by every method, all in one process on data read once.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

from common import add_import_option, import_modules

from potstill import config
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.knowledge import LOSSES
from potstill.pipeline import Runner
from potstill.recipe import Recipe
from potstill.startup import open_workbench

ROOT = Path(__file__).resolve().parents[1]

# distill section per method; alpha is the hard-label CE weight, beta null = the loss's paper weight
FEATURE = {"alpha": 1.0, "beta": None}  # CE + the method's loss at its paper weight (RepDistiller's protocol)
METHODS: dict[str, dict] = {
    "kd": {"loss": "kd", "temperature": 4.0, "alpha": 0.5, "beta": 0.5},
    "dkd": {"loss": "dkd", "alpha": 1.0, "beta": 1.0, "schedule": {"warmup_epochs": 1}},  # DKD's warm-up
    "dist": {"loss": "dist", "alpha": 1.0, "beta": 1.0},
    "kd_standardized": {"loss": "kd_standardized", "alpha": 0.1, "beta": 9.0},  # the paper's CIFAR weights
    "lsr": {"loss": "lsr", "alpha": 0.9, "beta": None},  # Tf-KD_reg: (1 - 0.1) CE + 0.1 * 100 * KL
    "fitnet": {"loss": "fitnet", **FEATURE},
    "at": {"loss": "at", **FEATURE},
    "nst": {"loss": "nst", **FEATURE},
    # the paraphraser pre-trains for as many epochs as the student gets (the paper's 30 is for 240-epoch runs)
    "ft": {"loss": "ft", "loss_args": {"paraphraser_epochs": 3}, **FEATURE},
    "vid": {"loss": "vid", **FEATURE},
    "ofd": {"loss": "ofd", **FEATURE},
    "sp": {"loss": "sp", **FEATURE},
    "rkd": {"loss": "rkd", **FEATURE},
    "pkt": {"loss": "pkt", **FEATURE},
    "cc": {"loss": "cc", **FEATURE},
    "crd": {"loss": "crd", **FEATURE},
    "irg": {"loss": "irg", **FEATURE},
    # initialisation methods: the loss alone first (distill.init_epochs), then hard labels
    "ab": {"loss": None, "alpha": 1.0, "init_epochs": 1, "terms": [{"loss": "ab", "stages": ["init"]}]},
    "fsp": {"loss": None, "alpha": 1.0, "init_epochs": 1, "terms": [{"loss": "fsp", "stages": ["init"]}]},
}
TRAINING_STAGES = ("prepare", "init", "student")


def recipe_for(base: dict, method: str, seed: int, teacher: str, baseline: bool) -> Recipe:
    data = copy.deepcopy(base)
    data["seed"], data["teacher"]["checkpoint"] = seed, teacher
    data["distill"] = {**METHODS[method], "baseline": baseline}
    return config.validate(data, Recipe, source=f"{method} seed {seed}")


def run_method(base: dict, method: str, seed: int, teacher: str, folder: Path, baseline: bool, bench) -> dict:
    recipe = recipe_for(base, method, seed, teacher, baseline)
    run = RunDir(folder)
    run.create(resume=False)
    start = time.perf_counter()
    summary = Runner(recipe, run, Reporter(quiet=True), bench=bench).run_distill()
    wall = time.perf_counter() - start
    rows = {row["role"]: row for row in summary["models"]}
    train_s = sum(r["time_s"] for r in run.records() if r["stage"] in TRAINING_STAGES)
    return {"method": method, "seed": seed, "wall_s": wall, "train_s": train_s, "rows": rows}


def spread(values: list[float], scale: float = 100.0) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.2f} ± {scale * std:.2f}"


def table(results: list[dict], methods: list[str]) -> list[str]:
    alone = {r["seed"]: r["rows"]["baseline"] for r in results if "baseline" in r["rows"]}
    teacher = next(iter(results))["rows"]["teacher"]
    lines = [
        f"teacher {teacher['params']:,} params: {100 * teacher['test_acc']:.2f}%; "
        f"student alone {next(iter(alone.values()))['params']:,} params: "
        f"{spread([row['test_acc'] for row in alone.values()])}% (agreement {spread([row['teacher_agreement'] for row in alone.values()])}%)",
        "", "| rank | method | kind | top-1 % (mean ± std) | gain vs alone (points) | agreement % | train s/run (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = []
    for method in methods:
        runs = [r for r in results if r["method"] == method]
        accuracy = [r["rows"]["student"]["test_acc"] for r in runs]
        gains = [100 * (r["rows"]["student"]["test_acc"] - alone[r["seed"]]["test_acc"]) for r in runs]
        kind = LOSSES.get(METHODS[method]["loss"] or METHODS[method]["terms"][0]["loss"]).kind
        rows.append((statistics.mean(accuracy), method, kind, spread(accuracy), gains, runs))
    for rank, (_, method, kind, accuracy, gains, runs) in enumerate(sorted(rows, reverse=True), start=1):
        agreement = spread([r["rows"]["student"]["teacher_agreement"] for r in runs])
        gain = f"{statistics.mean(gains):+.2f} ({', '.join(f'{g:+.2f}' for g in gains)})"
        seconds = statistics.median(r["train_s"] for r in runs)  # median: robust to a busy machine
        lines.append(f"| {rank} | {method} | {kind} | {accuracy} | {gain} | {agreement} | {seconds:.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes/fmnist/methods_cnn_to_small_cnn.yaml")
    parser.add_argument("--teacher", default=None, help="teacher run folder or .safetensors (default: the recipe's)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the base recipe")
    parser.add_argument("--report", type=Path, nargs="+",
                        help="only print the table of finished runs' results.json (a later file's method/seed replaces an earlier one's)")
    add_import_option(parser)
    args = parser.parse_args()
    import_modules(args)
    if args.report:
        merged = {}
        for path in args.report:
            for result in json.loads(path.read_text()):
                merged[(result["method"], result["seed"])] = result
        results = list(merged.values())
        methods = list(dict.fromkeys(r["method"] for r in results))
        print("\n".join(table(results, methods)))
        return
    out = args.out or ROOT / "runs" / f"bench_methods_{time.strftime('%Y%m%d-%H%M%S')}"
    base = config.to_dict(config.load(args.recipe, Recipe, args.set))
    teacher = args.teacher or base["teacher"]["checkpoint"]
    bench = open_workbench(config.validate(base, Recipe))  # data read once, shared by every run
    results = []
    for seed in args.seeds:
        for index, method in enumerate(args.methods):
            result = run_method(base, method, seed, teacher, out / f"seed{seed}" / method, index == 0, bench)
            results.append(result)
            print(f"seed {seed} {method:<16} {100 * result['rows']['student']['test_acc']:.2f}%  "
                  f"train {result['train_s']:.0f} s  wall {result['wall_s']:.0f} s", flush=True)
            (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nFashion-MNIST test top-1 after the last epoch, seeds {args.seeds}, ranked:")
    print("\n".join(table(results, args.methods)))


if __name__ == "__main__":
    main()
