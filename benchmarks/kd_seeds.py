"""Distil one recipe over several seeds and print teacher / student alone / distilled side by side.

    python benchmarks/kd_seeds.py --recipe recipes/digits/demo.yaml
    python benchmarks/kd_seeds.py --recipe recipes/fmnist/kd_cnn_to_mlp.yaml \
        --teacher-recipe recipes/fmnist/teacher_cnn.yaml

With --teacher-recipe the teacher is trained once (seed 0) and every seed distils from it;
otherwise each seed trains its own teacher as the recipe says. Accuracy is top-1 on the test
split after the last epoch, mean ± std (sample std) over seeds. The distillation overhead per
epoch is KD epoch time ÷ student-alone epoch time, both measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def potstill(*args: str) -> None:
    from potstill.cli.main import main

    if main(list(args)):
        sys.exit(1)


def epoch_seconds(run: Path, stage: str) -> float:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return statistics.mean(r["time_s"] for r in records if r["stage"] == stage)


def spread(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.{digits}f} ± {scale * std:.{digits}f}"


def distil_seed(args: argparse.Namespace, seed: int, teacher: Path | None) -> dict:
    run = args.out / f"seed{seed}"
    overrides = [f"seed={seed}", *args.set]
    if teacher is not None:
        overrides.append(f"teacher.checkpoint={teacher}")
    start = time.perf_counter()
    potstill("distill", str(args.recipe), "--run-dir", str(run), "--quiet", *(f"--set={o}" for o in overrides))
    wall = time.perf_counter() - start
    models = {row["role"]: row for row in json.loads((run / "summary.json").read_text())["models"]}
    result = {"seed": seed, "wall_s": wall, "models": models,
              "kd_epoch_s": epoch_seconds(run, "student"), "alone_epoch_s": epoch_seconds(run, "baseline")}
    print(f"seed {seed}: teacher {100 * models['teacher']['test_acc']:.2f}%  alone {100 * models['baseline']['test_acc']:.2f}%"
          f"  distilled {100 * models['student']['test_acc']:.2f}%  ({wall:.0f} s)", flush=True)
    return result


def report(results: list[dict], teacher_once: bool) -> None:
    def column(role: str, key: str) -> list[float]:
        return [r["models"][role][key] for r in results]

    seeds = [r["seed"] for r in results]
    print(f"\ntest top-1 after the last epoch, mean ± std over seeds {seeds}:")
    teacher_note = " (one teacher, seed 0)" if teacher_once else ""
    print(f"  teacher{teacher_note:<18}: {spread(column('teacher', 'test_acc'))}%  "
          f"params {results[0]['models']['teacher']['params']:,}")
    for role, title in (("baseline", "student alone"), ("student", "distilled student")):
        print(f"  {title:<25}: {spread(column(role, 'test_acc'))}%  agreement with teacher "
              f"{spread(column(role, 'teacher_agreement'))}%  ECE {spread(column(role, 'ece'), 1, 4)}  "
              f"params {results[0]['models'][role]['params']:,}")
    gains = [100 * (r["models"]["student"]["test_acc"] - r["models"]["baseline"]["test_acc"]) for r in results]
    print(f"  gain (distilled - alone)  : {statistics.mean(gains):+.2f} points; per seed "
          + ", ".join(f"{g:+.2f}" for g in gains))
    print(f"  wall time per seed        : {statistics.mean(r['wall_s'] for r in results):.0f} s "
          "(teacher if trained per seed, baseline, distillation, report)")
    ratio = [r["kd_epoch_s"] / r["alone_epoch_s"] for r in results]
    print(f"distillation overhead per epoch (KD epoch ÷ student-alone epoch, same run): {statistics.mean(ratio):.2f}x "
          f"({statistics.mean(r['kd_epoch_s'] for r in results):.2f} s vs "
          f"{statistics.mean(r['alone_epoch_s'] for r in results):.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, required=True, help="a distill recipe")
    parser.add_argument("--teacher-recipe", type=Path, help="train this teacher once and distil every seed from it")
    parser.add_argument("--teacher", type=Path, help="a finished `potstill train` run to use as the teacher")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override for every seed")
    parser.add_argument("--out", type=Path, help="folder for the runs (default runs/bench_<recipe name>)")
    args = parser.parse_args()
    args.out = args.out or ROOT / "runs" / f"bench_{args.recipe.stem}_{time.strftime('%Y%m%d-%H%M%S')}"

    teacher = args.teacher
    if teacher is None and args.teacher_recipe is not None:
        teacher = args.out / "teacher"
        start = time.perf_counter()
        potstill("train", str(args.teacher_recipe), "--run-dir", str(teacher), "--quiet")
        print(f"teacher trained in {time.perf_counter() - start:.0f} s", flush=True)
    results = [distil_seed(args, seed, teacher) for seed in args.seeds]
    report(results, teacher is not None)


if __name__ == "__main__":
    main()
