"""`potstill sweep`: a tiny grid and a TPE sweep on digits (folders, sweep.json, gains against the
reference run, best.yaml), a killed sweep continued exactly, --param parsing, and every bad input
as one line with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from potstill import config
from potstill.cli.main import main
from potstill.errors import PotstillError
from potstill.experiments import sweep as sweep_module
from potstill.experiments.sweep import plan, sweep
from potstill.experiments.sweep_params import parse_params
from potstill.recipe import Recipe
from tests.conftest import Recorder, write_recipe

pytest.importorskip("optuna")

GRID = ["distill.temperature=1,4", "distill.alpha=0.2,0.8"]
GRID_ARGS = ["--param", GRID[0], "--param", GRID[1]]


def digits_recipe() -> dict:
    """Tiny digits: a 1-epoch CNN teacher trained once by the sweep, 2-epoch MLP students."""
    return {
        "name": "tiny_sweep",
        "data": {"name": "digits", "batch_size": 64, "train_size": 600},
        "teacher": {"model": {"name": "cnn", "args": {"channels": [8, 16], "hidden": 32}}, "train": {"epochs": 1, "lr": 3.0e-3}},
        "student": {"name": "mlp", "args": {"hidden": [16]}},
        "train": {"epochs": 2, "lr": 3.0e-3},
        "distill": {"teacher_check": "off"},
        "report": {"latency_repeats": 1, "latency_batch_size": 8},
    }


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """A 2x2 grid over distillation keys: (folder, result, messages)."""
    folder = tmp_path_factory.mktemp("sweep")
    recorder = Recorder()
    result = sweep(write_recipe(folder, digits_recipe()), GRID, run_dir=folder / "grid", reporter=recorder)
    return folder / "grid", result, recorder.lines


def test_grid_runs_every_combination_once_as_ordinary_run_folders(grid):
    """Catches: a combination skipped or run twice, values not applied to the trial's recipe, a
    trial folder that is not a run folder (no summary/metrics), trials training their own student
    alone when only distillation keys vary."""
    folder, _, lines = grid
    payload = json.loads((folder / "sweep.json").read_text())
    assert payload["settings"]["sampler"] == "grid" and payload["settings"]["trials"] == 4
    combos = sorted((r["values"]["distill.temperature"], r["values"]["distill.alpha"]) for r in payload["trials"])
    assert combos == [(1, 0.2), (1, 0.8), (4, 0.2), (4, 0.8)]
    for record in payload["trials"]:
        run = folder / record["folder"]
        recipe = config.load(run / "recipe.yaml", Recipe)
        assert recipe.distill.temperature == record["values"]["distill.temperature"]
        assert recipe.distill.alpha == record["values"]["distill.alpha"]
        assert recipe.distill.baseline is False  # the student alone is measured once, in the reference run
        roles = [row["role"] for row in json.loads((run / "summary.json").read_text())["models"]]
        assert roles == ["student"]
    assert any("carves 0.1 of the training data" in line for line in lines)  # val_fraction 0 was said, not silent


def test_objective_is_validation_and_gain_is_against_the_reference_baseline(grid):
    """Catches: choosing on the test split, a gain not paired with the reference run's student alone,
    a best trial that is not the one with the highest validation accuracy."""
    folder, result, _ = grid
    payload = result.payload
    reference = json.loads((folder / "reference" / "summary.json").read_text())
    alone = next(r["test_acc"] for r in reference["models"] if r["role"] == "baseline")
    assert payload["reference"]["baseline"]["mean"] == pytest.approx(alone)
    for record in payload["trials"]:
        run = folder / record["folder"]
        last_val = [r["val_acc"] for r in (json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())
                    if r["stage"] == "student"][-1]
        assert record["val"]["values"] == [pytest.approx(last_val)]
        test = json.loads((run / "summary.json").read_text())["models"][0]["test_acc"]
        assert record["gain"]["values"] == [pytest.approx(100 * (test - alone))]
    best = max(payload["trials"], key=lambda r: (r["val"]["mean"], -r["number"]))
    assert payload["best"] == best["number"] and "validation" in payload["objective"]["split"]
    assert "never used to choose" in payload["objective"]["split"]


def test_best_recipe_is_runnable_with_its_baseline_back(grid):
    folder, result, _ = grid
    best = config.load(folder / "best.yaml", Recipe)
    chosen = result.best["values"]
    assert best.distill.temperature == chosen["distill.temperature"] and best.distill.alpha == chosen["distill.alpha"]
    assert best.distill.baseline is True and best.teacher.checkpoint.endswith("teacher_run")
    assert best.data.val_fraction == 0.1


def test_the_same_command_again_trains_nothing(grid):
    folder, _, _ = grid
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("model.safetensors")}
    recorder = Recorder()
    again = sweep(folder.parent / "recipe.yaml", GRID, run_dir=folder, reporter=recorder)
    assert len(again.trials) == 4 and not any(line.startswith("trial") and "validation" in line for line in recorder.lines)
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("model.safetensors")} == before


def test_a_killed_sweep_continues_the_interrupted_trial_from_its_checkpoint(grid, tmp_path, monkeypatch):
    """Kill the sweep inside trial 1 after its first epoch; the same command continues that trial
    in the same folder from its checkpoint, and every result equals the uninterrupted sweep's."""
    _, uninterrupted, _ = grid
    path = write_recipe(tmp_path, digits_recipe())
    calls = []

    class Killing(sweep_module.Watch):
        def __call__(self, stage, epochs_done, record):
            calls.append(self.trial.number)
            if self.trial.number == 1 and stage == "student" and epochs_done == 1:
                raise KeyboardInterrupt
            super().__call__(stage, epochs_done, record)

    monkeypatch.setattr(sweep_module, "Watch", Killing)
    with pytest.raises(KeyboardInterrupt):
        sweep(path, GRID, run_dir=tmp_path / "grid", reporter=Recorder())
    assert (tmp_path / "grid" / "trials" / "trial_0001" / "student" / "checkpoint.safetensors").is_file()
    monkeypatch.undo()
    recorder = Recorder()
    result = sweep(path, GRID, run_dir=tmp_path / "grid", reporter=recorder)
    assert any("trial 1 was interrupted; it continues in" in line for line in recorder.lines)
    by_values = {json.dumps(r["values"]): r for r in uninterrupted.trials}
    complete = [r for r in result.trials if r["outcome"] == "complete"]
    assert len(complete) == 4 and [r["number"] for r in result.trials if r["outcome"] == "interrupted"] == [1]
    retried = next(r for r in complete if r.get("retry_of") == 1)
    assert retried["folder"] == "trials/trial_0001"
    for record in complete:
        assert record["test"]["values"] == by_values[json.dumps(record["values"])]["test"]["values"]  # exact


def test_tpe_over_ranges_with_seeds(tmp_path):
    """Optuna proposes values inside the ranges; each trial is a seeds folder with seeds.json and the
    objective is the mean over seeds; a key that changes the student alone keeps it in every trial."""
    path = write_recipe(tmp_path, {**digits_recipe(), "data": {**digits_recipe()["data"], "val_fraction": 0.2}})
    result = sweep(path, ["distill.temperature=1:8", "train.lr=1e-3:1e-2:log"], run_dir=tmp_path / "tpe", trials=3,
                   seeds=[0, 1], reporter=Recorder())
    payload = result.payload
    assert payload["settings"]["sampler"] == "tpe" and len(payload["trials"]) == 3 and payload["reference"] is None
    for record in payload["trials"]:
        assert 1 <= record["values"]["distill.temperature"] <= 8 and 1e-3 <= record["values"]["train.lr"] <= 1e-2
        if record["outcome"] != "complete":
            continue
        trial = tmp_path / "tpe" / record["folder"]
        seeds = json.loads((trial / "seeds.json").read_text())
        assert seeds["seeds"] == [0, 1] and len(record["val"]["values"]) == 2
        assert record["val"]["mean"] == pytest.approx(sum(record["val"]["values"]) / 2)
        gains = seeds["gain"]["values"]  # each seed against its own student alone
        assert record["gain"]["values"] == pytest.approx(gains, abs=1e-3)
        assert config.load(trial / "seed1" / "recipe.yaml", Recipe).seed == 1


@pytest.mark.parametrize("texts, expected", [
    (["distill.temperature=1,2,4"], {"choices": [1, 2, 4]}),
    (["distill.alpha=0.1:0.9"], {"low": 0.1, "high": 0.9}),
    (["train.lr=1e-4:1e-2:log"], {"low": 1e-4, "high": 1e-2, "log": True}),
    (["train.epochs=2:10:2"], {"low": 2, "high": 10, "step": 2}),
    (["student.args.hidden=[64],[128, 64]"], {"choices": [[64], [128, 64]]}),
    (["distill.loss=kd,dkd"], {"choices": ["kd", "dkd"]}),
])
def test_param_texts(texts, expected):
    (spec,) = parse_params(texts)[0].values()
    for key, value in expected.items():
        assert getattr(spec, key) == value


def test_grid_or_optuna_is_chosen_by_the_space():
    space, _ = parse_params(GRID)
    assert plan(space, None, "auto", None).sampler == "grid" and plan(space, None, "auto", None).trials == 4
    assert plan(space, 3, "auto", None).sampler == "tpe"  # fewer trials than combinations: Optuna picks
    assert plan(parse_params(["train.epochs=2:10:2"])[0], None, "auto", None).trials == 5
    assert plan(space, None, "grid", None).prune is False  # a grid runs every combination to the end


@pytest.mark.parametrize("args, words", [
    (["--param", "distill.temprature=1,2"], "distill.temprature"),
    (["--param", "distill.temperature=4:1"], "the range 4:1 is empty"),
    (["--param", "distill.temperature="], "the value list is empty"),
    (["--param", "distill.temperature=1,1"], "a value is listed twice"),
    (["--param", "teacher.train.lr=1,2"], "'teacher' is the same for every trial"),
    (["--param", "distill.temperature=1,2", "--param", "distill.temperature=4"], "given twice"),
    (["--param", "distill.alpha=0.1:0.9"], "give --trials N"),
    (["--param", "distill.alpha=0.1:0.9", "--sampler", "grid", "--trials", "3"], "continuous range"),
    (["--param", "distill.temperature=1,2", "--seeds", "0", "0"], "each seed once"),
    (["--param", "distill.temperature=1,2", "--trials", "0"], "positive number of trials"),
    (["--param", "distill.temperature=-1,2"], "distill.temperature"),
    (["--param", "distill=@missing_methods.yaml"], "missing_methods.yaml"),
    (["--param", "distill=@methods_empty.yaml"], "recipe file is empty"),
    (["--param", "distill=@methods_twice.yaml"], "two names in"),
    (["--param", "distill=@methods_bad.yaml"], "--param distill (tried as --set distill.loss=\"fitnet\" distill.temperature=4"),
    (["--param", "distill.temperature=1,2", "--published", "published.yaml"], "no numbers for recipe 'tiny_sweep'"),
])
def test_bad_sweeps_are_one_line_and_write_nothing(tmp_path, capsys, monkeypatch, args, words):
    path = write_recipe(tmp_path, digits_recipe())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "methods_empty.yaml").write_text("")
    (tmp_path / "methods_twice.yaml").write_text("kd: {loss: kd}\nkd_again: {loss: kd}\n")
    (tmp_path / "methods_bad.yaml").write_text("fitnet: {loss: fitnet, temperature: 4}\n")
    (tmp_path / "published.yaml").write_text("another_recipe: {kd: 70.0}\n")
    code = main(["sweep", str(path), *args, "--run-dir", str(tmp_path / "out"), "-q"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and words in error and len(error.splitlines()) == 1, error
    assert not (tmp_path / "out").exists()


def test_a_folder_of_another_sweep_or_a_run_is_refused(grid, tmp_path, capsys):
    folder, _, _ = grid
    recipe = folder.parent / "recipe.yaml"
    code = main(["sweep", str(recipe), "--param", "distill.temperature=1,2", "--run-dir", str(folder), "-q"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "only --trials may change" in error and "params" in error
    before = (folder / "sweep.json").read_bytes()
    code = main(["sweep", str(recipe), *GRID_ARGS, "--set", "train.lr=0.01",
                 "--run-dir", str(folder), "-q"])
    assert code == 2 and "another recipe (train.lr" in capsys.readouterr().err
    assert (folder / "sweep.json").read_bytes() == before
    code = main(["sweep", str(recipe), "--param", "distill.temperature=1,2", "--run-dir", str(folder / "reference"), "-q"])
    assert code == 2 and "holds no sweep" in capsys.readouterr().err


def test_the_cli_prints_the_trials_table_and_json(grid, capsys):
    folder, _, _ = grid
    code = main(["sweep", str(folder.parent / "recipe.yaml"), *GRID_ARGS,
                 "--run-dir", str(folder), "--json", "-q"])
    captured = capsys.readouterr()
    assert code == 0 and json.loads(captured.out)["kind"] == "sweep"
    assert "chosen on validation" in captured.err and "best: trial" in captured.err and "val top-1 %" in captured.err


def test_plan_refuses_an_empty_space():
    with pytest.raises(PotstillError, match="at least one --param"):
        plan({}, None, "auto", None)


def test_a_validation_share_that_holds_out_nothing_is_refused(tmp_path, capsys):
    """Stratified by class, 0.001 of digits' training images rounds to no sample in any class: the
    run would have nothing to choose on (it failed deep inside evaluation before)."""
    path = write_recipe(tmp_path, {**digits_recipe(), "data": {"name": "digits", "val_fraction": 0.001}})
    code = main(["distill", str(path), "--run-dir", str(tmp_path / "run"), "-q"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "data.val_fraction 0.001 holds out no sample" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_the_choice_is_called_a_tie_within_validation_noise():
    """Two binomial standard errors at the best's accuracy: on 100 validation samples at 90%, one
    standard error is 3 points; a 2-point lead is a tie, a 7-point lead is clear."""
    from potstill.experiments.sweep_output import selection

    def trial(mean):
        return {"val": {"mean": mean}}

    tie = selection([trial(0.90), trial(0.88)], 100)
    assert tie["standard_error_points"] == pytest.approx(3.0) and tie["verdict"].startswith("a tie")
    assert selection([trial(0.90), trial(0.83)], 100)["verdict"].startswith("clear")
    assert selection([trial(0.90)], 100) is None and selection([trial(0.9), trial(0.8)], None) is None


def test_a_language_model_sweep_shows_perplexity():
    """Rows with test_ppl: the reference keeps perplexity per role, the table's columns are val ppl and
    test ppl (lower first), not top-1."""
    from rich.console import Console

    from potstill.cli.sweep import result_lines, trials_table
    from potstill.experiments.sweep_output import SweepResult, reference_record

    def summary(ppl_alone, ppl_student):
        return {"models": [{"role": "baseline", "test_acc": 0.1, "test_ppl": ppl_alone},
                           {"role": "student", "test_acc": 0.1, "test_ppl": ppl_student}]}

    reference = reference_record([summary(100.0, 90.0), summary(110.0, 96.0)])
    assert reference["baseline_ppl"]["mean"] == pytest.approx(105.0) and reference["student_ppl"]["values"] == [90.0, 96.0]
    payload = {"recipe": "lm", "settings": {"seeds": None, "sampler": "grid"}, "published": None, "best": 1,
               "objective": {"measure": "val_ppl", "direction": "minimize", "split": "validation"}, "reference": reference,
               "selection": None,
               "trials": [{"number": 0, "values": {"distill.loss": "reverse_kl"}, "outcome": "complete",
                           "val": {"mean": 120.0, "std": None}, "test_ppl": {"mean": 118.0, "std": None}},
                          {"number": 1, "values": {"distill.loss": "forward_kl"}, "outcome": "complete",
                           "val": {"mean": 95.0, "std": None}, "test_ppl": {"mean": 93.5, "std": None}}]}
    console = Console(width=200, record=True)
    console.print(trials_table(payload))
    text = console.export_text()
    assert "val ppl" in text and "test ppl" in text and "top-1" not in text
    assert text.index("forward_kl") < text.index("reverse_kl") and "93.50" in text  # lower perplexity first
    lines = result_lines(SweepResult(Path("sweep"), payload["trials"], payload["trials"][1], None, payload))
    reference_line = next(line for line in lines if line.startswith("reference"))
    assert "test perplexity" in reference_line and "distilled 93.00 ± 4.24, student alone 105.00 ± 7.07" in reference_line
