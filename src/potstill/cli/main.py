"""The `potstill` command.

    potstill train   RECIPE [--set k=v ...]      phase 1: pre-train a teacher
    potstill distill RECIPE [--set k=v ...]      phases 2 (+3): distil, with a baseline student
    potstill distill RECIPE --seeds 0 1 2        one run per seed, and their mean ± std and paired gain
    potstill distill --resume RUN                continue a killed run where it stopped
    potstill eval    RUN                         re-measure a finished run's models
    potstill convert FILE -o TARGET              a torch.save state dict as safetensors (weights_only=True)
    potstill list    models|losses|datasets|schemes      what is registered
    potstill list    taps MODEL                  a model's layers, output shapes and automatic pairing
    potstill cache   build RECIPE [--rebuild]    run the teacher once, store its outputs per (sample, view)
    potstill cache   info DIR                    check a cache's checksums and describe it
    potstill generate RECIPE [--out DIR]         the teacher writes sequences for sequence-level KD (seq_kd)
    potstill search  RECIPE [--set k=v ...]      search students (KD objective, latency/size budget): Pareto front, best.yaml
    potstill sweep   RECIPE --param KEY=1,2,4   one run per setting (grid, or Optuna TPE with pruning), chosen on validation
    potstill export  RUN [--int8]                ONNX (and int8) files of a run's models, checked and timed
    potstill metrics RUN [--csv FILE]            a run's per-epoch metrics as CSV (any run folder, finished or not)
    potstill compare FOLDER ... [--json|--csv F] runs, seeds folders and sweeps in one table; the settings that differ
    potstill report  RUN ... [-o report.html]    one self-contained HTML page: tables, curves, calibration, size/latency

User errors print one line and exit 2; --debug shows the traceback. Results go to stdout (with
--json only summary.json), progress and messages to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import time
from pathlib import Path

import torch

from potstill import __version__
from potstill.cli.commands import cmd_cache, cmd_distill, cmd_eval, cmd_list, cmd_train
from potstill.cli.convert import cmd_convert
from potstill.cli.generate import cmd_generate
from potstill.cli import compare as compare_command
from potstill.cli import export as export_command
from potstill.cli import metrics as metrics_command
from potstill.cli import report as report_command
from potstill.cli import search as search_command
from potstill.cli import sweep as sweep_command
from potstill.distributed_check import check_command
from potstill.engine import distributed
from potstill.errors import PotstillError

JSON_HELP = "print {file} to stdout, and nothing else there (the table and messages go to stderr), for scripts"


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="potstill", description="Knowledge distillation: teacher -> student, measured.")
    main.add_argument("--version", action="version", version=f"potstill {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress output, only the result lines (for CI)")
    common.add_argument(
        "--import", dest="imports", action="append", default=[], metavar="MODULE",
        help="import MODULE first so its @MODELS.register / @LOSSES.register entries exist (recipes never import code)",
    )
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, handler, text in (("train", cmd_train, "pre-train a teacher (phase 1)"),
                                ("distill", cmd_distill, "distil a teacher into a student (phases 1-3)")):
        sub = commands.add_parser(name, parents=[common], help=text, description=text)
        sub.add_argument("recipe", nargs="?", help="YAML recipe (optional with --resume)")
        sub.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a recipe key, e.g. --set distill.temperature=2 (repeatable)")
        sub.add_argument("--run-dir", help="run folder (default: output_dir/name from the recipe)")
        sub.add_argument("--resume", metavar="RUN", help="continue the run in folder RUN from its last checkpoint")
        sub.add_argument("--json", action="store_true", help=JSON_HELP.format(file="summary.json"))
        if name == "distill":
            sub.add_argument("--seeds", type=int, nargs="+", metavar="N", help="run once per seed in RUN/seed<N> and write "
                             "RUN/seeds.json: mean ± std and the paired gain per seed (run again to continue)")
        sub.set_defaults(handler=handler)
    evaluate = commands.add_parser("eval", parents=[common], help="re-evaluate a finished run's models")
    evaluate.add_argument("run", help="run folder")
    evaluate.add_argument("--json", action="store_true", help=JSON_HELP.format(file="eval.json"))
    evaluate.set_defaults(handler=cmd_eval)
    convert = commands.add_parser(
        "convert", parents=[common], help="convert a torch.save checkpoint's state dict to safetensors",
        description="read FILE with torch.load(weights_only=True), which builds tensors and plain containers only, and "
        "write its state dict as a safetensors file for teacher.checkpoint; potstill never unpickles arbitrary objects",
    )
    convert.add_argument("checkpoint", metavar="FILE", help="a torch.save file (.pt, .pth, .bin, .ckpt)")
    convert.add_argument("-o", "--output", required=True, metavar="TARGET", help="the .safetensors file to write")
    convert.add_argument("--key", metavar="NAME", help="the entry holding the state dict, e.g. state_dict, model, model_state_dict "
                         "(default: the file itself, or its only entry of named tensors)")
    convert.add_argument("--strip-prefix", metavar="PREFIX", help="remove PREFIX from tensor names, e.g. module. (DataParallel)")
    convert.add_argument("--force", action="store_true", help="overwrite TARGET if it exists")
    convert.set_defaults(handler=cmd_convert)
    listing = commands.add_parser(
        "list", parents=[common], help="list registered models, losses, datasets or schemes, or a model's tappable layers",
        description="list models|losses|datasets|schemes, or `list taps MODEL`: every module of MODEL with its output shape",
    )
    listing.add_argument("what", choices=["models", "losses", "datasets", "schemes", "taps"])
    listing.add_argument("model", nargs="?", help="for `taps`: the registered model, or hf:FOLDER (hf:minilm-l6) for a Hugging Face one")
    listing.add_argument("--input-shape", type=int, nargs="+", default=None, metavar="N",
                         help="for `taps`: input shape of the dry run: C H W for images (default 1 28 28), L for text (default 16)")
    listing.add_argument("--num-classes", type=int, default=10, help="for `taps`: number of classes (default 10)")
    listing.add_argument("--args", dest="model_args", default="{}", metavar="YAML",
                         help="for `taps`: model arguments as a YAML mapping, e.g. --args '{channels: [16, 32]}'")
    listing.set_defaults(handler=cmd_list)
    cache = commands.add_parser(
        "cache", parents=[common], help="build or check a teacher-output cache",
        description="build RECIPE: run the recipe's teacher once over every training view and store its outputs; "
        "info DIR: verify every file's checksum and describe the cache",
    )
    cache.add_argument("action", choices=["build", "info"])
    cache.add_argument("target", help="build: the recipe; info: the cache folder")
    cache.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key")
    cache.add_argument("--out", help="cache folder (default: distill.cache.path)")
    cache.add_argument("--rebuild", action="store_true", help="delete a cache built from something else and build anew")
    cache.add_argument("--workers", type=int, help="build processes (default: distill.cache.workers)")
    cache.set_defaults(handler=cmd_cache)
    generating = commands.add_parser(
        "generate", parents=[common], help="the teacher writes its sequences for sequence-level KD (scheme seq_kd)",
        description="continue every training row's prompt with the recipe's teacher once and store the sequences "
        "(resumable, fingerprinted) where scheme.args.sequences says",
    )
    generating.add_argument("recipe", help="a recipe with scheme seq_kd and a teacher checkpoint")
    generating.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key")
    generating.add_argument("--out", help="sequences folder (default: scheme.args.sequences)")
    generating.set_defaults(handler=cmd_generate)
    export_command.add_parser(commands, common)
    search_command.add_parser(commands, common)
    report_command.add_parser(commands, common)
    metrics_command.add_parser(commands, common)
    compare_command.add_parser(commands, common)
    sweep_command.add_parser(commands, common)
    return main


def import_user_modules(names: list[str]) -> None:
    sys.path.insert(0, str(Path.cwd()))
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise PotstillError(f"--import {name}: cannot import it ({error}); run from the folder that holds {name}.py") from error


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler or `kill`), stopped like Ctrl-C: checkpoints are written atomically,
    so whatever step it lands in, the last one is intact."""


def on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def resume_words(args: argparse.Namespace) -> str:
    run = getattr(args, "run_path", None)
    if run is None:
        return "nothing was written to a run folder yet"
    launch = "the same torchrun launch of " if distributed.launched_world_size() > 1 else ""
    return f"checkpoints written so far are intact; continue with {launch}potstill {args.command} --resume {run}"


RANK_ZERO_FIRST_S = 10  # how long another rank waits before it reports an error itself


def say(line: str) -> None:
    """A stop line on stderr; under torchrun from rank 0 alone (a signal reaches every rank)."""
    if distributed.is_main():
        print(line, file=sys.stderr)


def report_error(error: PotstillError) -> None:
    """The one error line. Under torchrun every rank usually meets the same error, and torchrun
    stops all ranks as soon as one exits: another rank than 0 waits a moment, so that rank 0
    reports first; one still running after the wait met an error of its own and reports it."""
    if distributed.is_main():
        print(f"potstill: error: {error}", file=sys.stderr)
        return
    try:
        time.sleep(RANK_ZERO_FIRST_S)
    except KeyboardInterrupt:  # stopped by torchrun: rank 0 failed too, and said why
        return
    print(f"potstill: error (rank {distributed.launched_rank()}): {error}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, on_sigterm) if threading.current_thread() is threading.main_thread() else None
    try:
        check_command(args.command, getattr(args, "seeds", None), distributed.launched_world_size())
        import_user_modules(args.imports)
        return args.handler(args) or 0
    except PotstillError as error:
        if args.debug:
            raise
        report_error(error)
        return 2
    except (MemoryError, torch.OutOfMemoryError) as error:
        if args.debug:
            raise
        where = f" on rank {distributed.rank()}" if distributed.active() else ""  # one GPU may run out alone
        print(f"potstill: error: out of memory{where} ({str(error).splitlines()[0] if str(error) else type(error).__name__}); "
              f"lower data.batch_size / data.eval_batch_size or the model size, or free memory; {resume_words(args)}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        what = "stopped by SIGTERM" if isinstance(interrupt, Terminated) else "interrupted"
        say(f"potstill: {what}; {resume_words(args)}")
        return 143 if isinstance(interrupt, Terminated) else 130
    except distributed.PEER_STOPPED as error:  # another rank stopped: its socket closed under a collective
        if args.debug:
            raise
        say(f"potstill: error: another process of this torchrun launch stopped ({str(error).strip().splitlines()[0]}); "
            f"torchrun's report names it; {resume_words(args)}")
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        distributed.teardown()


if __name__ == "__main__":
    sys.exit(main())
