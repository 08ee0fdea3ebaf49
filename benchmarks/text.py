"""Text distillation on fortune topics: the fine-tuned MiniLM-L6 teacher, four students, five arms, 3 seeds.

    potstill train recipes/text/teacher_minilm_fortunes.yaml          # the teacher, once (seed 0)
    python benchmarks/text.py --teacher runs/text_teacher_minilm_fortunes --out runs/bench_text
    python benchmarks/text.py --report runs/bench_text                # the tables again, from the run folders

Students (all 3 encoder layers, 12 heads, the teacher's tokenizer):
    layers_from_teacher   width 384, initialised from teacher layers 0, 2, 4 (DistilBERT's layer selection)
    narrow_selected       width 192, weight selection from teacher layers 1, 3, 5 (Xu et al. 2023)
    layers_random         width 384, random initialisation (control)
    narrow_random         width 192, random initialisation (control)
Arms: alone (the `kd` run's baseline: same initial weights, seed and budget), kd (T = 2, alpha = beta = 0.5),
distilbert (triple loss; equal widths only), tinybert (1 epoch of embedding + hidden + attention
losses, then the prediction loss: one epoch more than the others, as the paper's two stages),
minilm (last-layer attention + value relations, + kd). The random-init controls run alone and kd. Each
(student, arm) is one `potstill distill --seeds` (OUT/<student>_<arm>/seed<N> and its seeds.json);
finished seeds are kept, so a killed benchmark continues where it stopped.

Accuracy and macro-F1 are the test split's after the last epoch, mean ± std (sample std) over
seeds; "gain" is the paired per-seed difference to the same student alone. Latencies are medians
over seeds of each run's interleaved CPU timings (teacher and students in the same rounds, at
batch 1 and 32 on real quotes); "÷ teacher" divides by the teacher timed in the same rounds.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
from pathlib import Path

import yaml
from common import add_import_option, child_environment, import_args, import_modules

ROOT = Path(__file__).resolve().parents[1]
# A CPU budget: the students train on a seeded 1,200-quote subset (about 200 per topic) for 2 epochs;
# the teacher was fine-tuned on all 2,850; every model is measured on all 713 test quotes.
DATA = {"name": "fortunes", "args": {"tokenizer": "minilm-l6", "max_length": 128}, "batch_size": 32, "eval_batch_size": 128,
        "train_size": 1200}
TRAIN = {"epochs": 2, "optimizer": "adamw", "lr": 1.0e-4, "weight_decay": 0.01, "scheduler": "onecycle"}
WIDE = {"layers": 3, "hidden": 384, "heads": 12, "intermediate": 1536, "tokenizer": "minilm-l6"}
NARROW = {"layers": 3, "hidden": 192, "heads": 12, "intermediate": 768, "tokenizer": "minilm-l6"}
STUDENTS = {
    "layers_from_teacher": (WIDE, {"layers": [0, 2, 4], "method": "copy"}),
    "narrow_selected": (NARROW, {"layers": [1, 3, 5], "method": "select"}),
    "layers_random": (WIDE, None),
    "narrow_random": (NARROW, None),
}
KD = {"loss": "kd", "temperature": 2.0, "alpha": 0.5, "beta": 0.5}
ARMS = {
    "kd": KD,
    "distilbert": {"loss": "distilbert", "temperature": 2.0, "alpha": 2.0, "beta": 1.0},
    "tinybert": {"loss": "tinybert_prediction", "alpha": 0.0, "beta": 1.0, "init_epochs": 1, "terms": [
        {"loss": name, "weight": 1.0, "stages": ["init"]} for name in ("tinybert_embedding", "tinybert_hidden", "tinybert_attention")]},
    "minilm": {**KD, "terms": [{"loss": "minilm", "weight": 1.0}]},
}
PLAN = {  # which arms run for which student (distilbert needs the teacher's width; the random controls get KD only, for time)
    "layers_from_teacher": ["kd", "distilbert", "tinybert", "minilm"],
    "narrow_selected": ["kd", "tinybert", "minilm"],
    "layers_random": ["kd"],
    "narrow_random": ["kd"],
}


def recipe(student: str, arm: str, teacher: Path) -> dict:
    args, init = STUDENTS[student]
    distill = copy.deepcopy(ARMS[arm]) | {"baseline": arm == "kd", "teacher_check": "refuse"}
    return {
        "name": f"bench_text_{student}_{arm}", "seed": 0, "data": DATA,  # --seeds sets each run's seed
        "teacher": {"model": {"name": "hf", "args": {"path": "minilm-l6"}}, "checkpoint": str(teacher.resolve())},
        "student": {"name": "hf_config", "args": args, **({"init": init} if init else {})},
        "train": TRAIN, "distill": distill,
        "report": {"latency_batch_size": 32, "latency_repeats": 10},
    }


def run_seeds(folder: Path, spec: dict, seeds: list[int], args: argparse.Namespace) -> None:
    """One (student, arm) over every seed: `potstill distill --seeds` in folder/seed<N>, in its own
    process at --threads threads (a finished seed is kept, an unfinished one continues)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    path = folder.parent / f"{folder.name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    changes = [word for value in args.overrides for word in ("--set", value)]
    command = [sys.executable, "-m", "potstill.cli.main", "distill", str(path), "--seeds", *map(str, seeds), "--run-dir", str(folder),
               *changes, "--quiet", *import_args(args.imports)]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, env=child_environment(args.imports, OMP_NUM_THREADS=str(args.threads)))


def rows(out: Path, seeds: list[int]) -> dict[tuple[str, str], dict[int, dict]]:
    """(student, arm) -> seed -> the summary row of that arm's student (or the baseline for `alone`)."""
    found: dict[tuple[str, str], dict[int, dict]] = {}
    for student, arms in PLAN.items():
        for arm in arms:
            for seed in seeds:
                path = out / f"{student}_{arm}" / f"seed{seed}" / "summary.json"
                if not path.is_file():  # runs made before --seeds: OUT/seed<N>/<student>_<arm>
                    path = out / f"seed{seed}" / f"{student}_{arm}" / "summary.json"
                if not path.is_file():
                    continue
                by_role = {row["role"]: row for row in json.loads(path.read_text())["models"]}
                teacher = by_role["teacher"]
                for row in by_role.values():  # latency as a fraction of the teacher's, timed in the same rounds
                    row["speed_b1"] = row["latency_batch1_ms"] / teacher["latency_batch1_ms"]
                    row["speed_b32"] = row["latency_ms"] / teacher["latency_ms"]
                found.setdefault((student, arm), {})[seed] = by_role["student"]
                if arm == "kd":
                    found.setdefault((student, "alone"), {})[seed] = by_role["baseline"]
                found.setdefault(("teacher", "-"), {})[seed] = teacher
    return found


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.mean(values)
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def report(out: Path, seeds: list[int]) -> str:
    found = rows(out, seeds)
    lines = ["| student | arm | top-1 % | macro-F1 % | gain vs alone (per seed) | agree % | ECE | params | ms b=1 | ms b=32 "
             "| time ÷ teacher b=1 / b=32 | train s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    order = [("teacher", "-")] + [(s, a) for s in PLAN for a in ["alone", *PLAN[s]]]
    for key in order:
        per_seed = found.get(key, {})
        if not per_seed:
            continue
        values = list(per_seed.values())
        alone = found.get((key[0], "alone"), {})
        gains = [100 * (per_seed[s]["test_acc"] - alone[s]["test_acc"]) for s in per_seed if s in alone and key[1] not in ("alone", "-")]
        gain = f"{statistics.mean(gains):+.2f} ({', '.join(f'{g:+.1f}' for g in gains)})" if gains else "-"
        agree = [100 * v["teacher_agreement"] for v in values if v.get("teacher_agreement") is not None]
        lines.append("| " + " | ".join([
            key[0], key[1], spread([100 * v["test_acc"] for v in values]), spread([100 * v.get("macro_f1", 0.0) for v in values]),
            gain, spread(agree), spread([v["ece"] for v in values]), f"{values[0]['params']:,}",
            f"{statistics.median(v['latency_batch1_ms'] for v in values):.2f}", f"{statistics.median(v['latency_ms'] for v in values):.1f}",
            f"{statistics.median(v['speed_b1'] for v in values):.2f} / {statistics.median(v['speed_b32'] for v in values):.2f}",
            f"{statistics.mean(v['train_time_s'] or 0.0 for v in values):.0f}",
        ]) + " |")
    lines.append(f"\nseeds with results: {sorted({s for v in found.values() for s in v})}; {len(seeds)} asked")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, default=ROOT / "runs" / "text_teacher_minilm_fortunes")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_text")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--students", nargs="+", default=list(PLAN), choices=list(PLAN))
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS), help="arms to run (alone comes with kd)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each run (stated in the results)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override for every run, as `potstill distill --set` (quick checks only)")
    parser.add_argument("--report", action="store_true", help="only print the tables from finished runs")
    add_import_option(parser)
    args = parser.parse_args()
    import_modules(args)
    if not args.report:
        for student in args.students:
            for arm in [arm for arm in PLAN[student] if arm in args.arms]:
                run_seeds(args.out / f"{student}_{arm}", recipe(student, arm, args.teacher), args.seeds, args)
    text = report(args.out, args.seeds)
    (args.out / "results.md").parent.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
