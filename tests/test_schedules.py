import math

import pytest

from potstill.errors import PotstillError
from potstill.schedules import WeightSchedule


def test_constant_by_default():
    assert [WeightSchedule().factor(p) for p in (0, 3.5, 100)] == [1.0, 1.0, 1.0]


def test_linear_warmup_rises_per_step():
    schedule = WeightSchedule(warmup_epochs=2)
    assert schedule.factor(0.0) == 0.0
    assert schedule.factor(0.5) == pytest.approx(0.25)
    assert schedule.factor(1.5) == pytest.approx(0.75)
    assert schedule.factor(2.0) == 1.0


def test_early_stop_switches_the_term_off_from_stop_epoch():
    # Cho & Hariharan 2019: KD for the first epochs only, then hard labels alone
    schedule = WeightSchedule(stop_epoch=3)
    assert schedule.factor(2.99) == 1.0
    assert schedule.factor(3.0) == 0.0
    assert schedule.factor(7.0) == 0.0


def test_linear_and_cosine_decay_reach_final_factor():
    linear = WeightSchedule(decay="linear", final_factor=0.2, end_epoch=10)
    assert linear.factor(5) == pytest.approx(1 - 0.8 * 0.5)
    assert linear.factor(10) == pytest.approx(0.2)
    cosine = WeightSchedule(decay="cosine", final_factor=0.0, end_epoch=10, warmup_epochs=2)
    assert cosine.factor(1) == pytest.approx(0.5)  # still warming up
    assert cosine.factor(6) == pytest.approx(1 - (1 - math.cos(math.pi * 0.5)) / 2)
    assert cosine.factor(10) == pytest.approx(0.0)


@pytest.mark.parametrize("kwargs", [{"decay": "exp"}, {"warmup_epochs": -1}, {"final_factor": 2}, {"stop_epoch": -1}])
def test_bad_schedules_are_rejected(kwargs):
    with pytest.raises(PotstillError):
        WeightSchedule(**kwargs)
