"""`potstill metrics RUN [--csv FILE]` and the CLI's refusals of a bad `logging` section: the CSV
holds metrics.jsonl's numbers exactly, for finished, unfinished and old runs; mistakes exit 2 with
one line, before a run folder is made."""

from __future__ import annotations

import csv
import io
import json
import sys
from importlib.util import find_spec

import pytest

from potstill.cli.main import main
from tests.cli.test_cli import assert_user_error, run_cli
from tests.conftest import tiny_recipe, write_recipe


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("metrics")
    recipe = write_recipe(folder, tiny_recipe(train__epochs=2))
    assert main(["distill", str(recipe), "--run-dir", str(folder / "run"), "--quiet"]) == 0
    return folder / "run"


def table(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def cell(value) -> str:
    return "" if value is None else str(value)


def test_the_csv_holds_every_record_and_field_exactly(finished_run, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "metrics", str(finished_run), "--csv", str(tmp_path / "out" / "metrics.csv"))
    assert code == 0 and out == ""
    rows = table((tmp_path / "out" / "metrics.csv").read_text())
    records = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    assert [(row["stage"], int(row["epoch"])) for row in rows] == [(r["stage"], r["epoch"]) for r in records]
    for row, record in zip(rows, records):
        for key, value in record.items():
            if key == "terms":
                for name, term in value.items():
                    assert float(row[f"weighted/{name}"]) == term
                    assert float(row[f"term/{name}"]) == term / record["weights"][name]
            elif key == "weights":
                assert all(float(row[f"weight/{name}"]) == weight for name, weight in value.items())
            elif key not in ("stage", "epoch"):
                assert row[key] == cell(value), key  # floats as Python writes them: read back bit for bit
    student = [row for row in rows if row["stage"] == "student"]
    teacher = [row for row in rows if row["stage"] == "teacher"]
    assert student[0]["weighted/kd"] != "" and teacher[0]["weighted/kd"] == ""  # a field a record lacks: empty


def test_without_csv_the_table_goes_to_stdout(finished_run, capsys):
    code, out, err = run_cli(capsys, "metrics", str(finished_run))
    assert code == 0 and err == ""
    rows = table(out)
    assert out.startswith("stage,epoch,loss,") and len(rows) == 2 + 2 + 2


def test_an_unfinished_old_run_is_read_as_it_is(tmp_path, capsys):
    """A run killed mid-write (last line cut short) by a potstill that logged no weights."""
    lines = [{"stage": "teacher", "epoch": 1, "loss": 0.5, "terms": {"ce": 0.5}, "lr": 0.1, "train_acc": 0.9,
              "test_acc": 0.8, "time_s": 1.0, "warnings": ["kd dominates"]}]
    (tmp_path / "metrics.jsonl").write_text(json.dumps(lines[0]) + "\n" + '{"stage": "teacher", "epo')
    code, out, _ = run_cli(capsys, "metrics", str(tmp_path))
    (row,) = table(out)
    assert code == 0 and row["weighted/ce"] == "0.5" and "term/ce" not in row and row["warnings"] == "kd dominates"


def test_a_folder_without_metrics_is_one_line(tmp_path, capsys):
    assert_user_error(capsys, ["metrics", str(tmp_path)], "holds no metrics.jsonl")


def test_csv_into_a_folder_is_one_line(finished_run, capsys, tmp_path):
    assert_user_error(capsys, ["metrics", str(finished_run), "--csv", str(tmp_path)], "is a folder")


@pytest.mark.parametrize("override,fragment", [
    ("logging.tensorbord=true", "tensorbord"),
    ("logging.tensorboard=3", "logging.tensorboard"),
    ("logging.mlflow.experiment=''", "experiment"),
    pytest.param("logging.mlflow.tracking_uri=nosuchscheme://host", "cannot use nosuchscheme://host",
                 marks=pytest.mark.skipif(find_spec("mlflow") is None, reason="pip install 'potstill[tracking]'")),
])
def test_a_bad_logging_section_is_one_line_and_writes_nothing(tmp_path, capsys, override, fragment):
    recipe = write_recipe(tmp_path, tiny_recipe())
    assert_user_error(capsys, ["distill", str(recipe), "--run-dir", str(tmp_path / "run"), "--set", override], fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("module,key", [("tensorboard", "logging.tensorboard=true"), ("mlflow", "logging.mlflow={}")])
def test_a_missing_tracking_package_is_one_line_naming_the_install(tmp_path, capsys, monkeypatch, module, key):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError
    recipe = write_recipe(tmp_path, tiny_recipe())
    assert_user_error(capsys, ["distill", str(recipe), "--run-dir", str(tmp_path / "run"), "--set", key],
                      f"needs the {module} package", "pip install 'potstill[tracking]'")
    assert not (tmp_path / "run").exists()
