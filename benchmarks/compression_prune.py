"""Pruning + distillation on Fashion-MNIST: accuracy vs sparsity, KD recovery vs label-only recovery.

    python benchmarks/compression_prune.py --teacher runs/fmnist_teacher_cnn --out runs/bench_prune \
        --amounts 0.5 0.75 0.9 --seeds 0 1 2

Each amount is one `potstill distill recipes/fmnist/prune_then_kd.yaml --seeds ...` (a run per seed
in OUT/<method>_<percent>/seed<N>, their aggregate in its seeds.json). Each run: the trained CNN
teacher pruned (structured: channels and neurons removed by torch-pruning's dependency graph),
then fine-tuned twice from the same pruned weights with the same budget: on labels alone
(student alone) and with KD from the unpruned teacher (distilled). --unstructured adds one run per
seed at the first amount with magnitude pruning (zeros, same shapes). Accuracy: top-1 on the whole
test split after the last epoch, mean ± std (sample) over seeds, paired KD - alone differences.
Parameters and CPU latency (batch 1 and 128, medians timed interleaved with the teacher in each
run, torch threads as printed) from each run's summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from common import add_import_option, import_args, import_modules, potstill
from kd_seeds import spread

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes/fmnist/prune_then_kd.yaml"


def distil(args: argparse.Namespace, amount: float, method: str) -> Path:
    """Every seed of one pruning setting: one `potstill distill --seeds` (finished seeds are kept)."""
    folder = args.out / f"{method}_{round(100 * amount)}"
    overrides = [f"teacher.checkpoint={args.teacher}", f"student.prune.amount={amount}", f"student.prune.method={method}",
                 *args.set]  # --seeds adds seed=N
    potstill("distill", str(RECIPE), "--seeds", *map(str, args.seeds), "--run-dir", str(folder), "--quiet",
             *(f"--set={o}" for o in overrides), *import_args(args.imports))
    return folder


def one_run(run: Path, amount: float, method: str, seed: int) -> dict:
    rows = {row["role"]: row for row in json.loads((run / "summary.json").read_text())["models"]}
    teacher, alone, kd = rows["teacher"], rows["baseline"], rows["student"]
    result = {"amount": amount, "method": method, "seed": seed, "teacher": teacher["test_acc"], "alone": alone["test_acc"],
              "kd": kd["test_acc"], "params": kd["params"], "teacher_params": teacher["params"],
              "b1_ratio": kd["latency_batch1_ms"] / teacher["latency_batch1_ms"],
              "batch_ratio": kd["latency_ms"] / teacher["latency_ms"], "b1_ms": kd["latency_batch1_ms"],
              "batch_ms": kd["latency_ms"], "sparsity": kd.get("sparsity")}
    print(f"{method} {amount:.2f} seed {seed}: alone {100 * result['alone']:.2f}  kd {100 * result['kd']:.2f}  "
          f"params {result['params']:,}  latency x{result['b1_ratio']:.2f} (b=1)", flush=True)
    return result


def report(results: list[dict]) -> None:
    print(f"\n{'pruning':<18} {'params':>9} {'alone %':>15} {'KD %':>15} {'KD - alone':>14} {'x teacher ms b=1':>17} {'b=128':>7}")
    groups: dict[tuple, list[dict]] = {}
    for result in results:
        groups.setdefault((result["method"], result["amount"]), []).append(result)
    for (method, amount), group in groups.items():
        paired = [r["kd"] - r["alone"] for r in group]
        b1 = statistics.median(r["b1_ratio"] for r in group)
        batch = statistics.median(r["batch_ratio"] for r in group)
        print(f"{method + f' {100 * amount:.0f}%':<18} {group[0]['params']:>9,} {spread([r['alone'] for r in group]):>15} "
              f"{spread([r['kd'] for r in group]):>15} {spread(paired):>14} {b1:>17.2f} {batch:>7.2f}")
    teacher = results[0]
    print(f"teacher: {100 * teacher['teacher']:.2f}% top-1, {teacher['teacher_params']:,} parameters")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, default=ROOT / "runs/fmnist_teacher_cnn")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/bench_prune")
    parser.add_argument("--amounts", type=float, nargs="+", default=[0.5, 0.75, 0.9])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--unstructured", action="store_true", help="also magnitude pruning at the first amount")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override for every run")
    add_import_option(parser)
    args = parser.parse_args()
    import_modules(args)
    import torch

    print(f"torch threads {torch.get_num_threads()}; runs in {args.out}", flush=True)
    plan = [(amount, "structured") for amount in args.amounts]
    plan += [(args.amounts[0], "unstructured")] if args.unstructured else []
    results = []
    for amount, method in plan:
        folder = distil(args, amount, method)
        results += [one_run(folder / f"seed{seed}", amount, method, seed) for seed in args.seeds]
    report(results)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
