"""Full power in float32-only code: a 1% error confined to one tensor is caught, a correct model passes.

The loss casts to float32 itself (``float32_only``), whether it is given float64 or float32
parameters.  rnncheck sees float32 numbers come back, takes float32's stencil and step,
and probes each tensor alone, once along its own gradient's signs.
"""

from __future__ import annotations

import numpy as np
import pytest
from mutation_models import case_for

import rnncheck

SEEDS = range(3)
SMOOTH = ("rnn_tanh", "lstm", "gru")


def _planted(cell, tensor, factor, seed, dtype):
    case = case_for(cell, seed=seed, dtype=dtype, float32_only=True)
    right = case.grad_fn
    case.grad_fn = lambda p: {n: g * factor if n == tensor else g for n, g in right(p).items()}
    return case


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["given-float64", "given-float32"])
@pytest.mark.parametrize("tensor", ["W_ih", "W_hh", "b_ih", "b_hh"])
@pytest.mark.parametrize("cell", SMOOTH)
def test_a_one_percent_error_in_one_tensor_is_caught_and_pinned(cell, tensor, dtype):
    for seed in SEEDS:
        result = rnncheck.verify_case(_planted(cell, tensor, 1.01, seed, dtype), rnncheck.Options(seed=seed))
        assert result.verdict == "fail", (seed, [f.message for f in result.findings])
        wrong = {f.tensor for f in result.findings if f.kind == "mismatch"}
        assert wrong == {tensor}, (seed, wrong)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["given-float64", "given-float32"])
@pytest.mark.parametrize("cell", SMOOTH)
def test_the_same_models_without_the_error_pass(cell, dtype):
    for seed in range(10, 16):
        result = rnncheck.verify_case(
            case_for(cell, seed=seed, dtype=dtype, float32_only=True), rnncheck.Options(seed=seed)
        )
        assert result.verdict == "pass", (seed, [f.message for f in result.findings])


def test_the_report_says_the_loss_computes_in_float32():
    result = rnncheck.verify_case(case_for("gru", seed=0, float32_only=True), rnncheck.Options())
    gradient = next(c for c in result.checks if c.name == "gradient")
    assert gradient.summary.measured_eps == pytest.approx(2.0**-23)
    assert gradient.summary.probes == 3 + 2 * 4  # the shared probes, then two per tensor


def test_a_float64_loss_with_kinks_is_not_taken_for_low_precision():
    # large differences from a kink near the point are not evidence of float32: the values are
    from mutation_models import STRESS

    cell, overrides = STRESS["relu_kinks"]
    result = rnncheck.verify_case(case_for(cell, seed=2, **overrides), rnncheck.Options(seed=2))
    gradient = next(c for c in result.checks if c.name == "gradient")
    assert "measured_eps" not in gradient.numbers
    assert result.verdict == "warn"
