"""Localization, directly: attribute() finds the wrong block, narrow() the wrong entry, by halving.

Internal structure under test (the user meets it as the table's "worst entry"), so these
import the modules themselves.
"""

import numpy as np
import pytest

import rnncheck
from rnncheck.cases.base import Block
from rnncheck.checks.localize import attribute, narrow
from rnncheck.probe import Prober, Status


def _prober(shape, wrong_at=None, factor=1.5):
    """A quadratic loss Σ c·w² (c differs per entry) whose gradient is wrong in one entry of W."""
    rng = np.random.default_rng(0)
    coef = {"W": rng.uniform(0.5, 2.0, shape), "b": rng.uniform(0.5, 2.0, shape[0])}
    theta = {"W": rng.normal(size=shape), "b": rng.normal(size=shape[0])}

    def loss(p):
        return float(sum((coef[n] * p[n] ** 2).sum() for n in p))

    def grad(p):
        g = {n: 2 * coef[n] * p[n] for n in p}
        if wrong_at is not None:
            g["W"][wrong_at] *= factor
        return g

    target = rnncheck.NumpyCase(theta, loss=loss, grad=grad).bind(rnncheck.Options())
    return Prober(target, target.theta, grad(target.theta)), target


def test_attribute_fails_the_block_that_holds_the_wrong_entry_and_passes_the_others():
    prober, _ = _prober((8, 3), wrong_at=(6, 1))
    blocks = [Block("W", "i", 0, 4), Block("W", "f", 4, 8), Block("b", "")]
    out = attribute(prober, blocks, np.random.default_rng(1))
    assert [out[b].status for b in blocks] == [Status.PASS, Status.FAIL, Status.PASS]


@pytest.mark.parametrize("entry", [(0, 0), (5, 2), (7, 1)])
def test_narrow_ends_at_the_planted_entry(entry):
    prober, _ = _prober((8, 3), wrong_at=entry)
    block = Block("W", "f", 4, 8) if entry[0] >= 4 else Block("W", "i", 0, 4)
    place = narrow(prober, block, np.random.default_rng(2))
    assert place.index == entry
    assert not place.spread
    assert place.analytic == pytest.approx(1.5 * place.numeric, rel=1e-6)
    assert place.where() == f"W[{block.label}-gate][{entry[0] - block.start}, {entry[1]}]"


def test_narrow_costs_fewer_evaluations_than_entries_by_halving():
    prober, _ = _prober((64, 16), wrong_at=(40, 9))
    block = Block("W", "", None, None)
    place = narrow(prober, block, np.random.default_rng(5))
    assert place.index == (40, 9)
    assert place.evaluations < 1024 / 4  # entry by entry: two evaluations for each of 1024


def test_errors_in_both_halves_are_reported_as_spread():
    prober, target = _prober((8, 3))
    prober.grad = {n: g * 1.5 for n, g in prober.grad.items()}  # every entry wrong
    place = narrow(prober, Block("W", "", None, None), np.random.default_rng(6))
    assert place.spread


def test_a_correct_gradient_gives_no_failing_block():
    prober, _ = _prober((8, 3))
    blocks = [Block("W", "", None, None), Block("b", "")]
    assert all(p.status == Status.PASS for p in attribute(prober, blocks, np.random.default_rng(3)).values())
