"""Lifelong distillation on Fashion-MNIST split into 5 tasks of 2 classes: Learning without Forgetting,
LwF + replay, fine-tuning and joint training, in the task- and class-incremental settings, 3 seeds.

    python benchmarks/lifelong.py                              # both settings, seeds 0 1 2
    python benchmarks/lifelong.py --settings class --seeds 0 --set train.epochs=1
    python benchmarks/lifelong.py --report runs/bench_lifelong/results.json

Per seed and setting, two runs of recipes/fmnist/lwf_5_tasks.yaml (scheme lwf): one trains LwF,
fine-tuning and joint training side by side (the scheme's arms; task 1 is shared), the other LwF
with `--replay` herding exemplars per old class (its own fine-tuning and joint arms switched off,
they would repeat the first run's). After every task each arm's accuracy on every task seen so far
is measured on the test split (task: argmax within the task's classes; class: over every class
seen); the tables give the average accuracy A_i and forgetting F_i (Chaudhry et al., ECCV 2018)
after each task, mean ± std (sample std) over seeds, and paired per-seed differences after the
last task. Accuracy is the last epoch's (no checkpoint selection).

It keeps its own loop over seeds rather than `potstill distill --seeds`: the numbers it compares are
the per-task matrices in summary.json's `lifelong` section, not the models table's top-1.
"""

from __future__ import annotations

import argparse
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
RECIPE = ROOT / "recipes" / "fmnist" / "lwf_5_tasks.yaml"
# arm key in summary.json -> label, in table order
ARMS = {"joint_": "joint training (upper bound)", "replay": "LwF + replay", "lwf": "LwF", "finetune_": "fine-tuning (lower bound)"}


def run_one(base: dict, changes: dict, seed: int, folder: Path, bench) -> dict:
    data = config.apply_overrides(base, [f"seed={seed}", *changes])
    recipe = config.validate(data, Recipe, source=folder.name)
    run = RunDir(folder)
    run.create(resume=False)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(config.to_dict(recipe), sort_keys=False))
    start = time.perf_counter()
    summary = Runner(recipe, run, Reporter(quiet=True), bench=bench).run_distill()
    return {"wall_s": time.perf_counter() - start, "arms": summary["lifelong"]["arms"]}


def spread(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def table(setting: str, runs: dict[str, dict[str, dict]]) -> list[str]:
    """runs: seed -> arm -> {accuracy, average_accuracy, forgetting}."""
    seeds = sorted(runs, key=int)
    count = len(next(iter(runs[seeds[0]].values()))["average_accuracy"])
    header = " | ".join(f"after {i + 1}" for i in range(count))
    lines = [f"### {setting}-incremental ({len(seeds)} seeds: {', '.join(seeds)})", "",
             f"| arm | measure | {header} |", "|---|---|" + "---|" * count]
    for arm, label in ARMS.items():
        if not all(arm in runs[seed] for seed in seeds):
            continue
        for key, name in (("average_accuracy", "A %"), ("forgetting", "F %")):
            cells = []
            for i in range(count):
                values = [runs[seed][arm][key][i] for seed in seeds]
                cells.append("-" if values[0] is None else spread(values))
            lines.append(f"| {label} | {name} | {' | '.join(cells)} |")
    lines += ["", "| after the last task, paired per seed | A points | F points |", "|---|---|---|"]
    for first, second in (("lwf", "finetune_"), ("replay", "lwf"), ("joint_", "lwf")):
        if not all(first in runs[seed] and second in runs[seed] for seed in seeds):
            continue
        words = []
        for key in ("average_accuracy", "forgetting"):
            gains = [100 * (runs[seed][first][key][-1] - runs[seed][second][key][-1]) for seed in seeds]
            words.append(f"{statistics.mean(gains):+.1f} ({', '.join(f'{g:+.1f}' for g in gains)})")
        lines.append(f"| {ARMS[first]} − {ARMS[second]} | {words[0]} | {words[1]} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["task", "class"], choices=["task", "class"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--replay", type=int, default=20, help="exemplars kept per old class in the LwF + replay run")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the recipe, e.g. train.epochs=2")
    parser.add_argument("--report", type=Path, help="only print the tables of a finished results.json")
    add_import_option(parser)
    args = parser.parse_args()
    import_modules(args)
    if args.report:
        for setting, runs in json.loads(args.report.read_text()).items():
            print("\n".join(table(setting, runs)))
        return
    out = args.out or ROOT / "runs" / f"bench_lifelong_{time.strftime('%Y%m%d-%H%M%S')}"
    base = config.apply_overrides(yaml.safe_load(RECIPE.read_text()), [*args.set, "report.latency_repeats=1"])
    bench = open_workbench(config.validate(base, Recipe))  # data read once, shared by every run
    variants = {"lwf": [], "replay": [f"scheme.args.replay_per_class={args.replay}", "scheme.args.finetune=false",
                                      "distill.baseline=false"]}
    results: dict[str, dict[str, dict]] = {}
    for setting in args.settings:
        for seed in args.seeds:
            arms = {}
            for variant, changes in variants.items():
                folder = out / setting / variant / f"seed{seed}"
                result = run_one(base, [f"scheme.args.setting={setting}", *changes], seed, folder, bench)
                found = result["arms"]
                arms |= {"replay": found["lwf"]} if variant == "replay" else found
                final = ", ".join(f"{key} A {100 * arm['average_accuracy'][-1]:.1f}" for key, arm in found.items())
                print(f"{setting}/{variant} seed {seed}: {final}  ({result['wall_s']:.0f} s)", flush=True)
            results.setdefault(setting, {})[str(seed)] = arms
            out.mkdir(parents=True, exist_ok=True)
            (out / "results.json").write_text(json.dumps(results, indent=1))
        print("\n".join(table(setting, results[setting])), flush=True)


if __name__ == "__main__":
    main()
