"""Cross-modal distillation, three arms per seed: the student on its own modality with labels only
(alone), with only the teacher's soft targets (alpha 0: no student label), and with both.

    python benchmarks/cross_modal.py                                   # Fashion-MNIST, 10k labelled pairs
    python benchmarks/cross_modal.py --recipe recipes/digits/cross_modal.yaml
    python benchmarks/cross_modal.py --teacher-recipe recipes/fmnist/teacher_cnn.yaml   # train the teacher first

The teacher reads the image (`teacher_input`), the student only the paired low-resolution sensor
(`input`; docs/cross-modal.md). Each arm is one `potstill distill RECIPE --seeds ... --run-dir
OUT/<arm>`: soft sets distill.alpha=0, beta=1; both sets alpha=0.5, beta=0.5. Both runs of a seed
also train the student alone (the baseline row), from the same initial weights; the script checks
the two agree. Accuracy is top-1 on the test split after the last epoch, mean ± std (sample std)
over seeds, with the paired gain of each arm over the student alone per seed. It also measures the
teacher fed the student's modality: how much a teacher of the other sensor knows of this one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from common import add_import_option, import_args, import_modules, potstill

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"soft": ["distill.alpha=0.0", "distill.beta=1.0"], "both": ["distill.alpha=0.5", "distill.beta=0.5"]}


def spread(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * std:.2f}"


def run_arm(args: argparse.Namespace, arm: str, teacher: Path | None) -> dict[int, dict[str, float]]:
    """{seed: {role: test_acc}} of one arm, all seeds in one `potstill distill --seeds` call."""
    out = args.out / arm
    overrides = [*args.set, *ARMS[arm], *([f"teacher.checkpoint={teacher}"] if teacher is not None else [])]
    potstill("distill", str(args.recipe), "--seeds", *map(str, args.seeds), "--run-dir", str(out), "--quiet",
             *(f"--set={o}" for o in overrides), *import_args(args.imports))
    results = {}
    for seed in args.seeds:
        summary = json.loads((out / f"seed{seed}" / "summary.json").read_text())
        results[seed] = {row["role"]: row["test_acc"] for row in summary["models"]}
    return results


def teacher_on_student_modality(run: Path) -> float:
    """Top-1 of the run's teacher when it is fed the student's sensor (`input`) instead of its own."""
    import yaml

    import potstill

    data = yaml.safe_load((run / "recipe.yaml").read_text())["data"]  # the run's saved recipe
    splits = potstill.load_dataset(data["name"], root=data.get("root"), args=data.get("args") or {},
                                   test_fraction=data.get("test_fraction", 0.2), seed=data.get("split_seed", 0),
                                   test_size=data.get("test_size"))  # the run's own test split
    teacher, test = potstill.load_model(run, role="teacher"), splits.test
    with torch.inference_mode():
        predicted = torch.cat([teacher(test.fields(torch.arange(start, min(start + 1000, len(test))))["input"]).argmax(1)
                               for start in range(0, len(test), 1000)])
    return float((predicted == test.targets).float().mean())


def report(arms: dict[str, dict[int, dict[str, float]]], seeds: list[int], crossed: float) -> None:
    soft, both = arms["soft"], arms["both"]
    same = all(abs(soft[s]["baseline"] - both[s]["baseline"]) < 1e-9 for s in seeds)
    column = {"teacher (its modality)": [soft[s]["teacher"] for s in seeds],
              "alone: labels only": [soft[s]["baseline"] for s in seeds],
              "soft targets only (alpha 0)": [soft[s]["student"] for s in seeds],
              "labels + soft targets": [both[s]["student"] for s in seeds]}
    print(f"\ntest top-1 after the last epoch, mean ± std over seeds {seeds}:")
    for title, values in column.items():
        print(f"  {title:<30}: {spread(values)}%   per seed " + ", ".join(f"{100 * v:.2f}" for v in values))
    print(f"  {'teacher fed the student sensor':<30}: {100 * crossed:.2f}% (seed {seeds[0]})")
    for title, arm in (("soft targets only", soft), ("labels + soft targets", both)):
        gains = [100 * (arm[s]["student"] - soft[s]["baseline"]) for s in seeds]
        print(f"  gain {title:<25}: {statistics.mean(gains):+.2f} ± {statistics.stdev(gains) if len(gains) > 1 else 0:.2f} "
              "points over alone; per seed " + ", ".join(f"{g:+.2f}" for g in gains))
    print(f"  the alone rows of both arms are {'identical' if same else 'DIFFERENT (not the same start)'} per seed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "fmnist" / "cross_modal.yaml")
    parser.add_argument("--teacher-recipe", type=Path, help="train this teacher once (seed 0) and distil every seed from it")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override for every run")
    parser.add_argument("--out", type=Path, help="folder for the runs (default runs/bench_cross_modal_<time>)")
    add_import_option(parser)
    args = parser.parse_args()
    import_modules(args)
    args.out = args.out or ROOT / "runs" / f"bench_cross_modal_{time.strftime('%Y%m%d-%H%M%S')}"
    teacher = None
    if args.teacher_recipe is not None:
        teacher = args.out / "teacher"
        potstill("train", str(args.teacher_recipe), "--run-dir", str(teacher), "--quiet", *import_args(args.imports))
    start = time.perf_counter()
    arms = {arm: run_arm(args, arm, teacher) for arm in ARMS}
    crossed = teacher_on_student_modality(args.out / "soft" / f"seed{args.seeds[0]}")
    report(arms, args.seeds, crossed)
    print(f"wall time: {time.perf_counter() - start:.0f} s for {2 * len(args.seeds)} runs (each: teacher, alone, distilled)")


if __name__ == "__main__":
    main()
