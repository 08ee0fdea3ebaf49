"""summary.json and the comparison table against hand-worked values: one model's row (accuracy,
agreement, ECE, parameters, file size), the distillation gain in points, the compression ratio."""

from types import SimpleNamespace

import pytest
import torch
from rich.console import Console
from torch import nn

from potstill.engine.tasks import Classification
from potstill.recipe import ReportSpec
from potstill.report import model_row, render_table, summarize


class FixedLogits(nn.Module):
    """A 'model' whose logits for sample i are row i of a table (inputs carry the sample index)."""

    def __init__(self, table):
        super().__init__()
        self.table = nn.Parameter(torch.tensor(table))  # (N, K): 5 x 3 = 15 parameters

    def forward(self, inputs):
        return self.table[inputs[:, 0].long()]


class Loader:
    def __init__(self, count, targets):
        self.count, self.targets = count, targets

    def batches(self):
        index = torch.arange(self.count, dtype=torch.float32)[:, None]  # (N, 1): the sample index
        yield {"input": index[:3], "target": self.targets[:3]}
        yield {"input": index[3:], "target": self.targets[3:]}


def bench(targets):
    return SimpleNamespace(eval_loader=lambda split: Loader(len(targets), targets), measures=Classification(), splits=SimpleNamespace(example_batch=lambda size, generator: {"input": torch.randn(size, 1, generator=generator)}))


PROBS = [[0.9, 0.06, 0.04], [0.1, 0.78, 0.12], [0.2, 0.18, 0.62], [0.55, 0.3, 0.15], [0.3, 0.42, 0.28]]
TARGETS = torch.tensor([0, 2, 2, 1, 1])  # right, wrong, right, wrong, right


def test_model_row_measures_the_model_on_the_test_split(tmp_path):
    """Catches: agreement computed against the targets or left out when a teacher is given, the
    recipe's ECE bins ignored, the parameter count or file size wrong (e.g. size of the folder,
    or of a missing file instead of None), or test_acc of another split."""
    model = FixedLogits(torch.tensor(PROBS).log().tolist())  # softmax gives PROBS back
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x" * 1234)
    teacher_logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    report = ReportSpec(latency_batch_size=2, latency_repeats=1, ece_bins=4)
    row, prediction = model_row("student", model, bench(TARGETS), report, {"logits": teacher_logits}, weights,
                                train_time_s=7.5)
    assert row["test_acc"] == pytest.approx(3 / 5)
    assert row["teacher_agreement"] == pytest.approx(3 / 5)  # predictions 0 1 2 0 1 vs teacher 0 1 0 0 2
    # 4 bins, worked in tests/engine/test_metrics.py: (.25,.5] {0.42 right}, (.5,.75] {0.62 right, 0.55 wrong},
    # (.75, 1] {0.90 right, 0.78 wrong}
    assert row["ece"] == pytest.approx(1 / 5 * 0.58 + 2 / 5 * abs(0.5 - 0.585) + 2 / 5 * abs(0.5 - 0.84), abs=1e-6)
    # the same bins drawn: counts, mean confidence and accuracy per bin (None where empty)
    assert row["reliability"]["count"] == [0, 1, 2, 2] and row["reliability"]["edges"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert row["reliability"]["accuracy"] == [None, 1.0, 0.5, 0.5]
    assert row["reliability"]["confidence"][1:] == pytest.approx([0.42, 0.585, 0.84], abs=1e-6)
    # per class: class 0 {right}, class 1 {wrong, right}, class 2 {wrong, right}
    assert row["class_acc"] == pytest.approx([1.0, 0.5, 0.5])
    assert row["params"] == 15 and row["size_bytes"] == 1234
    assert row["title"] == "distilled" and row["model"] == "FixedLogits" and row["train_time_s"] == 7.5
    assert row["latency_ms"] > 0 and row["latency_batch_size"] == 2
    assert torch.allclose(prediction["logits"].softmax(dim=1), torch.tensor(PROBS))

    alone, _ = model_row("baseline", model, bench(TARGETS), report, None, tmp_path / "absent.safetensors", None)
    assert alone["teacher_agreement"] is None and alone["size_bytes"] is None and alone["title"] == "student alone"


def row(role, test_acc, params):
    return {"role": role, "test_acc": test_acc, "params": params}


def test_gain_is_final_minus_baseline_in_points_and_compression_is_a_parameter_ratio():
    """Catches: gain as baseline - final, as a fraction instead of points, taken from the distilled
    row when a refined one exists, or compression inverted (student / teacher)."""
    rows = [row("teacher", 0.9, 1000), row("baseline", 0.801, 300), row("student", 0.8235, 300)]
    summary = summarize(rows, {"dataset": "x"})
    assert summary["distillation_gain_points"] == pytest.approx(2.25)  # 100 * (0.8235 - 0.801)
    assert summary["compression"] == pytest.approx(3.33)  # 1000 / 300, two decimals
    assert summary["models"] is rows and summary["data"] == {"dataset": "x"}

    refined = summarize(rows + [row("refine", 0.79, 250)], {})
    assert refined["distillation_gain_points"] == pytest.approx(-1.1)  # the refined student is the end product
    assert refined["compression"] == pytest.approx(4.0)

    other_final = summarize([row("baseline", 0.5, 10), row("gen2", 0.625, 10)], {}, final="gen2")
    assert other_final["distillation_gain_points"] == pytest.approx(12.5) and "compression" not in other_final
    assert "distillation_gain_points" not in summarize([row("teacher", 0.9, 10), row("student", 0.8, 5)], {})


def test_table_shows_percentages_kilobytes_and_the_verdict():
    """Catches: sizes shown in bytes or with the wrong divisor, accuracy not shown as a percentage,
    or the verdict sign reversed."""
    base = {"teacher_agreement": None, "ece": 0.1234, "latency_ms": 1.5, "latency_batch_size": 8, "train_time_s": 2.0}
    models = [
        {**base, "title": "student alone", "test_acc": 0.8, "params": 12345, "size_bytes": 100 * 1024},
        {**base, "title": "distilled", "test_acc": 0.8125, "params": 12345, "size_bytes": 5 * 2**20, "teacher_agreement": 0.9},
    ]
    console = Console(record=True, width=160)
    render_table({"models": models, "distillation_gain_points": 1.25}, console)
    text = console.export_text()
    assert "81.25%" in text and "80.00%" in text and "90.00%" in text and "12,345" in text and "0.1234" in text
    assert "100K" in text and "5,120K" in text  # KiB: 102,400 B and 5 MiB
    assert "distillation helped: +1.25 points" in text
    console = Console(record=True, width=160)
    render_table({"models": models, "distillation_gain_points": 0.0}, console)
    assert "distillation did not help: +0.00 points" in console.export_text()
