"""Resume: an interrupted run continued with --resume ends with the same weights as an
uninterrupted one (exactly, on CPU, same seed)."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from potstill import config
from potstill.engine.checkpoint import load_tensors
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.errors import PotstillError
from potstill.pipeline import Runner
from potstill.recipe import Recipe
from tests.conftest import tiny_recipe, write_recipe


def run_recipe(folder, recipe_data, resume=False, callbacks=None):
    recipe = config.validate(recipe_data, Recipe)
    run = RunDir(folder)
    run.create(resume=resume)
    if not resume:
        (folder / "recipe.yaml").write_text("name: saved\n")
    return Runner(recipe, run, Reporter(quiet=True), resume=resume, callbacks=callbacks).run_distill()


def weights(folder, stage):
    return load_tensors(folder / stage / "model.safetensors")[0]


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Stop(Exception):
    pass


@pytest.mark.parametrize("stop_stage,stop_epoch", [("student", 2), ("teacher", 1), ("baseline", 2)])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, stop_stage, stop_epoch):
    recipe = tiny_recipe(train__epochs=4, data__crop_padding=1)
    run_recipe(tmp_path / "whole", recipe)

    def interrupt(stage, epochs_done, record):
        if stage == stop_stage and epochs_done == stop_epoch:
            raise Stop

    with pytest.raises(Stop):
        run_recipe(tmp_path / "cut", recipe, callbacks=[interrupt])
    assert not (tmp_path / "cut" / stop_stage / "model.safetensors").exists()
    summary = run_recipe(tmp_path / "cut", recipe, resume=True)
    for stage in ("teacher", "baseline", "student"):
        assert same(weights(tmp_path / "whole", stage), weights(tmp_path / "cut", stage)), stage
    epochs = [r["epoch"] for r in RunDir(tmp_path / "cut").records() if r["stage"] == "student"]
    assert epochs == [1, 2, 3, 4]  # the log holds each epoch once
    assert summary["models"][2]["train_time_s"] > 0


def test_killed_process_resumes_to_the_same_weights(tmp_path):
    """SIGKILL the CLI after its first student checkpoint, resume, compare with a clean run."""
    recipe = tiny_recipe(train__epochs=30, data__args={"num_samples": 2000})
    recipe["distill"]["baseline"] = False
    path = write_recipe(tmp_path, recipe)
    command = [sys.executable, "-m", "potstill.cli.main", "distill", str(path), "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run(command + ["--run-dir", str(tmp_path / "whole")], check=True, env=env)

    process = subprocess.Popen(command + ["--run-dir", str(tmp_path / "cut")], env=env)
    checkpoint = tmp_path / "cut" / "student" / "checkpoint.safetensors"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL  # killed mid-run, not finished
    assert not (tmp_path / "cut" / "student" / "model.safetensors").exists()
    resumed = subprocess.run(command[:-1] + ["--resume", str(tmp_path / "cut"), "--quiet"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert same(weights(tmp_path / "whole", "student"), weights(tmp_path / "cut", "student"))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    recipe = tiny_recipe(train__epochs=4)
    recipe["distill"]["baseline"] = False

    def poison(stage, epochs_done, record):
        if stage == "student" and epochs_done == 2:
            student = runner.models_under_training["student"]
            with torch.no_grad():
                next(student.parameters()).fill_(float("nan"))

    recipe_obj = config.validate(recipe, Recipe)
    run = RunDir(tmp_path / "run")
    run.create(resume=False)
    runner = Runner(recipe_obj, run, Reporter(quiet=True), callbacks=[poison])
    runner.models_under_training = {}
    original_stage = runner.stage

    def remember(name, task, spec, **options):
        runner.models_under_training[name] = task.model
        return original_stage(name, task, spec, **options)

    runner.stage = remember
    with pytest.raises(PotstillError) as error:
        runner.run_distill()
    message = str(error.value)
    assert "non-finite at epoch 3" in message and "after epoch 2" in message and "intact" in message
    tensors, header = load_tensors(tmp_path / "run" / "student" / "checkpoint.safetensors")
    assert header["epochs_done"] == 2
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if k.startswith("model."))
