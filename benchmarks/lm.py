"""Language-model distillation on Shakespeare: one GPT-2-style teacher, a 2-layer student, seven arms, 3 seeds.

    potstill train recipes/lm/teacher_gpt_shakespeare.yaml                 # the teacher, once
    python benchmarks/lm.py --teacher runs/lm_teacher_gpt_shakespeare --out runs/bench_lm --jobs 2
    python benchmarks/lm.py --report runs/bench_lm                         # the tables again

Student: GPT-2 style, 2 layers x 128, 2 heads, the teacher's byte-level BPE (2,048 tokens), random
init, or weight-selected from the teacher (`--init select`: layers 0 and 3, every other unit).
Every arm trains the same steps on the same windows (TRAIN_SIZE windows of 128 tokens, EPOCHS
epochs, batch 32): alone (the forward_kl run's baseline: same seed, initial weights and budget),
forward_kl, reverse_kl, jsd (beta 0.5), skew_kl (0.1), gkd (on-policy, lambda 0.5, jsd 0.5; half
the batches are the student's own 64-token continuations of 64-token prompts), seq_kd (the
teacher's greedy 64-token continuations of the same prompts, written once by `potstill generate`;
seq_kd_t1: the same, sampled at temperature 1),
topk16 and topk128 (forward_kl from the top-16 / top-128 teacher cache: 64 / 512 bytes per token;
token losses compare the k tokens and one tail bucket). alpha = 0.5 everywhere
(seq_kd: 1.0, cross-entropy on the teacher's tokens).

Measured on 400 windows (51k tokens) drawn from the four held-out plays (seeded, the same for every run): perplexity (primary), bits per byte, next-token top-1,
agreement with the teacher, ECE; from 64 samples of 64 tokens per student (benchmarks/lm_measures.py):
the teacher's NLL of the student's samples and distinct-1/2; training tokens/s; generation tokens/s
(teacher and student timed alternately). Mean ± std over seeds; "gain" = the paired per-seed change
of perplexity against the student alone, called a gain only when every seed agrees in sign and the
mean exceeds the std of the paired changes.

It keeps its own loop over (arm, seed) rather than `potstill distill --seeds`: those pairs run in
parallel (--jobs), and a seq_kd arm's seed needs its own teacher sequences written first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from common import add_import_option, child_environment, import_args, import_modules

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SIZE, EPOCHS = 3072, 1  # 3,072 windows x 128 tokens = 393k tokens per arm (the teacher saw 1.58M x 2)
TEST_SIZE = 400  # of the 1,605 held-out windows (51k predicted tokens): the teacher is measured twice per run
DATA = {"name": "shakespeare", "args": {"context": 128, "tokenizer": "bpe", "vocab_size": 2048}, "batch_size": 32,
        "eval_batch_size": 64, "train_size": TRAIN_SIZE, "test_size": TEST_SIZE}
TEACHER = {"name": "hf_lm_config", "args": {"model_type": "gpt2", "layers": 4, "hidden": 256, "heads": 4}}
STUDENT = {"name": "hf_lm_config", "args": {"model_type": "gpt2", "layers": 2, "hidden": 128, "heads": 2}}
TRAIN = {"epochs": EPOCHS, "optimizer": "adamw", "lr": 2.0e-3, "weight_decay": 0.01, "scheduler": "onecycle", "grad_clip": 1.0}
SAMPLING = {"prompt_tokens": 64, "max_new_tokens": 64}
ARMS = {
    "forward_kl": {"distill": {"loss": "forward_kl", "temperature": 1.0, "alpha": 0.5, "beta": 0.5}},
    "reverse_kl": {"distill": {"loss": "reverse_kl", "temperature": 1.0, "alpha": 0.5, "beta": 0.5}},
    "jsd": {"distill": {"loss": "jsd", "loss_args": {"beta": 0.5}, "temperature": 1.0, "alpha": 0.5, "beta": 1.0}},
    "skew_kl": {"distill": {"loss": "skew_kl", "loss_args": {"skew": 0.1}, "temperature": 1.0, "alpha": 0.5, "beta": 0.5}},
    "gkd": {"distill": {"loss": "jsd", "loss_args": {"beta": 0.5}, "temperature": 1.0, "alpha": 0.5, "beta": 1.0},
            "scheme": {"name": "gkd", "args": {"lmbda": 0.5, **SAMPLING, "temperature": 1.0}}},
    "seq_kd": {"distill": {"loss": None, "alpha": 1.0},
               "scheme": {"name": "seq_kd", "args": {"sequences": "SEQUENCES", **SAMPLING, "temperature": 0.0}}},
    "seq_kd_t1": {"distill": {"loss": None, "alpha": 1.0},
                  "scheme": {"name": "seq_kd", "args": {"sequences": "SEQUENCES", **SAMPLING, "temperature": 1.0}}},
    "topk16": {"distill": {"loss": "forward_kl", "temperature": 1.0, "alpha": 0.5, "beta": 0.5,
                           "cache": {"enabled": True, "top_k": 16, "path": "CACHE"}}},
    "topk128": {"distill": {"loss": "forward_kl", "temperature": 1.0, "alpha": 0.5, "beta": 0.5,
                            "cache": {"enabled": True, "top_k": 128, "path": "CACHE"}}},
}


def recipe(arm: str, seed: int, teacher: Path, out: Path, init: str) -> dict:
    spec = json.loads(json.dumps(ARMS[arm]))
    spec["distill"] |= {"baseline": arm == "forward_kl", "teacher_check": "refuse"}
    scheme = spec.get("scheme", {}).get("args", {})
    if "sequences" in scheme:
        scheme["sequences"] = str((out / f"sequences_{arm}_seed{seed}").resolve())
    if "cache" in spec["distill"]:  # the same windows and teacher for every seed: one cache per k
        spec["distill"]["cache"]["path"] = str((out / f"cache_top{spec['distill']['cache']['top_k']}").resolve())
    student = dict(STUDENT, **({"init": {"source": "teacher", "layers": [0, 3], "method": "select"}} if init == "select" else {}))
    return {"name": f"bench_lm_{arm}", "seed": seed, "data": DATA,
            "teacher": {"model": TEACHER, "checkpoint": str(teacher.resolve())}, "student": student, "train": TRAIN,
            **spec, "report": {"latency_batch_size": 8, "latency_repeats": 10}}


OVERRIDES: list[str] = []  # --set KEY=VALUE for every potstill command (quick checks only)
IMPORTS: list[str] = []  # --import MODULE for every potstill command


def potstill(*words: str, threads: int) -> None:
    changes = [word for value in OVERRIDES for word in ("--set", value)] if "--resume" not in words else []
    command = [sys.executable, "-m", "potstill.cli.main", *words, *changes, "--quiet", *import_args(IMPORTS)]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, env=child_environment(IMPORTS, OMP_NUM_THREADS=str(threads)))


def run_arm(out: Path, arm: str, seed: int, teacher: Path, init: str, threads: int) -> None:
    folder = out / f"seed{seed}" / arm
    if (folder / "summary.json").is_file():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    path = folder.parent / f"{arm}.yaml"
    path.write_text(yaml.safe_dump(recipe(arm, seed, teacher, out, init), sort_keys=False))
    if ARMS[arm].get("scheme", {}).get("name") == "seq_kd":
        potstill("generate", str(path), threads=threads)
    if "cache" in ARMS[arm]["distill"]:
        potstill("cache", "build", str(path), threads=threads)
    potstill("distill", str(path), *(["--resume", str(folder)] if folder.exists() else ["--run-dir", str(folder)]),
             threads=threads)


def spread(values: list[float], digits: int = 2) -> str:
    if not values:
        return "-"
    mean = statistics.mean(values)
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def gain_words(changes: list[float]) -> str:
    if not changes:
        return "-"
    mean = statistics.mean(changes)
    noise = statistics.stdev(changes) if len(changes) > 1 else float("inf")
    same_sign = all(c < 0 for c in changes) or all(c > 0 for c in changes)
    verdict = ("gain" if mean < 0 else "loss") if same_sign and abs(mean) > noise else "within noise"
    return f"{mean:+.2f}% ({', '.join(f'{c:+.1f}' for c in changes)}; {verdict})"


def collect(out: Path, seeds: list[int]) -> dict[str, dict[int, dict]]:
    """arm -> seed -> the student row (alone: the forward_kl run's baseline; teacher: any run's) with measures."""
    found: dict[str, dict[int, dict]] = {}
    for seed in seeds:
        for arm in ARMS:
            folder = out / f"seed{seed}" / arm
            if not (folder / "summary.json").is_file():
                continue
            rows = {row["role"]: row for row in json.loads((folder / "summary.json").read_text())["models"]}
            extra = json.loads((folder / "measures.json").read_text()) if (folder / "measures.json").is_file() else {}
            teacher_speed = extra.get("teacher", {}).get("generate_tokens_per_s")
            for role, key in (("student", arm), ("teacher", "teacher"), ("baseline", "alone")):
                if role not in rows or (role == "baseline" and arm != "forward_kl"):
                    continue
                row = rows[role] | extra.get(role, {})
                if teacher_speed and row.get("generate_tokens_per_s"):  # timed alternately in one process
                    row["generate_vs_teacher"] = row["generate_tokens_per_s"] / teacher_speed
                found.setdefault(key, {})[seed] = row
    return found


def report(out: Path, seeds: list[int]) -> str:
    found = collect(out, seeds)
    lines = ["| arm | ppl | change vs alone, per seed | bpb | top-1 % | agree % | ECE | teacher NLL of samples | distinct-1 / 2 "
             "| train tok/s | gen tok/s | gen ÷ teacher |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm in ["teacher", "alone", *ARMS]:
        per_seed = found.get(arm, {})
        if not per_seed:
            continue
        values, alone = list(per_seed.values()), found.get("alone", {})
        changes = [100 * (per_seed[s]["test_ppl"] / alone[s]["test_ppl"] - 1) for s in per_seed
                   if s in alone and arm not in ("alone", "teacher")]
        get = lambda key, scale=1.0: [scale * v[key] for v in values if v.get(key) is not None]  # noqa: E731
        lines.append("| " + " | ".join([
            arm, spread(get("test_ppl")), gain_words(changes), spread(get("test_bpb"), 3), spread(get("test_acc", 100)),
            spread(get("teacher_agreement", 100)), spread(get("ece"), 3), spread(get("teacher_nll_of_samples"), 3),
            f"{spread(get('distinct_1'), 3)} / {spread(get('distinct_2'), 3)}", spread(get("train_tokens_per_s"), 0),
            spread(get("generate_tokens_per_s"), 0), spread(get("generate_vs_teacher"), 2),
        ]) + " |")
    lines.append(f"\nseeds with results: {sorted({s for v in found.values() for s in v})}; {len(seeds)} asked")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, default=ROOT / "runs" / "lm_teacher_gpt_shakespeare")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_lm")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--init", choices=["random", "select"], default="random", help="the student's initial weights")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each run (stated in the results)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each with --threads threads)")
    parser.add_argument("--report", action="store_true", help="only print the tables from finished runs")
    parser.add_argument("--no-measures", action="store_true", help="train only; measure samples and speeds in a later call")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override for every run, as `potstill distill --set` (quick checks only)")
    add_import_option(parser)
    args = parser.parse_args()
    import_modules(args)
    OVERRIDES.extend(args.overrides)
    IMPORTS.extend(args.imports)
    if not args.report:
        work = [(arm, seed) for seed in args.seeds for arm in args.arms]
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda job: run_arm(args.out, job[0], job[1], args.teacher, args.init, args.threads), work))
    if not args.report and not args.no_measures:
        sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: benchmarks/ holds lm_measures
        from lm_measures import measure_all  # torch only when measuring

        measure_all(args.out, args.seeds, list(ARMS), args.teacher)
    text = report(args.out, args.seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
