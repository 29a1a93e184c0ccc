"""The reference backward agrees with central differences and complex-step derivatives.

Every entry of every weight, of the input and of the initial states is checked, so a
single wrong entry anywhere in the reference would fail these tests.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import rel_err
from rnncheck.reference import readout

from rnncheck import reference as R
from rnncheck.numerics import central_difference, complex_step

CONFIGS = [
    # mode, layers, bidirectional, batch_first, T, proj_size
    ("rnn_tanh", 2, True, False, 5, 0),
    ("rnn_relu", 1, False, True, 6, 0),
    ("rnn_sigmoid", 2, False, False, 7, 0),
    ("lstm", 2, True, True, 5, 0),
    ("gru", 2, True, False, 6, 0),
    ("lstm", 1, False, False, 1, 0),
    ("lstm", 2, True, False, 4, 2),  # with projections: h_t = W_hr (o ⊙ tanh c_t)
]


def _problem(mode, layers, bidir, batch_first, T, proj=0, seed=0):
    rng = np.random.default_rng(seed)
    spec = R.Spec(mode, 3, 4, layers, bidir, batch_first, proj)
    params = spec.init_params(rng, scale=0.8)
    B, LD, P = 2, layers * spec.directions, spec.output_size
    x = rng.normal(size=(B, T, 3) if batch_first else (T, B, 3))
    h0 = rng.normal(size=(LD, B, P))
    c0 = rng.normal(size=(LD, B, 4)) if mode == "lstm" else None
    out_w = rng.normal(size=(B, T, P * spec.directions) if batch_first else (T, B, P * spec.directions))
    state_w = [rng.normal(size=(LD, B, P)), rng.normal(size=(LD, B, 4))]
    leaves = dict(params, x=x, h0=h0)
    if c0 is not None:
        leaves["c0"] = c0

    def loss(leaves):
        p = {k: v for k, v in leaves.items() if k not in ("x", "h0", "c0")}
        out, states, _ = R.forward(spec, p, leaves["x"], leaves["h0"], leaves.get("c0"))
        return (out * out_w).sum() + sum((s * w).sum() for s, w in zip(states, state_w))

    def grad(leaves):
        p = {k: v for k, v in leaves.items() if k not in ("x", "h0", "c0")}
        _, _, cache = R.forward(spec, p, leaves["x"], leaves["h0"], leaves.get("c0"))
        g = R.backward(cache, out_w, state_w[0], state_w[1] if mode == "lstm" else None)
        result = dict(g.params, x=g.x, h0=g.h0)
        if mode == "lstm":
            result["c0"] = g.c0
        return result

    return leaves, loss, grad


def _entrywise(leaves, loss, derivative):
    numeric = {}
    for name, value in leaves.items():
        out = np.empty(value.shape)
        for idx in np.ndindex(value.shape):

            def phi(s, name=name, idx=idx):
                moved = dict(leaves)
                moved[name] = value.astype(np.result_type(value, s), copy=True)
                moved[name][idx] += s
                return loss(moved)

            out[idx] = derivative(phi)
        numeric[name] = out
    return numeric


@pytest.mark.parametrize(
    "config", CONFIGS, ids=lambda c: f"{c[0]}-L{c[1]}-{'bi' if c[2] else 'uni'}-T{c[4]}" + (f"-P{c[5]}" if c[5] else "")
)
def test_reference_backward_matches_central_differences(config):
    leaves, loss, grad = _problem(*config)
    analytic = grad(leaves)
    numeric = _entrywise(leaves, loss, lambda phi: central_difference(phi, 1e-5))
    for name in leaves:
        assert rel_err(analytic[name], numeric[name]) <= 1e-7, name


@pytest.mark.parametrize(
    "config", CONFIGS, ids=lambda c: f"{c[0]}-L{c[1]}-{'bi' if c[2] else 'uni'}-T{c[4]}" + (f"-P{c[5]}" if c[5] else "")
)
def test_reference_backward_matches_complex_step(config):
    if config[0] == "rnn_relu":
        pytest.skip("relu is not analytic; covered by central differences")
    leaves, loss, grad = _problem(*config)
    analytic = grad(leaves)
    numeric = _entrywise(leaves, loss, lambda phi: complex_step(phi))
    for name in leaves:
        assert rel_err(analytic[name], numeric[name]) <= 1e-12, name


def test_reference_runs_on_complex128():
    leaves, loss, _ = _problem("gru", 1, False, False, 4)
    value = loss({k: v.astype(np.complex128) for k, v in leaves.items()})
    assert isinstance(value, complex | np.complexfloating)


def test_article_model_backward_matches_complex_step():
    rng = np.random.default_rng(1)
    T, B, I, H, K = 8, 1, 10, 20, 5
    spec = R.Spec("rnn_sigmoid", I, H)
    params = spec.init_params(rng)
    params.update(W_hy=rng.normal(size=(K, H)), b_y=rng.normal(size=K))
    x, target = rng.normal(size=(T, B, I)), rng.normal(size=(T, B, K))

    def loss(p):
        rnn_p = {k: v for k, v in p.items() if k.startswith(("weight", "bias"))}
        h, _, _ = R.forward(spec, rnn_p, x)
        return readout.forward(h, p["W_hy"], p["b_y"], target)[0]

    rnn_p = {k: v for k, v in params.items() if k.startswith(("weight", "bias"))}
    h, _, cache = R.forward(spec, rnn_p, x)
    _, y = readout.forward(h, params["W_hy"], params["b_y"], target)
    g_out, dh = readout.backward(h, y, params["W_hy"], target)
    analytic = dict(R.backward(cache, dh).params, **g_out)
    numeric = _entrywise(params, loss, complex_step)
    for name in params:
        assert rel_err(analytic[name], numeric[name]) <= 1e-12, name


def test_adjoints_are_total_derivatives_wrt_hidden_states():
    """dh[t] is dL/dh_t through the recurrence: perturbing h_t inside the loop moves L by it."""
    rng = np.random.default_rng(4)
    spec = R.Spec("lstm", 3, 4)
    params = spec.init_params(rng)
    T, B = 6, 2
    x = rng.normal(size=(T, B, 3))
    w = rng.normal(size=(T, B, 4))
    _, _, cache = R.forward(spec, params, x)
    g = R.backward(cache, w)
    t, b, j = 2, 1, 3

    def phi(s):
        # run steps 0..t, nudge h_t, run the rest from there
        h_head, (h_t, c_t), _ = R.lstm.forward(
            x[: t + 1],
            np.zeros((B, 4)),
            np.zeros((B, 4)),
            params["weight_ih_l0"],
            params["weight_hh_l0"],
            params["bias_ih_l0"],
            params["bias_hh_l0"],
        )
        h_t = h_t.astype(np.result_type(h_t, s), copy=True)
        h_t[b, j] += s
        head = (h_head[:t] * w[:t]).sum() + (h_t * w[t]).sum()
        if t + 1 == T:
            return head
        h_tail, _, _ = R.lstm.forward(
            x[t + 1 :],
            h_t,
            c_t,
            params["weight_ih_l0"],
            params["weight_hh_l0"],
            params["bias_ih_l0"],
            params["bias_hh_l0"],
        )
        return head + (h_tail * w[t + 1 :]).sum()

    assert abs(complex_step(phi) - g.dh[0, t, b, j]) <= 1e-12 * abs(g.dh[0, t, b, j])
