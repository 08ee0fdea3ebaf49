"""`potstill report RUN ... -o report.html`: one self-contained page with tables and charts.

Most tests report run folders written by hand with known numbers (tests/report/html_runs.py); one
reports a real tiny `potstill distill` run on the digits data. The charts' contents are checked in
test_report_plots.py, the page as a browser draws it in test_report_browser.py."""

from __future__ import annotations

import json
import os
import re
import sys
from html import escape
from pathlib import Path

import pytest

from potstill.cli.main import main
from potstill.report.html import write_report
from tests.report.html_runs import MODELS, summary, tables, write_run, write_seeds

FIGURE = '<figure class="plot">'
DEMO = Path(__file__).parents[2] / "recipes" / "digits" / "demo.yaml"


def page(folders, tmp_path: Path) -> str:
    return write_report(folders, tmp_path / "report.html").read_text()


def models_table(text: str) -> list[dict[str, str]]:
    """The page's first table (a run's models) as one {header: cell} per model."""
    header, *rows = tables(text)[0]
    return [dict(zip(header, row)) for row in rows]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_page_names_no_web_address_and_its_references_stay_inside(tmp_path):
    """Catches: a CDN script or font, an <img> from the web, matplotlib's metadata and namespace
    URLs, and figures whose clip-path ids collide (a later chart clipped by an earlier one's path)."""
    text = page([write_run(tmp_path / "t4"), write_run(tmp_path / "t2", temperature=2.0)], tmp_path)
    assert not re.search(r"https?://|//[\w.-]+\.\w+/", text)
    assert "<script" not in text and "<link" not in text and "@import" not in text and "<img" not in text
    references = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', text) + re.findall(r"url\(([^)]*)\)", text)
    assert references and all(reference.startswith("#") for reference in references)
    ids = re.findall(r'\sid="([^"]+)"', text)
    assert len(ids) == len(set(ids))
    assert {reference[1:] for reference in references} <= set(ids)


def test_a_run_has_its_four_charts_with_titles_and_captions(tmp_path):
    text = page(write_run(tmp_path / "demo"), tmp_path)
    assert text.count(FIGURE) == 4 == text.count("<svg") == text.count("<figcaption>")
    for title in ("demo: training loss per epoch (weighted terms)", "test top-1 per epoch",
                  "per-class top-1: distilled minus student alone",
                  "teacher: ECE 2.00%", "student alone: ECE 6.00%", "distilled: ECE 4.00%"):
        assert f">{title}<" in text, title
    assert "Across runs" not in text  # one run: nothing to set side by side


def test_the_models_table_shows_summary_json_numbers(tmp_path):
    run = write_run(tmp_path / "run")
    text = page(run, tmp_path)
    rows = json.loads((run / "summary.json").read_text())["models"]
    shown = models_table(text)
    assert [cells["role"] for cells in shown] == ["teacher", "baseline", "student"]
    for cells, row in zip(shown, rows):
        assert cells["model"] == row["title"]
        assert cells["test top-1 %"] == f"{100 * row['test_acc']:.2f}"
        assert cells["ECE %"] == f"{100 * row['ece']:.2f}"
        assert cells["params"] == f"{row['params']:,}"
        assert cells["ms b=1"] == f"{row['latency_batch1_ms']:.3f}"
        assert cells["ms b=128"] == f"{row['latency_ms']:.3f}"
    assert shown[0]["agrees with teacher %"] == "–" and shown[1]["agrees with teacher %"] == "80.00"
    assert "<b>+5.00 points</b>" in text and "10x the final model" in text


def test_the_recipe_settings_are_listed(tmp_path):
    text = page(write_run(tmp_path / "run", temperature=2.5), tmp_path)
    for key, value in (("distill.temperature", "2.5"), ("student.args", "{hidden: [32]}"), ("train.epochs", "3"),
                       ("teacher.model.args", "{channels: [8, 16]}"), ("distill.loss", "kd")):
        assert f"<li><code>{key}</code> {value}</li>" in text, key


def test_an_older_summary_says_how_to_measure_what_it_lacks(tmp_path):
    run = write_run(tmp_path / "old", measured=False)
    text = page(run, tmp_path)
    assert text.count(FIGURE) == 2  # the curves; no reliability, no per-class chart
    assert text.count(f"run <code>potstill eval {run}</code> to measure them") == 2
    assert "ECE 2.00%" not in text


def test_eval_json_fills_in_what_an_older_summary_lacks(tmp_path):
    """`potstill eval RUN` writes eval.json and leaves summary.json as it was: the report takes the
    calibration and per-class numbers from there, and the table still from summary.json."""
    run = write_run(tmp_path / "old", measured=False)
    (run / "eval.json").write_text(json.dumps(summary(measured=True, shift=0.05)))
    text = page(run, tmp_path)
    assert text.count(FIGURE) == 4
    assert "from eval.json, measured by potstill eval" in text and "potstill eval" in text
    assert models_table(text)[0]["test top-1 %"] == f"{100 * MODELS['teacher'][0]:.2f}"


def test_a_language_model_run_is_reported_in_perplexity(tmp_path):
    text = page(write_run(tmp_path / "lm", language_model=True), tmp_path)
    shown = models_table(text)
    assert [cells["test ppl"] for cells in shown] == ["20.000", "80.000", "60.000"]
    assert ">test perplexity per epoch<" in text and ">test perplexity (lower is better)<" in text
    assert "not drawn for a language model" in text
    assert text.count(FIGURE) == 3  # curves, perplexity per epoch, reliability
    assert "<b>-25.00%</b>" in text


def test_an_unfinished_run_shows_the_epochs_it_logged(tmp_path):
    run = write_run(tmp_path / "running", finished=False)
    text = page(run, tmp_path)
    assert "Unfinished" in text and f"potstill distill --resume {run}" in text
    assert text.count(FIGURE) == 2 and tables(text) == []


def test_a_seeds_folder_gives_its_aggregate_a_band_and_each_seed(tmp_path):
    seeds = write_seeds(tmp_path / "seeds", (0, 1, 2))
    aggregate = json.loads((seeds / "seeds.json").read_text())
    text = page(seeds, tmp_path)
    table = next(t for t in tables(text) if t[0][:3] == ["model", "role", "test top-1 %"] and "ECE %" in t[0] and
                 len(t[0]) == 6)
    distilled = next(row for row in table if row[1] == "student")
    measure = next(row for row in aggregate["models"] if row["role"] == "student")["test_acc"]
    assert distilled[2] == f"{100 * measure['mean']:.2f} ± {100 * measure['std']:.2f}" == "76.00 ± 1.00"
    assert escape(aggregate["gain"]["verdict"]) in text
    assert text.count("<details>") == 3 and "seeds/seed2" in text
    assert ">test top-1 per epoch over 3 seed(s)<" in text
    assert 'id="across"' in text  # three seeds are three runs: the size and latency charts
    assert text.count(FIGURE) == 2 + 1 + 3 * 4


def test_a_seeds_folder_still_running_shows_the_seeds_so_far(tmp_path):
    seeds = tmp_path / "seeds"
    write_run(seeds / "seed0", seed=0)
    write_run(seeds / "seed1", seed=1, finished=False)
    text = page(seeds, tmp_path)
    assert "seeds.json not written yet" in text and "(finished: seeds/seed0)" in text
    assert "seeds/seed1 (unfinished)" in text and "the same <code>potstill distill --seeds</code> command again" in text
    assert text.count(FIGURE) == 2 + 1 + 4 + 2  # across runs (seed0's models), the band, seed0, seed1's curves


def test_several_runs_get_size_and_latency_charts_and_the_settings_that_differ(tmp_path):
    text = page([write_run(tmp_path / "t4"), write_run(tmp_path / "t2", temperature=2.0)], tmp_path)
    assert ">test top-1 % against parameters<" in text and ">test top-1 % against CPU latency at batch 1, ms<" in text
    assert text.count(FIGURE) == 2 + 2 * 4
    differing = next(t for t in tables(text) if t[0] == ["setting", "t4", "t2"])
    assert differing[1:] == [["distill.temperature", "4.0", "2.0"]]  # seed and name are never listed


def test_folders_with_the_same_name_are_labelled_by_their_paths(tmp_path):
    first, second = write_run(tmp_path / "a" / "run"), write_run(tmp_path / "b" / "run")
    text = page([first, second], tmp_path)
    assert f"<h2>{first}</h2>" in text and f"<h2>{second}</h2>" in text


def test_the_command_writes_the_page_and_prints_its_path(tmp_path, capsys):
    run, target = write_run(tmp_path / "run"), tmp_path / "out" / "page.html"
    target.parent.mkdir()
    code, out, err = run_cli(capsys, "report", str(run), "-o", str(target))
    assert code == 0, err
    assert out.strip() == str(target) and f"-> {target}" in err
    assert target.read_text().count(FIGURE) == 4


def test_an_existing_report_is_replaced_only_by_a_whole_page(tmp_path, capsys):
    run, target = write_run(tmp_path / "run"), tmp_path / "report.html"
    target.write_text("an earlier report")
    assert run_cli(capsys, "report", str(run), "-o", str(target), "-q")[0] == 0
    text = target.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.endswith("</html>\n")
    assert sorted(os.listdir(tmp_path)) == ["report.html", "run"]  # no temporary file left behind
    kept = target.read_bytes()
    (tmp_path / "plain").mkdir()
    assert run_cli(capsys, "report", str(run), str(tmp_path / "plain"), "-o", str(target))[0] == 2
    assert target.read_bytes() == kept


def make_bad(kind: str, tmp_path: Path) -> tuple[list[str], str]:
    """The arguments of a refused report and a fragment of its error line."""
    run = write_run(tmp_path / "run")
    if kind == "plain folder":
        (tmp_path / "plain").mkdir()
        return [str(tmp_path / "plain")], f"{tmp_path / 'plain'} is not a run folder"
    if kind == "summary without recipe":
        (tmp_path / "loose").mkdir()
        (tmp_path / "loose" / "summary.json").write_text(json.dumps(summary()))
        return [str(tmp_path / "loose")], f"run folder {tmp_path / 'loose'} has no recipe.yaml"
    if kind == "no metrics":
        (run / "metrics.jsonl").unlink()
        return [str(run)], f"run folder {run} has no metrics.jsonl"
    if kind == "empty metrics":
        (run / "metrics.jsonl").write_text("")
        return [str(run)], f"{run / 'metrics.jsonl'} holds no epoch records"
    if kind == "missing folder":
        return [str(tmp_path / "nowhere")], f"{tmp_path / 'nowhere'} does not exist"
    if kind == "sweep":
        (tmp_path / "sweep").mkdir()
        (tmp_path / "sweep" / "sweep.json").write_text(json.dumps({"trials": []}))
        return [str(tmp_path / "sweep")], "is a sweep folder; report its runs instead"
    if kind == "twice":
        return [str(run), str(run)], "is given twice"
    if kind == "missing output folder":
        return [str(run), "-o", str(tmp_path / "no" / "report.html")], f"its folder {tmp_path / 'no'} does not exist"
    assert kind == "output is a folder"
    return [str(run), "-o", str(tmp_path)], f"-o {tmp_path} is a folder"


@pytest.mark.parametrize("kind", ["plain folder", "summary without recipe", "no metrics", "empty metrics", "missing folder",
                                  "sweep", "twice", "missing output folder", "output is a folder"])
def test_what_cannot_be_reported_is_refused_with_one_line(kind, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, fragment = make_bad(kind, tmp_path)
    code, out, err = run_cli(capsys, "report", *argv)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("potstill: error: ") and fragment in lines[0], err
    assert not (tmp_path / "report.html").exists()


def test_without_matplotlib_the_error_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    code, _, err = run_cli(capsys, "report", str(write_run(tmp_path / "run")), "-o", str(tmp_path / "r.html"))
    assert code == 2 and "pip install 'potstill[report]'" in err and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()


def test_a_real_distill_run_is_reported(tmp_path, capsys):
    """End to end: a tiny real run on the digits data measures calibration and per-class top-1
    into summary.json, and the page shows all four charts and the summary's numbers."""
    run = tmp_path / "demo"
    code, _, err = run_cli(capsys, "distill", str(DEMO), "--run-dir", str(run), "--quiet",
                           "--set", "train.epochs=2", "--set", "teacher.train.epochs=1")
    assert code == 0, err
    rows = json.loads((run / "summary.json").read_text())["models"]
    assert all(len(row["class_acc"]) == 10 and sum(row["reliability"]["count"]) == 359 for row in rows)
    code, _, err = run_cli(capsys, "report", str(run), "-o", str(tmp_path / "report.html"))
    assert code == 0, err
    text = (tmp_path / "report.html").read_text()
    assert text.count(FIGURE) == 4 and not re.search(r"https?://", text)
    for cells, row in zip(models_table(text), rows):
        assert (cells["role"], cells["test top-1 %"]) == (row["role"], f"{100 * row['test_acc']:.2f}")
        assert cells["ECE %"] == f"{100 * row['ece']:.2f}" and cells["params"] == f"{row['params']:,}"
