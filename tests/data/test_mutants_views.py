"""Tests added for mutants that survived `mutmut run "potstill.data.views*"` (issue 13,
docs/testing.md). Each docstring names the mutant(s) it kills (mutmut 3.8 names, as at commit
2155e84); every one was checked by planting the mutant (MUTANT_UNDER_TEST in mutmut's copy) and
seeing the test fail.
"""

from __future__ import annotations

import pytest
import torch

from potstill.data.views import view_bank


def test_the_largest_crop_padding_a_view_bank_holds_is_127():
    """Kills views.x_view_bank__mutmut_1, _2 (`> 127` -> `>= 127`, `> 128`) and _3, _4, _5 (the
    message changed): offsets run 0..2 * padding, and 2 * 127 = 254 is the largest even padding
    whose offsets fit the bank's uint8."""
    bank = view_bank(200, 3, hflip=False, padding=127, seed=0)
    assert int(bank[:, 1:, 1:].max()) <= 254 and bank[:, 0].tolist() == [[0, 127, 127]] * 200
    with pytest.raises(ValueError, match="^crop padding above 127 does not fit a view bank$"):
        view_bank(2, 3, hflip=False, padding=128, seed=0)
