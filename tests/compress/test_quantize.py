"""Quantization-aware distillation: int8 fake quantization pinned by hand, gradients through it
(straight-through) to the student and never to the teacher, the int8 ONNX Runtime models after a
quantization-aware distill, and the layers it cannot cover named."""

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

import potstill
from potstill.cli.main import main
from potstill.compress import prepare_qat, to_float, unsupported_layers
from potstill.compress.quantize import quantization_aware
from potstill.errors import PotstillError
from potstill.models import create_model
from tests.conftest import tiny_recipe, write_recipe


def test_weights_are_fake_quantized_per_channel_to_int8_as_worked_by_hand():
    layer = nn.Sequential(nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        layer[0].weight.copy_(torch.tensor([[1.0, -0.5, 0.3], [0.02, -0.04, 0.01]]))
    prepare_qat(layer)
    quantized = layer[0].weight_fake_quantizer(layer[0].weight).detach()
    # symmetric per output channel: scale = max|w| / 127.5, w_q = scale * clamp(round(w / scale), -128, 127)
    expected = []
    for row in ([1.0, -0.5, 0.3], [0.02, -0.04, 0.01]):
        scale = max(abs(v) for v in row) / 127.5
        expected.append([scale * max(-128, min(127, round(v / scale))) for v in row])
    torch.testing.assert_close(quantized, torch.tensor(expected), atol=1e-7, rtol=0)
    assert not torch.equal(quantized, layer[0].weight.detach())  # 0.3 / (1 / 127.5) = 38.25 is not on the grid


def test_activations_are_fake_quantized_per_row_within_half_a_step():
    layer = nn.Sequential(nn.Linear(4, 4))
    prepare_qat(layer)
    inputs = torch.tensor([[0.0, 1.0, 2.0, 3.0], [-1.0, 0.5, 0.25, 10.0]])
    quantized = layer[0].activation_fake_quantizer(inputs)
    steps = (inputs.amax(1) - inputs.amin(1)) / 255  # asymmetric int8: 256 levels per row
    assert ((quantized - inputs).abs() <= steps[:, None] / 2 + 1e-6).all()
    assert not torch.equal(quantized[1], inputs[1])  # 0.25 is not on the second row's grid


def test_gradients_pass_the_rounding_to_the_student_and_the_names_stay_plain():
    torch.manual_seed(0)
    student = create_model("mlp", input_shape=[1, 8, 8], num_classes=5, hidden=[16])
    names = list(student.state_dict())
    prepare_qat(student)
    assert quantization_aware(student) and list(student.state_dict()) == names  # the file loads into the plain model
    teacher = create_model("mlp", input_shape=[1, 8, 8], num_classes=5, hidden=[32]).requires_grad_(False)
    inputs = torch.randn(6, 1, 8, 8)
    loss = kd(student(inputs), teacher(inputs))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def kd(student_logits, teacher_logits, temperature=4.0):
    soft = torch.log_softmax(student_logits / temperature, 1)
    return torch.nn.functional.kl_div(soft, torch.softmax(teacher_logits / temperature, 1), reduction="batchmean") * temperature**2


def test_layers_qat_cannot_cover_are_named():
    cnn = create_model("cnn", input_shape=[1, 28, 28], num_classes=10, channels=[8, 16], hidden=32)
    assert unsupported_layers(cnn) == ["block1.conv (Conv2d)", "block2.conv (Conv2d)"]  # BatchNorm stays fp32 anyway
    before = copy.deepcopy(cnn.state_dict())
    with pytest.raises(PotstillError, match=r"block1.conv \(Conv2d\), block2.conv \(Conv2d\).*potstill export RUN --int8"):
        prepare_qat(cnn)
    assert not quantization_aware(cnn) and all(torch.equal(before[k], v) for k, v in cnn.state_dict().items())
    with pytest.raises(PotstillError, match="no nn.Linear"):
        prepare_qat(nn.Sequential(nn.ReLU()))


def test_to_float_gives_plain_linear_layers_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    prepare_qat(model)
    plain = to_float(model)
    assert quantization_aware(model) and not quantization_aware(plain)
    assert all(type(m) in (nn.Linear, nn.ReLU, nn.Sequential) for m in plain.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(plain.state_dict()[key], value)


@pytest.fixture(scope="module")
def qat_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qat")
    recipe = write_recipe(folder, tiny_recipe(student__quantize={"deploy": "dynamic"}))
    assert main(["distill", str(recipe), "--run-dir", str(folder / "run"), "--quiet"]) == 0
    return folder / "run"


def test_quantization_aware_distill_ends_with_int8_models(qat_run):
    summary = json.loads((qat_run / "summary.json").read_text())
    rows = {row["role"]: row for row in summary["models"]}
    assert "int8" not in rows["teacher"]  # the teacher is not the deployed model
    for role in ("baseline", "student"):
        int8 = rows[role]["int8"]
        assert int8["mode"] == "dynamic" and int8["samples"] == 80
        assert abs(int8["test_acc"] - rows[role]["test_acc"]) <= 0.1  # the real int8 file tracks the simulation
        assert (qat_run / "export" / f"{role}.int8.onnx").is_file()
        assert "MatMulInteger" in int8["int8_operators"] or "DynamicQuantizeLinear" in int8["int8_operators"]
    assert main(["eval", str(qat_run), "--quiet"]) == 0  # the saved weights load into the plain student


def test_quantize_is_refused_where_it_cannot_apply(tmp_path, capsys):
    cases = (
        (tiny_recipe(student__quantize={}, student__name="small_cnn", student__args={"channels": [4], "hidden": 8}),
         "layers with weights it would leave in float"),
        (tiny_recipe(student__quantize={}, scheme="born_again"), "student.quantize: scheme 'born_again'"),
        (tiny_recipe(student__quantize={"deploy": "fast"}), "deploy"),
        (tiny_recipe(teacher__model__quantize={}), "teacher.quantize: only the student"),
    )
    for number, (recipe, fragment) in enumerate(cases):
        path = write_recipe(tmp_path, recipe, f"r{number}.yaml")
        code = main(["distill", str(path), "--run-dir", str(tmp_path / f"run{number}"), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and fragment in err and "Traceback" not in err, err


def test_a_users_model_from_python(tmp_path):
    """prepare_qat on any module, distil it with potstill.distill, then the int8 ONNX Runtime file."""
    from potstill.compress import OnnxModel, compare_outputs, export_onnx, quantize_int8

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (240, 1, 8, 8), dtype=np.uint8)
    labels = (images.reshape(240, -1)[:, :32].mean(1) > images.reshape(240, -1)[:, 32:].mean(1)).astype(np.int64)
    kept = images.copy()
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 2))
    prepare_qat(student)
    result = potstill.distill(teacher, student, (images[:200], labels[:200]), (images[200:], labels[200:]),
                              epochs=2, lr=0.01, batch_size=32, teacher_check="off", quiet=True)
    plain = to_float(result.student)
    scaled = torch.from_numpy(images).float() / 255  # what the model saw: potstill scales uint8 images to [0, 1]
    with pytest.raises(PotstillError, match="does not run on the example inputs"):
        export_onnx(plain, {"input": torch.from_numpy(images[:4])}, tmp_path / "student.onnx")
    path = export_onnx(plain, {"input": scaled[:4]}, tmp_path / "student.onnx")
    int8 = OnnxModel(quantize_int8(path, tmp_path / "student.int8.onnx", mode="dynamic"))
    check = compare_outputs(plain, int8, [({"input": scaled[200:]}, torch.from_numpy(labels[200:]))])
    assert check["samples"] == 40 and check["agreement"] >= 0.9
    np.testing.assert_array_equal(images, kept)
