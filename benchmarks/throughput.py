"""Training throughput (images/s) of the standard CIFAR pair, resnet32x4 -> resnet8x4, at batch 256
on synthetic CIFAR-shaped data (3x32x32, 100 classes): student alone, online-teacher KD and cached
KD, each in fp32 and bf16, with and without channels_last.

    python benchmarks/throughput.py                  # on the GPU when there is one, else the CPU
    python benchmarks/throughput.py --steps 4 --device cpu --precisions fp32   # CPUs without bf16 units

Each configuration is one `potstill distill` run in its own process; images/s = batch size ÷ the
mean `step_ms` of the last epoch (the first epoch is warm-up). The teacher has random weights:
speed does not depend on them. Flip + crop augmentation keeps the online teacher online.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import add_import_option, child_environment, import_args, import_modules

ROOT = Path(__file__).resolve().parents[1]


def recipe(args: argparse.Namespace, teacher: Path) -> dict:
    samples = args.steps * args.batch
    return {
        "name": "throughput", "seed": 0, "device": args.device,
        "data": {"name": "synthetic", "args": {"num_samples": samples + samples // 4, "num_classes": 100, "channels": 3, "size": 32},
                 "batch_size": args.batch, "eval_batch_size": 500, "hflip": True, "crop_padding": 4},
        "teacher": {"model": {"name": "resnet32x4"}, "checkpoint": str(teacher)},
        "student": {"name": "resnet8x4"},
        "train": {"epochs": 2, "optimizer": "sgd", "lr": 0.05, "scheduler": "constant"},
        # the teacher's random weights score at chance, which the teacher check would (rightly) refuse
        "distill": {"loss": "kd", "temperature": 4.0, "alpha": 0.5, "beta": 0.5, "teacher_check": "off"},
        "report": {"latency_repeats": 1, "latency_batch_size": 8},
    }


def images_per_second(run: Path, stage: str, batch: int) -> float:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if r["stage"] == stage][-1]
    return batch / (last["step_ms"] / 1000)


def run_config(args: argparse.Namespace, teacher: Path, name: str, overrides: list[str]) -> dict:
    import yaml

    path = args.out / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe(args, teacher)))
    run = args.out / name
    command = [sys.executable, "-m", "potstill.cli.main", "distill", str(path), "--run-dir", str(run), "--quiet",
               *(f"--set={o}" for o in overrides), *import_args(args.imports)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=child_environment(args.imports), check=False)
    if done.returncode != 0:
        sys.exit(f"{name} failed:\n{done.stderr[-2000:]}")
    alone = "--set=distill.baseline=false" not in command
    return {"alone": images_per_second(run, "baseline", args.batch) if alone else None, "kd": images_per_second(run, "student", args.batch)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="training steps per epoch")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--layouts", nargs="+", default=["contiguous", "channels_last"], choices=["contiguous", "channels_last"])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / f"bench_throughput_{time.strftime('%Y%m%d-%H%M%S')}")
    add_import_option(parser)
    args = parser.parse_args()
    import_modules(args)
    args.out.mkdir(parents=True, exist_ok=True)

    import torch

    from potstill.engine.checkpoint import save_tensors
    from potstill.models import create_model

    torch.manual_seed(0)
    teacher = args.out / "teacher.safetensors"
    save_tensors(teacher, create_model("resnet32x4", input_shape=(3, 32, 32), num_classes=100).state_dict(), {})
    device = "cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    print(f"device {device} ({torch.cuda.get_device_name() if device == 'cuda' else f'{torch.get_num_threads()} CPU threads'}), "
          f"torch {torch.__version__}, batch {args.batch}, {args.steps} steps per epoch, images/s of the second epoch; time = step time ÷ student alone")
    print(f"{'precision':<10} {'layout':<14} {'alone':>8} {'online KD':>10} {'cached KD':>10} {'online time':>12} {'cached time':>12}")
    results = {}
    for precision in args.precisions:
        for layout in args.layouts:
            engine = [f"engine.precision={precision}", f"engine.channels_last={str(layout == 'channels_last').lower()}"]
            name = f"{precision}_{layout}"
            online = run_config(args, teacher, f"{name}_online", engine)
            cached = run_config(args, teacher, f"{name}_cached", [*engine, "distill.baseline=false", "distill.cache.enabled=true"])
            results[name] = {"alone": online["alone"], "online": online["kd"], "cached": cached["kd"]}
            row = results[name]
            print(f"{precision:<10} {layout:<14} {row['alone']:>8.0f} {row['online']:>10.0f} {row['cached']:>10.0f} "
                  f"{row['alone'] / row['online']:>11.2f}x {row['alone'] / row['cached']:>11.2f}x", flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
