"""Summaries that answer "did distillation pay off?"."""

from potstill.report.summary import model_row, render_table, summarize

__all__ = ["model_row", "render_table", "summarize"]
