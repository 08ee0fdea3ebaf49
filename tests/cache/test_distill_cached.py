"""Distillation from a cache: the teacher never runs while the student trains, the loss equals the
online loss on the same views, resume is exact, and bad settings fail with one clear line."""

import json

import pytest
import torch

from potstill import config
from potstill.cache import TeacherCache, build
from potstill.cli.main import main
from potstill.engine.checkpoint import load_tensors, save_tensors
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.knowledge.wiring import build_terms
from potstill.pipeline import Runner
from potstill.recipe import Recipe
from potstill.schemes import OfflineDistillation
from tests.cache.helpers import job, setup
from tests.cli.test_cli import assert_user_error
from tests.conftest import tiny_recipe, write_recipe
from tests.engine.test_resume import Stop, run_recipe, same, weights

CACHED = {"distill__cache__enabled": True, "distill__cache__views": 2, "data__crop_padding": 1}


def test_the_teacher_does_not_run_while_the_student_trains(tmp_path):
    recipe = tiny_recipe(**CACHED)
    calls, per_epoch = [0], []

    def count(stage, epochs_done, record):
        if stage == "student":
            per_epoch.append(calls[0])

    parsed = config.validate(recipe, Recipe)
    runner = Runner(parsed, RunDir(tmp_path / "run"), Reporter(quiet=True), callbacks=[count])
    teacher = runner.teacher_skeleton()  # handed in from Python, so its calls can be counted
    teacher.register_forward_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    summary = runner.run_distill(teacher=teacher)
    assert len(set(per_epoch)) == 1 and len(per_epoch) == 3  # no teacher pass between student epochs
    records = [r for r in RunDir(tmp_path / "run").records() if r["stage"] == "student"]
    assert all(r["teacher_ms"] < r["step_ms"] for r in records)
    assert (tmp_path / "run" / "teacher_cache" / "manifest.json").is_file()
    assert {row["role"] for row in summary["models"]} >= {"teacher", "baseline", "student"}


def test_cached_loss_equals_the_online_loss_on_the_same_views(tmp_path):
    recipe, bench, teacher = setup()
    cache_job = job(tmp_path / "c", recipe, bench, teacher, dtype="float32")
    build(cache_job)
    cache = TeacherCache(cache_job.folder)
    terms = build_terms(recipe.distill, recipe.train.epochs)
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8 * 8, 10))
    cached = OfflineDistillation(student, teacher, terms, cache=cache)
    online = OfflineDistillation(student, teacher, terms)
    for batch in bench.train_loader(2, views=cache.views).batches(0):
        a, b = cached.step(batch, 0.0).terms, online.step(batch, 0.0).terms
        assert a.keys() == b.keys() == {"ce", "kd"}
        assert torch.allclose(a["kd"], b["kd"], rtol=1e-5, atol=1e-6)


def test_interrupted_cached_run_resumes_to_the_same_weights(tmp_path):
    recipe = tiny_recipe(train__epochs=4, **CACHED)
    run_recipe(tmp_path / "whole", recipe)

    def interrupt(stage, epochs_done, record):
        if stage == "student" and epochs_done == 2:
            raise Stop

    with pytest.raises(Stop):
        run_recipe(tmp_path / "cut", recipe, callbacks=[interrupt])
    run_recipe(tmp_path / "cut", recipe, resume=True)
    assert same(weights(tmp_path / "whole", "student"), weights(tmp_path / "cut", "student"))


def test_feature_terms_read_cached_teacher_layers(tmp_path):
    """Catches: cached logits used but the teacher's tapped layers taken from a live forward pass
    (or any teacher pass while the student trains). Once the cache is built, the live teacher is
    corrupted: the student must still train exactly as with the intact teacher, without one
    teacher call, so its features can only have come from the cache."""
    recipe = tiny_recipe(**CACHED, distill__cache__features=True,
                         distill__terms=[{"loss": "at", "pairs": [{"student": "block1", "teacher": "block1"}]}])
    recipe["student"] = {"name": "small_cnn", "args": {"channels": [4], "hidden": 8}}

    def distil(folder, corrupt):
        run = RunDir(folder)
        run.create(resume=False)
        calls, per_epoch = [], []
        count = lambda stage, epochs_done, record: per_epoch.append(len(calls)) if stage == "student" else None
        runner = Runner(config.validate(recipe, Recipe), run, Reporter(quiet=True), callbacks=[count])
        teacher = runner.teacher_skeleton()  # handed in from Python, so it can be changed and watched
        build_cache = runner.build_cache

        def build_then_change_the_teacher(job, rebuild=False):
            result = build_cache(job, rebuild)
            if corrupt:  # noise, not a rescaling: attention maps are normalised, a scale would not show
                generator = torch.Generator().manual_seed(1)
                with torch.no_grad():
                    for parameter in teacher.parameters():
                        parameter.add_(torch.randn(parameter.shape, generator=generator))
            teacher.register_forward_hook(lambda *args: calls.append(1))
            return result

        runner.build_cache = build_then_change_the_teacher
        summary = runner.run_distill(teacher=teacher)
        return summary, per_epoch

    summary, _ = distil(tmp_path / "intact", corrupt=False)
    manifest = json.loads((tmp_path / "intact" / "teacher_cache" / "manifest.json").read_text())
    assert "tap:block1" in manifest["layout"]["fields"]
    assert any(row["role"] == "student" for row in summary["models"])
    _, student_calls = distil(tmp_path / "corrupted", corrupt=True)
    assert student_calls == [0, 0, 0]  # teacher calls counted at the end of each student epoch
    assert same(weights(tmp_path / "intact", "student"), weights(tmp_path / "corrupted", "student"))
    assert same(load_tensors(tmp_path / "intact" / "student" / "module.safetensors")[0],
                load_tensors(tmp_path / "corrupted" / "student" / "module.safetensors")[0])


def test_cache_build_command_then_distill_reuses_it(tmp_path, capsys):
    teacher = tmp_path / "teacher.safetensors"
    recipe = tiny_recipe(**CACHED)
    parsed = config.validate(recipe, Recipe)
    _, _, model = setup()
    save_tensors(teacher, model.state_dict(), {})
    path = write_recipe(tmp_path, tiny_recipe(**CACHED, teacher__checkpoint=str(teacher), distill__cache__path=str(tmp_path / "cache")))
    assert main(["cache", "build", str(path), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "intact" in out and "320 x 2" in out and "20 logits + 0 features + 3 view" in out
    before = (tmp_path / "cache" / "manifest.json").read_text()
    assert main(["distill", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    assert (tmp_path / "cache" / "manifest.json").read_text() == before  # up to date: not rebuilt
    assert main(["cache", "info", str(tmp_path / "cache"), "--quiet"]) == 0
    assert parsed.distill.cache.views == 2
    # a different teacher at the same path: refused, and the cache is left as it was
    save_tensors(teacher, {k: v + 1 for k, v in model.state_dict().items() if v.is_floating_point()} |
                 {k: v for k, v in model.state_dict().items() if not v.is_floating_point()}, {})
    assert_user_error(capsys, ["distill", str(path), "--run-dir", str(tmp_path / "run2"), "--quiet"],
                      "built from something else", "the teacher: weights_sha256", "--rebuild")
    assert (tmp_path / "cache" / "manifest.json").read_text() == before


@pytest.mark.parametrize(("changes", "fragments"), [
    ({"distill__cache__enabled": True, "distill__cache__views": 2, "data__hflip": False},
     ["distill.cache.views", "no random augmentation"]),
    ({"distill__cache__enabled": True, "distill__terms": [{"loss": "rkd"}]},
     ["compare teacher layers", "distill.cache.features: true"]),
    ({"distill__cache__enabled": True, "distill__loss": "lsr", "distill__beta": None},
     ["nothing to cache"]),
    ({"distill__cache__enabled": True, "distill__cache__top_k": 10}, ["top_k: 10 keeps all 10 classes"]),
    ({"distill__cache__load": "disk"}, ["distill.cache.load"]),
])
def test_bad_cache_settings_fail_with_one_line(tmp_path, capsys, changes, fragments):
    recipe = tiny_recipe(**changes)
    if changes.get("distill__loss") == "lsr":
        recipe.pop("teacher")
    path = write_recipe(tmp_path, recipe)
    assert_user_error(capsys, ["distill", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"], *fragments)


def test_cache_command_errors(tmp_path, capsys):
    path = write_recipe(tmp_path, tiny_recipe())
    assert_user_error(capsys, ["cache", "build", str(path), "--out", str(tmp_path / "c")], "needs a trained teacher")
    teacher = tmp_path / "t.safetensors"
    save_tensors(teacher, setup()[2].state_dict(), {})
    path = write_recipe(tmp_path, tiny_recipe(teacher__checkpoint=str(teacher)), "with_teacher.yaml")
    assert_user_error(capsys, ["cache", "build", str(path)], "set distill.cache.path", "--out DIR")
    (tmp_path / "empty").mkdir()
    assert_user_error(capsys, ["cache", "info", str(tmp_path / "empty")], "no finished teacher cache")
