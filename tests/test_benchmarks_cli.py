"""The benchmark scripts' command line: every script takes --import MODULE for a user's registered
models, and kd_seeds.py distils a user's model over seeds through `potstill distill --seeds`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(path.name for path in BENCHMARKS.glob("*.py") if "__main__" in path.read_text())  # not helper modules
USER_MODULE = '''
from torch import nn

from potstill.models import MODELS


@MODELS.register("bench_cli_mlp")
def bench_cli_mlp(input_shape, num_classes, width: int = 16):
    """A one-hidden-layer MLP, registered outside potstill."""
    features = input_shape[0] * input_shape[1] * input_shape[2]
    return nn.Sequential(nn.Flatten(), nn.Linear(features, width), nn.ReLU(), nn.Linear(width, num_classes))
'''


def run_script(name: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / name), *args], cwd=cwd, env=os.environ | {"OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, check=False, timeout=120)


def test_the_scripts_are_found():
    assert "kd_seeds.py" in SCRIPTS and "common.py" not in SCRIPTS and len(SCRIPTS) >= 10


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_takes_import(name):
    done = run_script(name, "--help")
    assert done.returncode == 0, done.stderr
    assert "--import MODULE" in done.stdout


def test_kd_seeds_distils_a_user_model_over_seeds(tmp_path):
    (tmp_path / "bench_user_models.py").write_text(USER_MODULE)
    recipe = {  # digits with a small teacher and one epoch each: a few seconds per seed
        "name": "bench_cli", "seed": 0,
        "data": {"name": "digits", "batch_size": 64},
        "teacher": {"model": {"name": "small_cnn", "args": {"channels": [8], "hidden": 16}}, "train": {"epochs": 1, "lr": 3.0e-3}},
        "student": {"name": "bench_cli_mlp", "args": {"width": 16}},
        "train": {"epochs": 1, "lr": 3.0e-3},
        "distill": {"loss": "kd", "temperature": 4.0, "alpha": 0.5, "beta": 0.5, "teacher_check": "warn"},
        "report": {"latency_repeats": 1, "latency_batch_size": 8},
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    done = run_script("kd_seeds.py", "--recipe", "recipe.yaml", "--seeds", "0", "1", "--import", "bench_user_models",
                      "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    aggregate = json.loads((tmp_path / "out" / "seeds.json").read_text())
    assert aggregate["seeds"] == [0, 1]
    assert all((tmp_path / "out" / f"seed{seed}" / "summary.json").is_file() for seed in (0, 1))
    table = done.stdout.split("test top-1 after the last epoch")[1]
    for title in ("teacher", "student alone", "distilled student"):
        assert f"  {title}" in table
    assert "seed 0: teacher" in done.stdout and "seed 1: teacher" in done.stdout


def test_a_bad_import_stops_with_one_line(tmp_path):
    done = run_script("kd_seeds.py", "--recipe", "recipe.yaml", "--import", "no_such_module_here", "--out", "out", cwd=tmp_path)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--import no_such_module_here: cannot import it" in lines[0], done.stderr
    assert not (tmp_path / "out").exists()
