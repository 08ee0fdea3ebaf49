"""A run folder can be trusted (issue 11, items 3, 4, 8, 9, 11): one writer, no silent change of
settings on resume, finished runs untouched, inputs checked before the folder exists, and one
clear line for every stop. Each test names the planted bug it catches."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from potstill import config
from potstill.cli.main import main
from potstill.engine.checkpoint import load_tensors, save_tensors
from potstill.engine.loop import NonFiniteLoss, check_finite_weights
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.pipeline import Runner
from potstill.recipe import Recipe
from potstill.startup import build_model, open_workbench
from tests.conftest import tiny_recipe, write_recipe

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}


class Stop(Exception):
    pass


def files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def one_error_line(capsys, argv, *fragments):
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("potstill: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def interrupted_run(folder, recipe_data, stage="student", epoch=1):
    """A run stopped after `epoch` epochs of `stage`, with the recipe.yaml the CLI would write."""
    recipe = config.validate(recipe_data, Recipe)
    run = RunDir(folder)
    run.create(resume=False)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(config.to_dict(recipe), sort_keys=False))

    def stop(name, epochs_done, record):
        if name == stage and epochs_done == epoch:
            raise Stop

    with pytest.raises(Stop):
        Runner(recipe, run, Reporter(quiet=True), callbacks=[stop]).run_distill()
    run.close()


def cli(*argv):
    return subprocess.Popen([sys.executable, "-m", "potstill.cli.main", *argv], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path, process, seconds=120):
    deadline = time.time() + seconds
    while not path.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert path.exists(), process.communicate()


def test_an_edited_recipe_is_not_resumed_and_the_changed_keys_are_named(tmp_path, capsys):
    """Catches: --resume reading the edited RUN/recipe.yaml and training the rest of the run with
    other settings (half at one temperature, half at another), or a traceback for changed epochs."""
    interrupted_run(tmp_path / "run", tiny_recipe())
    saved = tmp_path / "run" / "recipe.yaml"
    data = yaml.safe_load(saved.read_text())
    data["distill"]["temperature"], data["train"]["epochs"] = 2.0, 5
    saved.write_text(yaml.safe_dump(data, sort_keys=False))
    before = files(tmp_path / "run")
    one_error_line(capsys, ["distill", "--resume", str(tmp_path / "run"), "--quiet"],
                   "was made with another recipe", "distill.temperature: 4.0 -> 2.0", "train.epochs: 3 -> 5")
    assert files(tmp_path / "run") == before
    data["distill"]["temperature"], data["train"]["epochs"] = 4.0, 3
    saved.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["distill", "--resume", str(tmp_path / "run"), "--quiet"]) == 0


def test_every_checkpoint_and_weights_file_carries_the_resolved_recipe(tmp_path):
    """Catches: a stage whose checkpoint is written without the recipe stamp (then nothing can
    tell an edited recipe from the one the stage was trained with)."""
    recipe = config.validate(tiny_recipe(), Recipe)
    interrupted_run(tmp_path / "run", tiny_recipe(), stage="student", epoch=2)
    for path in (tmp_path / "run").glob("*/*.safetensors"):
        header = load_tensors(path)[1]
        assert header["recipe"] == config.to_dict(recipe), path


def test_a_second_process_on_a_run_folder_is_refused_and_a_killed_holder_does_not_block(tmp_path, capsys):
    """Catches: a run and a --resume of it both writing one folder (duplicated metrics lines,
    summary written twice), and a lock that outlives its process."""
    recipe = tiny_recipe(train__epochs=40, data__args={"num_samples": 3000})
    recipe["distill"]["baseline"] = False
    path = write_recipe(tmp_path, recipe)
    process = cli("distill", str(path), "--run-dir", str(tmp_path / "run"), "--quiet")
    wait_for(tmp_path / "run" / "student" / "checkpoint.safetensors", process)
    err = one_error_line(capsys, ["distill", "--resume", str(tmp_path / "run"), "--quiet"], "in use by another potstill process")
    assert f"(pid {process.pid})" in err
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (tmp_path / "run" / ".lock").exists()  # left behind by the killed process
    assert main(["distill", "--resume", str(tmp_path / "run"), "--quiet"]) == 0
    epochs = [r["epoch"] for r in RunDir(tmp_path / "run").records() if r["stage"] == "student"]
    assert epochs == list(range(1, 41))  # each epoch logged once


def test_sigterm_stops_with_one_line_and_the_run_resumes(tmp_path):
    """Catches: SIGTERM ending the process silently (default action), with no word on resuming."""
    recipe = tiny_recipe(train__epochs=40, data__args={"num_samples": 3000})
    recipe["distill"]["baseline"] = False
    path = write_recipe(tmp_path, recipe)
    process = cli("distill", str(path), "--run-dir", str(tmp_path / "run"), "--quiet")
    wait_for(tmp_path / "run" / "student" / "checkpoint.safetensors", process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143
    assert err.strip().splitlines() == [f"potstill: stopped by SIGTERM; checkpoints written so far are intact; "
                                        f"continue with potstill distill --resume {tmp_path / 'run'}"]
    assert not (tmp_path / "run" / "student" / "model.safetensors").exists()
    assert main(["distill", "--resume", str(tmp_path / "run"), "--quiet"]) == 0


def test_resuming_a_finished_run_leaves_every_file_untouched(tmp_path, capsys):
    """Catches: --resume of a finished run rewriting summary.json (fresh latencies) and run.json."""
    path = write_recipe(tmp_path, tiny_recipe(train__epochs=1))
    assert main(["distill", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    before = files(tmp_path / "run")
    capsys.readouterr()
    assert main(["distill", "--resume", str(tmp_path / "run")]) == 0
    out, err = capsys.readouterr()
    assert "is finished (summary.json); nothing to resume" in " ".join(err.split())
    assert "did distillation pay off?" in out  # the finished run's table, read from summary.json
    assert files(tmp_path / "run") == before


def test_a_resume_keeps_the_original_run_record(tmp_path):
    """Catches: run.json (versions, argv, threads of the start) overwritten by the resume."""
    interrupted_run(tmp_path / "run", tiny_recipe())
    first = json.loads((tmp_path / "run" / "run.json").read_text())
    assert main(["distill", "--resume", str(tmp_path / "run"), "--quiet"]) == 0
    after = json.loads((tmp_path / "run" / "run.json").read_text())
    assert {k: v for k, v in after.items() if k != "resumed"} == first
    assert len(after["resumed"]) == 1 and after["resumed"][0]["argv"]


def test_run_dir_that_is_a_file_gets_one_line(tmp_path, capsys):
    """Catches: a NotADirectoryError traceback for --run-dir pointing at a file."""
    path = write_recipe(tmp_path, tiny_recipe())
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    one_error_line(capsys, ["distill", str(path), "--run-dir", str(target), "--quiet"], "is a file, not a folder")
    assert target.read_text() == "keep me"


def test_a_torch_save_checkpoint_gets_the_safe_conversion(tmp_path, capsys):
    """Catches: 'not found' for a .pt teacher, which sends the user looking for a missing file."""
    (tmp_path / "teacher.pt").write_bytes(b"\x80\x04not for us")
    path = write_recipe(tmp_path, tiny_recipe(teacher__checkpoint=str(tmp_path / "teacher.pt")))
    one_error_line(capsys, ["distill", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"],
                   "never loads pickles", "weights_only=True", str(tmp_path / "teacher.safetensors"))
    assert not (tmp_path / "run").exists()


def test_a_broken_teacher_is_found_before_the_run_folder_exists(tmp_path, capsys):
    """Catches: a wrong-architecture (or diverged, NaN) teacher found only after the run folder is
    made, so that the retry with the same --run-dir is refused as 'already exists'."""
    recipe = config.validate(tiny_recipe(), Recipe)
    teacher = build_model(recipe.teacher.model, open_workbench(recipe), "teacher", 0)
    state = teacher.state_dict()
    wrong = tmp_path / "wrong.safetensors"
    save_tensors(wrong, {k: v for k, v in state.items() if "classifier" not in k and "head" not in k} | {"extra": torch.zeros(1)}, {})
    path = write_recipe(tmp_path, tiny_recipe(teacher__checkpoint=str(wrong)))
    one_error_line(capsys, ["distill", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"], "does not match the teacher architecture")
    assert not (tmp_path / "run").exists()
    diverged = tmp_path / "nan.safetensors"
    save_tensors(diverged, {k: (v * float("nan") if v.is_floating_point() else v) for k, v in state.items()}, {})
    path = write_recipe(tmp_path, tiny_recipe(teacher__checkpoint=str(diverged), train__epochs=1))
    one_error_line(capsys, ["distill", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"], "holds NaN or infinite values")
    assert not (tmp_path / "run").exists()
    good = tmp_path / "good.safetensors"
    save_tensors(good, state, {})
    path = write_recipe(tmp_path, tiny_recipe(teacher__checkpoint=str(good), train__epochs=1))
    assert main(["distill", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    """Catches: an epoch whose last optimizer step overflowed (loss checked before the step)
    saving inf weights as 'the last good checkpoint'."""
    module = torch.nn.Linear(2, 2)
    with torch.no_grad():
        module.weight[0, 0] = float("inf")
    checkpoint = tmp_path / "checkpoint.safetensors"
    with pytest.raises(NonFiniteLoss, match="weights became non-finite during epoch 3 \\(weight\\)") as error:
        check_finite_weights("student", 2, module, checkpoint)
    assert "no checkpoint had been written yet" in str(error.value)
    assert "--resume" not in str(error.value) and "start a new run" in str(error.value)


def test_a_metrics_line_cut_short_by_a_kill_is_dropped_not_fatal(tmp_path):
    """Catches: a resume that dies on a half-written last metrics line (killed mid-append)."""
    run = RunDir(tmp_path)
    run.log({"stage": "student", "epoch": 1})
    with run.metrics_path.open("a") as stream:
        stream.write('{"stage": "student", "ep')
    assert run.records() == [{"stage": "student", "epoch": 1}]
