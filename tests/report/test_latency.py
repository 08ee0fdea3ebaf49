"""CPU latency: interleaved rounds after warm-up, batch 1 and the larger batch, median with its
p10-p90 spread, and a warning when the spread says the machine was busy."""

import pytest
import torch
from rich.console import Console
from torch import nn

from potstill.recipe import ReportSpec
from potstill.report.latency import BUSY_SPREAD, latency_fields, latency_warning, measure_latency, spread, time_models
from potstill.report.summary import summarize
from potstill.report.table import render_table


class Recorder(nn.Module):
    """Logs (name, batch size) of every forward pass into a shared list."""

    def __init__(self, name, log):
        super().__init__()
        self.name, self.log = name, log
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, inputs):
        self.log.append((self.name, inputs.shape[0]))
        return inputs.flatten(1) * self.scale


def test_models_are_timed_in_interleaved_rounds_after_warm_up():
    """Catches: each model timed in one block (a busy spell then hits only one of them), warm-up
    passes kept in the statistics, or a batch size skipped."""
    log = []
    models = [(name, Recorder(name, log)) for name in ("teacher", "student", "baseline")]
    samples = time_models(models, (2,), batch_sizes=[1, 4], repeats=3, warmup=2)
    rounds = ["teacher", "student", "baseline"] * 5  # 2 warm-up + 3 timed rounds per batch size
    assert log == [(name, 1) for name in rounds] + [(name, 4) for name in rounds]
    for name in ("teacher", "student", "baseline"):
        assert [len(samples[name][size]) for size in (1, 4)] == [3, 3]


def test_timing_restores_modes_and_leaves_the_global_rng_alone():
    model = nn.Linear(3, 2).train()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    time_models([("m", model)], (3,), [1, 2], repeats=2)
    assert model.training and torch.equal(torch.rand(3), expected)


def test_the_clock_is_read_around_each_pass_and_kept_in_milliseconds():
    """A planted clock: pass k of the timed rounds takes k+1 ms."""
    ticks = iter(t for k in range(100) for t in (0.0, (k + 1) / 1000))
    samples = time_models([("a", nn.Identity()), ("b", nn.Identity())], (1,), [1], repeats=2, warmup=1, clock=lambda: next(ticks))
    assert samples["a"][1] == pytest.approx([3.0, 5.0]) and samples["b"][1] == pytest.approx([4.0, 6.0])


def test_spread_is_ordered_and_fields_keep_the_old_key():
    """Catches: p10/p90 swapped or taken from the wrong batch size, or latency_ms no longer the
    median at the larger batch (the key older readers use)."""
    values = [5.0, 1.0, 3.0, 2.0, 4.0, 100.0, 3.5]
    p10, median, p90 = spread(values)
    assert p10 <= median <= p90 and median == 3.5
    fields = latency_fields({1: [0.1, 0.2, 0.3], 8: values}, batch_size=8)
    assert fields["latency_ms"] == median and fields["latency_batch_size"] == 8 and fields["latency_repeats"] == 7
    assert fields["latency_p10_ms"] == p10 and fields["latency_p90_ms"] == p90
    assert fields["latency_batch1_ms"] == pytest.approx(0.2)
    assert fields["latency_batch1_p10_ms"] <= fields["latency_batch1_ms"] <= fields["latency_batch1_p90_ms"]


def test_measure_latency_times_batch_one_and_the_recipe_batch():
    rows = measure_latency([("a", nn.Linear(4, 2)), ("b", nn.Linear(4, 3))], (4,), ReportSpec(latency_batch_size=8, latency_repeats=3))
    for fields in rows.values():
        assert fields["latency_batch_size"] == 8 and fields["latency_repeats"] == 3
        assert 0 < fields["latency_p10_ms"] <= fields["latency_ms"] <= fields["latency_p90_ms"]
        assert 0 < fields["latency_batch1_p10_ms"] <= fields["latency_batch1_ms"] <= fields["latency_batch1_p90_ms"]


def planted(title, p10, median, p90):
    return {"role": title, "title": title, "test_acc": 0.5, "params": 10, "latency_batch_size": 64,
            "latency_ms": median, "latency_p10_ms": p10, "latency_p90_ms": p90,
            "latency_batch1_ms": 0.1, "latency_batch1_p10_ms": 0.1, "latency_batch1_p90_ms": 0.11, "latency_repeats": 20}


def test_a_wide_spread_warns_in_the_summary_and_under_the_table():
    """Catches: a teacher timed at 82 ms and then 885 ms reported with no hint."""
    steady = [planted("teacher", 80.0, 82.0, 90.0), planted("distilled", 1.0, 1.1, 1.2)]
    assert summarize(steady, {})["latency_warning"] is None
    busy = [planted("teacher", 80.0, 300.0, 885.0), planted("distilled", 1.0, 1.1, 1.2)]
    summary = summarize(busy, {})
    assert "teacher" in summary["latency_warning"] and "distilled" not in summary["latency_warning"]
    assert "busy" in summary["latency_warning"] and "potstill eval" in summary["latency_warning"]
    console = Console(record=True, width=100)
    render_table(summary, console)
    text = console.export_text()
    assert "warning: CPU timings were unsteady" in text and "80.0-885" in text


def test_the_warning_threshold_and_rows_without_spread():
    just_below = planted("a", 1.0, 1.2, BUSY_SPREAD - 0.01)
    assert latency_warning([just_below]) is None
    assert latency_warning([planted("a", 1.0, 1.2, BUSY_SPREAD + 0.01)]) is not None
    jitter = planted("tiny", 0.010, 0.012, 0.030)  # 3x, but 20 microseconds: timer noise, not a busy machine
    assert latency_warning([jitter]) is None
    assert latency_warning([{"title": "old", "latency_ms": 3.0}]) is None  # a summary from before p10/p90
