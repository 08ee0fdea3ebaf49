"""The report's charts draw the numbers they are given: each test reads a chart's data back from
its matplotlib artists (bar heights, line points, scatter offsets), and report/svg.py's inline SVG
is checked for what a page needs (unique ids, no web address)."""

from __future__ import annotations

import json
import math
import re

import pytest

from potstill.report import plots
from potstill.report.report_inputs import gather
from potstill.report.svg import clean_svg, figure_style, inline_svg, new_figure
from tests.report.html_runs import MODELS, RELIABILITY, records, write_run, write_seeds


@pytest.fixture(autouse=True)
def style():
    with figure_style():
        yield


def only_axes(figure) -> list:
    return [axes for axes in figure.axes if axes.get_visible()]


def test_learning_curves_draw_each_weighted_term_and_the_total_per_stage(tmp_path):
    (run,) = gather([write_run(tmp_path / "run")])
    panels = only_axes(plots.learning_curves(run))
    assert [axes.get_title() for axes in panels] == ["teacher", "student alone (baseline)", "distilled (student)"]
    student = {line.get_label(): list(line.get_ydata()) for line in panels[2].get_lines()}
    assert list(student) == ["ce", "kd", "total"]  # fitnet: weight 0 all stage, nothing to draw
    logged = [record for record in records() if record["stage"] == "student"]
    assert student["kd"] == pytest.approx([record["terms"]["kd"] for record in logged])
    assert student["total"] == pytest.approx([record["loss"] for record in logged])
    assert panels[2].get_yscale() == "log"  # 0.17 .. 4.5: more than ten times
    assert panels[0].get_yscale() == "linear"  # 0.67 .. 2


def test_a_term_off_for_some_epochs_leaves_a_gap(tmp_path):
    run = write_run(tmp_path / "run")
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    del logged[-2]["terms"]["kd"]  # the student's epoch 2: kd's weight was 0 (a warm-up)
    (run / "metrics.jsonl").write_text("".join(json.dumps(record) + "\n" for record in logged))
    (reported,) = gather([run])
    line = next(line for line in only_axes(plots.learning_curves(reported))[2].get_lines() if line.get_label() == "kd")
    assert line.get_ydata()[0] == pytest.approx(4.0) and math.isnan(line.get_ydata()[1])


def test_records_without_terms_draw_their_loss(tmp_path):
    run = write_run(tmp_path / "run")
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (run / "metrics.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k not in ("terms", "weights")}) + "\n"
                                               for r in logged))
    (reported,) = gather([run])
    lines = only_axes(plots.learning_curves(reported))[2].get_lines()
    assert [line.get_label() for line in lines] == ["loss"]
    assert list(lines[0].get_ydata()) == pytest.approx([r["loss"] for r in logged if r["stage"] == "student"])


def test_held_out_curves_of_one_run_are_its_test_top1_per_stage(tmp_path):
    (run,) = gather([write_run(tmp_path / "run")])
    axes = plots.held_out_curves([run], "title").axes[0]
    lines = {line.get_label(): list(line.get_ydata()) for line in axes.get_lines()}
    assert list(lines) == ["teacher", "student alone", "distilled"]
    assert lines["distilled"] == pytest.approx([100 * r["test_acc"] for r in records() if r["stage"] == "student"])
    assert len(axes.collections) == 0  # one run: no band


def test_held_out_curves_over_seeds_are_the_mean_with_a_band_of_one_std(tmp_path):
    (seeds,) = gather([write_seeds(tmp_path / "seeds", (0, 1, 2))])  # seed s shifts every test top-1 by s points
    axes = plots.held_out_curves(seeds.runs, "title").axes[0]
    teacher = next(line for line in axes.get_lines() if line.get_label() == "teacher")
    assert list(teacher.get_ydata()) == pytest.approx([71.0, 81.0, 91.0])  # 60 + 10 epoch, +0/+1/+2
    band = axes.collections[0].get_paths()[0].vertices[:, 1]
    assert min(band) == pytest.approx(70.0) and max(band) == pytest.approx(92.0)  # mean ± 1 (the std of 0, 1, 2)


def test_language_model_curves_are_perplexity(tmp_path):
    (run,) = gather([write_run(tmp_path / "lm", language_model=True)])
    axes = plots.held_out_curves([run], "title").axes[0]
    assert axes.get_ylabel() == "test perplexity (lower is better)"
    assert list(axes.get_lines()[0].get_ydata()) == pytest.approx([200.0, 100.0, 200.0 / 3])


def test_reliability_bars_are_each_bins_accuracy_and_its_gap_to_the_confidence(tmp_path):
    (run,) = gather([write_run(tmp_path / "run")])
    panels = only_axes(plots.reliability_diagrams(run.rows, language_model=False))
    assert [axes.get_title() for axes in panels] == ["teacher: ECE 2.00%", "student alone: ECE 6.00%", "distilled: ECE 4.00%"]
    heights = [patch.get_height() for patch in panels[0].patches]
    filled = [(accuracy, confidence - accuracy) for accuracy, confidence in zip(RELIABILITY["accuracy"], RELIABILITY["confidence"])
              if accuracy is not None]  # the empty first bin draws nothing
    assert heights == pytest.approx([value for pair in filled for value in pair])
    assert [patch.get_x() for patch in panels[0].patches][::2] == pytest.approx([0.25, 0.5, 0.75])


def test_the_class_difference_is_distilled_minus_alone_in_points(tmp_path):
    (run,) = gather([write_run(tmp_path / "run")])
    axes = plots.class_difference(run.row("student"), run.row("baseline")).axes[0]
    bars = [(round(patch.get_x() + patch.get_width() / 2, 6), round(patch.get_height(), 6)) for patch in axes.patches]
    assert bars == [(0, 10.0), (1, -5.0), (3, 10.0)]  # class 2 has no test sample
    assert "2 better, 1 worse of 3 classes" in [text.get_text() for text in axes.texts]


def test_the_tradeoff_has_one_point_per_model_and_run(tmp_path):
    runs = gather([write_run(tmp_path / "a"), write_run(tmp_path / "b", temperature=2.0)])
    figure = plots.tradeoff(runs, "params", "parameters")
    points = [(float(x), round(float(y), 6)) for collection in figure.axes[0].collections for x, y in collection.get_offsets()]
    expected = [(params, round(100 * accuracy, 6)) for accuracy, params, *_ in MODELS.values()]
    assert sorted(points) == sorted(expected * 2)
    assert figure.axes[0].get_xscale() == "log"
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["a", "b"]
    assert [text.get_text() for text in figure.legends[1].get_texts()] == ["teacher", "student alone", "distilled"]


def test_charts_without_their_data_are_none(tmp_path):
    (old,) = gather([write_run(tmp_path / "old", measured=False)])
    assert plots.reliability_diagrams(old.rows, language_model=False) is None
    assert plots.class_difference(old.row("student"), old.row("baseline")) is None
    (running,) = gather([write_run(tmp_path / "running", finished=False)])
    assert plots.tradeoff([running], "params", "parameters") is None


def test_inline_svg_has_prefixed_ids_only_where_referenced_and_no_web_address():
    texts = []
    for prefix in ("f1", "f2"):
        figure, grid = new_figure(3, 2)
        grid[0][0].plot([1, 2, 3], [1, 4, 9], marker="o")  # markers and clip paths: referenced ids
        texts.append(inline_svg(figure, prefix))
    first, second = (set(re.findall(r'\sid="([^"]+)"', text)) for text in texts)
    assert first and second and not first & second
    assert all(name.startswith("f1-") for name in first)
    for text in texts:
        assert text.startswith("<svg") and "http" not in text and "<metadata" not in text and "xlink:" not in text
        references = set(re.findall(r'(?:href="#|url\(#)([^")]+)', text))
        assert references == set(re.findall(r'\sid="([^"]+)"', text))  # every id is used, every use defined


def test_clean_svg_keeps_only_the_element():
    text = ('<?xml version="1.0"?>\n<!DOCTYPE svg>\n<svg xmlns:xlink="http://www.w3.org/1999/xlink" '
            'xmlns="http://www.w3.org/2000/svg"><metadata><rdf:RDF/></metadata>'
            '<g id="figure_1">\n  <path id="m1" d=""/>\n  <use xlink:href="#m1"/>\n <text>a b</text></g></svg>')
    assert clean_svg(text, "f9") == '<svg><g><path id="f9-m1" d=""/><use href="#f9-m1"/><text>a b</text></g></svg>'
