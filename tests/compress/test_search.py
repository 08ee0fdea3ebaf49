"""Student architecture search: a tiny search on digits (trials, outputs, best.yaml, resume, one
shared teacher cache), every bad input as one line, and the Pareto front and pruning rule by hand."""

from __future__ import annotations

import json
from xml.etree import ElementTree

import pytest

from potstill import config
from potstill.cli.main import main
from potstill.compress import search
from potstill.compress.pareto import front_of, nice_ticks, pareto_front, pareto_svg
from potstill.compress.search_space import combinations, optuna_params, space_size, suggest
from potstill.compress.search_trial import Hopeless, Watch, hopeless
from potstill.recipe import Recipe, SearchParamSpec, SearchPrunerSpec
from potstill.startup import preflight
from tests.conftest import Recorder, write_recipe

optuna = pytest.importorskip("optuna")


def digits_recipe(**search) -> dict:
    """Tiny digits: a 1-epoch CNN teacher trained by the search itself, 1-epoch MLP students."""
    return {
        "name": "tiny_search",
        "data": {"name": "digits", "batch_size": 64, "val_fraction": 0.2, "train_size": 600},
        "teacher": {"model": {"name": "cnn", "args": {"channels": [8, 16], "hidden": 32}}, "train": {"epochs": 1, "lr": 3.0e-3}},
        "student": {"name": "mlp", "args": {"hidden": [16]}},
        "train": {"epochs": 1, "lr": 3.0e-3},
        "distill": {"teacher_check": "off"},
        "report": {"latency_repeats": 1, "latency_batch_size": 8},
        "search": {"trials": 3, "latency_repeats": 2,
                   "space": {"student.args.hidden": {"choices": [[8], [16], [8, 8]]},
                             "train.lr": {"low": 1.0e-3, "high": 1.0e-2, "log": True}}} | search,
    }


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A search of 2 trials, then the same search continued to 3: (folder, result, first lines, second lines)."""
    folder = tmp_path_factory.mktemp("search")
    path = write_recipe(folder, digits_recipe())
    first, second = Recorder(), Recorder()
    search(path, ["search.trials=2"], run_dir=folder / "run", reporter=first)
    result = search(path, [], run_dir=folder / "run", reporter=second)
    return folder / "run", result, first.lines, second.lines


def test_search_writes_every_trial_the_front_and_a_plot(searched):
    run, result, _, _ = searched
    record = json.loads((run / "search.json").read_text())
    assert [trial["number"] for trial in record["trials"]] == [0, 1, 2]
    assert all(trial["outcome"] == "complete" for trial in record["trials"])
    assert {trial["folder"] for trial in record["trials"]} == {f"trials/trial_{n}" for n in range(3)}
    for trial in record["trials"]:
        assert (run / trial["folder"] / "summary.json").is_file()
        assert 0 <= trial["val_acc"] <= 1 and trial["params"] > 0 and trial["latency_ms"] > 0
    assert record["front"] == [trial["number"] for trial in result.front] and record["best"] == result.best["number"]
    root = ElementTree.parse(run / "pareto.svg").getroot()  # valid XML
    assert root.tag.endswith("svg") and len(root.findall(".//{http://www.w3.org/2000/svg}circle")) == 3


def test_best_yaml_is_a_distill_recipe_of_the_best_trial(searched):
    run, result, _, _ = searched
    recipe = config.load(run / "best.yaml", Recipe)
    preflight(recipe, "distill")  # what `potstill distill best.yaml` checks before it trains
    assert recipe.search is None and recipe.distill.baseline is True
    assert recipe.student.args["hidden"] == result.best["values"]["student.args.hidden"]
    assert recipe.train.lr == result.best["values"]["train.lr"]
    assert recipe.teacher.checkpoint == str(run / "teacher_run")
    assert "\nsearch:" not in (run / "best.yaml").read_text()


def test_a_continued_search_trains_only_the_missing_trials_from_one_cache(searched):
    run, _, first, second = searched
    assert sum("training in" in line for line in first) == 2
    assert sum("training in" in line for line in second) == 1
    assert any("continuing" in line for line in second)
    # the teacher trained once, its cache built once: the later trials only read it
    assert sum("training the teacher" in line for line in first + second) == 1
    assert sum(line.startswith("cache: building") for line in first + second) == 1
    assert sum(line.startswith("cache  ") for line in first + second) == 3
    assert sorted(path.name for path in (run / "trials").iterdir()) == ["trial_0", "trial_1", "trial_2"]
    study = optuna.load_study(study_name="tiny_search", storage=f"sqlite:///{run / 'search.db'}")
    assert len(study.trials) == 3


def test_a_small_space_is_tried_exhaustively(tmp_path):
    recipe = digits_recipe(trials=5, space={"student.args.hidden": {"choices": [[8], [16]]}})
    result = search(write_recipe(tmp_path, recipe), run_dir=tmp_path / "run", reporter=Recorder())
    assert sorted(trial["values"]["student.args.hidden"] for trial in result.trials) == [[8], [16]]


def test_a_trial_left_running_by_a_killed_search_is_tried_again(tmp_path):
    recipe = digits_recipe(space={"student.args.hidden": {"choices": [[8], [16], [8, 8]]}})
    path = write_recipe(tmp_path, recipe)
    first = search(path, ["search.trials=1"], run_dir=tmp_path / "run", reporter=Recorder())
    untried = next(c for c in ([8], [16], [8, 8]) if c != first.trials[0]["values"]["student.args.hidden"])
    study = optuna.load_study(study_name="tiny_search", storage=f"sqlite:///{tmp_path / 'run' / 'search.db'}")
    study.enqueue_trial({"student.args.hidden": json.dumps(untried)})
    left = study.ask()  # what a kill -9 during its training leaves behind: a RUNNING trial with its keys drawn
    left.suggest_categorical("student.args.hidden", [json.dumps(c) for c in ([8], [16], [8, 8])])
    lines = Recorder()
    result = search(path, ["search.trials=2"], run_dir=tmp_path / "run", reporter=lines)
    by_number = {trial["number"]: trial for trial in result.trials}
    assert by_number[1]["outcome"] == "interrupted"
    assert by_number[2]["retry_of"] == 1 and by_number[2]["outcome"] == "complete"
    assert by_number[2]["values"]["student.args.hidden"] == untried
    assert any("trial 1 was interrupted" in line for line in lines.lines)


def test_the_epoch_watch_records_the_curve_and_stops_hopeless_trials():
    class Trial:
        def __init__(self):
            self.user_attrs = {}

        def set_user_attr(self, key, value):
            self.user_attrs[key] = value

    trial = Trial()
    watch = Watch(trial, [[0.8, 0.85], [0.9, 0.9]], SearchPrunerSpec(min_trials=2), epochs=3)
    watch("baseline", 1, {"val_acc": 0.1})  # another stage: ignored
    watch("student", 1, {"val_acc": 0.84})
    with pytest.raises(Hopeless, match="below the median"):
        watch("student", 2, {"val_acc": 0.1})
    assert trial.user_attrs["val_curve"] == [0.84, 0.1]


def run_cli(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err


def assert_one_line_error(capsys, argv, *fragments):
    code, err = run_cli(capsys, *argv)
    assert code == 2, err
    assert err.startswith("potstill: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def test_budget_errors_name_the_smallest_or_fastest_student(tmp_path, capsys):
    path = write_recipe(tmp_path, digits_recipe())
    assert_one_line_error(capsys, ["search", str(path), "--set", "search.budget.params=10", "--run-dir", str(tmp_path / "a")],
                          "search.budget.params 10", "smallest", "student.args.hidden=[8]", "610 parameters")
    assert_one_line_error(capsys, ["search", str(path), "--set", "search.budget.latency_ms=1e-6", "--run-dir", str(tmp_path / "b")],
                          "search.budget.latency_ms 1e-06", "slower", "fastest")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing written, nothing trained


@pytest.mark.parametrize("override, fragments", [
    ("search.trails=3", ["search.trails: unknown key", "search.trials"]),
    ("search.trials=many", ["search.trials: expected an integer"]),
    ("search.space={student.argz.hidden: {choices: [[8]]}}", ["search.space.student.argz.hidden", "student.argz: unknown key"]),
    ("search.space={student.args.hiden: {choices: [[8]]}}", ["search.space.student.args.hiden", "hiden"]),
    ("search.space={teacher.train.epochs: {choices: [1, 2]}}", ["search.space.teacher.train.epochs", "same for every trial"]),
    ("search.space={train.lr: {choices: [0.1], low: 0.1}}", ["either choices", "not both"]),
    ("search.space={train.lr: {low: 0.1, high: 0.01}}", ["high: must be above low"]),
    ("search.space={train.lr: {choices: [-1.0]}}", ["train.lr: must be between"]),
    ("data.val_fraction=0", ["data.val_fraction is 0", "set data.val_fraction"]),
    ("search.space={}", ["search.space is empty"]),
    ("search.space={train.lr: {low: 0.1, high: 1.0, depth: [3, 1]}}", ["depth: give [min, max]"]),
])
def test_bad_search_sections_are_one_line_errors(tmp_path, capsys, override, fragments):
    path = write_recipe(tmp_path, digits_recipe())
    assert_one_line_error(capsys, ["search", str(path), "--set", override, "--run-dir", str(tmp_path / "run")], *fragments)
    assert not (tmp_path / "run").exists()


def test_a_recipe_without_search_section_is_refused(tmp_path, capsys):
    recipe = digits_recipe()
    del recipe["search"]
    assert_one_line_error(capsys, ["search", str(write_recipe(tmp_path, recipe))], "no search section")


# ---- the pieces, by hand --------------------------------------------------------------------------


def test_pareto_front_keeps_non_dominated_points_and_ties():
    points = [(0.9, -2.0), (0.8, -1.0), (0.85, -3.0), (0.9, -2.0), (0.7, -1.0), (0.95, -5.0)]
    # (0.85, -3) is worse than (0.9, -2) in both; (0.7, -1) is worse than (0.8, -1) in one, equal in the other
    assert pareto_front(points) == [0, 1, 3, 5]
    assert pareto_front([(1.0, 1.0)]) == [0] and pareto_front([]) == []


def test_front_of_trials_sorts_most_accurate_first():
    trials = [{"number": 0, "val_acc": 0.8, "latency_ms": 1.0, "params": 10},
              {"number": 1, "val_acc": 0.9, "latency_ms": 2.0, "params": 20},
              {"number": 2, "val_acc": 0.9, "latency_ms": 2.0, "params": 30},  # dominated by 1 (more params)
              {"number": 3, "val_acc": 0.7, "latency_ms": 0.5, "params": 40}]
    assert [t["number"] for t in front_of(trials, ["latency_ms", "params"])] == [1, 0, 3]
    assert [t["number"] for t in front_of(trials, ["latency_ms"])] == [1, 2, 0, 3]  # 1 and 2 tie
    svg = pareto_svg(trials, front_of(trials, ["latency_ms"]), "title & <more>")
    ElementTree.fromstring(svg)
    assert svg.count("#cc0000\"><title>") == 4


def test_ticks_are_round_and_cover_the_range():
    assert nice_ticks(0.03, 0.41) == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    ticks = nice_ticks(81.3, 86.1)
    assert ticks[0] <= 81.3 and ticks[-1] >= 86.1 and len(ticks) <= 8
    assert len(nice_ticks(5.0, 5.0)) >= 2


def test_hopeless_compares_with_the_median_of_finished_trials_at_the_same_epoch():
    pruner = SearchPrunerSpec(warmup_epochs=1, min_trials=2, margin=0.02)
    peers = [[0.80, 0.85], [0.70, 0.90], [0.90]]
    assert hopeless([0.70], peers, pruner, epochs=3) is not None  # median 0.80 - 0.02 > 0.70
    assert hopeless([0.79], peers, pruner, epochs=3) is None
    assert hopeless([0.9, 0.80], peers, pruner, epochs=3) is not None  # epoch 2: two peers, median 0.875
    assert hopeless([0.9, 0.86], peers, pruner, epochs=3) is None
    assert hopeless([0.70], peers, pruner, epochs=1) is None  # the last epoch is never cut
    assert hopeless([0.70], peers[:1], pruner, epochs=3) is None  # too few finished trials
    assert hopeless([0.70], peers, SearchPrunerSpec(enabled=False), epochs=3) is None


def test_every_combination_of_a_space_round_trips_through_optuna():
    space = {"student.args.hidden": SearchParamSpec(choices=[8, 16], depth=(1, 2)),
             "train.lr": SearchParamSpec(choices=[0.1, 0.01]),
             "train.epochs": SearchParamSpec(low=1, high=3)}
    assert space_size(space) == (2 + 4) * 2 * 3
    combos = combinations(space)
    assert len(combos) == 36 and len({json.dumps(c, sort_keys=True) for c in combos}) == 36
    for values in combos:
        assert suggest(optuna.trial.FixedTrial(optuna_params(space, values)), space) == values
    assert space_size({"train.lr": SearchParamSpec(low=1e-3, high=1e-2, log=True)}) is None
