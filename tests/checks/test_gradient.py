"""No error hides from the probes by cancelling, and "catches" holds for structured errors too.

Errors that sum to zero ([+e, −e], what a flipped sign under a softmax gives), a gradient
given for a parameter the loss ignores, and one missing for a parameter it uses, each at
10% of the tensor's gradient norm or more, fail at every seed from 0 to 199.
"""

from __future__ import annotations

import numpy as np
import pytest

import rnncheck

X = np.random.default_rng(0).normal(size=(5, 3))
Y = np.array([0, 1, 1, 0, 1])
P0 = {
    "W": np.random.default_rng(1).normal(size=(3, 2)),
    "b": np.array([0.1, -0.2]),
    "V": np.random.default_rng(2).normal(size=(3, 4)),
    "unused": np.array([0.3, -0.7]),
}


def _probs(p):
    z = X @ p["W"] + p["b"]
    z[:, 0] += 0.1 * np.tanh(X @ p["V"]).sum(1)
    z = z - z.max(1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(1, keepdims=True)


def loss(p):  # a 2-class softmax head; `unused` never enters
    return float(-np.log(_probs(p)[np.arange(5), Y]).mean())


def true_grad(p):
    d = _probs(p)
    d[np.arange(5), Y] -= 1
    d /= 5
    t = np.tanh(X @ p["V"])
    dV = X.T @ (0.1 * d[:, :1] * (1 - t**2))
    return {"W": X.T @ d, "b": d.sum(0), "V": dV, "unused": np.zeros(2)}


def _zero_sum(name, entries):
    def grad(p):
        g = true_grad(p)
        e = np.zeros(g[name].size)
        e[entries[0]], e[entries[1]] = 1.0, -1.0
        g[name] = g[name] + 0.1 * np.linalg.norm(g[name]) * e.reshape(g[name].shape) / np.sqrt(2)
        return g

    return grad


def _flipped(p):
    g = true_grad(p)
    g["b"] = -g["b"]
    return g


def _spurious(p):
    g = true_grad(p)
    g["unused"] = np.array([1.0, 1.0])
    return g


def _missing(p):
    g = true_grad(p)
    g["V"] = np.zeros_like(g["V"])
    return g


BUGS = {
    "zero-sum error in the softmax bias": _zero_sum("b", (0, 1)),
    "zero-sum error in two entries of a 12-entry weight": _zero_sum("V", (3, 8)),
    "the bias gradient's sign flipped": _flipped,
    "a gradient for a parameter the loss ignores": _spurious,
    "the gradient missing for a parameter the loss uses": _missing,
}


def _verdict(grad, seed):
    case = rnncheck.NumpyCase({k: v.copy() for k, v in P0.items()}, loss, grad)
    return rnncheck.verify_case(case, rnncheck.Options(seed=seed, diagnostics=False))


def test_the_true_gradient_passes():
    for seed in range(0, 200, 20):
        assert _verdict(true_grad, seed).verdict == "pass"


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_a_structured_error_fails_at_every_seed(bug):
    missed = [seed for seed in range(200) if _verdict(BUGS[bug], seed).verdict != "fail"]
    assert not missed, f"{bug}: passed at seeds {missed[:10]}"


def test_a_hint_called_verified_is_true():
    def loss2(p):
        return float(2 * p["w"][0])

    def wrong(p):  # true [2, 0]: one entry wrong, not a common factor
        return {"w": np.array([2.0, 5.0])}

    for seed in range(40):
        result = rnncheck.verify_case(
            rnncheck.NumpyCase({"w": np.array([1.0, 1.0])}, loss2, wrong),
            rnncheck.Options(seed=seed, diagnostics=False),
        )
        assert result.verdict == "fail"
        hints = [f.message for c in result.checks for f in c.findings if f.kind == "hint"]
        assert not any("× the true one" in h for h in hints), (seed, hints)


@pytest.mark.parametrize("full", [False, True], ids=["probes", "full"])
def test_a_gradient_given_for_a_constant_loss_fails_with_finite_numbers(full):
    import warnings

    case = rnncheck.NumpyCase(
        {"w": np.array([1.0, 2.0, 3.0])}, lambda p: 1.0, lambda p: {"w": np.array([1.0, -2.0, 0.5])}
    )
    for seed in range(5):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no overflow on the way
            result = rnncheck.verify_case(case, rnncheck.Options(seed=seed, full=full, diagnostics=False))
        (row,) = next(c for c in result.checks if c.name == "gradient").tensors
        assert result.verdict == "fail" and 0 < row.error < 10 and row.tolerance < 1e-3, (seed, row)
        if full:
            assert "3 of 3 entries disagree" in result.findings[0].message
