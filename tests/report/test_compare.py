"""`potstill compare`: run, seeds, sweep and search folders in one table with the settings that
differ, as JSON and CSV, and folders that are not runs refused with one line.

The folders are written by hand with known numbers (fast); one test compares two real tiny runs."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest
import yaml

from potstill.cli.main import main
from potstill.report.compare import ROW_FIELDS, compare, recipe_differences
from potstill.report.folders import RunFolder, SeedsFolder, SweepFolder, read_folder
from potstill.report.seeds import aggregate, paired_gain
from tests.conftest import tiny_recipe, write_recipe

ROLE_TITLES = {"teacher": "teacher", "baseline": "student alone", "student": "distilled"}


def model(role: str, test_acc: float, ece: float = 0.05, params: int = 1000, latency: float = 0.5) -> dict:
    return {"role": role, "title": ROLE_TITLES[role], "test_acc": test_acc, "teacher_agreement": None, "ece": ece,
            "params": params, "size_bytes": 4 * params, "latency_batch1_ms": latency, "latency_ms": 2 * latency,
            "train_time_s": 1.0}


def recipe(name: str, seed: int = 0, temperature: float = 4.0, alpha: float = 0.5) -> dict:
    return {"name": name, "seed": seed, "output_dir": f"out_{name}", "student": {"name": "mlp", "args": {"hidden": [16]}},
            "train": {"epochs": 3, "lr": 0.01}, "distill": {"temperature": temperature, "alpha": alpha, "loss_args": {}}}


def write_run(folder: Path, plan: dict, models: list[dict] | None, gain: float | None = None) -> Path:
    """A run folder: recipe.yaml, and summary.json unless `models` is None (an unfinished run)."""
    folder.mkdir(parents=True)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    if models is not None:
        summary = {"models": models, "final_role": "student"}
        if gain is not None:
            summary["distillation_gain_points"] = gain
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def full_run(folder: Path, plan: dict, student: float, baseline: float = 0.80) -> Path:
    return write_run(folder, plan, [model("teacher", 0.95, params=5000), model("baseline", baseline),
                                    model("student", student, ece=0.03)], gain=round(100 * (student - baseline), 3))


def write_seeds(folder: Path, plan: dict, results: dict[int, tuple[float, float]]) -> Path:
    """A seeds folder: seed<N>/ per seed {seed: (student top-1, alone top-1)} and seeds.json."""
    summaries = {}
    for seed, (student, baseline) in results.items():
        run = full_run(folder / f"seed{seed}", {**plan, "seed": seed}, student, baseline)
        summaries[seed] = json.loads((run / "summary.json").read_text())
    (folder / "seeds.json").write_text(json.dumps(aggregate(summaries)))
    return folder


def write_sweep(folder: Path) -> Path:
    """A sweep of distill.temperature: trial 0 (T=1) and 2 (T=8, chosen) complete, 1 pruned; the
    trials trained no student alone, their gain is against the reference run's."""
    full_run(folder / "reference", recipe("sweep_ref"), 0.84)
    write_run(folder / "trials" / "trial_0000", recipe("trial_0", temperature=1.0), [model("student", 0.82)])
    write_run(folder / "trials" / "trial_0002", recipe("trial_2", temperature=8.0), [model("student", 0.86)])
    trials = [
        {"number": 0, "outcome": "complete", "values": {"distill.temperature": 1}, "folder": "trials/trial_0000",
         "gain": {"values": [2.0], "mean": 2.0, "std": None}},
        {"number": 1, "outcome": "pruned", "values": {"distill.temperature": 2}, "folder": "trials/trial_0001"},
        {"number": 2, "outcome": "complete", "values": {"distill.temperature": 8}, "folder": "trials/trial_0002",
         "gain": {"values": [6.0], "mean": 6.0, "std": None}},
    ]
    record = {"kind": "sweep", "recipe": "demo", "objective": {"measure": "val_acc", "direction": "maximize"},
              "reference": {"folder": "reference"}, "best": 2, "best_recipe": "best.yaml", "trials": trials}
    (folder / "sweep.json").write_text(json.dumps(record))
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe("demo")))
    return folder


@pytest.fixture
def folders(tmp_path) -> dict[str, Path]:
    return {
        "t4": full_run(tmp_path / "t4", recipe("t4", seed=0), 0.83),
        "t2": full_run(tmp_path / "t2", recipe("t2", seed=1, temperature=2.0), 0.85),
        "seeds": write_seeds(tmp_path / "seeds", recipe("s", alpha=0.9), {0: (0.84, 0.80), 1: (0.86, 0.84)}),
        "sweep": write_sweep(tmp_path / "sweep"),
    }


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rows_of(result: dict, label: str) -> dict[str, dict]:
    return {row["role"]: row for row in result["rows"] if row["run"] == label}


def test_two_runs_side_by_side_with_only_the_differing_setting(folders, capsys):
    result = compare([folders["t4"], folders["t2"]])
    assert [run["label"] for run in result["runs"]] == ["t4", "t2"]
    assert [run["seeds"] for run in result["runs"]] == [[0], [1]]
    t4 = rows_of(result, "t4")
    assert list(t4) == ["teacher", "baseline", "student"]
    assert t4["student"]["test_acc"] == pytest.approx(0.83) and t4["student"]["test_acc_std"] is None
    assert t4["student"]["gain_points"] == pytest.approx(3.0)
    assert t4["teacher"]["gain_points"] is None and t4["baseline"]["gain_points"] is None
    assert t4["teacher"]["params"] == 5000 and t4["student"]["latency_batch1_ms"] == 0.5
    # name, output_dir and seed differ too, but every run has its own
    assert result["differences"] == {"distill.temperature": {"t4": 4.0, "t2": 2.0}}
    code, out, err = run_cli(capsys, "compare", folders["t4"], folders["t2"])
    assert code == 0 and err == ""
    assert "83.00" in out and "85.00" in out and "+3.00" in out and "+5.00" in out and "95.00" in out
    assert "settings that differ" in out and "distill.temperature" in out and "output_dir" not in out


def test_a_seeds_folder_is_one_run_with_mean_and_std_and_the_paired_gain(folders, capsys):
    result = compare([folders["t4"], folders["seeds"]])
    run = result["runs"][1]
    assert run["label"] == "seeds" and run["kind"] == "seeds" and run["seeds"] == [0, 1]
    student = rows_of(result, "seeds")["student"]
    assert student["seeds"] == 2
    assert student["test_acc"] == pytest.approx(0.85) and student["test_acc_std"] == pytest.approx(0.02 / math.sqrt(2))
    assert student["gain_points"] == pytest.approx(3.0) and student["gain_points_std"] == pytest.approx(math.sqrt(2))
    assert run["gain"] == paired_gain([4.0, 2.0], "top-1 points", 1)
    assert result["differences"] == {"distill.alpha": {"t4": 0.5, "seeds": 0.9}}  # the seeds' own seed left out
    code, out, _ = run_cli(capsys, "compare", folders["t4"], folders["seeds"])
    assert code == 0 and "85.00 ± 1.41" in out and "+3.00 ± 1.41" in out and "0 1" in out
    assert f"seeds: {run['gain']['verdict'][:40]}" in out


def test_a_sweep_gives_its_reference_and_each_complete_trial_the_best_marked(folders, capsys):
    result = compare([folders["sweep"]])
    assert [(run["label"], run["kind"], run["best"]) for run in result["runs"]] == [
        ("sweep reference", "sweep reference", False), ("sweep trial 0", "sweep trial", False),
        ("sweep trial 2", "sweep trial", True)]
    assert result["runs"][2]["values"] == {"distill.temperature": 8}
    trial = rows_of(result, "sweep trial 2")
    assert list(trial) == ["student"] and trial["student"]["test_acc"] == pytest.approx(0.86)
    assert trial["student"]["gain_points"] == 6.0  # the sweep's, against the reference's student alone
    assert result["differences"] == {"distill.temperature": {"sweep reference": 4.0, "sweep trial 0": 1.0,
                                                             "sweep trial 2": 8.0}}
    code, out, _ = run_cli(capsys, "compare", folders["sweep"])
    assert code == 0 and "sweep trial 2 *" in out and "trial 1" not in out and "+6.00" in out


def test_a_search_folder_gives_each_complete_trial(tmp_path):
    write_run(tmp_path / "search" / "trials" / "trial_0", recipe("a", alpha=0.1), [model("student", 0.7, params=300)])
    write_run(tmp_path / "search" / "trials" / "trial_1", recipe("b", alpha=0.2), [model("student", 0.75, params=600)])
    trials = [{"number": 0, "outcome": "complete", "state": "complete", "values": {"student.args.hidden": [16]},
               "folder": "trials/trial_0"},
              {"number": 1, "outcome": "complete", "state": "complete", "values": {"student.args.hidden": [32]},
               "folder": "trials/trial_1"},
              {"number": 2, "outcome": "over_budget", "state": "pruned", "values": {}, "folder": "trials/trial_2"}]
    (tmp_path / "search" / "search.json").write_text(json.dumps({"best": 1, "front": [1, 0], "trials": trials}))
    found = read_folder(tmp_path / "search")
    assert isinstance(found, SweepFolder) and found.kind == "search" and found.best == 1
    result = compare([tmp_path / "search"])
    assert [(run["label"], run["best"]) for run in result["runs"]] == [("search trial 0", False), ("search trial 1", True)]
    assert [row["params"] for row in result["rows"]] == [300, 600]


def test_a_sweep_record_with_states_and_the_best_trial_in_full_is_read_too(folders):
    """sweep.json as first specified: "state" instead of "outcome", "best" the whole trial."""
    path = folders["sweep"] / "sweep.json"
    record = json.loads(path.read_text())
    for trial in record["trials"]:
        trial["state"] = trial.pop("outcome")
    record["best"] = record["trials"][0]
    path.write_text(json.dumps(record))
    result = compare([folders["sweep"]])
    assert [(run["label"], run["best"]) for run in result["runs"]] == [
        ("sweep reference", False), ("sweep trial 0", True), ("sweep trial 2", False)]


def test_language_model_runs_show_perplexity_and_the_seeds_verdict_goes_by_it(tmp_path, capsys):
    folder = tmp_path / "lm_seeds"
    summaries = {}
    for seed, (student_ppl, change) in {0: (9.0, -10.0), 1: (9.2, -8.0)}.items():
        rows = [{**model("baseline", 0.30), "test_ppl": 10.0}, {**model("student", 0.31), "test_ppl": student_ppl}]
        write_run(folder / f"seed{seed}", recipe("lm", seed=seed), rows, gain=1.0)
        summary = json.loads((folder / f"seed{seed}" / "summary.json").read_text()) | {"perplexity_change_pct": change}
        (folder / f"seed{seed}" / "summary.json").write_text(json.dumps(summary))
        summaries[seed] = summary
    (folder / "seeds.json").write_text(json.dumps(aggregate(summaries)))
    result = compare([folder])
    student = rows_of(result, "lm_seeds")["student"]
    assert student["test_ppl"] == pytest.approx(9.1) and student["ppl_change_pct"] == pytest.approx(-9.0)
    assert result["runs"][0]["gain"] == paired_gain([-10.0, -8.0], "perplexity change %", -1)
    code, out, _ = run_cli(capsys, "compare", folder)
    assert code == 0 and "ppl change %" in out and "9.10 ± 0.14" in out and "-9.00 ± 1.41" in out


def test_read_folder_tells_the_kinds_apart(folders):
    assert isinstance(read_folder(folders["t4"]), RunFolder)
    seeds = read_folder(folders["seeds"])
    assert isinstance(seeds, SeedsFolder) and list(seeds.runs) == [0, 1] and seeds.aggregate is not None
    sweep = read_folder(folders["sweep"])
    assert isinstance(sweep, SweepFolder) and [t.outcome for t in sweep.trials] == ["complete", "pruned", "complete"]
    assert sweep.trials[1].folder is None and isinstance(sweep.reference, RunFolder)


def test_json_holds_runs_rows_and_differences_and_nothing_else_on_stdout(folders, capsys):
    code, out, err = run_cli(capsys, "compare", folders["t4"], folders["t2"], "--json")
    assert code == 0
    assert json.loads(out) == json.loads(json.dumps(compare([folders["t4"], folders["t2"]])))
    assert "settings that differ" in err  # the tables went to stderr


def test_csv_has_one_line_per_run_and_model(folders, tmp_path, capsys):
    target = tmp_path / "out" / "compare.csv"
    code, out, err = run_cli(capsys, "compare", folders["t4"], folders["seeds"], "--csv", target)
    assert code == 0 and "83.00" in out and f"rows: {target}" in err
    with target.open() as stream:
        reader = csv.DictReader(stream)
        assert reader.fieldnames == ROW_FIELDS
        rows = list(reader)
    assert [(row["run"], row["role"]) for row in rows] == [(run, role) for run in ("t4", "seeds")
                                                           for role in ("teacher", "baseline", "student")]
    assert float(rows[2]["test_acc"]) == pytest.approx(0.83) and rows[2]["test_acc_std"] == ""
    assert float(rows[5]["test_acc_std"]) == pytest.approx(0.02 / math.sqrt(2)) and float(rows[5]["gain_points"]) == 3.0
    assert not list(target.parent.glob(".*.tmp"))  # written atomically, nothing left behind


def test_unfinished_runs_are_shown_as_unfinished(tmp_path, folders, capsys):
    write_run(tmp_path / "running", recipe("running", temperature=3.0), None)
    (tmp_path / "half_seeds").mkdir()
    write_run(tmp_path / "half_seeds" / "seed0", recipe("h"), [model("student", 0.5)])
    result = compare([folders["t4"], tmp_path / "running", tmp_path / "half_seeds"])
    assert [run["status"] for run in result["runs"]] == ["finished", "unfinished", "unfinished"]
    assert {row["run"] for row in result["rows"]} == {"t4"}
    assert result["differences"] == {"distill.temperature": {"t4": 4.0, "running": 3.0, "half_seeds": 4.0}}
    code, out, _ = run_cli(capsys, "compare", folders["t4"], tmp_path / "running")
    assert code == 0 and "unfinished" in out


def test_folders_with_the_same_name_are_labelled_by_the_path_given(tmp_path):
    first = full_run(tmp_path / "a" / "run", recipe("x"), 0.81)
    second = full_run(tmp_path / "b" / "run", recipe("x", temperature=1.0), 0.82)
    result = compare([first, second])
    assert [run["label"] for run in result["runs"]] == [str(first), str(second)]


def test_a_narrow_console_gets_lines_with_every_number(folders, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "50")
    code, out, _ = run_cli(capsys, "compare", folders["t4"], folders["seeds"])
    assert code == 0 and "…" not in out
    assert "distilled: top-1 % 85.00 ± 1.41, gain pts +3.00 ± 1.41" in out
    assert re.search(r"^run +distill.alpha *$", out, re.MULTILINE) and re.search(r"^seeds +0.9 *$", out, re.MULTILINE)  # a row per run
    monkeypatch.setenv("COLUMNS", "16")
    _, out, _ = run_cli(capsys, "compare", folders["t4"], folders["seeds"])
    assert re.search(r"^distill.alpha:\n  0.5 +t4\n  0.9 +seeds$", out, re.MULTILINE)  # too narrow for any table


def test_the_recipe_diff_compares_values_not_spellings():
    recipes = {"a": {"x": {"t": 4, "flag": True, "list": [1, 2], "only_a": 1}},
               "b": {"x": {"t": 4.0, "flag": 1, "list": [1, 2]}}}
    assert recipe_differences(recipes) == {"x.flag": {"a": True, "b": 1}, "x.only_a": {"a": 1}}
    assert recipe_differences({"a": recipes["a"]}) == {}


def bad_inputs(tmp_path: Path, folders: dict[str, Path]) -> list[tuple[list, str]]:
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file.txt").write_text("x")
    (tmp_path / "parent").mkdir()
    full_run(tmp_path / "parent" / "inner", recipe("inner"), 0.8)
    damaged = full_run(tmp_path / "damaged", recipe("d"), 0.8)
    (damaged / "summary.json").write_text('{"models": [')
    no_recipe = full_run(tmp_path / "no_recipe", recipe("n"), 0.8)
    (no_recipe / "recipe.yaml").unlink()
    gone = write_seeds(tmp_path / "gone", recipe("g"), {0: (0.8, 0.8), 1: (0.8, 0.8)})
    (gone / "seed1" / "summary.json").unlink()
    return [
        ([tmp_path / "missing"], "does not exist"),
        ([tmp_path / "a_file.txt"], "is a file, not a run folder"),
        ([tmp_path / "empty"], "is not a run folder: it holds no recipe.yaml"),
        ([tmp_path / "parent"], "its subfolders inner are: give those"),
        ([damaged], "summary.json is not valid JSON"),
        ([no_recipe], "has no recipe.yaml"),
        ([gone], "names seed 1"),
        ([folders["t4"], str(folders["t4"]) + "/"], "is given twice"),
    ]


def test_folders_that_are_not_runs_are_refused_with_one_line(tmp_path, folders, capsys):
    for argv, fragment in bad_inputs(tmp_path, folders):
        code, out, err = run_cli(capsys, "compare", *argv)
        assert code == 2 and out == "", (argv, out)
        assert err.startswith("potstill: error: ") and err.count("\n") == 1 and fragment in err, (fragment, err)
        assert str(argv[-1]).rstrip("/") in err  # names the folder


def test_a_csv_target_that_cannot_be_written_is_one_line(folders, tmp_path, capsys):
    code, _, err = run_cli(capsys, "compare", folders["t4"], "--csv", tmp_path)  # a folder, not a file
    assert code == 2 and err.startswith("potstill: error: cannot write") and err.count("\n") == 1


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory) -> list[Path]:
    """Two real tiny runs (one epoch each) that differ in distill.temperature."""
    folder = tmp_path_factory.mktemp("real")
    plan = write_recipe(folder, tiny_recipe(train__epochs=1, teacher__train__epochs=1))
    runs = [folder / "t4", folder / "t2"]
    assert main(["distill", str(plan), "--run-dir", str(runs[0]), "--quiet"]) == 0
    assert main(["distill", str(plan), "--run-dir", str(runs[1]), "--set", "distill.temperature=2", "--quiet"]) == 0
    return runs


def test_two_real_runs(real_runs, capsys):
    result = compare(real_runs)
    assert result["differences"] == {"distill.temperature": {"t4": 4.0, "t2": 2.0}}
    for run in real_runs:
        summary = json.loads((run / "summary.json").read_text())
        rows = rows_of(result, run.name)
        assert list(rows) == [row["role"] for row in summary["models"]]
        for row in summary["models"]:
            assert rows[row["role"]]["test_acc"] == row["test_acc"]
            assert rows[row["role"]]["latency_batch1_ms"] == row["latency_batch1_ms"]
        assert rows["student"]["gain_points"] == summary["distillation_gain_points"]
    code, out, _ = run_cli(capsys, "compare", *real_runs)
    assert code == 0 and "distill.temperature" in out
