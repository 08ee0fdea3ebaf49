"""Output fit for logs and CI: piped (capsys is not a terminal), in 80 columns or fewer, --quiet
and --json. No number may be cut short; stdout holds results only."""

import json
import re

import pytest
from rich.console import Console

from potstill.cli.main import main
from potstill.engine.progress import Reporter
from tests.conftest import tiny_recipe, write_recipe


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("output")
    recipe = write_recipe(folder, tiny_recipe(refine__epochs=1, report__latency_repeats=3))
    assert main(["distill", str(recipe), "--run-dir", str(folder / "run"), "--quiet"]) == 0
    return folder / "run"


def run_cli(capsys, *argv):
    capsys.readouterr()
    code = main(list(map(str, argv)))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ms(value):
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def shown_numbers(summary):
    """Every number of summary.json the table shows, as it shows them."""
    numbers = [f"{summary['distillation_gain_points']:+.2f}"]
    for row in summary["models"]:
        numbers += [f"{100 * row['test_acc']:.2f}%", f"{row['ece']:.4f}", f"{row['params']:,}", f"{row['size_bytes'] / 1024:,.0f}K",
                    f"{row['train_time_s']:.1f}"]
        if row["teacher_agreement"] is not None:
            numbers.append(f"{100 * row['teacher_agreement']:.2f}%")
        for prefix in ("latency", "latency_batch1"):
            numbers += [ms(row[f"{prefix}_ms"]), ms(row[f"{prefix}_p10_ms"]), ms(row[f"{prefix}_p90_ms"])]
    return numbers


@pytest.mark.parametrize("columns", ["80", "60", "40", "200", None])
def test_every_number_is_shown_in_full_at_any_width(finished_run, capsys, monkeypatch, columns):
    """Catches: rich squeezing the table into `98.…` when piped or in a narrow terminal, or lines
    wider than COLUMNS."""
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    code, out, _ = run_cli(capsys, "distill", "--resume", finished_run)  # a finished run prints its table
    assert code == 0
    assert "…" not in out
    if columns is not None:
        assert max(len(line) for line in out.splitlines() if not line.startswith("results: ")) <= int(columns), out
    summary = json.loads((finished_run / "summary.json").read_text())
    for number in shown_numbers(summary):
        assert number in out, (number, out)
    assert f"results: {finished_run / 'summary.json'}" in out


def test_json_prints_the_summary_and_nothing_else_on_stdout(tmp_path, capsys):
    """Catches: progress, messages or the table mixed into stdout, so json.loads fails in a script."""
    recipe = write_recipe(tmp_path, tiny_recipe())
    code, out, err = run_cli(capsys, "distill", recipe, "--run-dir", tmp_path / "run", "--json")
    assert code == 0, err
    assert json.loads(out) == json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "did distillation pay off?" in err and "run folder:" in err  # the human part went to stderr


def test_json_of_eval_is_eval_json(finished_run, capsys):
    code, out, _ = run_cli(capsys, "eval", finished_run, "--json", "--quiet")
    assert code == 0
    assert json.loads(out) == json.loads((finished_run / "eval.json").read_text())


def test_quiet_prints_the_result_lines_and_no_progress(tmp_path, capsys):
    """Catches: --quiet silencing the verdict too, so a CI log holds no result at all."""
    recipe = write_recipe(tmp_path, tiny_recipe())
    code, out, err = run_cli(capsys, "distill", recipe, "--run-dir", tmp_path / "run", "--quiet")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "top-1 on the test split: teacher" in out
    assert re.search(r"distillation (helped|did not help): [+-]\d+\.\d\d points", out)
    assert f"{summary['distillation_gain_points']:+.2f}" in out
    assert f"results: {tmp_path / 'run' / 'summary.json'}" in out
    assert "model" not in out.split("\n")[0] and "loss" not in out + err  # no table, no epoch lines
    assert len(out.splitlines()) <= 4


def test_train_titles_a_teacher_only_table_for_what_it_is(tmp_path, capsys):
    recipe = write_recipe(tmp_path, tiny_recipe())
    code, out, err = run_cli(capsys, "train", recipe, "--run-dir", tmp_path / "run")
    assert code == 0, err
    assert "did distillation pay off?" not in out and "the trained teacher" in out
    assert "distillation helped" not in out and "did not help" not in out


def test_model_descriptions_keep_their_brackets_in_80_columns(capsys, monkeypatch):
    """Catches: rich taking `[conv3x3-BN-ReLU-maxpool]` for markup and printing a gap."""
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_cli(capsys, "list", "models")
    assert code == 0
    assert "[conv3x3-BN-ReLU-maxpool]" in out and "ConvNet:  per" not in out
    assert max(len(line) for line in out.splitlines()) <= 80 and "…" not in out


def test_piped_progress_lines_are_never_wrapped(capsys, monkeypatch):
    """A log line per epoch stays one line when stderr is not a terminal, whatever COLUMNS says."""
    monkeypatch.setenv("COLUMNS", "40")
    reporter = Reporter(console=Console(stderr=True))
    line = "student    3/20 " + " ".join(f"term{k} 0.{k}123" for k in range(12))
    reporter.epoch_end(line)
    reporter.message("[not markup] " + line)
    assert capsys.readouterr().err.splitlines() == [line, "[not markup] " + line]
