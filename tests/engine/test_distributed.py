"""Data-parallel training under torchrun (engine/distributed.py, docs/distributed.md).

Two CPU processes (gloo) train what one process trains with the same global batch: every weight
agrees within WEIGHT_TOLERANCE, each epoch's loss within LOSS_TOLERANCE (relative), accuracies
within one sample. A killed two-process run resumes to the same bits as an uninterrupted one.
What cannot run distributed is refused by rank 0 in one line. The runs are subprocesses started
the way a user starts them: `python -m torch.distributed.run --standalone --nproc_per_node 2 -m potstill ...`.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from potstill import config
from potstill.cli.main import main as potstill_main
from potstill.data import ArrayData, Augment, BatchLoader
from potstill.distributed_check import check_command, check_data, check_recipe
from potstill.engine.checkpoint import load_tensors, load_training_state, save_training_state
from potstill.errors import PotstillError
from potstill.recipe import Recipe
from tests.conftest import write_recipe
from tests.resume_checks import assert_same_files, assert_same_log, logged

# Summation order differs (two partial gradients added, then weighted), so results agree up to
# float32 rounding: measured 3e-8 to 2e-7 on every scheme of recipes/digits with BatchNorm-free models.
WEIGHT_TOLERANCE = 1e-5  # max |w_1 - w_2| over every weight of every stage
LOSS_TOLERANCE = 1e-5  # relative, per epoch's mean loss
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
TRAIN_SAMPLES = 1001  # 15 batches of 64 and one of 41: unequal parts (21 and 20) in the last step


def launch(*args: str, processes: int = 1) -> list[str]:
    """The command line of `potstill ARGS`, under torchrun when processes > 1."""
    if processes == 1:
        return [sys.executable, "-m", "potstill", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
            "-m", "potstill", *args]


def run(*args: str, processes: int = 1) -> subprocess.CompletedProcess:
    return subprocess.run(launch(*args, processes=processes), env=ENV, capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A BatchNorm-free MLP teacher trained 3 epochs on digits (in this process, a second or two)."""
    folder = tmp_path_factory.mktemp("teacher")
    recipe = {"name": "teacher", "data": {"name": "digits", "batch_size": 64},
              "teacher": {"model": {"name": "mlp", "args": {"hidden": [64]}}, "train": {"epochs": 3, "lr": 3e-3}},
              "report": {"latency_repeats": 1, "latency_batch_size": 8}}
    assert potstill_main(["train", str(write_recipe(folder, recipe)), "--run-dir", str(folder / "run"), "--quiet"]) == 0
    return folder / "run" / "teacher" / "model.safetensors"


def kd_recipe(folder: Path, teacher: Path, **student_args) -> Path:
    recipe = {
        "name": "kd", "seed": 0,
        "data": {"name": "digits", "batch_size": 64, "train_size": TRAIN_SAMPLES},
        "teacher": {"model": {"name": "mlp", "args": {"hidden": [64]}}, "checkpoint": str(teacher)},
        "student": {"name": "mlp", "args": {"hidden": [32], **student_args}},
        "train": {"epochs": 3, "lr": 3e-3},
        "distill": {"loss": "kd", "temperature": 4.0, "alpha": 0.5, "beta": 0.5, "teacher_check": "warn"},
        "report": {"latency_repeats": 1, "latency_batch_size": 8},
    }
    return write_recipe(folder, recipe)


def files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def largest_difference(first: Path, second: Path) -> float:
    a, b = load_tensors(first)[0], load_tensors(second)[0]
    assert a.keys() == b.keys()
    return max(float((a[name].double() - b[name].double()).abs().max()) for name in a)


def test_two_processes_train_what_one_process_trains(tmp_path, teacher):
    """Offline KD through the teacher-output cache (each rank reads its part's rows), with the
    baseline: weights, per-epoch metrics and the summary agree; rank 1 wrote nothing."""
    recipe = kd_recipe(tmp_path, teacher)
    one = run("distill", str(recipe), "--run-dir", str(tmp_path / "one"), "--quiet")
    assert one.returncode == 0, one.stderr
    two = run("distill", str(recipe), "--run-dir", str(tmp_path / "two"), "--quiet", processes=2)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("results:") == 1  # rank 0 alone prints
    for stage in ("baseline", "student"):
        difference = largest_difference(tmp_path / "one" / stage / "model.safetensors", tmp_path / "two" / stage / "model.safetensors")
        assert difference < WEIGHT_TOLERANCE, (stage, difference)
    test_samples = json.loads((tmp_path / "one" / "summary.json").read_text())["data"]["test"]
    for first, second in zip(logged(tmp_path / "one"), logged(tmp_path / "two"), strict=True):
        assert (first["stage"], first["epoch"]) == (second["stage"], second["epoch"])
        assert math.isclose(first["loss"], second["loss"], rel_tol=LOSS_TOLERANCE), (first, second)
        for key in ("train_acc", "test_acc"):
            assert abs(first[key] - second[key]) <= 1 / min(TRAIN_SAMPLES, test_samples) + 1e-9, (key, first, second)
    summaries = [json.loads((tmp_path / name / "summary.json").read_text()) for name in ("one", "two")]
    accuracies = [{row["role"]: row["test_acc"] for row in summary["models"]} for summary in summaries]
    assert accuracies[0].keys() == accuracies[1].keys() == {"teacher", "baseline", "student"}
    assert all(abs(accuracies[0][role] - accuracies[1][role]) <= 1 / test_samples + 1e-9 for role in accuracies[0])
    assert json.loads((tmp_path / "two" / "run.json").read_text())["processes"] == 2
    assert files(tmp_path / "one") == files(tmp_path / "two")  # the same files, written once, cache included
    assert (tmp_path / "two" / "teacher_cache" / "manifest.json").is_file()


def test_a_killed_two_process_run_resumes_to_the_same_bits(tmp_path, teacher):
    """SIGTERM to torchrun mid-way through the student stage, then `--resume` under torchrun: the
    files equal an uninterrupted two-process run's, bit for bit (dropout included: every rank's
    RNG state is in the checkpoint; augmentation drawn for the whole batch)."""
    recipe = kd_recipe(tmp_path, teacher, dropout=0.2)
    changes = ["--set", "train.epochs=12", "--set", "data.hflip=true", "--set", "distill.cache.enabled=false", "--quiet"]
    whole = run("distill", str(recipe), "--run-dir", str(tmp_path / "whole"), *changes, processes=2)
    assert whole.returncode == 0, whole.stderr

    cut = tmp_path / "cut"
    process = subprocess.Popen(launch("distill", str(recipe), "--run-dir", str(cut), *changes, processes=2),
                               env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = cut / "student" / "checkpoint.safetensors"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    assert not (cut / "student" / "model.safetensors").exists(), "finished before the kill"
    assert stderr.count("potstill: stopped by SIGTERM") == 1, stderr  # rank 0 alone says so
    assert f"the same torchrun launch of potstill distill --resume {cut}" in stderr
    assert "terminate called" not in stderr  # no rank aborts at exit (distributed.setup: torch._dynamo first)

    resumed = run("distill", "--resume", str(cut), "--quiet", processes=2)
    assert resumed.returncode == 0 and "terminate called" not in resumed.stderr, resumed.stderr
    for stage in ("baseline", "student"):
        assert_same_files(tmp_path / "whole", cut, stage, files=("model", "checkpoint"))
    assert_same_log(tmp_path / "whole", cut)


@pytest.mark.parametrize("case", ["batch_size", "scheme"])
def test_a_refusal_is_one_line_from_rank_zero(tmp_path, teacher, case):
    """A batch that does not split and a scheme that cannot run distributed: every rank exits 2,
    rank 0 alone prints the line, no rank prints a traceback, nothing is written."""
    if case == "batch_size":
        args = ["distill", str(kd_recipe(tmp_path, teacher)), "--set", "data.batch_size=63"]
        expected = ("potstill: error: data.batch_size 63 does not split among 2 processes (each takes an equal part of "
                    "every batch); set data.batch_size to a multiple of 2, e.g. 64")
    else:
        lm = Path(__file__).parents[2] / "recipes" / "lm" / "gkd_on_policy.yaml"
        args = ["distill", str(lm), "--set", f"teacher.checkpoint={teacher}"]  # refused before the teacher is read
        expected = ("potstill: error: scheme gkd cannot run distributed yet (its losses average over tokens, which the "
                    "processes' parts of a batch hold unequally); run it in one process")
    done = subprocess.run(launch(*args, "--run-dir", str(tmp_path / "run"), processes=2), env=ENV, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert [line for line in output.splitlines() if line.startswith("potstill:")] == [expected], output
    assert "exitcode: 2" in output  # torchrun's report of the ranks
    assert "potstill/" not in "".join(line for line in output.splitlines() if line.strip().startswith("File "))
    assert not (tmp_path / "run").exists()


def image_data(count: int) -> ArrayData:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 1, 6, 6), generator=generator, dtype=torch.uint8)
    return ArrayData(images, torch.arange(count) % 10, 10)


@pytest.mark.parametrize("world", [2, 3])
def test_the_ranks_parts_make_up_the_one_process_batches(world):
    """Concatenated over ranks, every batch (order, targets, augmented images) is the one-process
    batch, the last partial one included; the parts' shares average to one."""
    data, augment = image_data(101), Augment(hflip=True, crop_padding=1)
    whole = BatchLoader(data, 12, augment=augment, shuffle=True, seed=3)
    parts = [BatchLoader(data, 12, augment=augment, shuffle=True, seed=3, shard=(rank, world)) for rank in range(world)]
    assert all(len(part) == len(whole) for part in parts)
    for epoch in (0, 1):
        for step, (batch, *pieces) in enumerate(zip(whole.batches(epoch), *(part.batches(epoch) for part in parts))):
            for name in ("index", "target", "input"):
                assert torch.equal(batch[name], torch.cat([piece[name] for piece in pieces])), (epoch, step, name)
            sizes = [len(piece["index"]) for piece in pieces]
            assert max(sizes) - min(sizes) <= 1
            shares = [part.share(step) for part in parts]
            assert shares == [world * size / len(batch["index"]) for size in sizes]
            assert math.isclose(sum(shares) / world, 1.0)


def recipe_with(**sections) -> Recipe:
    data = {"name": "digits_refusals", "data": {"name": "digits", "batch_size": 64},
            "teacher": {"model": {"name": "mlp"}, "checkpoint": "teacher.safetensors"},
            "student": {"name": "mlp"}, **sections}
    return config.validate(data, Recipe)


def test_what_cannot_run_distributed_is_named():
    check_recipe(recipe_with(), "distill", world=2)  # offline KD runs
    check_recipe(recipe_with(data={"name": "digits", "batch_size": 63}), "distill", world=1)  # one process: anything
    with pytest.raises(PotstillError, match=r"^loss 'rkd' cannot run distributed yet \(it compares distances and angles "
                       r"between the batch's samples, and each process holds only its part of the batch\)"):
        check_recipe(recipe_with(distill={"loss": "kd", "terms": [{"loss": "rkd"}]}), "distill", world=2)
    with pytest.raises(PotstillError, match=r"data.batch_size 64 does not split among 3 processes.*e.g. 66$"):
        check_recipe(recipe_with(), "train", world=3)
    with pytest.raises(PotstillError, match=r"^engine.compile cannot run distributed yet"):
        check_recipe(recipe_with(engine={"compile": True}), "train", world=2)
    with pytest.raises(PotstillError, match=r"^potstill eval runs in one process; start it without torchrun"):
        check_command("eval", None, world=2)
    with pytest.raises(PotstillError, match=r"^--seeds under torchrun"):
        check_command("distill", [0, 1], world=2)


def test_data_that_cannot_be_split_is_named():
    splits = SimpleNamespace(task="classification", name="digits", train=SimpleNamespace(targets=torch.zeros(1025)))
    check_data(splits, 64, world=1)
    with pytest.raises(PotstillError, match=r"last batch of the 1025 training samples holds 1, fewer than the 2 processes") as error:
        check_data(splits, 64, world=2)
    fitting = int(str(error.value).split("set data.batch_size to ")[1].split()[0])
    assert fitting % 2 == 0 and not 0 < 1025 % fitting < 2
    check_data(splits, fitting, world=2)
    with pytest.raises(PotstillError, match=r"^causal lm data \(shakespeare\) cannot run distributed yet"):
        check_data(SimpleNamespace(task="causal_lm", name="shakespeare", train=splits.train), 64, world=2)


def test_each_rank_resumes_with_its_own_random_state(tmp_path):
    """A checkpoint keeps every rank's RNG state; loading as rank r restores rank r's."""
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    states = [torch.manual_seed(seed).get_state() for seed in (10, 11)]
    rng = {"rng.cpu": states[0], "rng.cpu.rank0": states[0], "rng.cpu.rank1": states[1]}
    save_training_state(tmp_path / "checkpoint.safetensors", model, optimizer, scheduler, {"epochs_done": 1}, rng)
    for rank, state in enumerate(states):
        torch.manual_seed(99)
        load_training_state(tmp_path / "checkpoint.safetensors", model, optimizer, scheduler, rank)
        assert torch.equal(torch.get_rng_state(), state), rank
