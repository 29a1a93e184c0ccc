"""The checks as a list: each behind one interface, its own error its own row, the others still run."""

from __future__ import annotations

import numpy as np

import rnncheck


def test_a_check_that_raises_is_its_own_error_and_the_checks_after_it_still_run():
    def head(states, params):
        raise RuntimeError("head exploded")

    rng = np.random.default_rng(0)
    params = {"W_xh": rng.normal(size=(3, 2)), "W_hh": 0.5 * np.eye(3), "b_h": np.zeros(3)}
    x = rng.normal(size=(5, 1, 2))

    def forward(p):
        h, hs = np.zeros((1, 3)), []
        for t in range(5):
            h = np.tanh(x[t] @ p["W_xh"].T + h @ p["W_hh"].T + p["b_h"])
            hs.append(h)
        return np.stack(hs)

    def loss(p):
        return float(np.sum(forward(p) ** 2))

    def grad(p):  # central differences: right to ~1e-10
        out = {}
        for n, v in p.items():
            g = np.zeros_like(v)
            for i in np.ndindex(v.shape):
                e = np.zeros_like(v)
                e[i] = 1e-6
                g[i] = (loss({**p, n: v + e}) - loss({**p, n: v - e})) / 2e-6
            out[n] = g
        return out

    case = rnncheck.NumpyCase(
        params,
        loss=loss,
        grad=grad,
        reference="rnn_tanh",
        reference_map={"weight_ih_l0": "W_xh", "weight_hh_l0": "W_hh", "bias_ih_l0": "b_h"},
        inputs=x,
        head=head,
    )
    result = rnncheck.verify_case(case, rnncheck.Options(probes=2))
    by_name = {c.name: c for c in result.checks}
    assert list(by_name) == ["sanity", "gradient", "reference", "flow"]
    assert by_name["gradient"].verdict == "pass"  # the checks before it keep their results
    assert by_name["reference"].verdict == "error" and "head exploded" in by_name["reference"].findings[0].message
    # the flow check after it still ran; it needs the head too, and as an advisory check its error is a warn
    assert (
        by_name["flow"].verdict == "warn" and "the other checks' verdicts stand" in by_name["flow"].findings[0].message
    )
    assert result.verdict == "error"
