"""Fashion-MNIST: CNN teacher -> MLP 784-1024-1024-10 student, 3 seeds, side by side.

    python benchmarks/fmnist_kd.py [--seeds 0 1 2] [--epochs 20] [--out runs/bench_fmnist_kd]

Trains the teacher once (recipes/fmnist/teacher_cnn.yaml) unless --teacher points at a finished
`potstill train` run, then for each seed distils (recipes/fmnist/kd_cnn_to_mlp.yaml) with the
baseline student trained alone on the same budget. Prints last-epoch test accuracy as
mean ± std over seeds, wall times, and the distillation overhead per epoch
(KD epoch time ÷ student-alone epoch time, measured in the same runs).
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

    code = main(list(args))
    if code:
        sys.exit(code)


def stage_times(run: Path, stage: str) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["time_s"] for line in lines if json.loads(line)["stage"] == stage]


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * spread:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--teacher", type=Path, default=None, help="finished `potstill train` run folder")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_fmnist_kd")
    args = parser.parse_args()

    teacher = args.teacher or args.out / "teacher"
    if not (teacher / "teacher" / "model.safetensors").is_file():
        potstill("train", str(ROOT / "recipes/fmnist/teacher_cnn.yaml"), "--run-dir", str(teacher), "--quiet")
    teacher_summary = json.loads((teacher / "summary.json").read_text())["models"][0]

    rows = []
    for seed in args.seeds:
        run = args.out / f"kd_seed{seed}"
        start = time.perf_counter()
        potstill("distill", str(ROOT / "recipes/fmnist/kd_cnn_to_mlp.yaml"), "--run-dir", str(run), "--quiet",
                 "--set", f"seed={seed}", "--set", f"train.epochs={args.epochs}", "--set", f"teacher.checkpoint={teacher}")
        wall = time.perf_counter() - start
        models = {row["role"]: row for row in json.loads((run / "summary.json").read_text())["models"]}
        baseline_epoch = statistics.mean(stage_times(run, "baseline"))
        kd_epoch = statistics.mean(stage_times(run, "student"))
        rows.append({"seed": seed, "baseline": models["baseline"], "student": models["student"], "wall_s": wall,
                     "overhead": kd_epoch / baseline_epoch, "baseline_epoch_s": baseline_epoch, "kd_epoch_s": kd_epoch})
        print(f"seed {seed}: baseline {100 * models['baseline']['test_acc']:.2f}%  distilled "
              f"{100 * models['student']['test_acc']:.2f}%  KD/alone epoch time {kd_epoch / baseline_epoch:.2f}x  "
              f"({wall:.0f} s)", flush=True)

    print()
    print(f"teacher (cnn, {teacher_summary['params']:,} params): {100 * teacher_summary['test_acc']:.2f}% "
          f"(trained in {teacher_summary['train_time_s']:.0f} s)")
    print(f"Fashion-MNIST test top-1 after the last epoch, mean ± std over seeds {args.seeds}:")
    print(f"  student alone : {mean_std([r['baseline']['test_acc'] for r in rows])}%")
    print(f"  distilled     : {mean_std([r['student']['test_acc'] for r in rows])}%")
    gains = [100 * (r["student"]["test_acc"] - r["baseline"]["test_acc"]) for r in rows]
    print(f"  gain          : {statistics.mean(gains):+.2f} points (per seed: {', '.join(f'{g:+.2f}' for g in gains)})")
    print(f"  agreement with teacher: alone {mean_std([r['baseline']['teacher_agreement'] for r in rows])}%, "
          f"distilled {mean_std([r['student']['teacher_agreement'] for r in rows])}%")
    print(f"  wall time per seed (baseline + distillation + report): {statistics.mean(r['wall_s'] for r in rows):.0f} s")
    overheads = [r["overhead"] for r in rows]
    print(f"distillation overhead per epoch (KD epoch ÷ student-alone epoch, same run): "
          f"{statistics.mean(overheads):.2f}x  ({statistics.mean(r['kd_epoch_s'] for r in rows):.1f} s vs "
          f"{statistics.mean(r['baseline_epoch_s'] for r in rows):.1f} s)")


if __name__ == "__main__":
    main()
