"""`potstill report RUN [RUN ...] -o report.html`: one self-contained HTML page per set of runs.

    from potstill.report.html import write_report
    write_report(["runs/demo", "runs/demo_seeds"], "report.html")   # -> Path("report.html")

The page holds, per run: its models' table (summary.json), its key recipe settings, the training
loss per stage with every weighted term, test top-1 (perplexity for language models) per epoch and
stage, a reliability diagram per model and the per-class top-1 difference of the distilled model
against the student alone. A seeds folder adds its aggregate (mean ± std, the paired gain and its
verdict) and the test curves as mean ± std over seeds; each seed is a run, folded below. Given
several runs (seeds count), the page starts with accuracy against parameters and against batch-1
latency, one point per model of each run, and the recipe settings that differ.

Self-contained: the plots are inline SVG (report/svg.py), the style sheet is inline, and the page
names no web address, so it opens offline, from an e-mail or an artefact store. The file is
written whole, after every part of the page was built: an existing file at the output path is
replaced only by a complete page.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from potstill import __version__
from potstill.engine.checkpoint import atomic_write
from potstill.errors import PotstillError
from potstill.report import plots
from potstill.report.html_tables import (
    differences_table,
    gain_note,
    models_table,
    seeds_table,
    settings_list,
    summary_notes,
)
from potstill.report.report_inputs import Reported, ReportedRun, ReportedSeeds, every_run, gather
from potstill.report.svg import figure_style, inline_svg

STYLE_SHEET = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; color: #1a1a1a;
       margin: 0; background: #f6f6f4; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 1.6em; margin: 0.2em 0; } h2 { font-size: 1.3em; border-bottom: 2px solid #ddd; padding-bottom: 4px;
margin-top: 2em; } h3 { font-size: 1.05em; margin: 1.4em 0 0.4em; color: #333; }
.lead, .path, .note { color: #555; } .warn { color: #9a4d00; } code { font-size: 0.92em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.4em 0 0.8em; font-size: 0.86em; }
caption { text-align: left; color: #555; padding-bottom: 4px; }
th, td { padding: 4px 8px; border-bottom: 1px solid #e3e3e3; text-align: left; white-space: nowrap; }
th { background: #f0f0ee; font-weight: 600; vertical-align: bottom; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.wide { overflow-x: auto; }
figure { margin: 0.6em 0 1.2em; } figure svg { max-width: 100%; height: auto; display: block; }
figcaption { color: #555; font-size: 0.88em; margin-top: 2px; }
.pair { display: flex; flex-wrap: wrap; gap: 8px 24px; } .pair figure { flex: 1 1 460px; margin-top: 0; }
ul.notes { margin: 0.2em 0 0.6em; padding-left: 1.2em; }
ul.settings { columns: 3 280px; list-style: none; padding: 0; margin: 0.2em 0 0.6em; font-size: 0.9em; }
ul.settings li { break-inside: avoid; padding: 1px 0; overflow-wrap: anywhere; }
ul.settings code { color: #555; margin-right: 0.4em; }
details { border: 1px solid #e3e3e3; border-radius: 4px; padding: 4px 12px; margin: 8px 0; }
summary { cursor: pointer; font-weight: 600; }
"""


def write_report(folders: list[str | Path] | str | Path, output: str | Path) -> Path:
    """Write the HTML report of `folders` (run or seeds folders) to `output`; returns its path.
    PotstillError for a folder that cannot be reported or an output path that cannot be written."""
    path = output_path(output)
    items = gather([folders] if isinstance(folders, (str, Path)) else list(folders))
    page = build_page(items)
    try:
        atomic_write(path, page)
    except OSError as error:
        raise PotstillError(f"cannot write {path}: {error.strerror or error}; choose another -o") from error
    return path


def output_path(output: str | Path) -> Path:
    """The page's path, checked before any work: its folder exists and it is not a folder itself."""
    path = Path(output)
    if path.is_dir():
        raise PotstillError(f"-o {path} is a folder; give a file name, e.g. -o {path / 'report.html'}")
    if not path.parent.is_dir():
        raise PotstillError(f"cannot write {path}: its folder {path.parent} does not exist; "
                            "create it first or choose another -o")
    return path


class Figures:
    """Numbers the page's figures, so each SVG gets its own id prefix."""

    def __init__(self) -> None:
        self.count = 0

    def block(self, figure, caption: str) -> str:
        """A <figure> with the chart as inline SVG and its caption; "" when there is no chart."""
        if figure is None:
            return ""
        self.count += 1
        svg = inline_svg(figure, f"f{self.count}")
        return f'<figure class="plot">{svg}<figcaption>{caption}</figcaption></figure>'


def build_page(items: list[Reported]) -> str:
    """The whole page as text."""
    runs = every_run(items)
    figures = Figures()
    with figure_style():
        parts = [across_runs(items, runs, figures)] if len(runs) > 1 else []
        parts += [folder_section(number, item, figures) for number, item in enumerate(items, 1)]
    labels = ", ".join(item.label for item in items)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>potstill report: {escape(labels)}</title><style>{STYLE_SHEET}</style></head>\n<body><main>"
            f'<h1>potstill report</h1><p class="lead">{len(items)} folder(s), {len(runs)} run(s): {escape(labels)}. '
            f"Written by potstill {escape(__version__)}; the numbers are the runs' own (summary.json, metrics.jsonl).</p>"
            f"{navigation(items, len(runs))}{''.join(parts)}</main></body></html>\n")


def folder_section(number: int, item: Reported, figures: Figures) -> str:
    """One folder given: a run, or a seeds folder with its runs."""
    if isinstance(item, ReportedSeeds):
        heading, body = f"{item.label} (seeds {', '.join(map(str, item.seeds))})", seeds_section(item, figures)
    else:
        heading, body = item.label, run_body(item, figures, level=3)
    return (f'<section id="run-{number}"><h2>{escape(heading)}</h2>'
            f'<p class="path">folder <code>{escape(str(item.path))}</code></p>{body}</section>')


def navigation(items: list[Reported], runs: int) -> str:
    """Links to the page's sections, when it has more than one."""
    links = ['<a href="#across">across runs</a>'] if runs > 1 else []
    links += [f'<a href="#run-{number}">{escape(item.label)}</a>' for number, item in enumerate(items, 1)]
    return f"<nav>{''.join(links)}</nav>" if len(links) > 1 else ""


def across_runs(items: list[Reported], runs: list[ReportedRun], figures: Figures) -> str:
    """Quality against size and against latency over every run's models, and the settings that
    differ between the folders given (a seeds folder's seeds differ only in their seed)."""
    better = "Down" if all(run.language_model for run in runs if run.rows) else "Up"  # perplexity: lower is better
    size = figures.block(plots.tradeoff(runs, "params", "parameters (log scale)"),
                         f"Each point is one model of one run (colour: run, marker: model). {better} and to the left "
                         "is better.")
    latency = figures.block(plots.tradeoff(runs, "latency_batch1_ms", "CPU latency at batch 1, ms (log scale)"),
                            "Median CPU time of one forward pass at batch 1, as each run measured it; timings from "
                            "different machines or busy ones do not compare.")
    charts = f'<div class="pair">{size}{latency}</div>' if size or latency else (
        '<p class="note">No run is finished yet, so no model was measured; the charts appear once runs finish.</p>')
    recipes = {item.label: (item.runs[0] if isinstance(item, ReportedSeeds) else item).recipe for item in items}
    differences = differences_table(recipes) if len(recipes) > 1 else None
    settings = (f'<h3>Settings that differ</h3><div class="wide">{differences}</div>' if differences
                else '<p class="note">The recipes differ in nothing but the seed.</p>')
    return f'<section id="across"><h2>Across runs</h2>{charts}{settings}</section>'


def run_body(run: ReportedRun, figures: Figures, level: int, finish: str | None = None) -> str:
    """A run's tables and charts, its headings at `level` (h3 on its own, h4 inside a seeds folder).
    `finish`: how to finish it, should it be unfinished (default: resume it)."""
    heading = f"h{level}"
    parts = [data_line(run)]
    if run.summary is None:
        path = escape(str(run.path))
        finish = finish or (f"<code>potstill distill --resume {path}</code> (<code>potstill train --resume {path}</code> "
                            "for a teacher run)")
        parts.append(f'<p class="note warn">Unfinished: {path} has no summary.json yet, so its models were not measured; '
                     f"the curves show the epochs logged so far. Finish it with {finish}.</p>")
    else:
        notes = "".join(f"<li>{note}</li>" for note in summary_notes(run.summary))
        parts.append(f'<{heading}>Models on the test split</{heading}><div class="wide">{models_table(run)}</div>'
                     f'<ul class="notes">{notes}</ul>')
    parts.append(f"<{heading}>Recipe</{heading}>{settings_list(run.recipe)}")
    parts.append(f"<{heading}>Training</{heading}>")
    parts.append(figures.block(plots.learning_curves(run), "The training objective per epoch: each loss term as the "
                               "loop summed it (its weight applied), and their total; a log scale where the values "
                               "span more than ten times."))
    measure = "test perplexity" if run.language_model else "test top-1"
    held_out = figures.block(plots.held_out_curves([run], f"{measure} per epoch"),
                             f"{measure.capitalize()} after each epoch, per stage (the last epoch is the model reported).")
    parts.append(f'<div class="pair">{held_out}{class_section(run, figures)}</div>')
    parts.append(f"<{heading}>Calibration</{heading}>{calibration_section(run, figures)}")
    return "".join(parts)


def data_line(run: ReportedRun) -> str:
    """The dataset and its split sizes, as the summary describes them ("" before the run finished)."""
    data = (run.summary or {}).get("data") or {}
    if not data.get("dataset"):
        return ""
    counts = ", ".join(f"{data[split]:,} {split}" for split in ("train", "val", "test") if data.get(split))
    return f'<p class="path">data <b>{escape(str(data["dataset"]))}</b>{escape(": " + counts if counts else "")}</p>'


def class_section(run: ReportedRun, figures: Figures) -> str:
    """The per-class difference chart, or one sentence saying why there is none."""
    if run.summary is None:
        return ""
    if run.language_model:
        return '<p class="note">Per-class top-1: not drawn for a language model (its classes are the vocabulary).</p>'
    final, alone = run.row(run.final_role() or "student"), run.row("baseline")
    if final is None or alone is None:
        return ('<p class="note">Per-class top-1 difference: drawn for runs with a student alone and a distilled model '
                "(potstill distill with distill.baseline: true); this run has not both.</p>")
    if not final.get("class_acc") or not alone.get("class_acc"):
        return (f'<p class="note">Per-class top-1: this run\'s summary has no per-class accuracy (made before potstill '
                f"measured it); run <code>potstill eval {escape(str(run.path))}</code> to measure them.</p>")
    return figures.block(plots.class_difference(final, alone),
                         "Top-1 per class of the final model minus the student alone's, in points "
                         f"({eval_words(run, [final['role'], alone['role']])}).")


def calibration_section(run: ReportedRun, figures: Figures) -> str:
    """Reliability diagrams, or one sentence saying why there are none."""
    if run.summary is None:
        return '<p class="note">Measured when the run finishes.</p>'
    measured = [row for row in run.rows if row.get("reliability")]
    lacking = [row.get("title", row["role"]) for row in run.rows if not row.get("reliability")]
    missing = "" if not lacking else (
        f'<p class="note">No reliability data for {escape(", ".join(lacking))} (a summary made before potstill '
        f"measured it); run <code>potstill eval {escape(str(run.path))}</code> to measure them.</p>")
    if not measured:
        return missing
    unit = "tokens" if run.language_model else "test samples"
    chart = figures.block(plots.reliability_diagrams(run.rows, run.language_model),
                          f"Reliability: {unit} binned by confidence (top softmax probability); each bar is a bin's "
                          "accuracy, the hatched red part its gap to the diagonal (perfect calibration). A bin of a "
                          "few samples swings widely: ECE weighs each gap by its bin's share of the samples "
                          f"({eval_words(run, [row['role'] for row in measured])}).")
    return chart + missing


def eval_words(run: ReportedRun, roles: list[str]) -> str:
    taken = [role for role in roles if role in run.from_eval]
    return "from eval.json, measured by potstill eval" if taken else "from summary.json"


def seeds_section(seeds: ReportedSeeds, figures: Figures) -> str:
    """A seeds folder: the aggregate over seeds, the test curves over seeds, then each seed folded."""
    parts = []
    if seeds.aggregate is None:
        finished = [run.label for run in seeds.runs if run.summary is not None]
        parts.append(f'<p class="note warn">seeds.json not written yet: not every seed has finished '
                     f"(finished: {escape(', '.join(finished) or 'none')}). Run the same <code>potstill distill "
                     "--seeds</code> command again to finish them.</p>")
    else:
        note = gain_note(seeds)
        parts.append(f'<h3>Models over seeds</h3><div class="wide">{seeds_table(seeds)}</div>'
                     + (f'<ul class="notes"><li>{note}</li></ul>' if note else ""))
    measure = "test perplexity" if any(run.language_model for run in seeds.runs) else "test top-1"
    parts.append(figures.block(plots.held_out_curves(seeds.runs, f"{measure} per epoch over {len(seeds.runs)} seed(s)"),
                               "Mean over seeds per epoch and stage; the band is ± one sample standard deviation."))
    parts.append("<h3>Each seed</h3>")
    finish = "the same <code>potstill distill --seeds</code> command again (finished seeds are kept)"
    for run in seeds.runs:
        body = run_body(run, figures, level=4, finish=finish)
        parts.append(f"<details><summary>{escape(run.label)}{seed_headline(run)}</summary>{body}</details>")
    return "".join(parts)


def seed_headline(run: ReportedRun) -> str:
    """A short line for a folded seed: the final model's test quality, or that it is unfinished."""
    if run.summary is None:
        return " (unfinished)"
    final = run.row(run.final_role() or "student")
    if final is None:
        return ""
    title = final.get("title", final["role"])
    if final.get("test_ppl") is not None:
        return escape(f": {title} test perplexity {final['test_ppl']:.2f}")
    return escape(f": {title} test top-1 {100 * final['test_acc']:.2f}%")
