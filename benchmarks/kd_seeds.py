"""Distil one recipe over several seeds and print teacher / student alone / distilled side by side.

    python benchmarks/kd_seeds.py --recipe recipes/digits/demo.yaml
    python benchmarks/kd_seeds.py --recipe recipes/fmnist/kd_cnn_to_mlp.yaml \
        --teacher-recipe recipes/fmnist/teacher_cnn.yaml
    python benchmarks/kd_seeds.py --recipe my_recipe.yaml --import my_models   # your registered models

The seeds are one `potstill distill RECIPE --seeds ... --run-dir OUT` (OUT/seed<N> per seed, their
aggregate in OUT/seeds.json; run the same command again to continue an interrupted one: finished
seeds are kept). With --teacher-recipe the teacher is trained once (seed 0) and every seed distils
from it; otherwise each seed trains its own teacher as the recipe says. Accuracy is top-1 on the
test split after the last epoch, mean ± std (sample std) over seeds. The distillation overhead per
epoch is KD epoch time ÷ student-alone epoch time, both measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from common import add_import_option, import_args, import_modules, potstill

ROOT = Path(__file__).resolve().parents[1]
MEASURES = ("test_acc", "teacher_agreement", "ece")  # per model, what the table shows


def epoch_seconds(run: Path, stage: str) -> float:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return statistics.mean(r["time_s"] for r in records if r["stage"] == stage)


def spread(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.{digits}f} ± {scale * std:.{digits}f}"


def distil_seeds(args: argparse.Namespace, teacher: Path | None) -> list[dict]:
    """Every seed in one `potstill distill --seeds` call, then each seed's rows from OUT/seeds.json."""
    overrides = [*args.set, *([f"teacher.checkpoint={teacher}"] if teacher is not None else [])]  # --seeds adds seed=N
    kept = {seed for seed in args.seeds if (args.out / f"seed{seed}" / "summary.json").is_file()}
    start = time.time()
    potstill("distill", str(args.recipe), "--seeds", *map(str, args.seeds), "--run-dir", str(args.out), "--quiet",
             *(f"--set={o}" for o in overrides), *import_args(args.imports))
    aggregate = json.loads((args.out / "seeds.json").read_text())
    position = {seed: index for index, seed in enumerate(aggregate["seeds"])}  # of a seed's value in each measure
    results, previous_end = [], start
    for seed in args.seeds:  # in the order run: a seed's wall time ends when its summary.json is written
        run = args.out / f"seed{seed}"
        models = {row["role"]: {"params": row["params"],
                                **{key: row[key]["values"][position[seed]] for key in MEASURES if key in row}}
                  for row in aggregate["models"]}
        wall = None
        if seed not in kept:
            end = (run / "summary.json").stat().st_mtime
            wall, previous_end = end - previous_end, end
        results.append({"seed": seed, "wall_s": wall, "models": models,
                        "kd_epoch_s": epoch_seconds(run, "student"), "alone_epoch_s": epoch_seconds(run, "baseline")})
        took = f"{wall:.0f} s" if wall is not None else "finished before this call"
        print(f"seed {seed}: teacher {100 * models['teacher']['test_acc']:.2f}%  alone {100 * models['baseline']['test_acc']:.2f}%"
              f"  distilled {100 * models['student']['test_acc']:.2f}%  ({took})", flush=True)
    return results


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
    walls = [r["wall_s"] for r in results if r["wall_s"] is not None]
    print(f"  wall time per seed        : {statistics.mean(walls):.0f} s (teacher if trained per seed, baseline, distillation, report)"
          if walls else "  wall time per seed        : - (every seed had finished before this call)")
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
    add_import_option(parser)
    args = parser.parse_args()
    import_modules(args)
    args.out = args.out or ROOT / "runs" / f"bench_{args.recipe.stem}_{time.strftime('%Y%m%d-%H%M%S')}"

    teacher = args.teacher
    if teacher is None and args.teacher_recipe is not None:
        teacher = args.out / "teacher"
        start = time.perf_counter()
        potstill("train", str(args.teacher_recipe), "--run-dir", str(teacher), "--quiet", *import_args(args.imports))
        print(f"teacher trained in {time.perf_counter() - start:.0f} s", flush=True)
    report(distil_seeds(args, teacher), teacher is not None)


if __name__ == "__main__":
    main()
