"""The CIFAR-100 table of the papers as sweeps: every pair's methods file merges into its recipe and
passes the recipe checks, the published numbers cover every method, and the whole command runs end
to end on CIFAR-100 binary files (made here: random pixels, so only the mechanics are tested)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from potstill.config.files import load_yaml_file
from potstill.experiments.sweep import Sweep, load_recipe, plan, published_numbers
from potstill.experiments.sweep_params import parse_params
from tests.conftest import Recorder

pytest.importorskip("optuna")

ROOT = Path(__file__).parents[2]
TABLE = ROOT / "recipes" / "cifar100"
PAIRS = ["resnet32x4_to_resnet8x4", "wrn_40_2_to_wrn_16_2", "resnet56_to_resnet20"]
METHODS = ["kd", "fitnet", "at", "sp", "rkd", "pkt", "crd", "dkd"]
SGD = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5.0e-4, "scheduler": "multistep",
       "milestones": [150, 180, 210], "gamma": 0.1, "epochs": 240}


@pytest.mark.parametrize("pair", PAIRS)
def test_every_method_of_a_pair_merges_into_its_recipe(pair):
    """Catches: a method the recipe validator or the loss registry refuses (unknown key, a
    temperature on a loss without one, bad loss_args), a recipe off the papers' schedule, a method
    without a published number to compare with."""
    recipe = load_recipe(TABLE / f"{pair}.yaml", [])
    for spec in (recipe.teacher.train, recipe.train):
        assert {key: getattr(spec, key) for key in SGD} == SGD
    assert recipe.data.batch_size == 64 and recipe.data.crop_padding == 4 and recipe.data.hflip
    space, names = parse_params([f"distill=@{TABLE / 'methods' / f'{pair}.yaml'}"])
    assert list(names["distill"].values()) == METHODS
    Sweep(None, recipe, plan(space, None, "auto", [0, 1, 2]), Path("unused"), Recorder())  # checks every method
    published = published_numbers(TABLE / "published.yaml", recipe.name)
    assert set(published) == {"teacher", "student alone", *METHODS}


def test_dkd_uses_each_pairs_published_non_target_weight():
    weights = {pair: load_yaml_file(TABLE / "methods" / f"{pair}.yaml")["dkd"]["loss_args"]["non_target_weight"]
               for pair in PAIRS}
    assert weights == {"resnet32x4_to_resnet8x4": 8.0, "wrn_40_2_to_wrn_16_2": 6.0, "resnet56_to_resnet20": 2.0}


def write_cifar100(folder: Path, train: int, test: int) -> None:
    """CIFAR-100 binary files: per record a coarse byte, a fine byte and 3072 pixel bytes."""
    rng = np.random.default_rng(0)
    for name, count in (("train.bin", train), ("test.bin", test)):
        fine = np.arange(count) % 100
        records = np.concatenate([(fine // 5)[:, None], fine[:, None], rng.integers(0, 256, (count, 3072))], axis=1)
        records.astype(np.uint8).tofile(folder / name)


@pytest.mark.slow
def test_the_table_command_runs_end_to_end(tmp_path, capsys):
    """resnet56 -> resnet20 with three methods (logits, a memory bank, a warm-up schedule) for one
    short epoch: trials named by method, the published column beside ours, the gain against the
    reference run's student alone."""
    from potstill.cli.main import main

    write_cifar100(tmp_path, train=1000, test=100)
    methods = load_yaml_file(TABLE / "methods" / "resnet56_to_resnet20.yaml")
    subset = tmp_path / "methods.yaml"
    subset.write_text(json.dumps({name: methods[name] for name in ("kd", "crd", "dkd")}))
    budget = ["data.root=" + str(tmp_path), "device=cpu", "train.epochs=1", "teacher.train.epochs=1", "train.milestones=[]",
              "teacher.train.milestones=[]", "train.scheduler=constant", "teacher.train.scheduler=constant",
              "distill.teacher_check=off", "report.latency_repeats=1", "data.train_size=200"]
    code = main(["sweep", str(TABLE / "resnet56_to_resnet20.yaml"), "--param", f"distill=@{subset}",
                 "--published", str(TABLE / "published.yaml"), "--run-dir", str(tmp_path / "table"), "-q", "--json",
                 *[arg for item in budget for arg in ("--set", item)]])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    payload = json.loads(captured.out)
    assert sorted(r["names"]["distill"] for r in payload["trials"]) == ["crd", "dkd", "kd"]
    assert all(r["outcome"] == "complete" for r in payload["trials"])
    assert payload["published"]["crd"] == 71.16 and "published %" in captured.err and "71.16" in captured.err
    assert payload["reference"]["baseline"]["values"]  # the student alone, once, in reference/
    assert "distill=dkd" in captured.err
