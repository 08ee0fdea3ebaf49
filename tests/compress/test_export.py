"""`potstill export`: ONNX files that match PyTorch, int8 files that really hold int8 operators,
latency fields, summary columns, and bad input (missing weights, unexportable operator)."""

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from potstill.cli.main import main
from potstill.compress import OnnxModel, compare_outputs, export_onnx, quantize_int8, time_runtimes
from potstill.compress.onnx_file import int8_operators
from potstill.errors import PotstillError
from tests.conftest import tiny_recipe, write_recipe


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory):
    """A tiny distill run (synthetic 8x8 images, small CNN teacher, MLP students), exported with int8."""
    folder = tmp_path_factory.mktemp("export")
    recipe = write_recipe(folder, tiny_recipe())
    assert main(["distill", str(recipe), "--run-dir", str(folder / "run"), "--quiet"]) == 0
    summary_before = (folder / "run" / "summary.json").read_text()
    assert main(["export", str(folder / "run"), "--int8", "--repeats", "5", "--batch-sizes", "1", "4", "--quiet"]) == 0
    return folder / "run", json.loads(summary_before)


def test_every_model_is_exported_and_matches_pytorch(exported_run):
    run, _ = exported_run
    record = json.loads((run / "export" / "export.json").read_text())
    assert set(record["models"]) == {"teacher", "baseline", "student"}
    for role, runtimes in record["models"].items():
        assert (run / "export" / f"{role}.onnx").is_file() and (run / "export" / f"{role}.int8.onnx").is_file()
        onnx = runtimes["onnx"]
        assert onnx["max_abs_diff"] < 1e-4 and onnx["agreement"] == 1.0, (role, onnx)
        assert onnx["samples"] == 80  # the whole test split (20% of 400)
        int8 = runtimes["int8"]
        assert 0.0 <= int8["test_acc"] <= 1.0 and int8["agreement"] > 0.5
        assert int8["size_bytes"] < onnx["size_bytes"]  # int8 weights take a quarter of fp32's bytes
        for runtime in ("pytorch", "onnx", "int8"):
            for size in (1, 4):
                p50, p95 = runtimes[runtime][f"latency_b{size}_p50_ms"], runtimes[runtime][f"latency_b{size}_p95_ms"]
                assert 0 < p50 <= p95


def test_onnx_accuracy_equals_the_runs_pytorch_accuracy(exported_run):
    run, before = exported_run
    record = json.loads((run / "export" / "export.json").read_text())
    for row in before["models"]:
        assert record["models"][row["role"]]["onnx"]["test_acc"] == pytest.approx(row["test_acc"], abs=1e-6)  # the run stores float32


def test_summary_gains_the_export_columns_and_keeps_the_rest(exported_run, capsys):
    run, before = exported_run
    after = json.loads((run / "summary.json").read_text())
    for old, new in zip(before["models"], after["models"]):
        assert {key: new[key] for key in old} == old  # nothing the run measured changed
        assert {"onnx", "int8", "pytorch"} <= new.keys()
    assert after["export"]["threads"] == torch.get_num_threads()
    assert main(["eval", str(run), "--quiet"]) == 0  # a summary with export fields still reads
    from potstill.report.table import render_table
    render_table(after)
    assert "int8 top-1" in capsys.readouterr().out


def test_auto_mode_quantizes_convolutions_statically_and_the_rest_dynamically(exported_run):
    run, _ = exported_run
    record = json.loads((run / "export" / "export.json").read_text())
    assert record["models"]["teacher"]["int8"]["mode"] == "static"  # small_cnn
    assert record["models"]["student"]["int8"]["mode"] == "dynamic"  # mlp
    operators = int8_operators(OnnxModel(run / "export" / "teacher.int8.onnx"))
    assert operators.get("QuantizeLinear", 0) >= 2  # QDQ around the convolutions and matrix products
    assert not int8_operators(OnnxModel(run / "export" / "teacher.onnx"))


def test_missing_weights_are_named_and_the_summary_is_untouched(exported_run, tmp_path, capsys):
    run, _ = exported_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "student" / "model.safetensors").unlink()
    before = (copy / "summary.json").read_text()
    code = main(["export", str(copy)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "model.safetensors" in err, err
    assert (copy / "summary.json").read_text() == before


def test_bad_arguments_each_get_one_line(exported_run, tmp_path, capsys):
    run, _ = exported_run
    for argv, fragment in (
        (["export", str(tmp_path)], "no recipe.yaml"),
        (["export", str(run), "--roles", "peer7"], "no exportable model peer7"),
        (["export", str(run), "--repeats", "2"], "at least 5"),
        (["export", str(run), "--batch-sizes", "0"], "at least 1"),
    ):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and fragment in err and "Traceback" not in err, (argv, err)


def test_an_int8_file_that_disagrees_is_flagged_with_the_other_mode():
    from potstill.compress.export_run import int8_warning
    from potstill.engine.progress import Reporter

    fields = {"onnx": {"test_acc": 0.79}, "int8": {"agreement": 0.25, "test_acc": 0.25, "mode": "static"}}
    (line,) = int8_warning("teacher", fields, Reporter(quiet=True))
    assert "25.0%" in line and "--int8-mode dynamic" in line
    fields["int8"]["agreement"] = 0.95
    assert int8_warning("teacher", fields, Reporter(quiet=True)) == []


class Kth(nn.Module):
    """A layer whose operator (aten.kthvalue) has no ONNX conversion."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(8, 4)

    def forward(self, input):
        hidden = self.linear(input)
        return hidden - torch.kthvalue(hidden, 2, dim=1, keepdim=True).values


def test_an_unexportable_operator_is_named(tmp_path):
    with pytest.raises(PotstillError, match="aten.kthvalue"):
        export_onnx(Kth(), {"input": torch.randn(4, 8)}, tmp_path / "kth.onnx", what="Kth")
    assert not (tmp_path / "kth.onnx").exists()  # nothing half-written


def test_a_users_own_model_from_python(tmp_path):
    """Any nn.Module and numpy data: export, int8, check, time; the caller's arrays are untouched."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 3)).eval()
    features = np.random.default_rng(0).standard_normal((64, 12)).astype(np.float32)
    labels = np.random.default_rng(1).integers(0, 3, 64)
    kept = features.copy()
    path = export_onnx(model, {"input": torch.from_numpy(features[:4])}, tmp_path / "mine.onnx")
    int8 = quantize_int8(path, tmp_path / "mine.int8.onnx", mode="dynamic")
    exact = compare_outputs(model, OnnxModel(path), [({"input": features}, labels)])
    assert exact["max_abs_diff"] < 1e-5 and exact["agreement"] == 1.0
    with torch.no_grad():
        expected = (model(torch.from_numpy(features)).argmax(1).numpy() == labels).mean()
    assert exact["test_acc"] == pytest.approx(expected)
    approximate = compare_outputs(model, OnnxModel(int8), [({"input": features}, None)])
    assert "test_acc" not in approximate and approximate["agreement"] > 0.8
    assert "MatMulInteger" in int8_operators(OnnxModel(int8)) or "DynamicQuantizeLinear" in int8_operators(OnnxModel(int8))
    times = time_runtimes([("torch", lambda batch: model(batch["input"])), ("onnx", OnnxModel(path))], (12,),
                          batch_sizes=(1, 8), repeats=5)
    assert set(times) == {"torch", "onnx"} and times["onnx"]["latency_b8_p50_ms"] > 0
    np.testing.assert_array_equal(features, kept)


def test_static_quantization_needs_calibration_and_a_known_mode(tmp_path):
    model = nn.Sequential(nn.Linear(6, 3)).eval()
    path = export_onnx(model, {"input": torch.randn(2, 6)}, tmp_path / "m.onnx")
    with pytest.raises(PotstillError, match="calibration"):
        quantize_int8(path, tmp_path / "m.int8.onnx", calibration=None, mode="static")
    with pytest.raises(PotstillError, match="unknown"):
        quantize_int8(path, tmp_path / "m.int8.onnx", mode="int3")
    (tmp_path / "broken.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(PotstillError, match="cannot load"):
        OnnxModel(tmp_path / "broken.onnx")
