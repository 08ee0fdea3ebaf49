"""Schedules as the loop applies them: warm-up per step, early-stopped KD with no teacher pass."""

import json

import torch
from torch import nn

import potstill


class CountingTeacher(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)


def data(count):
    generator = torch.Generator().manual_seed(count)
    return torch.randn(count, 4, generator=generator), torch.arange(count) % 3


def run(tmp_path, name, schedule, cache="off", epochs=4):
    teacher = CountingTeacher()
    student = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    # teacher_check off: the check's evaluation pass would add to the counted teacher calls
    potstill.distill(teacher, student, data(64), data(30), epochs=epochs, batch_size=16, baseline=False, teacher_check="off",
                     schedule=schedule, run_dir=tmp_path / name, cache={"enabled": "auto" if cache == "auto" else False})
    records = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return teacher.calls, [r for r in records if r["stage"] == "student"]


def test_early_stopped_kd_drops_the_term_and_the_teacher_pass(tmp_path):
    calls_always, always = run(tmp_path, "always", {})
    calls_stopped, stopped = run(tmp_path, "stopped", {"stop_epoch": 1})
    assert calls_always - calls_stopped == 3 * 4  # 3 epochs x 4 steps without a teacher forward
    assert "kd" in stopped[0]["terms"] and all("kd" not in r["terms"] for r in stopped[1:])
    assert [r["weights"]["kd"] for r in stopped] == [0.5, 0.0, 0.0, 0.0]
    assert all(r["weights"]["kd"] == 0.5 for r in always)


def test_unaugmented_data_is_cached_by_default_so_the_teacher_runs_once(tmp_path):
    calls_short, _ = run(tmp_path, "short", {}, cache="auto", epochs=2)
    calls_long, records = run(tmp_path, "long", {}, cache="auto", epochs=6)
    assert calls_short == calls_long  # no teacher pass per step: one pass per sample when the cache is built
    assert (tmp_path / "long" / "teacher_cache" / "manifest.json").is_file()
    assert all(r["weights"]["kd"] == 0.5 and r["terms"]["kd"] > 0 for r in records)


def test_warmup_weight_is_logged_per_epoch(tmp_path):
    _, records = run(tmp_path, "warm", {"warmup_epochs": 2})
    # the logged weight is the last step's: epoch 1 ends at progress 0.75 -> 0.5 * 0.375
    assert [round(r["weights"]["kd"], 4) for r in records] == [0.1875, 0.4375, 0.5, 0.5]
