"""The package's layers import downwards only: building blocks below the schemes, the pipeline
and the CLI above them (no cycles, even under TYPE_CHECKING)."""

import ast
from pathlib import Path

from potstill.pipeline import Runner
from potstill.schemes.workshop import missing_methods

SOURCE = Path(__file__).parents[1] / "src" / "potstill"
ABOVE_SCHEMES = ("potstill.pipeline", "potstill.runner_cache", "potstill.api", "potstill.api_data", "potstill.api_recipe", "potstill.cli",
                 "potstill.startup", "potstill.loading")
BELOW_PIPELINE = ("engine", "knowledge", "data", "models", "cache", "config", "report", "schemes")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_lower_layers_never_import_the_pipeline_or_the_cli():
    """Catches: schemes/* importing Runner from pipeline.py (which imports schemes/): the old cycle."""
    offenders = []
    for folder in BELOW_PIPELINE:
        for path in (SOURCE / folder).rglob("*.py"):
            bad = [name for name in imported_modules(path) if name.startswith(ABOVE_SCHEMES)]
            offenders += [f"{path.relative_to(SOURCE)} imports {name}" for name in bad]
    assert not offenders, offenders


def test_the_runner_offers_every_building_block_a_scheme_may_use():
    assert missing_methods(Runner) == []
