"""int8 students on Fashion-MNIST: the five arms of quantized distillation, same budget and seeds.

    python benchmarks/compression_int8.py --teacher runs/fmnist_teacher_cnn --out runs/bench_int8 \
        --seeds 0 1 2 --set train.epochs=10

Two recipes, each one `potstill distill --seeds` (OUT/fp32/seed<N>, OUT/qat/seed<N>, and each
folder's seeds.json), with the same student (MLP 784-1024-1024-10), budget and teacher:
  fp32      recipes/fmnist/kd_cnn_to_mlp.yaml: student alone (fp32) and KD student (fp32); then both
            quantized after training (ONNX Runtime, --int8-mode as given): post-training quantization
  qat       recipes/fmnist/kd_quantized_int8.yaml: quantization-aware student alone and quantization-
            aware KD student, each converted to the same kind of int8 ONNX Runtime model
Accuracy: top-1 on the whole test split after the last epoch, of the file ONNX Runtime runs (int8
arms) or of the PyTorch model (fp32 arms); mean ± std (sample) over seeds, and paired differences.
Latency: ONNX Runtime p50 at batch 1 and 32 of the fp32 and int8 files of the same model, timed in
the same interleaved rounds, on the threads torch uses here (state them with the result).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from common import add_import_option, import_args, import_modules, potstill
from kd_seeds import spread

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"fp32": ROOT / "recipes/fmnist/kd_cnn_to_mlp.yaml", "qat": ROOT / "recipes/fmnist/kd_quantized_int8.yaml"}


def rows(run: Path) -> dict[str, dict]:
    return {row["role"]: row for row in json.loads((run / "summary.json").read_text())["models"]}


def distil(args: argparse.Namespace) -> None:
    """Each recipe over every seed: one `potstill distill --seeds` in OUT/<kind>/seed<N> (finished seeds are
    kept), then post-training quantization of each fp32 seed's two students."""
    for kind, recipe in RECIPES.items():
        overrides = [f"teacher.checkpoint={args.teacher}", f"student.args.hidden={args.hidden}", *args.set]  # --seeds adds seed=N
        if kind == "qat":
            overrides.append(f"student.quantize.deploy={args.int8_mode}")
        potstill("distill", str(recipe), "--seeds", *map(str, args.seeds), "--run-dir", str(args.out / kind), "--quiet",
                 *(f"--set={o}" for o in overrides), *import_args(args.imports))
    for seed in args.seeds:
        run = args.out / "fp32" / f"seed{seed}"
        if "int8" not in rows(run)["student"]:
            potstill("export", str(run), "--int8", "--int8-mode", args.int8_mode, "--roles", "baseline", "student", "--quiet",
                     *import_args(args.imports))


def one_seed(args: argparse.Namespace, seed: int) -> dict[str, dict]:
    arms: dict[str, dict] = {}
    for kind in RECIPES:
        found = rows(args.out / kind / f"seed{seed}")
        for role, name in (("baseline", "alone"), ("student", "kd")):
            row = found[role]
            if kind == "fp32":
                arms[f"fp32 {name}"] = {"acc": row["test_acc"], **timing(row, "onnx")}
                arms[f"ptq {name}"] = {"acc": row["int8"]["test_acc"], "agreement": row["int8"]["agreement"], **timing(row, "int8")}
            else:
                arms[f"qat {name}"] = {"acc": row["int8"]["test_acc"], "fake_quant_acc": row["test_acc"], **timing(row, "int8")}
    line = "  ".join(f"{arm} {100 * arm_row['acc']:.2f}" for arm, arm_row in arms.items())
    print(f"seed {seed}: {line}", flush=True)
    return arms


def timing(row: dict, runtime: str) -> dict[str, float]:
    fields = row[runtime]
    return {"b1_ms": fields["latency_b1_p50_ms"], "b32_ms": fields["latency_b32_p50_ms"],
            "fp32_b1_ms": row["onnx"]["latency_b1_p50_ms"], "fp32_b32_ms": row["onnx"]["latency_b32_p50_ms"]}


def report(results: list[dict[str, dict]]) -> None:
    arms = list(results[0])
    print(f"\n{'arm':<10} {'top-1 % (mean ± std)':>22} {'vs fp32 kd (paired)':>22} {'ms b=1':>8} {'ms b=32':>8} {'x fp32 b=1':>11} {'x fp32 b=32':>12}")
    for arm in arms:
        accs = [r[arm]["acc"] for r in results]
        paired = [r[arm]["acc"] - r["fp32 kd"]["acc"] for r in results]
        b1 = statistics.median(r[arm]["b1_ms"] for r in results)
        b32 = statistics.median(r[arm]["b32_ms"] for r in results)
        ratio1 = statistics.median(r[arm]["b1_ms"] / r[arm]["fp32_b1_ms"] for r in results)
        ratio32 = statistics.median(r[arm]["b32_ms"] / r[arm]["fp32_b32_ms"] for r in results)
        print(f"{arm:<10} {spread(accs):>22} {spread(paired):>22} {b1:>8.3f} {b32:>8.3f} {ratio1:>11.2f} {ratio32:>12.2f}")
    for arm in ("qat alone", "qat kd"):
        fake = [r[arm]["fake_quant_acc"] for r in results]
        print(f"{arm}: PyTorch fake-quantized top-1 {spread(fake)} (the int8 file above is what ships)")
    drop = [r["ptq kd"]["acc"] - r["fp32 kd"]["acc"] for r in results]
    gain = [r["qat kd"]["acc"] - r["ptq kd"]["acc"] for r in results]
    print(f"post-training int8 drop of the KD student: {spread(drop)} points; quantized distillation vs it: {spread(gain)} points")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, default=ROOT / "runs/fmnist_teacher_cnn")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/bench_int8")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--hidden", default="[1024,1024]", help="student widths (YAML list)")
    parser.add_argument("--int8-mode", choices=["dynamic", "static"], default="dynamic")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override for every run")
    add_import_option(parser)
    args = parser.parse_args()
    import_modules(args)
    import torch

    print(f"torch threads {torch.get_num_threads()}; runs in {args.out}", flush=True)
    distil(args)
    results = [one_seed(args, seed) for seed in args.seeds]
    report(results)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
