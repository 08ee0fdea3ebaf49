"""Summaries that answer "did distillation pay off?"."""

from potstill.report.latency import measure_latency
from potstill.report.summary import model_row, summarize
from potstill.report.table import print_result, render_table, result_console

__all__ = ["measure_latency", "model_row", "print_result", "render_table", "result_console", "summarize"]
