"""A case's time budget: measured, and enforced between evaluations (internal structure under test)."""

from __future__ import annotations

import time

import pytest

from rnncheck.clock import Clock  # the module under test
from rnncheck.errors import BudgetExceeded


def test_no_budget_never_stops_and_reports_no_remainder():
    clock = Clock(None)
    clock.tick()
    assert clock.remaining is None and clock.elapsed >= 0


def test_a_spent_budget_stops_at_the_next_tick_naming_the_stage():
    seen = []
    clock = Clock(0.01, on_tick=seen.append)
    clock.stage = "the gradient probes"
    time.sleep(0.02)
    with pytest.raises(BudgetExceeded, match="budget of 0.01 s during the gradient probes"):
        clock.tick()
    assert seen == ["the gradient probes"] and clock.remaining < 0
