"""The report as a browser draws it: headless Chromium (Debian's `chromium` package) opens the page
from disk, with every network request sent to a dead proxy, and its rendered DOM holds every chart;
its screenshot is a picture of the page's size with the charts' colours in it, not a blank one.

CI installs chromium (.ci/run) and sets CI=true: there a missing browser fails these tests;
elsewhere they are skipped, saying why."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from potstill.report.html import write_report
from tests.report.html_runs import write_run, write_seeds

BROWSERS = ("chromium", "chromium-browser")
WIDTH, HEIGHT = 1280, 2000
# colours that only the charts use (plots.py; the page's text and links have none of them): the student alone's
# blue, the distilled model's orange, and green (a class the distilled model gets right more often, a third run)
CHART_COLOURS = {"blue": (31, 119, 180), "orange": (255, 127, 14), "green": (44, 160, 44)}


def browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    message = "headless Chromium is not installed (apt-get install chromium)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + "; CI must install it")
    pytest.skip(message)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """One headless Chromium call with its own profile folder, offline (a proxy no one listens on)."""
    argv = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}", "--proxy-server=127.0.0.1:9", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("browser")
    return write_report([write_run(folder / "run"), write_seeds(folder / "seeds", (0, 1))], folder / "report.html")


def test_chromium_renders_every_chart_of_the_page(report, tmp_path):
    dom = chromium(tmp_path, "--dump-dom", report.as_uri()).stdout
    written = report.read_text()
    charts = written.count('<figure class="plot">')
    assert charts == 2 + 4 + 1 + 2 * 4  # across runs, the run, the seeds' band, each seed
    assert dom.count('<figure class="plot">') == charts and dom.count("<svg") == charts
    assert "<title>potstill report: run, seeds</title>" in dom and dom.count("<table") == written.count("<table")


def test_chromium_screenshot_is_the_page_drawn(report, tmp_path):
    from PIL import Image

    picture = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={picture}", f"--window-size={WIDTH},{HEIGHT}", report.as_uri())
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.size == (WIDTH, HEIGHT)
        colours = {colour: count for count, colour in image.convert("RGB").getcolors(WIDTH * HEIGHT)}
    assert len(colours) > 100  # text, lines and fills, not a blank page
    for name, colour in CHART_COLOURS.items():  # the page with its charts removed shows none of these
        assert colours.get(colour, 0) > 100, f"hardly any {name} {colour} in the screenshot: a chart was not drawn"
