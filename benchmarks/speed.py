"""What distillation costs: student alone vs online-teacher KD vs cached KD (and torchdistill's KD).

    python benchmarks/speed.py                       # Fashion-MNIST, CNN teacher -> MLP, 3 seeds
    python benchmarks/speed.py --views 1 2 8 --epochs 5 --seeds 0 1 2

Everything runs in this one invocation, on the same data, models and batch size, each
configuration in its own process (so peak memory is its own):
  online   `potstill distill` with the teacher run on every batch; its baseline stage is the
           student alone, trained in the same process with the same budget and seed
  cached   `potstill distill` reading a teacher cache of V views per sample (full fp16 logits),
           and with V = the --topk-views value also a top-k cache (k = --top-k)
  peer     torchdistill's KD and student-alone runs (benchmarks/peers/torchdistill_kd.py), when
           its sibling venv exists (--peer-python)
It also times one forward pass of the student (S) and the teacher (T) on a batch, so the online
cost can be compared with its ideal (3S + T) / 3S (backward ~ 2 forwards, teacher forward only).
Accuracy is top-1 on the test set after the last epoch, mean ± std over seeds. Ratios, not
absolute times, are the result; the machine must be otherwise idle.

It keeps its own loop over seeds rather than `potstill distill --seeds`: each seed runs every
configuration side by side, each in its own process, so their times and peak memory compare.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import add_import_option, child_environment, import_args, import_modules

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "fmnist" / "kd_cnn_to_mlp.yaml"
TEACHER_RECIPE = ROOT / "recipes" / "fmnist" / "teacher_cnn.yaml"


def child(argv: list[str]) -> None:
    """Run one potstill command in this process and print its peak memory (KiB) last."""
    from potstill.cli.main import main

    code = main(argv)
    print(json.dumps({"maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
    sys.exit(code)


def potstill(args: argparse.Namespace, run: Path, *overrides: str) -> dict:
    settings = [f"--set={o}" for o in (*args.common, *overrides)]
    command = [sys.executable, __file__, "--child", "distill", str(args.recipe), "--run-dir", str(run), "--quiet", *settings,
               *import_args(args.imports)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=child_environment(args.imports), check=False)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run / "summary.json").read_text())
    result = {"maxrss_mib": json.loads(done.stdout.strip().splitlines()[-1])["maxrss_kib"] / 1024}
    for row in summary["models"]:
        stage = [r for r in records if r["stage"] == row["role"]]
        result[row["role"]] = {"test_acc": 100 * row["test_acc"], "epoch_s": [r["time_s"] for r in stage],
                               "teacher_ms": [r.get("teacher_ms", 0.0) for r in stage], "step_ms": [r.get("step_ms") for r in stage]}
    return result


def epoch_time(result: dict, role: str) -> float:
    """Mean training time of an epoch, the first epoch left out when there are more (warm-up)."""
    times = result[role]["epoch_s"]
    return statistics.mean(times[1:] if len(times) > 1 else times)


def forward_times(args: argparse.Namespace, teacher: Path) -> tuple[float, float]:
    """Median seconds of one student forward (training mode, with autograd) and one teacher
    forward (inference mode) on a batch of the benchmark's size."""
    import torch

    from potstill import config
    from potstill.engine.checkpoint import load_into, load_tensors
    from potstill.models import create_model
    from potstill.recipe import Recipe

    recipe = config.load(args.recipe, Recipe)
    x = torch.randn(recipe.data.batch_size, 1, 28, 28)
    student = create_model(recipe.student.name, input_shape=(1, 28, 28), num_classes=10, **recipe.student.args)
    model = create_model(recipe.teacher.model.name, input_shape=(1, 28, 28), num_classes=10, **recipe.teacher.model.args)
    load_into(model.eval(), load_tensors(teacher)[0], str(teacher), "teacher")

    def median(call) -> float:
        for _ in range(5):
            call()
        times = []
        for _ in range(50):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    def teacher_forward():
        with torch.inference_mode():
            model(x)

    return median(lambda: student(x)), median(teacher_forward)


def peer(args: argparse.Namespace, teacher: Path, seed: int) -> dict | None:
    if not args.peer_python or not Path(args.peer_python).is_file():
        return None
    from potstill import config
    from potstill.recipe import Recipe

    recipe = config.load(args.recipe, Recipe, [o for o in args.extra if o.startswith("data.")])
    out = args.out / f"torchdistill_seed{seed}.json"
    command = [
        args.peer_python, str(ROOT / "benchmarks" / "peers" / "torchdistill_kd.py"), "--teacher-weights", str(teacher),
        "--teacher-model", recipe.teacher.model.name, "--teacher-args", json.dumps(recipe.teacher.model.args),
        "--student-model", recipe.student.name, "--student-args", json.dumps(recipe.student.args),
        "--dataset", recipe.data.name, "--epochs", str(args.epochs), "--batch-size", str(recipe.data.batch_size),
        "--lr", str(recipe.train.lr), "--weight-decay", str(recipe.train.weight_decay),
        "--temperature", str(recipe.distill.temperature), "--alpha", str(recipe.distill.alpha),
        "--beta", str(recipe.distill.beta), "--seed", str(seed), "--out", str(out),
        "--crop-padding", str(recipe.data.crop_padding),
    ] + (["--hflip"] if recipe.data.hflip else []) + (["--train-size", str(recipe.data.train_size)] if recipe.data.train_size else [])
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        print(f"torchdistill run failed (left out):\n{done.stderr[-1500:]}", flush=True)
        return None
    return json.loads(out.read_text())


def spread(values: list[float], digits: int = 2) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {std:.{digits}f}"


def run_seed(args: argparse.Namespace, seed: int) -> dict:
    result = {"seed": seed, "online": potstill(args, args.out / f"online_seed{seed}", f"seed={seed}")}
    for views in args.views:
        cache = f"distill.cache.path={args.out / f'cache_full_v{views}'}"
        result[f"cached_v{views}"] = potstill(
            args, args.out / f"cached_v{views}_seed{seed}", f"seed={seed}", "distill.baseline=false",
            "distill.cache.enabled=true", f"distill.cache.views={views}", cache)
    topk = f"distill.cache.path={args.out / f'cache_top{args.top_k}_v{args.topk_views}'}"
    result["cached_topk"] = potstill(
        args, args.out / f"cached_topk_seed{seed}", f"seed={seed}", "distill.baseline=false", "distill.cache.enabled=true",
        f"distill.cache.views={args.topk_views}", f"distill.cache.top_k={args.top_k}", topk)
    result["peer"] = peer(args, args.teacher, seed) if seed in args.peer_seeds else None
    line = "  ".join(f"{name} {value['student']['test_acc']:.2f}%" for name, value in result.items()
                     if isinstance(value, dict) and "student" in value)
    print(f"seed {seed}: alone {result['online']['baseline']['test_acc']:.2f}%  {line}", flush=True)
    return result


def cache_facts(folder: Path) -> dict:
    manifest = json.loads((folder / "manifest.json").read_text())
    return {"seconds": manifest["build"]["seconds"], "per_sample_view": manifest["bytes"]["per_sample_view"],
            "mib": manifest["bytes"]["total"] / 2**20}


def report(args: argparse.Namespace, results: list[dict], forward: tuple[float, float]) -> None:
    alone = [epoch_time(r["online"], "baseline") for r in results]
    online = [epoch_time(r["online"], "student") for r in results]
    s, t = forward
    ideal = (3 * s + t) / (3 * s)
    measured = statistics.mean(o / a for o, a in zip(online, alone))
    print(f"\nFashion-MNIST, {args.epochs} epochs, seeds {args.seeds}; epoch time = mean of epochs 2..N; accuracy = last epoch")
    print(f"forward on one batch: student S {1000 * s:.2f} ms, teacher T {1000 * t:.2f} ms -> ideal online cost (3S+T)/3S = {ideal:.2f}x")
    print(f"{'configuration':<34} {'epoch s':>8} {'÷ alone':>8} {'test top-1 %':>15} {'peak MiB':>9}")
    print(f"{'student alone':<34} {statistics.mean(alone):>8.2f} {1.0:>8.2f} "
          f"{spread([r['online']['baseline']['test_acc'] for r in results]):>15} {'':>9}")
    rows = [("online-teacher KD", "online")] + [(f"cached KD, {v} view(s), fp16 logits", f"cached_v{v}") for v in args.views]
    rows.append((f"cached KD, {args.topk_views} view(s), top-{args.top_k}", "cached_topk"))
    for title, key in rows:
        times = [epoch_time(r[key], "student") for r in results]
        ratio = statistics.mean(x / a for x, a in zip(times, alone))
        print(f"{title:<34} {statistics.mean(times):>8.2f} {ratio:>8.2f} "
              f"{spread([r[key]['student']['test_acc'] for r in results]):>15} {statistics.mean(r[key]['maxrss_mib'] for r in results):>9.0f}")
    teacher_share = statistics.mean(statistics.mean(r["online"]["student"]["teacher_ms"]) / statistics.mean(r["online"]["student"]["step_ms"]) for r in results)
    print(f"online KD: measured {measured:.2f}x vs ideal {ideal:.2f}x ({measured / ideal:.2f} of ideal); "
          f"teacher share of a step (log's teacher_ms / step_ms) {100 * teacher_share:.0f}%")
    # a tighter ideal: the student-alone step as measured plus the teacher's in-loop forward time
    alone_ms = statistics.mean(statistics.mean(r["online"]["baseline"]["step_ms"][1:]) for r in results)
    teacher_ms = statistics.mean(statistics.mean(r["online"]["student"]["teacher_ms"][1:]) for r in results)
    tight = (alone_ms + teacher_ms) / alone_ms
    print(f"online KD vs (alone step {alone_ms:.1f} ms + in-loop teacher forward {teacher_ms:.1f} ms) / alone step = "
          f"{tight:.2f}x: measured is {measured / tight:.2f} of that")
    for name in [f"cache_full_v{v}" for v in args.views] + [f"cache_top{args.top_k}_v{args.topk_views}"]:
        facts = cache_facts(args.out / name)
        per = facts["per_sample_view"]
        print(f"cache {name:<18} build {facts['seconds']:.1f} s, {per['logits']} B logits + {per['view']} B view parameters "
              f"per sample-view, {facts['mib']:.2f} MiB")
    peers = [r["peer"] for r in results if r.get("peer")]
    if peers:
        td_kd = statistics.mean(statistics.mean(p["kd"]["epoch_s"][1:] or p["kd"]["epoch_s"]) for p in peers)
        td_alone = statistics.mean(statistics.mean(p["alone"]["epoch_s"][1:] or p["alone"]["epoch_s"]) for p in peers)
        cached = statistics.mean(epoch_time(r[f"cached_v{args.views[0]}"], "student") for r in results)
        print(f"torchdistill {peers[0]['torchdistill']} (torch {peers[0]['torch']}), seeds {args.peer_seeds}: KD {td_kd:.2f} s/epoch, "
              f"alone {td_alone:.2f} s/epoch, KD ÷ alone {td_kd / td_alone:.2f}x; KD top-1 "
              f"{spread([p['kd']['test_acc'] for p in peers])}%, alone {spread([p['alone']['test_acc'] for p in peers])}%")
        print(f"potstill online KD ÷ alone {measured:.2f}x vs torchdistill {td_kd / td_alone:.2f}x; "
              f"potstill cached KD ÷ torchdistill KD = {cached / td_kd:.3f} ({td_kd / cached:.1f}x faster)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "--report":  # print the table of a finished run again
        folder = Path(sys.argv[2])
        saved = json.loads((folder / "results.json").read_text())
        report(argparse.Namespace(**saved["args"], out=folder), saved["results"], tuple(saved["forward_s"]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    parser.add_argument("--teacher", type=Path, help="teacher .safetensors (default: train recipes/fmnist/teacher_cnn.yaml once)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--views", type=int, nargs="+", default=[1, 2, 8], help="cached views per sample to compare")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--topk-views", type=int, default=2)
    parser.add_argument("--peer-python", default="/work/peers/torchdistill-venv/bin/python")
    parser.add_argument("--peer-seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / f"bench_speed_{time.strftime('%Y%m%d-%H%M%S')}")
    add_import_option(parser)
    args = parser.parse_args()
    import_modules(args)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.teacher is None:
        run = args.out / "teacher"
        subprocess.run([sys.executable, "-m", "potstill.cli.main", "train", str(TEACHER_RECIPE), "--run-dir", str(run), "--quiet",
                        *import_args(args.imports)], check=True, env=child_environment(args.imports))
        args.teacher = run / "teacher" / "model.safetensors"
    args.common = [f"teacher.checkpoint={args.teacher}", f"train.epochs={args.epochs}", *args.extra]
    forward = forward_times(args, args.teacher)
    results = [run_seed(args, seed) for seed in args.seeds]
    settings = {k: v for k, v in vars(args).items() if k in ("epochs", "seeds", "views", "top_k", "topk_views", "peer_seeds")}
    (args.out / "results.json").write_text(json.dumps({"forward_s": forward, "results": results, "args": settings}, indent=1))
    report(args, results, forward)


if __name__ == "__main__":
    main()
