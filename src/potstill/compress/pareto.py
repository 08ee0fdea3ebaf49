"""The Pareto front of a search and its plot: accuracy up, costs (latency, size) down.

A point is on the front when no other point is at least as good in every objective and better in
one. Equal points do not dominate each other, so ties are all kept. The plot is a hand-written SVG
(no plotting library): every finished trial, the front highlighted and labelled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a dominates b: objectives are all to be maximised (negate a cost first)."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points, in the order given (every objective maximised)."""
    return [i for i, point in enumerate(points) if not any(dominates(other, point) for j, other in enumerate(points) if j != i)]


def front_of(trials: Sequence[dict[str, Any]], costs: Sequence[str], score: str = "val_acc") -> list[dict[str, Any]]:
    """The trials on the front of `score` (maximised) and `costs` (minimised), most accurate first
    (then fastest, then smallest)."""
    points = [[trial[score]] + [-trial[cost] for cost in costs] for trial in trials]
    front = [trials[i] for i in pareto_front(points)]
    return sorted(front, key=lambda trial: (-trial[score], *(trial[cost] for cost in costs)))


# ---- the plot -----------------------------------------------------------------------------------

WIDTH, HEIGHT = 640, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 40, 55  # margins around the plotting area


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values (1, 2 or 5 times a power of ten apart) covering low..high."""
    if high <= low:
        high = low + (abs(low) or 1.0) * 0.1
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    start = math.floor(low / step) * step
    ticks, value = [], start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def tick_text(value: float) -> str:
    return f"{value:g}"


def pareto_svg(trials: Sequence[dict[str, Any]], front: Sequence[dict[str, Any]], title: str,
               x: str = "latency_ms", y: str = "val_acc", x_label: str = "batch-1 CPU latency (ms)",
               y_label: str = "validation top-1 (%)") -> str:
    """An SVG scatter of `y` (a fraction, shown in %) against `x` for every trial; front points filled
    red, joined by a step line and labelled '#number' (with their parameter count)."""
    if not trials:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}">'
                f'<text x="20" y="40">{escape(title)}: no finished trials</text></svg>\n')
    xs = [trial[x] for trial in trials]
    ys = [100 * trial[y] for trial in trials]
    x_ticks, y_ticks = nice_ticks(min(xs), max(xs)), nice_ticks(min(ys), max(ys))
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

    def px(value: float) -> float:
        return LEFT + (value - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT)

    def py(value: float) -> float:
        return HEIGHT - BOTTOM - (value - y0) / (y1 - y0) * (HEIGHT - TOP - BOTTOM)

    parts = [
        (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
         'font-family="sans-serif" font-size="11">'),
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>',
        f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" stroke="black"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="black"/>',
    ]
    for tick in x_ticks:
        parts.append(f'<line x1="{px(tick):.1f}" y1="{HEIGHT - BOTTOM}" x2="{px(tick):.1f}" y2="{HEIGHT - BOTTOM + 5}" stroke="black"/>')
        parts.append(f'<text x="{px(tick):.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle">{tick_text(tick)}</text>')
    for tick in y_ticks:
        parts.append(f'<line x1="{LEFT - 5}" y1="{py(tick):.1f}" x2="{LEFT}" y2="{py(tick):.1f}" stroke="black"/>')
        parts.append(f'<line x1="{LEFT}" y1="{py(tick):.1f}" x2="{WIDTH - RIGHT}" y2="{py(tick):.1f}" stroke="#eeeeee"/>')
        parts.append(f'<text x="{LEFT - 8}" y="{py(tick) + 4:.1f}" text-anchor="end">{tick_text(tick)}</text>')
    parts.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 15}" text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text x="18" y="{(TOP + HEIGHT - BOTTOM) / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 18 {(TOP + HEIGHT - BOTTOM) / 2})">{escape(y_label)}</text>')
    on_front = {trial["number"] for trial in front}
    for trial in trials:
        if trial["number"] not in on_front:
            parts.append(f'<circle cx="{px(trial[x]):.1f}" cy="{py(100 * trial[y]):.1f}" r="4" fill="#999999">'
                         f'<title>trial {trial["number"]}</title></circle>')
    steps = sorted(front, key=lambda trial: trial[x])
    if len(steps) > 1:
        line = " ".join(f"{px(t[x]):.1f},{py(100 * t[y]):.1f}" for t in steps)
        parts.append(f'<polyline points="{line}" fill="none" stroke="#cc0000" stroke-dasharray="4 3"/>')
    for trial in steps:
        cx, cy = px(trial[x]), py(100 * trial[y])
        size = f" · {trial['params'] / 1e6:.2g}M" if trial.get("params") else ""
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="#cc0000"><title>trial {trial["number"]}</title></circle>')
        near_edge = cx > WIDTH - RIGHT - 80  # label left of the point, inside the picture
        anchor, label_x = ("end", cx - 7) if near_edge else ("start", cx + 7)
        parts.append(f'<text x="{label_x:.1f}" y="{cy - 6:.1f}" text-anchor="{anchor}" fill="#cc0000">'
                     f'#{trial["number"]}{escape(size)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
