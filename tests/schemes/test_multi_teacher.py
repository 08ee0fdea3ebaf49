"""Multi-teacher: the combined soft targets equal the hand-computed mixtures; teachers never change."""

import math

import pytest
import torch

from potstill import config
from potstill.engine.checkpoint import load_tensors
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.knowledge.wiring import build_terms
from potstill.models import create_model
from potstill.pipeline import Runner
from potstill.recipe import DistillSpec, Recipe
from potstill.schemes.multi_teacher import MultiTeacherDistillation, TeacherEnsemble, combine, teacher_weights
from tests.engine.test_resume import same
from tests.schemes.helpers import scheme_recipe

# two teachers, one sample, three classes
LOGITS = torch.tensor([[[2.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]])  # (M=2, B=1, K=3)


def softmax(values, temperature=1.0):
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


def test_mean_of_probabilities_by_hand():
    first, second = softmax([2, 0, 0]), softmax([0, 1, 0])
    expected = [(a + b) / 2 for a, b in zip(first, second)]
    combined = combine(LOGITS, 1.0, "mean").softmax(dim=-1)
    assert combined[0].tolist() == pytest.approx(expected, abs=1e-6)
    # e^2/(e^2+2) = 0.78699, 1/(e^2+2) = 0.10650; 1/(e+2) = 0.21194, e/(e+2) = 0.57612
    assert expected == pytest.approx([0.49947, 0.34131, 0.15922], abs=1e-5)


def test_the_mixture_holds_at_every_temperature():
    for temperature in (1.0, 2.0, 4.0):
        expected = [(a + b) / 2 for a, b in zip(softmax([2, 0, 0], temperature), softmax([0, 1, 0], temperature))]
        combined = (combine(LOGITS, temperature, "mean") / temperature).softmax(dim=-1)
        assert combined[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_fixed_weights_are_normalised():
    expected = [0.25 * a + 0.75 * b for a, b in zip(softmax([2, 0, 0]), softmax([0, 1, 0]))]
    combined = combine(LOGITS, 1.0, "weights", [1.0, 3.0]).softmax(dim=-1)
    assert combined[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_confidence_weights_favour_the_lower_entropy_teacher():
    entropy = [-sum(p * math.log(p) for p in softmax(z)) for z in ([2, 0, 0], [0, 1, 0])]
    raw = [math.exp(-h) for h in entropy]
    expected_weights = [w / sum(raw) for w in raw]
    weights = teacher_weights(LOGITS, "confidence")[:, 0]
    assert weights.tolist() == pytest.approx(expected_weights, abs=1e-6)
    assert expected_weights[0] > expected_weights[1]  # teacher 1 (logit gap 2) is the surer one
    mixture = [expected_weights[0] * a + expected_weights[1] * b for a, b in zip(softmax([2, 0, 0]), softmax([0, 1, 0]))]
    assert combine(LOGITS, 1.0, "confidence").softmax(dim=-1)[0].tolist() == pytest.approx(mixture, abs=1e-6)


def test_gradients_reach_the_student_and_never_the_teachers():
    torch.manual_seed(0)
    teachers = [create_model("mlp", input_shape=(1, 4, 4), num_classes=3, hidden=[8]) for _ in range(2)]
    student = create_model("mlp", input_shape=(1, 4, 4), num_classes=3, hidden=[4])
    before = [{k: v.clone() for k, v in t.state_dict().items()} for t in teachers]
    ensemble = TeacherEnsemble(teachers, "confidence")
    terms = build_terms(DistillSpec(loss="kd", temperature=4.0, beta=1.0), epochs=1)
    task = MultiTeacherDistillation(student, ensemble, terms, alpha=0.0)
    data = {"input": torch.randn(6, 1, 4, 4), "target": torch.randint(0, 3, (6,)), "index": torch.arange(6)}
    result = task.step(data, 0.0)
    result.terms["kd"].backward()
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is None and not p.requires_grad for t in teachers for p in t.parameters())
    assert all(torch.equal(before[i][k], v) for i, t in enumerate(teachers) for k, v in t.state_dict().items())
    # the KD target is the mixture at T = 4, not at T = 1
    with torch.no_grad():
        every = torch.stack([t(data["input"]) for t in teachers])
        target = combine(every, 4.0, "confidence")
        student_logits = student(data["input"])
        expected = 16 * torch.nn.functional.kl_div((student_logits / 4).log_softmax(1), (target / 4).softmax(1), reduction="batchmean")
    assert torch.allclose(result.terms["kd"], expected, atol=1e-5)


def test_run_reports_every_teacher_and_the_ensemble_and_keeps_teachers_frozen(tmp_path):
    run = RunDir(tmp_path)
    run.create(resume=False)
    runner = Runner(config.validate(scheme_recipe("multi_teacher"), Recipe), run, Reporter(quiet=True))
    summary = runner.run_distill()
    rows = {row["role"]: row for row in summary["models"]}
    assert list(rows) == ["teacher", "teacher1", "teacher2", "baseline", "student"]
    assert rows["teacher"]["title"] == "teachers combined (confidence)"
    assert rows["teacher1"]["architecture"]["name"] == "small_cnn" and rows["teacher2"]["architecture"]["name"] == "mlp"
    assert rows["teacher1"]["teacher_agreement"] is not None  # agreement with the combined teachers
    assert rows["teacher1"]["size_bytes"] == (tmp_path / "teacher1" / "model.safetensors").stat().st_size
    for index in (1, 2):  # after the student learnt from them, the teachers are still the saved ones
        saved = load_tensors(tmp_path / f"teacher{index}" / "model.safetensors")[0]
        assert same(saved, runner.models[f"teacher{index}"].state_dict())
