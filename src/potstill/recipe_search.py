"""The `search` section of a recipe (`potstill search`, docs/compression.md): what is searched,
the budget, the trials and how hopeless ones stop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

from potstill.recipe_fields import EPOCHS_MAX, LATENCY_REPEATS_MAX, REQUIRED, name_problem, option

SEARCH_TRIALS_MAX = 10_000  # each trial trains a student; more would run for weeks


@dataclass
class SearchParamSpec:
    """One searched recipe key: a list of choices, or a number range (int when low and high are integers)."""

    choices: Optional[list[Any]] = option(None, "the values tried (any YAML values, e.g. lists of widths [[256], [512, 256]])")
    low: Optional[Union[int, float]] = option(None, "smallest value of a range (integers when low, high and step are)")
    high: Optional[Union[int, float]] = option(None, "largest value of a range (inclusive)")
    step: Optional[Union[int, float]] = option(None, "spacing of a range's values; null = any value (1 for integers)", min=0.0)
    log: bool = option(False, "draw a range on a log scale (learning rates, widths); low must be positive")
    depth: Optional[list[int]] = option(
        None, "the key is a list of min..max entries, each drawn from choices or low..high (an MLP's depth and widths)", min=1, max=64
    )

    def check(self) -> list[str]:
        ranged = self.low is not None or self.high is not None
        if (self.choices is None) == (not ranged):
            return ["give either choices: [...] or a range low: ..., high: ..., not both and not neither"]
        if self.choices is not None:
            problems = [] if self.choices else ["choices: give at least one value"]
            if self.step is not None or self.log:
                problems.append("step, log: only for a range (low, high)")
        elif self.low is None or self.high is None:
            return ["a range needs both low and high"]
        else:
            problems = [] if self.low < self.high else [f"high: must be above low ({self.low}), got {self.high}"]
            if self.log and self.low <= 0:
                problems.append(f"log: a log-scale range needs a positive low, got {self.low}")
            if self.log and self.step is not None:
                problems.append("step: a log-scale range takes no step (Optuna draws it continuously)")
            if self.step == 0:
                problems.append("step: must be positive, or null")
        if self.depth is not None and (len(self.depth) != 2 or self.depth[0] > self.depth[1]):
            problems.append(f"depth: give [min, max] with min <= max, got {list(self.depth)}")
        return problems


@dataclass
class SearchBudgetSpec:
    params: Optional[int] = option(None, "most parameters a student may have; null = no limit", min=1)
    latency_ms: Optional[float] = option(
        None, "slowest batch-1 CPU forward pass a student may take, in ms, timed on this machine with its torch threads "
        "(search.latency_repeats rounds, median); null = no limit", min=0.0,
    )


@dataclass
class SearchPrunerSpec:
    enabled: bool = option(True, "stop a trial early when its validation accuracy is hopeless")
    warmup_epochs: int = option(1, "epochs every trial trains before it can be stopped", min=1, max=EPOCHS_MAX)
    min_trials: int = option(2, "finished trials needed at an epoch before others are compared with them there", min=1)
    margin: float = option(
        0.02, "stop a trial whose validation accuracy is this far (0.02 = 2 points) below the median of finished trials "
        "after the same epoch", min=0.0, max=1.0,
    )


@dataclass
class SearchSpec:
    """`potstill search`: student architecture search with distillation as the training objective (docs/compression.md)."""

    space: dict[str, SearchParamSpec] = option(
        help="what is searched (at least one key): recipe keys as --set writes them (student.args.hidden, train.lr), each "
        "with its choices or range; teacher, data (but data.batch_size) and distill.cache keys stay fixed so every trial "
        "learns from the same cached teacher outputs", factory=dict,
    )
    trials: int = option(20, "students trained (each a distill run without baseline); fewer when the space has fewer "
                         "combinations", min=1, max=SEARCH_TRIALS_MAX)
    budget: SearchBudgetSpec = option(help="limits a student must meet; checked before it trains", factory=SearchBudgetSpec)
    objectives: list[Literal["latency_ms", "params"]] = option(
        help="costs minimised beside validation accuracy (maximised); the Pareto front is over all of them",
        factory=lambda: ["latency_ms", "params"],
    )
    objective_split: Literal["val"] = option(
        "val", "the split that selects: validation (needs data.val_fraction > 0); test accuracy is reported, never used to choose"
    )
    sampler: Literal["tpe", "nsga2", "random"] = option(
        "tpe", "Optuna sampler, seeded with the recipe's seed; a space with at most `trials` combinations is tried exhaustively"
    )
    pruner: SearchPrunerSpec = option(help="stopping hopeless trials early", factory=SearchPrunerSpec)
    candidates: int = option(
        64, "architectures measured before any training to check the budget can be met (all of them when the space has "
        "no more)", min=1, max=SEARCH_TRIALS_MAX,
    )
    latency_repeats: int = option(10, "timed batch-1 forward passes per architecture (after 3 warm-up passes)", min=1,
                                  max=LATENCY_REPEATS_MAX)
    storage: Optional[str] = option(
        None, "Optuna storage: a SQLite file or a database URL; null = search.db in the search folder, so a killed "
        "search continues where it stopped"
    )

    def check(self) -> list[str]:
        problems = []
        if len(set(self.objectives)) != len(self.objectives):
            problems.append(f"objectives: each cost at most once, got {self.objectives}")
        return problems + name_problem("storage", self.storage)
