"""--full: every entry checked on its own; one wrong entry is found where it is, and nothing else is blamed."""

from __future__ import annotations

import numpy as np

import rnncheck


def _quadratic(wrong_at=None):
    w0 = np.random.default_rng(0).normal(size=(3, 4))

    def grad(p):
        g = {"w": 2 * p["w"]}
        if wrong_at is not None:
            g["w"] = g["w"].copy()
            g["w"][wrong_at] *= 1.01
        return g

    return rnncheck.NumpyCase({"w": w0}, loss=lambda p: float((p["w"] ** 2).sum()), grad=grad)


def test_one_wrong_entry_is_named_with_its_index_and_the_count():
    result = rnncheck.verify_case(_quadratic(wrong_at=(2, 1)), rnncheck.Options(full=True))
    (row,) = [r for c in result.checks for r in c.tensors]
    assert result.verdict == "fail" and row.worst == "w[2, 1]"
    (finding,) = [f for f in result.findings if f.kind == "mismatch"]
    assert "1 of 12 entries disagree" in finding.message and finding.location == {"index": [2, 1]}


def test_a_right_gradient_passes_every_entry_and_says_it_was_checked_entrywise():
    result = rnncheck.verify_case(_quadratic(), rnncheck.Options(full=True))
    gradient = next(c for c in result.checks if c.name == "gradient")
    assert result.verdict == "pass" and gradient.summary.worst_rel_error < 1e-6
    assert "every entry checked on its own" in str(result)
