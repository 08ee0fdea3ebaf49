"""What the benchmark scripts share: `--import MODULE` for a user's own models and losses, and
running a potstill command in this process.

    python benchmarks/kd_seeds.py --recipe my_recipe.yaml --import my_models

A script imports the modules itself, before it reads a recipe (so a bad name fails before any
run starts), and passes `--import` on to every potstill command it runs, in this process or in
a child process. As with `potstill --import`, a module is looked up from the current folder first.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_import_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import MODULE first so its @MODELS.register / @LOSSES.register entries exist, "
                        "as `potstill --import` (repeatable)")


def import_modules(args: argparse.Namespace) -> None:
    """Import the script's --import modules, or stop with one line that names the fix."""
    if not args.imports:
        return
    from potstill.cli.main import import_user_modules
    from potstill.errors import PotstillError

    try:
        import_user_modules(args.imports)
    except PotstillError as error:
        sys.exit(f"{Path(sys.argv[0]).name}: error: {error}")


def import_args(imports: list[str]) -> list[str]:
    """`--import MODULE` words for the potstill commands the script runs."""
    return [word for name in imports for word in ("--import", name)]


def child_environment(imports: list[str], **variables: str) -> dict[str, str]:
    """The environment of a child process running a potstill command: with --import modules, the
    current folder on PYTHONPATH, so they resolve as here even when the child runs elsewhere."""
    environment = os.environ | variables
    if imports:
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path.cwd()), environment.get("PYTHONPATH")]))
    return environment


def potstill(*args: str) -> None:
    """Run one potstill command in this process; stop the script if it fails (it said why)."""
    from potstill.cli.main import main

    if main(list(args)):
        sys.exit(1)
