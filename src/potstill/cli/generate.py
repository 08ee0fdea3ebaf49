"""`potstill generate RECIPE`: the teacher writes its sequences for sequence-level KD, once.

Reads the recipe's data and teacher checkpoint and scheme seq_kd's settings, continues every
training row's prompt, and stores the result in scheme.args.sequences (or --out): resumable,
atomic and fingerprinted (potstill.sequences). Prints where the sequences are, how many tokens
were written and the teacher's generation speed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from potstill import config
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.errors import PotstillError
from potstill.pipeline import Runner
from potstill.recipe import Recipe
from potstill.schemes import create_scheme
from potstill.schemes.seq_kd import SeqKD, prompt_block, special_ids
from potstill.sequences import SHARD, write_sequences
from potstill.startup import open_workbench, preflight


def cmd_generate(args: argparse.Namespace) -> int:
    recipe = config.load(args.recipe, Recipe, args.overrides)
    preflight(recipe, "distill")
    scheme = create_scheme(recipe.scheme.name, recipe.scheme.args)
    if not isinstance(scheme, SeqKD):
        raise PotstillError(f"generate writes teacher sequences for scheme seq_kd; this recipe's scheme is '{scheme.name}'")
    if recipe.teacher is None or recipe.teacher.checkpoint is None:
        raise PotstillError("generate needs a trained teacher: set teacher.checkpoint (train one with `potstill train RECIPE`)")
    folder = Path(args.out) if args.out else scheme.sequences
    reporter = Reporter(quiet=args.quiet)
    bench = open_workbench(recipe)
    runner = Runner(recipe, RunDir(folder), reporter, bench=bench)  # writes nothing but the sequences
    teacher = runner.teacher()
    data = bench.splits.train
    scheme.check_lengths(data)
    prompts, mask = prompt_block(data, scheme.prompt_tokens)
    manifest = scheme.manifest(teacher, data, recipe.seed)
    pad, eos = special_ids(data)
    start = time.perf_counter()
    written = write_sequences(teacher.to(bench.device), prompts.to(bench.device), mask.to(bench.device), folder, manifest,
                              scheme.settings(recipe.seed), pad, eos, scheme.batch_size, reporter.message)
    seconds = time.perf_counter() - start
    if not args.quiet:
        shards = (len(prompts) + SHARD - 1) // SHARD
        rows = min(len(prompts), written * SHARD)
        speed = f"; {rows * scheme.max_new_tokens / max(seconds, 1e-9):,.0f} new tokens/s at most" if written else ""
        print(f"teacher sequences for {len(prompts)} prompts in {folder} ({written} of {shards} shards written now, "
              f"the rest already there){speed}")
    return 0
