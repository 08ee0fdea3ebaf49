"""What a student costs, measured before it trains: parameters and batch-1 CPU latency.

Every architecture is timed the same way (batch 1, `search.latency_repeats` rounds after warm-up,
the median, this process's torch threads) and only once per search: later trials, and a resumed
search, reuse the number, so one architecture never gets two latencies.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import torch

from potstill import config
from potstill.compress.search_space import architectures, as_override, words
from potstill.errors import PotstillError
from potstill.models import count_parameters
from potstill.recipe import ModelSpec, Recipe, SearchBudgetSpec, SearchSpec
from potstill.report.latency import spread, time_models
from potstill.startup import build_model
from potstill.workbench import Workbench


def architecture_key(spec: ModelSpec) -> str:
    return json.dumps(config.to_dict(spec), sort_keys=True)


class Costs:
    """Parameters and batch-1 latency of student architectures, each measured once."""

    def __init__(self, bench: Workbench, repeats: int, seed: int) -> None:
        self.bench, self.repeats, self.seed = bench, repeats, seed
        self.known: dict[str, dict[str, Any]] = {}

    def remember(self, key: str, params: int, latency_ms: float) -> None:
        self.known[key] = {"params": params, "latency_ms": latency_ms}

    def of(self, spec: ModelSpec) -> dict[str, Any]:
        """{"params", "latency_ms"} of the student `spec` (built on the CPU with its preprocessing)."""
        key = architecture_key(spec)
        if key not in self.known:
            model = build_model(spec, self.bench, "student", self.seed)
            samples = time_models([("student", model)], self.bench.splits.example_batch, [1], self.repeats)
            self.remember(key, count_parameters(model), spread(samples["student"][1])[1])
            del model
        return self.known[key]


def over_budget(costs: dict[str, Any], budget: SearchBudgetSpec) -> str | None:
    """Why a student is over the budget, or None."""
    reasons = []
    if budget.params is not None and costs["params"] > budget.params:
        reasons.append(f"{costs['params']:,} parameters > search.budget.params {budget.params:,}")
    if budget.latency_ms is not None and costs["latency_ms"] > budget.latency_ms:
        reasons.append(f"{costs['latency_ms']:.4g} ms > search.budget.latency_ms {budget.latency_ms:g}")
    return "; ".join(reasons) or None


def check_budget(base: dict[str, Any], search: SearchSpec, seed: int, costs: Costs,
                 message: Callable[[str], None]) -> None:
    """Measure the space's architectures (all, or `search.candidates` of them); refuse a budget
    that none of them meets, naming the smallest or fastest one found."""
    measured = []
    problems = []
    for values in architectures(search.space, search.candidates, seed):
        data = config.apply_overrides(base, [as_override(key, value) for key, value in values.items()])
        try:
            recipe = config.validate(data, Recipe, source=f"search.space student {words(values)}")
            measured.append((values, costs.of(recipe.student)))
        except PotstillError as error:  # e.g. a model name with another family's args
            problems.append(str(error))
    if not measured:
        raise PotstillError(f"search.space: no architecture of the space can be built; the first: {problems[0]}")
    budget = search.budget
    fits = [(values, cost) for values, cost in measured if over_budget(cost, budget) is None]
    limits = ", ".join(f"{key} <= {value:g}" for key, value in (("params", budget.params), ("latency_ms", budget.latency_ms))
                       if value is not None) or "none"
    if fits:
        message(f"search: {len(measured)} student architectures measured (batch-1 CPU latency, {torch.get_num_threads()} "
                f"thread(s)), {len(fits)} within budget ({limits})")
        return
    smallest = min(measured, key=lambda item: item[1]["params"])
    fastest = min(measured, key=lambda item: item[1]["latency_ms"])
    if budget.params is not None and smallest[1]["params"] > budget.params:
        raise PotstillError(
            f"search.budget.params {budget.params:,}: no student of search.space is that small; the smallest of the "
            f"{len(measured)} measured is {words(smallest[0]) or 'the recipe student'} with {smallest[1]['params']:,} "
            "parameters; raise the budget or add smaller choices"
        )
    if budget.latency_ms is not None and fastest[1]["latency_ms"] > budget.latency_ms:
        raise PotstillError(
            f"search.budget.latency_ms {budget.latency_ms:g}: every student of search.space is slower on this CPU "
            f"(batch 1, {torch.get_num_threads()} thread(s)); the fastest of the {len(measured)} measured is "
            f"{words(fastest[0]) or 'the recipe student'} at {fastest[1]['latency_ms']:.4g} ms; raise the budget or add smaller choices"
        )
    raise PotstillError(
        f"search.budget: no student of search.space meets both limits ({limits}); the smallest has "
        f"{smallest[1]['params']:,} parameters at {smallest[1]['latency_ms']:.4g} ms, the fastest "
        f"{fastest[1]['params']:,} at {fastest[1]['latency_ms']:.4g} ms; loosen one limit"
    )
