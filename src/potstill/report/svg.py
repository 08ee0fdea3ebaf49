"""A matplotlib figure as inline SVG text for an HTML page that must work offline.

    with figure_style():
        figure = new_figure(width=6, height=3.5)
        ...
        text = inline_svg(figure, "f3")

Why SVG inline rather than PNG: a line chart is a few kilobytes of paths (a PNG of the same chart
is tens), stays sharp at any zoom and its text can be searched and copied. Three things make
matplotlib's SVG fit inside one HTML page:
  - text stays text (svg.fonttype "none"): no glyph outlines, and the page's sans-serif font shows it;
  - the XML prolog, DOCTYPE, metadata, namespace URLs and indentation are dropped, so the page
    names no web address at all (inline SVG in HTML needs none of them);
  - element ids are made unique per figure (`prefix`), since every figure on one page shares one
    id space: matplotlib names its clip paths and markers alike in each figure. Ids that nothing
    refers to are removed.
Rendering uses the Agg backend's canvas only, never a display.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from potstill.errors import PotstillError

STYLE = {
    "svg.fonttype": "none",  # text as <text>, not outlines: small files, the browser's font draws it
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],  # DejaVu ships with matplotlib: its widths lay out the text
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8,
    "legend.frameon": False,
}
ID = re.compile(r'\sid="([^"]+)"')
REFERENCE = re.compile(r'(?:href="#|url\(#)([^")]+)')


def matplotlib_module() -> Any:
    """matplotlib, or one line saying how to install it (it is an optional dependency)."""
    try:
        import matplotlib
    except ImportError:
        raise PotstillError("potstill report draws its plots with matplotlib, which is not installed; "
                            "install it with: pip install 'potstill[report]' (or pip install matplotlib)") from None
    return matplotlib


@contextmanager
def figure_style(salt: str = "potstill") -> Iterator[None]:
    """matplotlib settings for the report's figures, for the duration of the block only (a user's
    own rcParams are left as they were). `salt` makes generated ids repeatable between runs."""
    matplotlib = matplotlib_module()
    with matplotlib.rc_context(STYLE | {"svg.hashsalt": salt}):
        yield


def new_figure(width: float, height: float, columns: int = 1, rows: int = 1) -> tuple[Any, Any]:
    """A figure of `width` x `height` inches with a grid of axes (always a 2-d array), laid out by
    matplotlib's constrained layout so titles, labels and legends do not overlap."""
    from matplotlib.figure import Figure  # a Figure without pyplot: no global state, no display

    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    return figure, axes


def inline_svg(figure: Any, prefix: str) -> str:
    """The figure as an <svg> element to paste into HTML, its ids prefixed with `prefix`."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    return clean_svg(buffer.getvalue(), prefix)


def clean_svg(text: str, prefix: str) -> str:
    """Matplotlib's SVG document reduced to an inline element (see the module docstring)."""
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.DOTALL)
    text = re.sub(r'\s+xmlns(?::xlink)?="[^"]*"', "", text)
    text = text.replace("xlink:href=", "href=")  # SVG 2 spelling: needs no xlink namespace
    referenced = set(REFERENCE.findall(text))

    def rename(match: re.Match) -> str:
        name = match.group(1)
        return f' id="{prefix}-{name}"' if name in referenced else ""

    text = ID.sub(rename, text)
    text = re.sub(r'(href="#|url\(#)([^")]+)', lambda match: f"{match.group(1)}{prefix}-{match.group(2)}", text)
    return re.sub(r">\s+<", "><", text).strip()  # the indentation between elements: an eighth of the size
