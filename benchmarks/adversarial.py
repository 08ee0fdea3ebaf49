"""Adversarial distillation, both forms, against plain KD at the same budget, over seeds.

    python benchmarks/adversarial.py --recipe recipes/digits/demo.yaml
    python benchmarks/adversarial.py --recipe recipes/fmnist/kd_cnn_to_small_mlp.yaml --teacher runs/fmnist_teacher_cnn \
        --set data.train_size=10000 --set train.epochs=5 --set distill.cache.enabled=false

Three arms from one recipe, so everything but the method is the same (data, models, epochs,
optimizer, the recipe's CE + KD terms):
    kd             the recipe as it is
    discriminator  + the `adversarial` term: an MLP discriminator on logits, conditioned on the label
                   (Xu et al. arXiv:1709.00513), weight --adversarial-weight
    bss            scheme bss: + samples crafted near the teacher's decision boundary (Heo et al.,
                   AAAI 2019), the paper's attack (as its official code) and weight schedule
    bss_newton     the same with the attack's step divided by ||g||^2 (squared_norm: true), so the
                   samples approach the boundary instead of crossing it in one step
Each arm is one `potstill distill RECIPE --seeds ... --run-dir OUT/<arm>` (run it again to continue
an interrupted one). Accuracy is top-1 on the test split after the last epoch, mean ± std (sample
std) over seeds; "gain" is the paired per-seed difference to plain KD; the time ratio is the arm's
mean distillation epoch ÷ plain KD's, per seed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from common import add_import_option, import_args, import_modules, potstill

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("kd", "discriminator", "bss", "bss_newton")


def arm_overrides(arm: str, args: argparse.Namespace) -> list[str]:
    if arm == "discriminator":
        return [f"distill.terms=[{{loss: adversarial, weight: {args.adversarial_weight}}}]"]
    if arm == "bss":
        return ["scheme.name=bss"]
    if arm == "bss_newton":
        return ["scheme.name=bss", "scheme.args.squared_norm=true"]
    return []


def run_arm(arm: str, args: argparse.Namespace) -> dict[int, dict]:
    """{seed: {"acc", "alone", "teacher", "epoch_s"}} of one arm, every seed in one potstill call."""
    # another discriminator weight gets a folder of its own: the other arms' finished runs are kept
    out = args.out / (arm if arm != "discriminator" or args.adversarial_weight == 1.0 else f"{arm}_w{args.adversarial_weight:g}")
    overrides = [*args.set, *([f"teacher.checkpoint={args.teacher}"] if args.teacher else []), *arm_overrides(arm, args)]
    start = time.perf_counter()
    potstill("distill", str(args.recipe), "--seeds", *map(str, args.seeds), "--run-dir", str(out), "--quiet",
             *(f"--set={o}" for o in overrides), *import_args(args.imports))
    results = {}
    for seed in args.seeds:
        run = out / f"seed{seed}"
        roles = {row["role"]: row["test_acc"] for row in json.loads((run / "summary.json").read_text())["models"]}
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        epoch_s = statistics.mean(r["time_s"] for r in records if r.get("stage") == "student")
        results[seed] = {"acc": roles["student"], "alone": roles.get("baseline"), "teacher": roles.get("teacher"), "epoch_s": epoch_s}
    print(f"{arm}: {len(args.seeds)} seeds in {time.perf_counter() - start:.0f} s", flush=True)
    return results


def spread(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {std:.2f}"


def report(results: dict[str, dict[int, dict]], seeds: list[int]) -> None:
    kd = results["kd"]
    for key, title in (("teacher", "teacher"), ("alone", "student alone")):
        if kd[seeds[0]][key] is not None:
            print(f"{title}: {spread([100 * kd[s][key] for s in seeds])}%")
    print(f"\ntest top-1 after the last epoch, % (mean ± std over seeds {seeds}); gain and time vs plain KD, paired per seed")
    print(f"{'arm':<14} {'top-1 %':>14} {'gain (points)':>14}  {'per seed':<24} {'epoch s':>8} {'time ratio':>10}")
    for arm, runs in results.items():
        accs = [100 * runs[s]["acc"] for s in seeds]
        gains = [100 * (runs[s]["acc"] - kd[s]["acc"]) for s in seeds]
        ratios = [runs[s]["epoch_s"] / kd[s]["epoch_s"] for s in seeds]
        per_seed = ", ".join(f"{g:+.2f}" for g in gains)
        print(f"{arm:<14} {spread(accs):>14} {spread(gains):>14}  {per_seed:<24} "
              f"{statistics.mean(runs[s]['epoch_s'] for s in seeds):>8.2f} {statistics.mean(ratios):>9.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "digits" / "demo.yaml", help="a distill recipe (plain KD)")
    parser.add_argument("--teacher", type=Path, help="a finished `potstill train` run (or weights file) to use as the teacher")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS), help="kd is always run: the others are compared with it")
    parser.add_argument("--adversarial-weight", type=float, default=1.0, help="weight of the discriminator term")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override for every arm and seed")
    parser.add_argument("--out", type=Path, help="folder for the runs (default runs/bench_adversarial_<recipe name>)")
    add_import_option(parser)
    args = parser.parse_args()
    import_modules(args)
    args.out = args.out or ROOT / "runs" / f"bench_adversarial_{args.recipe.stem}"
    arms = ["kd", *[arm for arm in args.arms if arm != "kd"]]
    report({arm: run_arm(arm, args) for arm in arms}, args.seeds)


if __name__ == "__main__":
    main()
