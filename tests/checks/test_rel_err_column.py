"""The table's `rel err` is each failing tensor's own normwise relative error ‖g − g_true‖/‖g_true‖,
within a factor of 3 of the truth (entrywise central differences), over the mutation suite."""

from __future__ import annotations

import numpy as np
import pytest
from mutation_models import CORRECT, MUTANTS, case_for, make_problem

import rnncheck

# mutants that are not a wrong value in some tensor (state, in-place changes) have no such error
VALUE_MUTANTS = [m for m, (_, bug, _) in MUTANTS.items() if bug not in ("stateful_accumulator", "inplace_change")]


def true_errors(cell, bug, seed, overrides):
    loss_fn, grad_fn, _ = CORRECT[cell]
    p, data = make_problem(cell, seed=seed, **overrides)
    g = grad_fn({n: v.copy() for n, v in p.items()}, data, bug)
    errors = {}
    for name, v in p.items():
        true = np.zeros_like(v)
        flat, tflat = v.reshape(-1), true.reshape(-1)
        for j in range(flat.size):
            keep, h = flat[j], 1e-6 * max(1.0, abs(flat[j]))
            flat[j] = keep + h
            up = loss_fn(p, data)
            flat[j] = keep - h
            down = loss_fn(p, data)
            flat[j] = keep
            tflat[j] = (up - down) / (2 * h)
        errors[name] = float(np.linalg.norm(np.asarray(g[name]) - true) / np.linalg.norm(true))
    return errors


@pytest.mark.parametrize("mutant", VALUE_MUTANTS)
def test_the_rel_err_of_every_failing_tensor_is_within_3x_of_the_truth(mutant):
    cell, bug, overrides = MUTANTS[mutant]
    if overrides.get("H", 5) > 16:
        pytest.skip("entrywise truth for the large model is the slow mutation benchmark's job")
    result = rnncheck.verify_case(case_for(cell, bug, seed=0, **overrides), rnncheck.Options(diagnostics=False))
    gradient = next(c for c in result.checks if c.name == "gradient")
    truth = true_errors(cell, bug, 0, overrides)
    failing = [r for r in gradient.tensors if r.verdict == "fail"]
    assert failing, mutant
    for row in failing:
        assert truth[row.name] / 3 <= row.error <= 3 * truth[row.name], (mutant, row.name, row.error, truth[row.name])
    assert gradient.summary.worst_rel_error == max(r.error for r in gradient.tensors)  # the summary is a row's


def test_the_h_t_for_h_prev_bug_reads_as_the_size_it_is():
    """dW_hh built with h_t where h_(t-1) belongs: W_hh is off by about its own size, and the column says so."""
    result = rnncheck.verify_case(case_for("rnn_tanh", "h_t_for_h_prev"), rnncheck.Options(diagnostics=False))
    row = next(r for c in result.checks for r in c.tensors if r.name == "W_hh")
    truth = true_errors("rnn_tanh", "h_t_for_h_prev", 0, {})["W_hh"]
    assert truth > 0.3 and truth / 3 <= row.error <= 3 * truth
