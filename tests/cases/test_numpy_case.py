"""NumpyCase: hand-written NumPy code checked as it is written; what cannot work is refused in one line
that names the fix."""

from __future__ import annotations

import numpy as np
import pytest

import rnncheck


def _loss(p):
    return float((p["w"] ** 2).sum())


@pytest.mark.parametrize(
    "kwargs,words",
    [
        ({"params": {}}, "needs params as a non-empty dict"),
        ({"grad": None}, "needs callables"),
        ({"params": {"w": [1.0, 2.0]}}, "wrap it in np.asarray"),
        ({"params": {"w": np.arange(3)}}, "pass w.astype(np.float64)"),
        ({"reference": "lstm"}, "needs inputs="),
    ],
)
def test_a_case_that_cannot_work_is_refused_with_the_fix(kwargs, words):
    args = {"params": {"w": np.ones(3)}, "loss": _loss, "grad": lambda p: {"w": 2 * p["w"]}, **kwargs}
    result = rnncheck.verify_case(_build(args))  # built inside a case function, as a model file does
    assert result.verdict == "error" and words in result.error


def _build(args):
    @rnncheck.case
    def build():
        return rnncheck.NumpyCase(**args)

    return build


def test_a_grad_with_the_wrong_keys_or_a_loss_that_is_not_a_scalar_is_named():
    keys = rnncheck.NumpyCase({"w": np.ones(3)}, loss=_loss, grad=lambda p: {"v": p["w"]})
    assert "grad() returned keys that do not match params" in rnncheck.verify_case(keys).error
    vector = rnncheck.NumpyCase({"w": np.ones(3)}, loss=lambda p: p["w"] ** 2, grad=lambda p: {"w": 2 * p["w"]})
    assert "not a scalar" in rnncheck.verify_case(vector).error


def test_a_right_gradient_passes_and_a_scaled_one_fails():
    p = {"w": np.random.default_rng(1).normal(size=(4, 3))}
    good = rnncheck.NumpyCase(p, loss=_loss, grad=lambda q: {"w": 2 * q["w"]})
    bad = rnncheck.NumpyCase(p, loss=_loss, grad=lambda q: {"w": 2.2 * q["w"]})
    assert rnncheck.verify_case(good).verdict == "pass" and rnncheck.verify_case(bad).verdict == "fail"


def test_verify_takes_a_case_function_and_says_what_is_not_a_case():
    def quad():
        return rnncheck.NumpyCase({"w": np.ones(2)}, loss=_loss, grad=lambda p: {"w": 2 * p["w"]})

    assert rnncheck.verify_case(quad).verdict == "pass" and rnncheck.verify(quad).cases[0].name == "quad"
    for wrong in (None, 5, "model.py"):
        (result,) = rnncheck.verify(wrong).cases
        assert result.verdict == "error" and "verify_case takes an rnncheck case" in result.error
