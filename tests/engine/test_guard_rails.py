"""Guard rails during training: every weighted term in the epoch line, one warning per stage when a
term drowns the objective (engine/guard.py), and the terms and warnings in summary.json."""

import json
import warnings
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import nn

import potstill
from potstill.cli.main import main
from potstill.data import ArrayData, BatchLoader
from potstill.engine.guard import dominance
from potstill.engine.loop import LINE_WIDTH, Stage, describe, fit
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.engine.task import StepResult, Task
from potstill.recipe import TrainSpec
from tests.cli.test_features import conv_recipe
from tests.cli.test_output import run_cli
from tests.conftest import tiny_recipe, write_recipe


class FixedTerms(Task):
    """Terms of known values: `ce` 0.2 with weight 1 every step; `hint` 30 with weight 1 while its
    switch for that step (epoch, step) is on, else weight 0 and no value (as a scheduled term)."""

    def __init__(self, hint_on) -> None:
        torch.manual_seed(0)
        self.module = nn.Linear(2, 2)
        self.hint_on = hint_on  # (epoch, step) -> bool
        self.calls = 0

    @property
    def model(self) -> nn.Module:
        return self.module

    def step(self, batch, progress) -> StepResult:
        epoch, step = divmod(self.calls, 4)
        self.calls += 1
        zero = 0.0 * self.module.weight.sum()  # a graph to backpropagate through; values stay exact
        terms, weights = {"ce": zero + 0.2}, {"ce": 1.0, "hint": 0.0}
        if self.hint_on(epoch, step):
            terms["hint"], weights["hint"] = zero + 30.0, 1.0
        return StepResult(terms, None, weights)


def fit_fixed(tmp_path, hint_on, epochs=2):
    data = ArrayData(torch.zeros(8, 1, 1, 2), torch.zeros(8, dtype=torch.long), 2)
    loader = BatchLoader(data, batch_size=2)  # 4 steps per epoch
    stage = Stage("student", FixedTerms(hint_on), TrainSpec(epochs=epochs, lr=0.0, scheduler="constant"), loader,
                  evaluate=lambda model: {"test_acc": 0.5})
    run = RunDir(tmp_path / "run")
    run.create(resume=False)
    try:
        fit(stage, run, Reporter(console=Console(stderr=True)))
    finally:
        run.close()
    return run.records()


def test_epoch_line_shows_each_term_as_its_weighted_mean_over_all_steps(tmp_path, capsys):
    """Catches: terms missing from the epoch line, a mean taken over only the steps a term ran
    (15 is 30 on 2 of 4 steps), or an unweighted value; and a second warning for the same stage."""
    records = fit_fixed(tmp_path, lambda epoch, step: step % 2 == 1)
    assert [r["terms"] for r in records] == [{"ce": pytest.approx(0.2), "hint": 15.0}] * 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"student 1/2 loss 15.2 (ce 0.2, hint 15) test 50.0% lr 0 {records[0]['time_s']:.1f}s"
    # hint / ce = 75 > 50: warned after the first epoch only, and logged with that epoch
    assert lines[1].startswith("warning: student epoch 1: term 'hint' is 75x 'ce' (15 vs 0.2")
    assert lines[2].startswith("student 2/2 loss 15.2 (ce 0.2, hint 15)") and len(lines) == 3
    assert "warnings" in records[0] and "warnings" not in records[1]


def test_a_term_switched_off_by_its_schedule_is_not_counted(tmp_path, capsys):
    """Catches: a term whose weight is 0 at the epoch's end (KD after stop_epoch, before warm-up)
    counted as dominating, and the line hiding that it is off."""
    # epoch 1: hint on for steps 0-2 then off at the epoch's end (mean 22.5, weight 0); epoch 2: off
    records = fit_fixed(tmp_path, lambda epoch, step: epoch == 0 and step < 3)
    err = capsys.readouterr().err
    assert records[0]["terms"]["hint"] == 22.5 and records[0]["weights"]["hint"] == 0.0
    assert "warning" not in err and not any("warnings" in r for r in records)
    assert "student 2/2 loss 0.2 (ce 0.2, hint off)" in err
    # the same values with the weight still on at the epoch's end do dominate
    assert dominance({"terms": {"ce": 0.2, "hint": 22.5}, "weights": {"ce": 1.0, "hint": 1.0}}).ratio == pytest.approx(112.5)


def test_dominance_rule_by_hand():
    """Catches: comparing with the next term instead of the cross-entropy the student is scored on,
    flagging a satisfied (small) KD term under a large ce, or a threshold not at 50x."""
    assert dominance({"terms": {"ce": 0.2, "kd": 9.0, "fitnet": 31.5}, "weights": {}}).other == "ce"  # 157x ce, 3.5x kd
    assert dominance({"terms": {"ce": 1.0, "kd": 0.001}, "weights": {}}) is None  # ce on top: never flagged
    assert dominance({"terms": {"ce": 0.1, "kd": 5.0}, "weights": {}}) is None  # exactly 50x: not more than 50x
    assert dominance({"terms": {"ce": 0.1, "kd": 5.1}, "weights": {}}).term == "kd"
    # no active ce (alpha 0): the next largest term; peers' ce: the largest of them
    assert dominance({"terms": {"ce": 0.0, "fitnet": 60.0, "at": 1.0}, "weights": {"ce": 0.0}}).other == "at"
    found = dominance({"terms": {"student_ce": 0.1, "peer1_ce": 0.3, "student_kd": 20.0}, "weights": {}})
    assert (found.other, round(found.ratio, 1)) == ("peer1_ce", 66.7)


def test_many_terms_wrap_onto_indented_lines_within_80_columns():
    """Catches: one huge line with every term when the terms do not fit."""
    terms = {name: 0.123456 for name in ["ce", "fitnet", "at", "kd", "rkd", "sp", "pkt", "cc", "nst", "vid", "ofd", "dkd"]}
    record = {"stage": "student", "epoch": 3, "loss": 1.48, "terms": terms, "weights": dict.fromkeys(terms, 1.0), "lr": 0.0019,
              "train_acc": 0.912, "test_acc": 0.908, "time_s": 1.23}
    lines = describe(record, 20).splitlines()
    assert lines[0] == "student  3/20 loss 1.48 train 91.2% test 90.8% lr 0.0019 1.2s"
    assert all(len(line) <= LINE_WIDTH and line.startswith("    ") for line in lines[1:]) and len(lines) == 3
    assert " ".join(lines[1:]).replace(",", "").split() == [word for name in terms for word in (name, "0.123")]
    two = describe(record | {"terms": {"ce": 0.21, "kd": 0.2}, "weights": {"ce": 0.5, "kd": 0.5}}, 20)
    assert two == "student  3/20 loss 1.48 (ce 0.21, kd 0.2) train 91.2% test 90.8% lr 0.0019 1.2s"


def test_planted_dominating_term_warns_once_and_is_recorded(tmp_path, capsys, monkeypatch):
    """Catches: FitNets' hint at a weight far too large for the model training silently (the
    issue's user: 150x the cross-entropy, 10.8 points lost), a warning repeated every epoch, or one
    missing from metrics.jsonl, summary.json or the printed result."""
    monkeypatch.setenv("COLUMNS", "80")
    recipe = conv_recipe(distill={"loss": "kd", "terms": [{"loss": "fitnet", "weight": 1e4}], "teacher_check": "warn"})
    code, out, err = run_cli(capsys, "distill", write_recipe(tmp_path, recipe), "--run-dir", tmp_path / "run")
    assert code == 0, err
    assert err.count("warning: student epoch") == 1 and "term 'fitnet' is" in err and "x 'ce'" in err
    assert "distill.terms[i].weight" in err and "weight: null" in err
    records = [r for r in RunDir(tmp_path / "run").records() if r["stage"] == "student"]
    assert "warnings" in records[0] and not any("warnings" in r for r in records[1:])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["warnings"] == records[0]["warnings"]
    assert "warning: student epoch 1: term 'fitnet'" in out  # after the table, where a log reader looks


def test_balanced_recipe_gives_no_warning(tmp_path, capsys):
    """Catches: a rule so eager that the default KD recipe warns (users then learn to ignore it)."""
    code, out, err = run_cli(capsys, "distill", write_recipe(tmp_path, tiny_recipe()), "--run-dir", tmp_path / "run")
    assert code == 0, err
    assert "warning: student" not in out + err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["warnings"] == []


def test_summary_terms_are_each_stages_last_epoch(tmp_path, capsys):
    """Catches: summary terms from the wrong epoch or stage, one-term stages (teacher, baseline)
    listed, or the terms line missing from the printed result."""
    recipe = conv_recipe(distill={"loss": "kd", "terms": [{"loss": "at", "weight": 10.0}], "teacher_check": "warn"})
    code, out, err = run_cli(capsys, "distill", write_recipe(tmp_path, recipe), "--run-dir", tmp_path / "run")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    last = [r for r in RunDir(tmp_path / "run").records() if r["stage"] == "student"][-1]
    assert summary["terms"] == {"student": last["terms"]} and set(last["terms"]) == {"ce", "kd", "at"}
    shown = ", ".join(f"{name} {value:.3g}" for name, value in last["terms"].items())
    assert f"terms (last epoch, weighted): student {shown}" in out
    # the epoch line shows the same numbers, on an indented line below it when they do not fit
    assert f"student 3/3 loss {last['loss']:.3g} " in err and (f"({shown})" in err or f"\n    {shown}\n" in err)


def test_api_emits_the_warning_as_a_user_warning(tmp_path):
    """Catches: a notebook user with quiet=True (the API's default) never seeing the warning."""
    generator = torch.Generator().manual_seed(0)
    inputs, labels = torch.randn(64, 4, generator=generator), torch.arange(64) % 3

    def net(hidden):
        return nn.Sequential(nn.Flatten(), nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    terms = [{"loss": "fitnet", "weight": 1e4, "pairs": [{"student": "2", "teacher": "2"}]}]
    with pytest.warns(UserWarning, match=r"student epoch 1: term 'fitnet' is \d+x 'ce'") as caught:
        result = potstill.distill(net(16), net(8), (inputs, labels), (inputs, labels), terms=terms, epochs=2,
                                  batch_size=16, baseline=False, teacher_check="off", run_dir=tmp_path / "run")
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == result.summary["warnings"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a balanced run warns nothing
        potstill.distill(net(16), net(8), (inputs, labels), (inputs, labels), epochs=2, batch_size=16, baseline=False,
                         teacher_check="off")


def test_a_cross_entropy_that_falls_late_does_not_warn(tmp_path):
    """Catches: judging every epoch, so that a student fitting its training labels (CE towards 0)
    makes KD look 56x dominant at epoch 15 of the digits demo, where distillation helped +1.11."""
    demo = Path(__file__).parents[2] / "recipes" / "digits" / "demo.yaml"
    assert main(["distill", str(demo), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    records = [r for r in RunDir(tmp_path / "run").records() if r["stage"] == "student"]
    assert dominance(records[0]) is None  # the objective as configured is balanced
    assert any(dominance(r) is not None for r in records[1:])  # the late epochs that used to warn
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["warnings"] == []
