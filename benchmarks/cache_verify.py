"""What verifying the teacher cache on every start costs, measured on Fashion-MNIST.

    python benchmarks/cache_verify.py --teacher runs/fmnist_teacher_cnn/teacher/model.safetensors
    python benchmarks/cache_verify.py --views 1 8 --repeats 7 --out runs/bench_cache_verify

`potstill distill` checks a cache before using it: every shard the manifest lists is read once,
and its SHA-256 must equal the one the manifest records (docs/guide.md, "What potstill
guarantees"). This script builds Fashion-MNIST caches of the recipe's teacher (60,000 images, V
views each) and times, interleaved, in one process:
  open (no check)     TeacherCache(verify=False): read the files, no checksum
  open (verified)     TeacherCache(): read each file once, hash those bytes, then parse them
  distill start       what distill does now before training: build() finds the cache up to date
                      (checks each shard's record and checksum) + a verified open
  one cached epoch    one epoch of `potstill distill` from the cache (1 view), for scale
and prints what verifying adds to opening, the whole start check (build check + verified open,
including the teacher probe and the view bank) as a fraction of one cached epoch, and this
machine's SHA-256 throughput (to extrapolate to larger caches). Verification cost does not
depend on how well the teacher is trained: without --teacher, a freshly initialised teacher of
the recipe's architecture is cached (say so when quoting the numbers).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from pathlib import Path

import torch
from common import add_import_option, import_args, import_modules

from potstill import config
from potstill.cache import TeacherCache, build, make_job
from potstill.cli.main import main as potstill_main
from potstill.engine.checkpoint import save_tensors
from potstill.engine.weights import load_weights
from potstill.preprocess import attach, preprocessing_of
from potstill.recipe import Recipe
from potstill.startup import build_model, open_workbench

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "fmnist" / "kd_cnn_to_mlp_cached.yaml"


def median_ms(calls: dict[str, callable], repeats: int) -> dict[str, float]:
    """Each call timed `repeats` times, the calls interleaved so that machine noise hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in times.items()}


def sha256_throughput() -> float:
    """GB/s of hashlib.sha256 on 256 MiB held in memory."""
    data = bytes(256 << 20)
    start = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    return len(data) / (time.perf_counter() - start) / 1e9


def cached_epoch_seconds(args: argparse.Namespace, teacher_file: Path, cache: Path) -> float:
    run = args.out / "one_cached_epoch"
    argv = ["distill", str(args.recipe), "--run-dir", str(run), "--quiet", "--set", "train.epochs=1",
            "--set", "distill.baseline=false", "--set", f"teacher.checkpoint={teacher_file}",
            "--set", "distill.cache.views=1", "--set", f"distill.cache.path={cache}",
            "--set", "distill.teacher_check=off",  # only the time counts; a fresh teacher would (rightly) be refused
            *import_args(args.imports)]
    if potstill_main(argv) != 0:
        raise SystemExit("the cached epoch failed")
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    return record["time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    parser.add_argument("--teacher", type=Path, help="teacher .safetensors (default: a fresh teacher of the recipe's architecture)")
    parser.add_argument("--views", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / f"bench_cache_verify_{time.strftime('%Y%m%d-%H%M%S')}")
    add_import_option(parser)
    args = parser.parse_args()
    import_modules(args)
    args.out.mkdir(parents=True, exist_ok=False)

    recipe = config.load(args.recipe, Recipe, ["teacher.checkpoint=null"])
    bench = open_workbench(recipe)
    teacher = build_model(recipe.teacher.model, bench, "teacher", recipe.seed)  # preprocessing: dataset
    if args.teacher:
        recorded = load_weights(teacher, args.teacher, "teacher", bench.device)
        attach(teacher, recorded or preprocessing_of(teacher))
    teacher_file = args.out / "teacher.safetensors"  # records its preprocessing, so distill feeds it the same way
    save_tensors(teacher_file, teacher.state_dict(), {"preprocessing": preprocessing_of(teacher).header()})
    print(f"torch threads {torch.get_num_threads()}; teacher {'from ' + str(args.teacher) if args.teacher else 'freshly initialised'}; "
          f"{len(bench.splits.train)} training images; SHA-256 {sha256_throughput():.2f} GB/s", flush=True)

    rows = []
    for views in args.views:
        recipe.distill.cache.views = views
        job = make_job(recipe, bench, teacher, [], args.out / f"cache_v{views}")
        manifest = build(job)
        size = manifest["bytes"]["total"]
        timed = median_ms({
            "open (no check)": lambda: TeacherCache(job.folder, fingerprint=job.fingerprint, verify=False),
            "open (verified)": lambda: TeacherCache(job.folder, fingerprint=job.fingerprint),
            "distill start": lambda: (build(job), TeacherCache(job.folder, fingerprint=job.fingerprint)),
        }, args.repeats)
        rows.append((views, size, timed))
    epoch = cached_epoch_seconds(args, teacher_file, args.out / "cache_v1")

    print(f"\none cached KD epoch (1 view, batch {recipe.data.batch_size}): {epoch:.2f} s\n")
    print("| views | cache MiB | open, no check ms | open, verified ms | added by verifying ms | whole start check ms | start check ÷ cached epoch |")
    print("|---|---|---|---|---|---|---|")
    for views, size, timed in rows:
        added = timed["open (verified)"] - timed["open (no check)"]
        print(f"| {views} | {size / 2**20:.2f} | {timed['open (no check)']:.1f} | {timed['open (verified)']:.1f} | "
              f"{added:.1f} | {timed['distill start']:.1f} | {timed['distill start'] / 1000 / epoch:.4f} |")

if __name__ == "__main__":
    main()
