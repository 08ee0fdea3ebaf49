"""`potstill sweep RECIPE --param KEY=VALUES ...`: many runs of one recipe, varying its keys.

Every trial is an ordinary distill run folder (`trials/trial_<nnnn>/`; a seeds folder with --seeds)
of the recipe with the trial's keys set (`--set` semantics). Trials share one teacher (trained once
when the recipe trains it) and one teacher-output cache. An enumerable space with at most --trials
combinations is run as a grid (every combination once, in order); otherwise Optuna's TPE sampler
proposes values and its median pruner stops trials whose validation curve is hopeless (Akiba et
al. 2019, "Optuna", arXiv 1907.10902; Bergstra et al. 2011 for TPE). The study lives in Optuna's
SQLite storage in the sweep folder, so the same command continues a killed sweep: finished trials
are kept and the interrupted one continues from its checkpoint.

The sweep chooses on the validation split (data.val_fraction of the training data, carved out
before training); test accuracy is reported, never used to choose. When only distillation keys vary
(distill.*, scheme.*), the student alone does not depend on them: it is trained once per seed in
the reference run (the recipe as written), and every trial's gain is measured against it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from potstill import config
from potstill.compress.search_folder import import_optuna
from potstill.compress.search_space import (
    check_space,
    combinations,
    merged_overrides,
    optuna_params,
    space_size,
    suggest,
)
from potstill.compress.search_trial import Hopeless
from potstill.config.files import load_yaml_file
from potstill.engine.checkpoint import atomic_write, guarded
from potstill.engine.lock import hold, let_go
from potstill.engine.loop import NonFiniteLoss
from potstill.engine.progress import Reporter
from potstill.errors import PotstillError
from potstill.experiments.shared import shared_base
from potstill.experiments.sweep_output import SweepResult, check_folder, trial_record, write_outputs
from potstill.experiments.sweep_params import describe, named, parse_params, shown
from potstill.experiments.sweep_runs import final_row, gain, held_out, run_seeds, seed_folders
from potstill.recipe import Recipe, SearchParamSpec
from potstill.startup import open_workbench

DEFAULT_VAL_FRACTION = 0.1
SHARED_BASELINE_KEYS = ("distill", "scheme")  # keys (and their sub-keys) that leave the student alone unchanged
ENDED = ("complete", "pruned", "failed")  # outcomes that count towards --trials


@dataclass
class SweepSettings:
    """What varies and how: the keys' values, the trial count, the sampler, the seeds, pruning."""

    space: dict[str, SearchParamSpec]
    trials: int
    sampler: str  # grid | tpe | random
    seeds: list[int] | None
    prune: bool
    names: dict[str, dict[str, str]] = field(default_factory=dict)  # named choices (--param KEY=@FILE)

    def as_dict(self) -> dict[str, Any]:
        return {"params": describe(self.space, self.names), "trials": self.trials, "sampler": self.sampler,
                "seeds": self.seeds, "prune": self.prune}

    def shown(self, values: dict[str, Any]) -> str:
        """The values as `key=value` words, named choices by their names."""
        return shown(values, {key: name for key, name in named(values, self.names).items() if key in self.names})


def sweep(recipe: str | Path | Recipe, params: list[str], overrides: list[str] | tuple[str, ...] = (),
          run_dir: str | Path | None = None, trials: int | None = None, sampler: str = "auto",
          seeds: list[int] | None = None, prune: bool = True, published: str | Path | None = None,
          reporter: Reporter | None = None) -> SweepResult:
    """Run (or continue) a sweep of `recipe` over `params` (--param texts) in `run_dir`
    (default output_dir/<name>_sweep). `published`: a YAML file of published top-1 numbers
    ({recipe name: {name: %}}) shown beside the trials of the named choices."""
    optuna = import_optuna("potstill sweep")
    reporter = reporter or Reporter()
    loaded = load_recipe(recipe, overrides)
    space, names = parse_params(params)
    settings = plan(space, trials, sampler, seeds, prune)
    settings.names = names
    numbers = published_numbers(published, loaded.name) if published is not None else None
    folder = Path(run_dir or Path(loaded.output_dir) / f"{loaded.name}_sweep")
    return Sweep(optuna, loaded, settings, folder, reporter, numbers).run()


def published_numbers(path: str | Path, name: str) -> dict[str, float]:
    """The published top-1 (%) of recipe `name` from `path` ({recipe name: {label: number}})."""
    table = load_yaml_file(path)
    if name not in table:
        raise PotstillError(f"--published {path}: no numbers for recipe {name!r}; it holds {', '.join(sorted(table))}")
    numbers = table[name]
    if not isinstance(numbers, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                for v in numbers.values()):
        raise PotstillError(f"--published {path}: {name} must map names to top-1 percentages, e.g. kd: 73.33")
    return {str(key): float(value) for key, value in numbers.items()}


def load_recipe(recipe: str | Path | Recipe, overrides) -> Recipe:
    if isinstance(recipe, Recipe):
        return config.validate(config.apply_overrides(config.to_dict(recipe), list(overrides)), Recipe, source="the recipe")
    return config.load(recipe, Recipe, list(overrides))


def plan(space: dict[str, SearchParamSpec], trials: int | None, sampler: str, seeds: list[int] | None,
         prune: bool = True) -> SweepSettings:
    """Grid or Optuna, and how many trials; refuses what cannot run."""
    if not space:
        raise PotstillError("give at least one --param KEY=VALUES, e.g. --param distill.temperature=1,2,4,8")
    if seeds is not None:
        if not seeds:
            raise PotstillError("--seeds: give at least one seed, e.g. --seeds 0 1 2")
        if len(set(seeds)) != len(seeds):
            raise PotstillError(f"--seeds {' '.join(map(str, seeds))}: each seed once (duplicates would only repeat a run)")
        if any(seed < 0 for seed in seeds):
            raise PotstillError(f"--seeds {' '.join(map(str, seeds))}: seeds are non-negative integers")
    if trials is not None and trials < 1:
        raise PotstillError(f"--trials {trials}: give a positive number of trials")
    size = space_size(space)
    if sampler == "auto":
        sampler = "grid" if size is not None and (trials is None or trials >= size) else "tpe"
    if sampler == "grid":
        if size is None:
            endless = next(key for key, spec in space.items() if spec.choices is None and spec.step is None)
            raise PotstillError(f"--sampler grid: --param {endless} is a continuous range; give it a step (low:high:step) "
                                "or choices, or let Optuna draw it with --trials N")
        trials = size if trials is None else min(trials, size)
    elif trials is None:
        raise PotstillError("a range (low:high) has endless values: give --trials N, how many runs Optuna may propose")
    return SweepSettings(space, trials, sampler, seeds, prune and sampler != "grid")


class Sweep:
    def __init__(self, optuna, recipe: Recipe, settings: SweepSettings, folder: Path, reporter: Reporter,
                 published: dict[str, float] | None = None) -> None:
        self.optuna, self.settings, self.folder, self.reporter = optuna, settings, folder, reporter
        self.published = published
        data = config.to_dict(recipe)
        data.pop("search", None)
        if recipe.data.val_fraction <= 0:
            data["data"]["val_fraction"] = DEFAULT_VAL_FRACTION
            reporter.message(f"sweep: data.val_fraction is 0, so the sweep carves {DEFAULT_VAL_FRACTION:g} of the training "
                             f"data as its validation split (--set data.val_fraction=... to choose another share)")
        self.recipe = config.validate(data, Recipe, source="the recipe")
        # not a recipe key, a fixed key or a refused value: the validator's message
        check_space(data, settings.space, where="--param", overrides=merged_overrides)
        self.data = data
        self.shared_baseline = self.recipe.distill.baseline and all(
            key.split(".")[0] in SHARED_BASELINE_KEYS and key != "distill.baseline" for key in settings.space)

    def run(self) -> SweepResult:
        continuing = check_folder(self.folder, self.recipe, self.settings)
        bench = self.bench = open_workbench(self.recipe)  # missing or damaged data fails before anything is written
        self.measure, self.direction = ("val_ppl", "minimize") if bench.splits.task == "causal_lm" else ("val_acc", "maximize")
        guarded(lambda: self.folder.mkdir(parents=True, exist_ok=True), self.folder)
        hold(self.folder, "sweep folder")
        try:
            if not continuing:  # recipe.yaml and sweep.json first: a sweep killed from here on continues
                text = config.dump_yaml(config.to_dict(self.recipe))
                guarded(lambda: atomic_write(self.folder / "recipe.yaml", text), self.folder / "recipe.yaml")
                write_outputs(self.folder, self.recipe, self.settings, [], None, None, self.measure, self.direction, False,
                              self.published)
            self.base = shared_base(self.data, self.folder, bench, self.reporter, "sweep")
            self.reference = self.run_reference()
            study = self.open_study()
            self.recover(study)
            self.optimise(study)
            return self.write(study, final=True)
        finally:
            let_go(self.folder)

    # ---- the reference run and the trials --------------------------------------------------------

    def run_reference(self) -> list[dict[str, Any]] | None:
        """The recipe as written, with the student alone, once per seed; None when each trial
        trains its own student alone (a varied key changes it)."""
        if not self.shared_baseline:
            return None
        self.reporter.message(f"sweep: the recipe as written, with the student alone, in {self.folder / 'reference'}")
        recipe = config.validate({**self.base, "name": f"{self.recipe.name}_reference"}, Recipe, source="the reference run")
        return run_seeds(recipe, self.folder / "reference", self.settings.seeds, self.bench, self.reporter, teacher_row=True)

    def trial_recipe(self, values: dict[str, Any], number: int) -> Recipe:
        """`number`: the trial's first number (a continued trial keeps its folder and recipe)."""
        data = config.apply_overrides(self.base, [text for key, value in values.items() for text in merged_overrides(key, value)])
        data["name"] = f"{self.recipe.name}_trial_{number}"
        if self.shared_baseline:
            data["distill"]["baseline"] = False  # measured once, in the reference run
        if self.reference is not None or number > 0:
            data["distill"]["teacher_check"] = "off"  # one teacher: checked in the first run only
        return config.validate(data, Recipe, source=f"trial {number} ({self.settings.shown(values)})")

    # ---- the study ------------------------------------------------------------------------------

    def open_study(self):
        url = f"sqlite:///{(self.folder / 'sweep.db').absolute()}"
        samplers = self.optuna.samplers
        seed = self.recipe.seed
        sampler = samplers.RandomSampler(seed=seed) if self.settings.sampler in ("random", "grid") else samplers.TPESampler(seed=seed)
        pruners = self.optuna.pruners
        pruner = pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1) if self.settings.prune else pruners.NopPruner()
        try:
            return self.optuna.create_study(storage=url, study_name=self.recipe.name, direction=self.direction,
                                            load_if_exists=True, sampler=sampler, pruner=pruner)
        except Exception as error:  # noqa: BLE001 - SQLAlchemy and Optuna raise many types for a database they cannot use
            raise PotstillError(f"{self.folder / 'sweep.db'}: Optuna cannot open it ({str(error).splitlines()[0][:200]}); "
                                "it may be damaged: move it away to start the sweep anew") from None

    def recover(self, study) -> None:
        """A trial left running by a killed sweep: marked failed, and its keys queued again to continue
        in the same folder (from its checkpoint)."""
        state = self.optuna.trial.TrialState
        for trial in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
            study.tell(trial.number, state=state.FAIL)
            folder = trial.user_attrs.get("folder", f"trials/trial_{trial.number:04d}")
            origin = trial.user_attrs.get("origin", trial.number)  # the first trial of these keys names the run
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number, "origin": origin, "folder": folder})
            self.reporter.message(f"sweep: trial {trial.number} was interrupted; it continues in {self.folder / folder}")

    def ended(self, study) -> int:
        return sum(trial_record(t)["outcome"] in ENDED for t in study.get_trials(deepcopy=False))

    def optimise(self, study) -> None:
        state = self.optuna.trial.TrialState
        if self.settings.sampler == "grid":
            for values in combinations(self.settings.space):
                study.enqueue_trial(optuna_params(self.settings.space, values), skip_if_exists=True)
        repeats = 0
        while self.ended(study) < self.settings.trials and repeats < 100:
            if self.settings.sampler == "grid" and not study.get_trials(deepcopy=False, states=(state.WAITING,)):
                break
            outcome = self.trial(study, study.ask())
            repeats = repeats + 1 if outcome == "repeat" else 0
            self.write(study)
        if repeats >= 100:
            self.reporter.message("sweep: stopped early: the sampler proposed only values already run; the space is exhausted")

    def trial(self, study, trial) -> str:
        values = suggest(trial, self.settings.space)
        trial.set_user_attr("values", values)
        for other in study.get_trials(deepcopy=False):
            if other.number != trial.number and other.user_attrs.get("values") == values and trial_record(other)["outcome"] == "complete":
                trial.set_user_attr("outcome", "repeat")
                trial.set_user_attr("repeat_of", other.number)
                study.tell(trial, other.value)
                return "repeat"
        folder_name = trial.user_attrs.get("folder") or f"trials/trial_{trial.number:04d}"
        trial.set_user_attr("folder", folder_name)
        recipe = self.trial_recipe(values, trial.user_attrs.get("origin", trial.number))
        self.reporter.message(f"trial {trial.number}: {self.settings.shown(values)}: {self.folder / folder_name}")
        start = time.perf_counter()
        try:
            summaries = run_seeds(recipe, self.folder / folder_name, self.settings.seeds, self.bench, self.reporter,
                                  [Watch(trial, self.measure, recipe.train.epochs)])
        except Hopeless as stop:
            return self.ended_early(study, trial, "pruned", str(stop), start)
        except NonFiniteLoss as error:  # e.g. a learning rate too high: a result of the sweep, not a mistake
            return self.ended_early(study, trial, "failed", str(error), start)
        except KeyboardInterrupt:
            raise  # left RUNNING: the next run of the command continues it from its checkpoint
        self.record(trial, summaries, start)
        values_seen = trial.user_attrs["val_values"]
        study.tell(trial, sum(values_seen) / len(values_seen))
        return "complete"

    def record(self, trial, summaries: list[dict[str, Any]], start: float) -> None:
        folders = [path for _, path in seed_folders(self.folder / trial.user_attrs["folder"], self.settings.seeds)]
        trial.set_user_attr("val_values", [held_out(path, self.measure) for path in folders])
        trial.set_user_attr("test_values", [final_row(s)["test_acc"] for s in summaries])
        if summaries[0]["models"] and final_row(summaries[0]).get("test_ppl") is not None:
            trial.set_user_attr("test_ppl_values", [final_row(s)["test_ppl"] for s in summaries])
        references = self.reference or [None] * len(summaries)
        gains = [gain(summary, reference) for summary, reference in zip(summaries, references)]
        if all(g is not None for g in gains):
            trial.set_user_attr("gain_values", gains)
        trial.set_user_attr("outcome", "complete")
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 1))
        shown = ", ".join(f"{100 * v:.2f}%" if self.measure == "val_acc" else f"{v:.2f}" for v in trial.user_attrs["val_values"])
        self.reporter.message(f"trial {trial.number}: validation {self.measure.replace('val_', '')} {shown}, "
                              f"{time.perf_counter() - start:.0f} s")

    def ended_early(self, study, trial, outcome: str, reason: str, start: float) -> str:
        state = self.optuna.trial.TrialState
        trial.set_user_attr("outcome", outcome)
        trial.set_user_attr("reason", reason)
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 1))
        self.reporter.message(f"trial {trial.number}: {outcome}: {reason}")
        study.tell(trial, state=state.PRUNED if outcome == "pruned" else state.FAIL)
        return outcome

    def write(self, study, final: bool = False) -> SweepResult:
        records = [trial_record(t) for t in study.get_trials(deepcopy=False) if t.state.name != "WAITING"]
        for record in records:
            if self.settings.names and record["values"] is not None:
                record["names"] = named(record["values"], self.settings.names)
        return write_outputs(self.folder, self.recipe, self.settings, records, self.base, self.reference,
                             self.measure, self.direction, final, self.published, self.val_size())

    def val_size(self) -> int | None:
        """Validation samples (tokens' windows for a language model): the noise of the choice."""
        val = self.bench.splits.val
        return len(val) if val is not None else None


class Watch:
    """The first seed's epoch callback: reports the validation measure to Optuna and stops a trial
    its pruner calls hopeless, on the distillation stage's epochs (never after the last one: a
finished trial counts)."""

    def __init__(self, trial, measure: str, epochs: int) -> None:
        self.trial, self.measure, self.epochs = trial, measure, epochs

    def __call__(self, stage: str, epochs_done: int, record: dict[str, Any]) -> None:
        if stage != "student" or self.measure not in record or epochs_done >= self.epochs:
            return
        self.trial.report(record[self.measure], epochs_done)
        if self.trial.should_prune():
            raise Hopeless(f"validation {self.measure.replace('val_', '')} {record[self.measure]:.4g} after epoch {epochs_done} "
                           "is worse than the median of earlier trials there (Optuna's median pruner)")
