"""The error model's safety factors: one object, validated, active per case (internal structure under test)."""

from __future__ import annotations

import math

import pytest

from rnncheck.tolerances import Tolerances, current, using  # the module under test


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan, True, "4"])
def test_every_factor_must_be_a_positive_finite_number(bad):
    with pytest.raises(ValueError, match="Tolerances.safety must be a positive finite number"):
        Tolerances(safety=bad)


def test_the_active_tolerances_hold_inside_the_block_only():
    strict = Tolerances().replace(safety=2.0)
    assert current().safety == 4.0
    with using(strict):
        assert current() is strict
    assert current().safety == 4.0
