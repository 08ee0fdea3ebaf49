"""Data-free distillation: each method's student, which never sees a training image, against the
teacher and against the same student trained on the real training images, over seeds.

    python benchmarks/data_free.py                                   # dafl, dfad, deep_inversion; seeds 0 1 2; digits
    python benchmarks/data_free.py --methods dfad --seeds 0 --set train.epochs=2
    python benchmarks/data_free.py --folder recipes/fmnist           # recipes/fmnist/data_free_<method>.yaml

Each method is one `potstill distill FOLDER/data_free_<method>.yaml --seeds ... --run-dir OUT/<method>`
(run it again to continue: finished seeds are kept). Every seed's run trains the teacher (or loads
the recipe's checkpoint), the student alone on the real training split (the baseline) and the
data-free student, and measures all three on the real test split after the last epoch. The table
gives mean ± std (sample std) over seeds, the data-free student as a fraction of the teacher and of
the student alone (per seed, then averaged), the paired per-seed difference to the student alone,
and the data-free stage's time (generation/inversion and training together; DeepInversion's
inversion share from its timed section).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from common import add_import_option, import_args, import_modules, potstill

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("dafl", "dfad", "deep_inversion")
# the papers' own numbers, for scale only: their budgets are thousands of times ours (see docs/data-free.md)
PUBLISHED = {
    "dafl": "DAFL (paper, Table 1): MNIST, LeNet-5 (98.91%) -> LeNet-5-half, 98.20% with no data (98.65% on the real data)",
    "dfad": "DFAD (paper): CIFAR-10, ResNet-34 -> ResNet-18, 93.3% with no data",
    "deep_inversion": "ADI (paper): CIFAR-10, ResNet-34 (95.42%) -> ResNet-18, 93.26% with no data (2k Adam steps per batch)",
}


def spread(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.{digits}f} ± {scale * std:.{digits}f}"


def stage_seconds(run: Path, stage: str, key: str = "time_s") -> float:
    """Seconds a stage spent in all: time_s per epoch, or a timed section's ms per step (e.g.
    inversion_ms) times the epoch's steps (1000 * time_s / step_ms)."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return sum(r["time_s"] if key == "time_s" else r.get(key, 0.0) * r["time_s"] / r["step_ms"]
               for r in records if r["stage"] == stage)


def run_method(method: str, args: argparse.Namespace) -> list[dict]:
    recipe = args.folder / f"data_free_{method}.yaml"
    out = args.out / method
    potstill("distill", str(recipe), "--seeds", *map(str, args.seeds), "--run-dir", str(out), "--quiet",
             *(f"--set={o}" for o in args.set), *import_args(args.imports))
    results = []
    for seed in args.seeds:
        run = out / f"seed{seed}"
        summary = json.loads((run / "summary.json").read_text())
        accuracy = {row["role"]: row["test_acc"] for row in summary["models"]}
        results.append({
            "seed": seed, "teacher": accuracy["teacher"], "alone": accuracy.get("baseline"), "student": accuracy["student"],
            "student_s": stage_seconds(run, "student"), "alone_s": stage_seconds(run, "baseline"),
            "inversion_s": stage_seconds(run, "student", "inversion_ms"),
        })
        print(f"{method} seed {seed}: teacher {100 * accuracy['teacher']:.2f}%  alone {100 * accuracy['baseline']:.2f}%  "
              f"data-free {100 * accuracy['student']:.2f}%  ({results[-1]['student_s']:.0f} s)", flush=True)
    return results


def report(all_results: dict[str, list[dict]]) -> None:
    first = next(iter(all_results.values()))
    seeds = [r["seed"] for r in first]
    print(f"\nreal test split top-1 after the last epoch, mean ± std over seeds {seeds}:")
    print(f"  teacher                 : {spread([r['teacher'] for r in first])}%")
    print("\n| method | student alone (real data) | data-free student | of teacher | of student alone "
          "| paired diff. to alone (points), per seed | data-free stage s (inversion s) | alone s |")
    print("|---|---|---|---|---|---|---|---|")
    for method, results in all_results.items():
        of_teacher = [r["student"] / r["teacher"] for r in results]
        of_alone = [r["student"] / r["alone"] for r in results]
        diffs = [100 * (r["student"] - r["alone"]) for r in results]
        inversion = statistics.mean(r["inversion_s"] for r in results)
        print(f"| {method} | {spread([r['alone'] for r in results])}% | {spread([r['student'] for r in results])}% "
              f"| {spread(of_teacher, digits=1)}% "
              f"| {spread(of_alone, digits=1)}% | {statistics.mean(diffs):+.2f} ({', '.join(f'{d:+.2f}' for d in diffs)}) "
              f"| {statistics.mean(r['student_s'] for r in results):.0f}" + (f" ({inversion:.0f})" if inversion else "")
              + f" | {statistics.mean(r['alone_s'] for r in results):.1f} |")
    print("\npublished anchors (their settings, far larger budgets):")
    for method in all_results:
        print(f"  {PUBLISHED[method]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--folder", type=Path, default=ROOT / "recipes" / "digits", help="holds data_free_<method>.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override for every run")
    parser.add_argument("--out", type=Path, help="folder for the runs (default runs/bench_data_free_<time>)")
    add_import_option(parser)
    args = parser.parse_args()
    import_modules(args)
    args.out = args.out or ROOT / "runs" / f"bench_data_free_{time.strftime('%Y%m%d-%H%M%S')}"
    report({method: run_method(method, args) for method in args.methods})


if __name__ == "__main__":
    main()
