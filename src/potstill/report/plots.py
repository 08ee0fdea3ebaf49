"""The report's charts, each a matplotlib Figure (report/svg.py turns it into inline SVG).

    learning_curves(run)            per stage: every weighted loss term and their sum, per epoch
    held_out_curves(runs, title)    test top-1 (perplexity for language models) per epoch and stage;
                                    over several seeds the mean with a band of ± one std
    reliability_diagrams(rows)      per model: accuracy against confidence, with the gap to the diagonal
    class_difference(final, alone)  per class: top-1 of the distilled model minus the student alone's
    tradeoff(runs, field, label)    every model row of every run: quality against params or latency

Colours follow the model's role on every chart (teacher grey, student alone blue, distilled orange,
refined green), so a reader learns them once. Each function returns None when its data is absent.
Call them inside svg.figure_style().
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from potstill.report.report_inputs import ReportedRun
from potstill.report.summary import ROLE_TITLES
from potstill.report.svg import new_figure

ROLE_COLORS = {"teacher": "#4d4d4d", "baseline": "#1f77b4", "student": "#ff7f0e", "refine": "#2ca02c"}
OTHER_COLORS = ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#d62728"]
# matplotlib's tab10: one colour per loss term of a stage, or per run on the charts across runs
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
ROLE_MARKERS = {"teacher": "s", "baseline": "o", "student": "^", "refine": "D"}
FULL_WIDTH = 10.0  # inches: the page's width at 96 px per inch, less its margins
MARKERS_UP_TO = 20  # epochs: fewer than this, each epoch is also drawn as a dot


def role_title(role: str) -> str:
    return ROLE_TITLES.get(role, role)


def role_color(role: str, order: list[str]) -> str:
    """A fixed colour for the usual roles; the others (peers, assistants) in order of appearance."""
    if role in ROLE_COLORS:
        return ROLE_COLORS[role]
    others = [name for name in order if name not in ROLE_COLORS]
    return OTHER_COLORS[others.index(role) % len(OTHER_COLORS)] if role in others else OTHER_COLORS[0]


def marker_for(count: int) -> str | None:
    return "o" if count < MARKERS_UP_TO else None


def quality(language_model: bool) -> tuple[str, float, str]:
    """The held-out field plotted, its scale and its axis label."""
    return ("test_ppl", 1.0, "test perplexity (lower is better)") if language_model else ("test_acc", 100.0, "test top-1 %")


def scale_y(axes: Any, values: list[float], spread: float = 10.0) -> None:
    """A log y axis for positive values that span more than `spread` times."""
    positive = [value for value in values if value is not None and math.isfinite(value)]
    if positive and min(positive) > 0 and max(positive) / min(positive) > spread:
        log_axis(axes, "y", positive)


def log_axis(axes: Any, which: str, values: list[float]) -> None:
    """A log axis labelled in short plain numbers (0.05, 2, 20k, 1.2M): at 1, 2 and 5 times each
    power of ten when the values span two decades or less (so a few labels always show), else at
    the powers of ten alone."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    decades = math.log10(max(values) / min(values)) if min(values) > 0 else math.inf
    axis = axes.xaxis if which == "x" else axes.yaxis
    (axes.set_xscale if which == "x" else axes.set_yscale)("log")
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 2 else (1.0,)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: compact(value)))
    axis.set_minor_formatter(NullFormatter())


def compact(value: float) -> str:
    """20000 -> 20k, 1200000 -> 1.2M, 0.05 -> 0.05."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def epoch_axis(axes: Any) -> None:
    """An x axis of whole epochs."""
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")


def learning_curves(run: ReportedRun) -> Any | None:
    """One panel per stage: each weighted loss term (what the loop summed) and the total, per epoch."""
    stages = run.stages()
    if not stages:
        return None
    columns = min(len(stages), 3)
    rows = math.ceil(len(stages) / columns)
    figure, grid = new_figure(FULL_WIDTH, 2.9 * rows, columns, rows)
    for index, stage in enumerate(stages):
        stage_panel(grid[index // columns][index % columns], stage, run.stage_records(stage))
    for index in range(len(stages), rows * columns):
        grid[index // columns][index % columns].set_visible(False)
    figure.suptitle(f"{run.label}: training loss per epoch (weighted terms)", fontsize=11)
    return figure


def stage_panel(axes: Any, stage: str, records: list[dict[str, Any]]) -> None:
    epochs = [record["epoch"] for record in records]
    # a term that was off all stage (weight 0: never in `terms`) has nothing to draw
    names = list(dict.fromkeys(name for record in records for name in record.get("terms") or {}))
    lines = {name: [(record.get("terms") or {}).get(name) for record in records] for name in names}
    if not names:  # records of an older potstill, which logged the loss alone
        lines["loss"] = [record.get("loss") for record in records]
    if len(names) > 1:
        lines["total"] = [record.get("loss") for record in records]
    values = [value for series in lines.values() for value in series if value is not None]
    logarithmic = bool(values) and min(values) > 0 and max(values) / min(values) > 10
    marker = marker_for(len(epochs))
    for number, (name, series) in enumerate(lines.items()):
        shown = [math.nan if value is None else value for value in series]  # an epoch the term was off: a gap
        style = ({"color": "black", "linewidth": 1.2, "linestyle": "--", "zorder": 1} if name == "total"
                 else {"color": PALETTE[number % len(PALETTE)], "zorder": 2})
        axes.plot(epochs, shown, marker=marker, markersize=3, label=name, **style)
    if logarithmic:
        log_axis(axes, "y", values)
    axes.set_title(f"{role_title(stage)} ({stage})" if role_title(stage) != stage else stage)
    epoch_axis(axes)
    axes.set_ylabel("loss (train)")
    axes.legend(loc="best")


def held_out_curves(runs: list[ReportedRun], title: str) -> Any | None:
    """Test quality per epoch, one line per stage; over several runs (seeds) the mean per epoch
    with a band of ± one sample std."""
    field, scale, label = quality(any(run.language_model for run in runs))
    stages = list(dict.fromkeys(stage for run in runs for stage in run.stages()))
    figure, grid = new_figure(6.4, 3.6)
    axes, plotted = grid[0][0], []
    for stage in stages:
        per_epoch: dict[int, list[float]] = {}
        for run in runs:
            for record in run.stage_records(stage):
                if record.get(field) is not None:
                    per_epoch.setdefault(record["epoch"], []).append(scale * record[field])
        if not per_epoch:
            continue
        epochs = sorted(per_epoch)
        means = [statistics.fmean(per_epoch[epoch]) for epoch in epochs]
        color = role_color(stage, stages)
        axes.plot(epochs, means, color=color, marker=marker_for(len(epochs)), markersize=3, label=role_title(stage))
        if len(runs) > 1:
            spreads = [statistics.stdev(per_epoch[epoch]) if len(per_epoch[epoch]) > 1 else 0.0 for epoch in epochs]
            axes.fill_between(epochs, [m - s for m, s in zip(means, spreads)], [m + s for m, s in zip(means, spreads)],
                              color=color, alpha=0.2, linewidth=0)
        plotted += means
    if not plotted:
        return None
    if field == "test_ppl":
        scale_y(axes, plotted)
    axes.set_title(title)
    epoch_axis(axes)
    axes.set_ylabel(label)
    axes.legend(loc="best")
    return figure


def reliability_diagrams(rows: list[dict[str, Any]], language_model: bool) -> Any | None:
    """Per model with a reliability field: the accuracy of each confidence bin against the bin's
    confidence (Guo et al. 2017, fig. 1); the red part of a bar is its gap to the diagonal."""
    shown = [row for row in rows if row.get("reliability")]
    if not shown:
        return None
    columns = min(len(shown), 4)
    rows_needed = math.ceil(len(shown) / columns)
    figure, grid = new_figure(min(FULL_WIDTH, 2.6 * columns + 0.4), 2.8 * rows_needed, columns, rows_needed)
    roles = [row["role"] for row in rows]
    for index, row in enumerate(shown):
        axes = grid[index // columns][index % columns]
        reliability_panel(axes, row, role_color(row["role"], roles))
        axes.set_ylabel(("next-token " if language_model else "") + "accuracy" if index % columns == 0 else "")
    for index in range(len(shown), rows_needed * columns):
        grid[index // columns][index % columns].set_visible(False)
    return figure


def reliability_panel(axes: Any, row: dict[str, Any], color: str) -> None:
    bins = row["reliability"]
    edges = bins["edges"]
    for low, high, accuracy, confidence in zip(edges[:-1], edges[1:], bins["accuracy"], bins["confidence"]):
        if accuracy is None or confidence is None:
            continue  # an empty bin
        axes.bar(low, accuracy, width=high - low, align="edge", color=color, edgecolor="white", linewidth=0.5)
        axes.bar(low, confidence - accuracy, width=high - low, bottom=accuracy, align="edge", fill=False,
                 edgecolor="#d62728", linewidth=0.6, hatch="////")
    axes.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=0.8)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_aspect("equal")
    ece = f": ECE {100 * row['ece']:.2f}%" if row.get("ece") is not None else ""
    axes.set_title(f"{row.get('title', row['role'])}{ece}")
    axes.set_xlabel("confidence")


def class_difference(final: dict[str, Any], alone: dict[str, Any]) -> Any | None:
    """Per class: top-1 points of `final` minus `alone`; classes without test samples are left out."""
    pairs = [(index, 100 * (mine - theirs)) for index, (mine, theirs) in enumerate(zip(final.get("class_acc") or [],
                                                                                     alone.get("class_acc") or []))
             if mine is not None and theirs is not None]
    if not pairs:
        return None
    classes = [index for index, _ in pairs]
    points = [value for _, value in pairs]
    figure, grid = new_figure(6.4, 3.2)
    axes = grid[0][0]
    colors = ["#2ca02c" if value > 0 else "#d62728" if value < 0 else "#7f7f7f" for value in points]
    axes.bar(classes, points, color=colors, width=0.8)
    axes.axhline(0, color="black", linewidth=0.8)
    step = max(1, math.ceil(len(classes) / 25))  # at most about 25 tick labels
    axes.set_xticks(classes[::step])
    axes.set_xlabel("class")
    axes.set_ylabel("top-1 points")
    axes.set_title(f"per-class top-1: {final.get('title', final['role'])} minus {alone.get('title', alone['role'])}")
    better, worse = sum(value > 0 for value in points), sum(value < 0 for value in points)
    axes.text(0.99, 0.97, f"{better} better, {worse} worse of {len(points)} classes", transform=axes.transAxes,
              ha="right", va="top")
    return figure


def tradeoff(runs: list[ReportedRun], field: str, label: str) -> Any | None:
    """Every model row of every finished run as one point: quality against `field` (log axis);
    colour says the run, marker the role."""
    language_model = all(run.language_model for run in runs if run.rows)
    quality_field, scale, quality_label = quality(language_model)
    figure, grid = new_figure(6.4, 4.2)
    axes, xs, values, run_handles, roles = grid[0][0], [], [], [], []
    for number, run in enumerate(run for run in runs if run.rows):
        color = PALETTE[number % len(PALETTE)]
        for row in run.rows:
            if row.get(field) is None or row.get(quality_field) is None:
                continue
            value = scale * row[quality_field]
            xs.append(row[field])
            axes.scatter(row[field], value, color=color, marker=ROLE_MARKERS.get(row["role"], "P"), s=36, zorder=3,
                         edgecolor="white", linewidth=0.5)
            values.append(value)
            roles += [row["role"]] if row["role"] not in roles else []
        run_handles.append(axes.scatter([], [], color=color, marker="o", s=36, label=run.label))
    if not values:
        return None
    if all(value > 0 for value in xs):  # a zero (a timing too short to measure) has no place on a log axis
        log_axis(axes, "x", xs)
    if language_model:
        scale_y(axes, values)
    axes.set_xlabel(label)
    axes.set_ylabel(quality_label)
    axes.set_title(f"{quality_label.split(' (')[0]} against {label.split(' (')[0]}")
    role_handles = [axes.scatter([], [], color="#7f7f7f", marker=ROLE_MARKERS.get(role, "P"), s=36, label=role_title(role))
                    for role in roles]
    # outside the axes, and made room for by the constrained layout: long run names are never cut
    figure.legend(handles=run_handles, title="run", loc="outside right upper", alignment="left")
    figure.legend(handles=role_handles, title="model", loc="outside right lower", alignment="left")
    return figure
