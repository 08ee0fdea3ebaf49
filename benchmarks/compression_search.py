"""Student architecture search on Fashion-MNIST: the Pareto front under a latency budget, and the
chosen student against the hand-designed one at equal budget.

    python benchmarks/compression_search.py --out runs/bench_search --seeds 0 1 2 --epochs 10

1. `potstill search recipes/fmnist/student_search.yaml` (KD from the CNN teacher's cached logits,
   validation split chooses, test split reported; its wall time is printed).
2. The chosen student (best.yaml) and the hand-designed MLP 784-1024-1024-10 of
   recipes/fmnist/kd_cnn_to_mlp.yaml, each distilled with the same recipe (best.yaml, whose lr
   the search picked, or 2e-3 for the hand-designed one), --epochs epochs, over --seeds: one
   `potstill distill --seeds` each (OUT/searched/seed<N>, OUT/hand_designed/seed<N>, seeds.json).
   Accuracy: top-1 on the whole test split after the last epoch, mean ± std (sample) over seeds.
3. Both final students timed in the same interleaved rounds (PyTorch, batch 1 and 128, torch
   threads as printed) plus ONNX Runtime fp32 at batch 1, so "equal latency" is measured, not assumed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import add_import_option, import_args, import_modules, potstill
from kd_seeds import spread

ROOT = Path(__file__).resolve().parents[1]
HAND = {"student.args.hidden": "[1024,1024]", "train.lr": "0.002"}


def search(args: argparse.Namespace) -> dict:
    folder = args.out / "search"
    start = time.perf_counter()
    if not (folder / "search.json").is_file() or args.rerun:
        potstill("search", str(ROOT / "recipes/fmnist/student_search.yaml"), "--run-dir", str(folder), "--quiet",
                 f"--set=teacher.checkpoint={args.teacher}", *(f"--set={o}" for o in args.set), *import_args(args.imports))
    wall = time.perf_counter() - start
    record = json.loads((folder / "search.json").read_text())
    record["wall_s_this_call"] = wall
    trials = {t["number"]: t for t in record["trials"]}
    print(f"\nsearch: {len(record['trials'])} proposals, wall {wall:.0f} s this call "
          f"(sum of trial times {sum(t.get('seconds') or 0 for t in record['trials']):.0f} s)")
    print(f"{'trial':>5} {'hidden':<20} {'lr':>8} {'val %':>7} {'test %':>7} {'ms b=1':>7} {'params':>10}  outcome")
    for number in sorted(trials):
        t = trials[number]
        if t.get("val_acc") is None:
            continue
        mark = " front" if number in record["front"] else ""
        print(f"{number:>5} {t['values'].get('student.args.hidden')!s:<20} {t['values'].get('train.lr', 0):>8.4f} "
              f"{100 * t['val_acc']:>7.2f} {100 * (t.get('test_acc') or 0):>7.2f} {t['latency_ms']:>7.4f} {t['params']:>10,}  "
              f"{t['outcome']}{mark}")
    return record


def distil(args: argparse.Namespace, name: str, overrides: dict[str, str]) -> list[dict]:
    """One student over every seed: one `potstill distill --seeds` in OUT/<name>/seed<N> (finished seeds are kept)."""
    folder = args.out / name
    sets = [f"train.epochs={args.epochs}", f"teacher.checkpoint={args.teacher}", "distill.baseline=false",  # --seeds adds seed=N
            *(f"{key}={value}" for key, value in overrides.items()),
            *(o for o in args.set if not o.startswith(("search.", "train.epochs=")))]  # data limits apply to both
    potstill("distill", str(args.out / "search" / "best.yaml"), "--seeds", *map(str, args.seeds), "--run-dir", str(folder),
             "--quiet", *(f"--set={s}" for s in sets), *import_args(args.imports))
    results = []
    for seed in args.seeds:
        run = folder / f"seed{seed}"
        rows = {row["role"]: row for row in json.loads((run / "summary.json").read_text())["models"]}
        results.append({"run": run, "acc": rows["student"]["test_acc"], "params": rows["student"]["params"]})
    return results


def timed(runs: dict[str, Path]) -> dict[str, dict]:
    import torch

    import potstill as api
    from potstill.compress import OnnxModel, export_onnx, time_runtimes

    models = {name: api.load_model(run) for name, run in runs.items()}
    calls = []
    for name, model in models.items():
        onnx = OnnxModel(export_onnx(model, {"input": torch.rand(4, 1, 28, 28)}, runs[name] / "export" / "student.onnx"))
        calls += [(f"{name}/pytorch", lambda batch, model=model: model(batch["input"])), (f"{name}/onnx", onnx)]
    with torch.inference_mode():
        return time_runtimes(calls, (1, 28, 28), batch_sizes=(1, 128), repeats=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, default=ROOT / "runs/fmnist_teacher_cnn")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/bench_search")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rerun", action="store_true", help="continue the search even if search.json exists")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override for the search recipe (and, but search.* and train.epochs, for the final runs)")
    add_import_option(parser)
    args = parser.parse_args()
    import_modules(args)
    import torch

    print(f"torch threads {torch.get_num_threads()}; runs in {args.out}", flush=True)
    search(args)
    arms = {"searched": {}, "hand-designed": HAND}
    results = {arm: distil(args, arm.replace("-", "_"), overrides) for arm, overrides in arms.items()}
    times = timed({arm: runs[0]["run"] for arm, runs in results.items()})
    print(f"\n{'student':<14} {'params':>10} {'top-1 % (mean ± std)':>21} {'torch ms b=1':>13} {'b=128':>8} {'onnx ms b=1':>12}")
    for arm, runs in results.items():
        t = times[f"{arm}/pytorch"]
        print(f"{arm:<14} {runs[0]['params']:>10,} {spread([r['acc'] for r in runs]):>21} {t['latency_b1_p50_ms']:>13.4f} "
              f"{t['latency_b128_p50_ms']:>8.3f} {times[f'{arm}/onnx']['latency_b1_p50_ms']:>12.4f}")
    paired = [s["acc"] - h["acc"] for s, h in zip(results["searched"], results["hand-designed"])]
    print(f"searched - hand-designed (paired over seeds): {spread(paired)} points")
    summary = {arm: [{"acc": r["acc"], "params": r["params"], "run": str(r["run"])} for r in runs] for arm, runs in results.items()}
    (args.out / "results.json").write_text(json.dumps({"results": summary, "latency": times}, indent=2) + "\n")


if __name__ == "__main__":
    main()
