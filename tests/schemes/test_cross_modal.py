"""Cross-modal distillation: the teacher reads `teacher_input`, the student `input`, everywhere
(frozen forward, cache, evaluation); the scheme refuses a recipe that crosses no modality."""

import json

import pytest
import torch
from torch import nn

import potstill
from potstill import config
from potstill.cache import TeacherCache, build
from potstill.data import ArrayData
from potstill.engine.task import WeightedTerm
from potstill.errors import PotstillError
from potstill.knowledge import create_loss
from potstill.model_io import FieldIO, call_model, field_of, read_field
from potstill.recipe import Recipe
from potstill.schedules import WeightSchedule
from potstill.schemes import create_scheme
from potstill.schemes.offline import OfflineDistillation
from potstill.startup import preflight
from tests.cache.helpers import job, setup
from tests.engine.test_resume import run_recipe
from tests.schemes.helpers import scheme_recipe


class Probe(nn.Module):
    """Returns (B, 2) logits whose first column is each sample's mean value: which field it read."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        mean = x.flatten(1).mean(dim=1)  # (B,)
        return torch.stack([mean, torch.zeros_like(mean)], dim=1) * self.scale


def test_field_io_reads_its_field_and_names_a_missing_one():
    batch = {"input": torch.zeros(2, 1, 4, 4), "teacher_input": torch.ones(2, 1, 4, 4), "target": torch.zeros(2)}
    model = read_field(Probe(), "teacher_input")
    assert field_of(model) == "teacher_input" and isinstance(model._potstill_io, FieldIO)
    assert call_model(model, batch)[:, 0].tolist() == [1.0, 1.0]
    assert call_model(Probe(), batch)[:, 0].tolist() == [0.0, 0.0]  # the plain convention reads input
    with pytest.raises(PotstillError, match=r"reads `teacher_input` .* holds only input"):
        call_model(model, {"input": torch.zeros(2, 1, 4, 4), "target": torch.zeros(2)})
    assert field_of(read_field(model, "input")) == "input"  # back to the plain convention


def test_frozen_teacher_reads_its_modality_and_gradients_reach_only_the_student():
    teacher = read_field(Probe(), "teacher_input")
    student = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    kd = WeightedTerm("kd", create_loss("kd", temperature=1.0), 1.0, WeightSchedule())
    task = OfflineDistillation(student, teacher, [kd], alpha=0.0)
    batch = {"input": torch.rand(4, 1, 4, 4), "teacher_input": torch.full((4, 1, 4, 4), 3.0),
             "target": torch.zeros(4, dtype=torch.long), "index": torch.arange(4)}
    logits, _ = task.teacher_outputs(batch)
    assert logits[:, 0].tolist() == [3.0] * 4  # the teacher saw teacher_input, not input
    result = task.step(batch, 0.0)
    assert set(result.terms) == {"kd"}  # alpha 0: no label term at all
    sum(result.terms.values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert teacher.scale.grad is None and not teacher.scale.requires_grad


def recipe_of(**changes) -> Recipe:
    return config.validate(scheme_recipe("cross_modal", **changes), Recipe)


def test_the_scheme_refuses_data_without_the_teachers_field_and_a_recipe_that_crosses_nothing():
    with pytest.raises(PotstillError, match=r"teacher reads `teacher_input` but dataset 'digits' has only input; use a paired"):
        preflight(recipe_of(data__name="digits"), "distill")
    with pytest.raises(PotstillError, match="both read `input`.*plain offline distillation"):
        preflight(recipe_of(teacher__model__input="input"), "distill")
    with pytest.raises(PotstillError, match="no loss term uses the teacher"):
        preflight(recipe_of(distill__loss="lsr"), "distill")
    # outside cross_modal the same mistake is named before anything is read
    with pytest.raises(PotstillError, match=r"the teacher reads `depth` but dataset 'digits_pair' has only input, teacher_input"):
        preflight(recipe_of(scheme={"name": "offline"}, teacher__model__input="depth"), "distill")
    with pytest.raises(PotstillError, match="bookkeeping"):
        recipe_of(teacher__model__input="target")
    preflight(recipe_of(), "distill")  # the recipe as it is passes


def test_teacher_cache_keys_on_the_teachers_field_and_modality(tmp_path):
    recipe, bench, teacher = setup(data__name="digits_pair", data__args={}, data__train_size=200,
                                   teacher__model__input="teacher_input", data__crop_padding=1)
    first = job(tmp_path / "a", recipe, bench, teacher)
    assert first.fingerprint["teacher"]["input"] == "teacher_input"
    build(first)
    cache = TeacherCache(first.folder, fingerprint=first.fingerprint)
    loader = bench.train_loader(seed=3, views=cache.views)
    batch = next(iter(loader.batches(0)))
    with torch.inference_mode():
        live = call_model(teacher.eval(), batch)  # the teacher on its own field, in the replayed view
    cached, _ = cache.outputs(batch["index"], batch["view"])
    torch.testing.assert_close(cached, live.float(), atol=2e-2, rtol=0)  # float16 storage
    # the same weights reading the student's field would be another cache
    plain = job(tmp_path / "b", recipe, bench, read_field(teacher, "input"))
    assert "input" not in plain.fingerprint["teacher"] and plain.fingerprint != first.fingerprint
    read_field(teacher, "teacher_input")
    # another teacher modality (same student images, same labels) changes the data's content hash
    train = bench.splits.train
    bench.splits.train = ArrayData(train.inputs, train.targets, train.num_classes, teacher_inputs=255 - train.teacher_inputs)
    changed = job(tmp_path / "c", recipe, bench, teacher)
    assert changed.fingerprint["data"]["content_sha256"] != first.fingerprint["data"]["content_sha256"]
    assert changed.fingerprint["teacher"] == first.fingerprint["teacher"]


def test_run_without_student_labels_reports_each_model_on_its_own_field(tmp_path):
    recipe = scheme_recipe("cross_modal", distill__alpha=0.0, distill__beta=1.0, train__epochs=2, data__hflip=False)
    summary = run_recipe(tmp_path / "run", recipe)
    assert summary["cross_modal"] == {"teacher_reads": "teacher_input", "student_reads": "input", "student_labels": False}
    rows = {row["role"]: row for row in summary["models"]}
    assert rows["teacher"]["architecture"]["input"] == "teacher_input" and "input" not in rows["student"]["architecture"]
    teacher = potstill.load_model(tmp_path / "run", role="teacher")  # a plain module: fed its modality by hand
    bench_data = potstill.load_dataset("digits_pair", train_size=240, args={})
    with torch.inference_mode():
        on_own = (teacher(bench_data.test.fields(torch.arange(len(bench_data.test)))["teacher_input"]).argmax(1)
                  == bench_data.test.targets).float().mean().item()
    assert rows["teacher"]["test_acc"] == pytest.approx(on_own, abs=1e-6)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    terms = [record["terms"] for record in records if record.get("stage") == "student"]
    assert len(terms) == 2 and all(set(term) == {"kd"} for term in terms)  # the student never saw a label


def test_python_api_distils_across_a_users_own_pair(tmp_path):
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(120) % 3
    images = torch.rand(120, 1, 4, 4, generator=generator) * 0.2 + labels.view(-1, 1, 1, 1) * 0.3  # teacher's modality
    sensor = images.mean(dim=(2, 3), keepdim=True).expand(-1, 1, 4, 4).contiguous()  # the student's: one level
    train = ArrayData(sensor[:90], labels[:90], 3, teacher_inputs=images[:90])
    test = ArrayData(sensor[90:], labels[90:], 3, teacher_inputs=images[90:])
    teacher = read_field(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), "teacher_input")
    student = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    result = potstill.distill(teacher, student, train, test, scheme="cross_modal", epochs=1, alpha=0.0, beta=1.0,
                              teacher_check="off", quiet=True)
    assert result.summary["cross_modal"]["teacher_reads"] == "teacher_input"
    with pytest.raises(PotstillError, match=r"the teacher reads `teacher_input` but train_data has only input; pass paired data"):
        potstill.distill(teacher, student, (sensor[:90], labels[:90]), (sensor[90:], labels[90:]), scheme="cross_modal",
                         epochs=1, quiet=True)
    with pytest.raises(PotstillError, match="both read `input`"):
        potstill.distill(read_field(teacher, "input"), student, train, test, scheme="cross_modal", epochs=1, quiet=True)


def test_scheme_has_no_arguments_and_allows_alpha_zero():
    scheme = create_scheme("cross_modal", {})
    scheme.check(recipe_of(distill__alpha=0.0), [WeightedTerm("kd", create_loss("kd"), 1.0, WeightSchedule())])
