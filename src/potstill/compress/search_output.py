"""What a search leaves in its folder: search.json (every trial, rewritten after each), pareto.svg
and best.yaml, the chosen student's whole recipe for `potstill distill`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from potstill import config
from potstill.compress.pareto import front_of, pareto_svg
from potstill.compress.search_space import as_override
from potstill.engine.checkpoint import atomic_write, guarded
from potstill.recipe import Recipe


@dataclass
class SearchResult:
    """What a search found: every trial (as in search.json), the Pareto front (most accurate
    first), the chosen trial and its recipe file."""

    folder: Path
    trials: list[dict[str, Any]]
    front: list[dict[str, Any]]
    best: dict[str, Any] | None
    best_recipe: Path | None


def write_outputs(folder: Path, recipe: Recipe, records: list[dict[str, Any]], base: dict[str, Any],
                  final: bool = False) -> SearchResult:
    """search.json; with `final` also pareto.svg and best.yaml (from `base`, the trials' shared recipe)."""
    spec = recipe.search
    complete = [r for r in records if r["outcome"] == "complete"]
    front = front_of(complete, spec.objectives)
    best = front[0] if front else None
    best_file = folder / "best.yaml" if best is not None else None
    payload = {
        "recipe": recipe.name, "objectives": ["val_acc", *spec.objectives],
        "budget": config.to_dict(spec.budget), "trials_wanted": spec.trials,
        "latency": f"batch 1, CPU, each model alone, median of {spec.latency_repeats} after 3 warm-up passes",
        "selection": "validation top-1 (data.val_fraction); test top-1 is reported, never used to choose",
        "front": [r["number"] for r in front], "best": best["number"] if best else None,
        "best_recipe": best_file.name if best_file else None, "trials": records,
    }
    write(folder / "search.json", json.dumps(payload, indent=2) + "\n")
    if final:
        write(folder / "pareto.svg", pareto_svg(complete, front, f"{recipe.name}: validation top-1 vs latency ({len(complete)} trials)"))
        if best is not None:
            write(best_file, best_recipe_text(best, best_file, recipe, base))
    return SearchResult(folder, records, front, best, best_file)


def best_recipe_text(best: dict[str, Any], path: Path, recipe: Recipe, base: dict[str, Any]) -> str:
    """The chosen trial's whole recipe with its baseline back on and no search section."""
    data = config.apply_overrides(base, [as_override(key, value) for key, value in best["values"].items()])
    data["name"] = f"{recipe.name}_best"
    data["distill"]["baseline"] = recipe.distill.baseline
    plain = config.to_dict(config.validate(data, Recipe, source=str(path)))
    plain.pop("search")  # a distill recipe: the search is done
    head = (f"# The most accurate student on the Pareto front of `potstill search` in {path.parent} (trial {best['number']}:\n"
            f"# validation top-1 {100 * best['val_acc']:.2f}%, {best['params']:,} params, {best['latency_ms']:.3g} ms at "
            f"batch 1). Train it with: potstill distill {path}\n")
    return head + config.dump_yaml(plain)


def write(path: Path, text: str) -> None:
    guarded(lambda: atomic_write(path, text), path)
