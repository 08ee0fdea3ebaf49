"""Student architecture search with distillation as the training objective (`potstill search`).

Search to Distill (Liu et al., CVPR 2020, arXiv 1911.09074) and Gu & Tresp (arXiv 2001.01266)
pick the student by how well it *learns from the teacher*, not how well it learns alone. Here each
trial is an ordinary distill run (no baseline) of the recipe with the trial's keys set, in
`trials/trial_<n>/`; every trial reads the same teacher-output cache, so a trial costs about what
training the student alone costs. Optuna (multi-objective, SQLite storage) proposes the keys:
validation accuracy up, batch-1 CPU latency and parameters down. Students over the budget are
measured before they train and rejected at once; trials whose validation accuracy falls clearly
below the median of finished trials at the same epoch are stopped (Optuna's own pruners take one
objective only). Test accuracy is reported, never used to choose.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from potstill import config
from potstill.compress.search_budget import Costs, architecture_key, check_budget, over_budget
from potstill.compress.search_folder import check_folder, import_optuna, resolve
from potstill.compress.search_output import SearchResult, write_outputs
from potstill.compress.search_space import check_space, combinations, optuna_params, space_size, suggest, words
from potstill.compress.search_trial import Hopeless, TrialRun, trial_record
from potstill.engine.checkpoint import atomic_write, guarded
from potstill.engine.lock import hold, let_go
from potstill.engine.loop import NonFiniteLoss
from potstill.engine.progress import Reporter
from potstill.errors import PotstillError
from potstill.experiments.shared import shared_base
from potstill.recipe import Recipe
from potstill.startup import open_workbench, preflight

TRAINED = ("complete", "pruned_early", "failed")  # outcomes that count towards search.trials
FREE_PROPOSALS_MAX = 100  # proposals in a row that train nothing (over budget, repeats) before the search stops


def search(recipe: str | Path | Recipe | None, overrides: list[str] | tuple[str, ...] = (), run_dir: str | Path | None = None,
           resume: str | Path | None = None, reporter: Reporter | None = None) -> SearchResult:
    """Run (or continue) the search of `recipe` (a file or a Recipe with a `search` section) in
    `run_dir` (default output_dir/name); `resume`: a search folder to continue (recipe optional)."""
    optuna = import_optuna()
    loaded, folder = resolve(recipe, overrides, run_dir, resume)
    return Search(optuna, loaded, folder, reporter or Reporter(), resume is not None).run()


def check_search_recipe(recipe: Recipe, data: dict[str, Any]) -> None:
    if recipe.search is None:
        raise PotstillError("the recipe has no search section; add search: {space: {student.args.hidden: {choices: [[256], [512]]}}}")
    if not recipe.search.space:
        raise PotstillError("search.space is empty; name at least one recipe key to search, e.g. "
                            "search.space: {student.args.hidden: {choices: [[256], [512]]}}")
    if recipe.data.val_fraction <= 0:
        raise PotstillError(
            "search.objective_split is val, but data.val_fraction is 0, so there is no validation split to choose on; "
            "set data.val_fraction, e.g. 0.1 (test accuracy is reported, never used to choose)"
        )
    preflight(config.validate(data, Recipe, source="the recipe"), "distill")  # its own mistakes, named as such
    check_space(data, recipe.search.space)


class Search:
    def __init__(self, optuna, recipe: Recipe, folder: Path, reporter: Reporter, resume: bool) -> None:
        self.optuna, self.recipe, self.folder, self.reporter, self.resume = optuna, recipe, folder, reporter, resume
        self.spec = recipe.search
        data = config.to_dict(recipe)
        data.pop("search")
        check_search_recipe(recipe, data)
        self.base = data

    def run(self) -> SearchResult:
        continuing = check_folder(self.folder, self.recipe, self.resume)
        bench = self.bench = open_workbench(self.recipe)
        self.costs = Costs(bench, self.spec.latency_repeats, self.recipe.seed)
        try:
            if continuing:  # architectures measured before keep their numbers; only new ones are timed
                hold(self.folder, "search folder")
                self.remember_costs(self.open_study())
            check_budget(self.base, self.spec, self.recipe.seed, self.costs, self.reporter.message)
            if not continuing:  # nothing is written before the space and the budget are known to be sound
                guarded(lambda: self.folder.mkdir(parents=True, exist_ok=True), self.folder)
                hold(self.folder, "search folder")
            text = config.dump_yaml(config.to_dict(self.recipe))
            guarded(lambda: atomic_write(self.folder / "recipe.yaml", text), self.folder / "recipe.yaml")
            study = self.open_study()
            records = self.records(study)
            if continuing:
                trained = sum(record["outcome"] in TRAINED for record in records)
                self.reporter.message(f"search: continuing {self.folder} ({trained} trial(s) trained so far)")
            checked = any(record["outcome"] == "complete" for record in records)
            self.trials = TrialRun(self.trial_base(), self.folder, bench, self.costs, self.spec, self.reporter, checked)
            self.recover(study)
            self.optimise(study)
            return write_outputs(self.folder, self.recipe, self.records(study), self.trials.base, final=True)
        finally:
            let_go(self.folder)

    # ---- the study ------------------------------------------------------------------------------

    def open_study(self):
        storage = self.spec.storage or str(self.folder / "search.db")
        url = storage if "://" in storage else f"sqlite:///{Path(storage).absolute()}"
        objectives = ["maximize"] + ["minimize"] * len(self.spec.objectives)
        try:
            study = self.optuna.create_study(storage=url, study_name=self.recipe.name, directions=objectives, load_if_exists=True,
                                             sampler=self.optuna.samplers.RandomSampler(seed=self.recipe.seed))
        except Exception as error:  # noqa: BLE001 - SQLAlchemy and Optuna raise many types for a URL or database they cannot use
            raise PotstillError(f"search.storage {storage}: Optuna cannot open it ({str(error).splitlines()[0][:200]})") from None
        if [d.name.lower() for d in study.directions] != objectives:
            raise PotstillError(f"search.storage {storage} holds a study '{self.recipe.name}' with other objectives; "
                                "choose another storage or --run-dir")
        # seeded by the trials already there, so a continued search does not replay the first proposals
        seed = self.recipe.seed + len(study.trials)
        samplers = self.optuna.samplers
        study.sampler = {"tpe": lambda: samplers.TPESampler(seed=seed), "nsga2": lambda: samplers.NSGAIISampler(seed=seed),
                         "random": lambda: samplers.RandomSampler(seed=seed)}[self.spec.sampler]()
        return study

    def remember_costs(self, study) -> None:
        """Architectures measured by earlier trials keep their numbers."""
        for trial in study.trials:
            attrs = trial.user_attrs
            if "architecture" in attrs and "latency_ms" in attrs:
                self.costs.remember(attrs["architecture"], attrs["params"], attrs["latency_ms"])

    def recover(self, study) -> None:
        """A trial left running by a killed search failed: mark it so and queue its keys again."""
        state = self.optuna.trial.TrialState
        for trial in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
            study.tell(trial.number, state=state.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            self.reporter.message(f"search: trial {trial.number} was interrupted; its keys are tried again")

    def exhaustive(self) -> bool:
        size = space_size(self.spec.space)
        return size is not None and size <= self.spec.trials

    def optimise(self, study) -> None:
        state = self.optuna.trial.TrialState
        if self.exhaustive():  # every combination once, in a seeded order
            combos = combinations(self.spec.space)
            random.Random(self.recipe.seed).shuffle(combos)
            for values in combos:
                study.enqueue_trial(optuna_params(self.spec.space, values), skip_if_exists=True)
        free = 0
        while True:
            records = self.records(study)
            if sum(record["outcome"] in TRAINED for record in records) >= self.spec.trials:
                break
            if self.exhaustive() and not study.get_trials(deepcopy=False, states=(state.WAITING,)):
                break
            if free >= FREE_PROPOSALS_MAX:
                self.reporter.message(f"search: stopped early: the last {free} proposals were over budget or repeats; "
                                      "the space holds few students within the budget")
                break
            trial = study.ask()
            outcome = self.trial(study, trial, records)
            free = 0 if outcome in TRAINED else free + 1
            write_outputs(self.folder, self.recipe, self.records(study), self.trials.base)

    def trial(self, study, trial, records: list[dict[str, Any]]) -> str:
        """Propose, check and (if it is new and within budget) train one trial; its outcome."""
        state = self.optuna.trial.TrialState
        values = suggest(trial, self.spec.space)
        trial.set_user_attr("values", values)
        repeat = next((r for r in records if r["values"] == values and r["outcome"] in ("complete", "pruned_early")), None)
        if repeat is not None:  # the sampler proposed a finished student again: its result, no training
            trial.set_user_attr("outcome", "repeat")
            trial.set_user_attr("repeat_of", repeat["number"])
            if repeat["outcome"] == "complete":
                study.tell(trial, study.trials[repeat["number"]].values)
            else:
                study.tell(trial, state=state.PRUNED)
            return "repeat"
        try:
            recipe = self.trials.recipe(values, trial.number)
            costs = self.costs.of(recipe.student)
        except PotstillError as error:  # e.g. a family's name with another family's args
            trial.set_user_attr("outcome", "invalid")
            trial.set_user_attr("reason", str(error))
            study.tell(trial, state=state.FAIL)
            self.reporter.message(f"trial {trial.number}: {words(values)}: invalid: {error}")
            return "invalid"
        for key, value in (("params", costs["params"]), ("latency_ms", costs["latency_ms"]),
                           ("architecture", architecture_key(recipe.student))):
            trial.set_user_attr(key, value)
        reason = over_budget(costs, self.spec.budget)
        if reason is not None:
            trial.set_user_attr("outcome", "over_budget")
            trial.set_user_attr("reason", reason)
            study.tell(trial, state=state.PRUNED)
            self.reporter.message(f"trial {trial.number}: {words(values)}: over budget ({reason}), not trained")
            return "over_budget"
        return self.train(study, trial, recipe, values, costs, records)

    def train(self, study, trial, recipe: Recipe, values: dict[str, Any], costs: dict[str, Any], records) -> str:
        state = self.optuna.trial.TrialState
        folder = self.trials.folder_of(trial.number)
        trial.set_user_attr("folder", str(folder.relative_to(self.folder)))
        self.reporter.message(f"trial {trial.number}: {words(values)} ({costs['params']:,} params, "
                              f"{costs['latency_ms']:.3g} ms): training in {folder}")
        peers = [r["val_curve"] for r in records if r["outcome"] == "complete" and r.get("val_curve")]
        start = time.perf_counter()
        try:
            result = self.trials.train(trial, recipe, folder, peers)
        except Hopeless as stop:
            outcome, reason, told = "pruned_early", str(stop), state.PRUNED
        except NonFiniteLoss as error:  # a learning rate too high for this student: a result, not a mistake
            outcome, reason, told = "failed", str(error), state.FAIL
        except KeyboardInterrupt:
            study.tell(trial, state=state.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            raise
        except BaseException as error:
            trial.set_user_attr("outcome", "failed")
            trial.set_user_attr("reason", str(error).splitlines()[0][:500] if str(error) else type(error).__name__)
            study.tell(trial, state=state.FAIL)
            raise
        else:
            outcome, reason, told = "complete", None, state.COMPLETE
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 1))
        trial.set_user_attr("outcome", outcome)
        if reason is not None:
            trial.set_user_attr("reason", reason)
            self.reporter.message(f"trial {trial.number}: {outcome.replace('_', ' ')}: {reason}")
            study.tell(trial, state=told)
            return outcome
        trial.set_user_attr("val_acc", result["val_acc"])
        trial.set_user_attr("test_acc", result["test_acc"])
        study.tell(trial, [result["val_acc"], *(costs[name] for name in self.spec.objectives)])
        self.reporter.message(f"trial {trial.number}: validation top-1 {100 * result['val_acc']:.2f}% "
                              f"(test {100 * result['test_acc']:.2f}%), {time.perf_counter() - start:.0f} s")
        return outcome

    # ---- the teacher, the trials' shared recipe, the outputs --------------------------------------

    def trial_base(self) -> dict[str, Any]:
        """The recipe every trial starts from: no baseline, one teacher (trained here once when the
        recipe gives no checkpoint), one teacher-output cache for all trials."""
        base = shared_base(self.base, self.folder, self.bench, self.reporter, "search")
        base["distill"]["baseline"] = False
        return base

    def records(self, study) -> list[dict[str, Any]]:
        state = self.optuna.trial.TrialState
        return [trial_record(trial) for trial in study.get_trials(deepcopy=False) if trial.state != state.WAITING]
