"""`potstill distill RECIPE --seeds ...`: one folder per seed, an aggregate with mean ± std and the
paired gain per seed, finished seeds kept on a rerun, and bad seed lists refused."""

import json
import math

import pytest

from potstill.cli.main import main
from potstill.report.seeds import aggregate, paired_gain
from tests.conftest import tiny_recipe, write_recipe


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seeds")
    recipe = write_recipe(folder, tiny_recipe(train__epochs=1, teacher__train__epochs=1))
    assert main(["distill", str(recipe), "--seeds", "0", "3", "--run-dir", str(folder / "run"), "--quiet"]) == 0
    return recipe, folder / "run"


def test_each_seed_is_a_run_and_the_aggregate_matches_them(seeded):
    _, run = seeded
    result = json.loads((run / "seeds.json").read_text())
    summaries = {seed: json.loads((run / f"seed{seed}" / "summary.json").read_text()) for seed in (0, 3)}
    assert result["seeds"] == [0, 3]
    for seed, summary in summaries.items():
        assert "seed: %d" % seed in (run / f"seed{seed}" / "recipe.yaml").read_text()
    for row in result["models"]:
        values = [next(r for r in summaries[s]["models"] if r["role"] == row["role"])["test_acc"] for s in (0, 3)]
        assert row["test_acc"]["values"] == pytest.approx(values)
        assert row["test_acc"]["mean"] == pytest.approx(sum(values) / 2)
        assert row["test_acc"]["std"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))
    gains = [summaries[s]["distillation_gain_points"] for s in (0, 3)]
    assert result["gain"]["values"] == pytest.approx(gains) and result["gain"]["unit"] == "top-1 points"


def test_a_rerun_keeps_finished_seeds_and_continues_an_unfinished_one(seeded, capsys):
    recipe, run = seeded
    kept = (run / "seed0" / "summary.json").read_bytes()
    (run / "seed3" / "summary.json").unlink()  # as if killed after its last checkpoint
    assert main(["distill", str(recipe), "--seeds", "0", "3", "--run-dir", str(run), "--quiet"]) == 0
    assert (run / "seed0" / "summary.json").read_bytes() == kept
    assert (run / "seed3" / "summary.json").is_file()
    out = capsys.readouterr().out
    assert "paired gain per seed (top-1 points)" in out and ("within seed noise" in out or "beyond seed noise" in out)


def test_bad_seed_lists_are_refused(seeded, tmp_path, capsys):
    recipe, run = seeded
    for argv, fragment in (
        (["--seeds", "1", "1"], "each seed once"),
        (["--seeds", "-1"], "non-negative"),
        (["--seeds", "1", "--resume", str(run / "seed0")], "run the same command again"),
    ):
        code = main(["distill", str(recipe), "--run-dir", str(tmp_path / "x"), *argv])
        err = capsys.readouterr().err
        assert code == 2 and fragment in err and "Traceback" not in err, err
    assert not (tmp_path / "x").exists()


def test_the_verdict_against_seed_noise_worked_by_hand():
    clear = paired_gain([1.0, 2.0, 3.0], "top-1 points", 1)  # mean 2, std 1, standard error 1/sqrt(3) = 0.577
    assert clear["mean"] == 2.0 and clear["std"] == 1.0 and clear["standard_error"] == pytest.approx(0.5774, abs=1e-4)
    assert clear["verdict"].startswith("distillation helped beyond seed noise")
    noisy = paired_gain([1.0, -0.5], "top-1 points", 1)  # mean 0.25, std 1.06, error 0.75
    assert noisy["verdict"].startswith("within seed noise")
    perplexity = paired_gain([-10.0, -12.0, -11.0], "perplexity change %", -1)  # lower perplexity is better
    assert perplexity["verdict"].startswith("distillation helped beyond seed noise")
    assert "one seed" in paired_gain([0.5], "top-1 points", 1)["verdict"]


def test_a_role_only_some_seeds_have_is_left_out():
    row = lambda role, acc: {"role": role, "title": role, "test_acc": acc}
    result = aggregate({0: {"models": [row("teacher", 0.9), row("student", 0.8)], "distillation_gain_points": 1.0},
                        1: {"models": [row("student", 0.7)], "distillation_gain_points": 2.0}})
    assert [r["role"] for r in result["models"]] == ["student"]
    assert result["gain"]["values"] == [1.0, 2.0]
