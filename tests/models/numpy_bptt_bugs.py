"""A hand-written NumPy BPTT for a tanh RNN, correct and with the missing transpose in the recursion.

``dh_prev = W_hh @ da`` where ``W_hh.T @ da`` belongs is the most common hand-written BPTT bug
in public code; with reference="rnn_tanh" the report names it, verified.
"""

import numpy as np

import rnncheck

H, D, T = 5, 3, 12
RNG = np.random.default_rng(0)
X = RNG.standard_normal((T, D))
WY = RNG.standard_normal((T, H))  # the loss: Σ_t wy_t · h_t


def params():
    rng = np.random.default_rng(1)
    return {
        "W_xh": rng.standard_normal((H, D)) * 0.5,
        "W_hh": rng.standard_normal((H, H)) * 0.5,
        "b_h": rng.standard_normal(H) * 0.1,
    }


def forward(p):
    h, hs = np.zeros(H), []
    for t in range(T):
        h = np.tanh(p["W_xh"] @ X[t] + p["W_hh"] @ h + p["b_h"])
        hs.append(h)
    return np.array(hs)


def loss(p):
    return float((forward(p) * WY).sum())


def bptt(p, transpose=True):
    hs = forward(p)
    g = {k: np.zeros_like(v) for k, v in p.items()}
    dh = np.zeros(H)
    for t in range(T - 1, -1, -1):
        dh = dh + WY[t]
        da = dh * (1 - hs[t] ** 2)
        h_prev = hs[t - 1] if t else np.zeros(H)
        g["W_xh"] += np.outer(da, X[t])
        g["W_hh"] += np.outer(da, h_prev)
        g["b_h"] += da
        dh = (p["W_hh"].T if transpose else p["W_hh"]) @ da
    return g


def _case(grad):
    return rnncheck.NumpyCase(
        params(),
        loss,
        grad,
        reference="rnn_tanh",
        reference_map={"weight_ih_l0": "W_xh", "weight_hh_l0": "W_hh", "bias_ih_l0": "b_h"},
        inputs=X[:, None, :],
        head=lambda h, p: float((h[:, 0, :] * WY).sum()),
        hidden=lambda p: forward(p)[:, None, :],
    )


@rnncheck.case
def correct_bptt():
    return _case(bptt)


@rnncheck.case
def missing_transpose():
    return _case(lambda p: bptt(p, transpose=False))


def _wrong_head_case(grad):
    """The reference's head reads the steps in reverse: its loss is not the case's."""
    case = _case(grad)
    case.head = lambda h, p: float((h[:, 0, :] * WY[::-1]).sum())
    return case


@rnncheck.case
def correct_bptt_wrong_head():
    return _wrong_head_case(bptt)


@rnncheck.case
def missing_transpose_wrong_head():
    return _wrong_head_case(lambda p: bptt(p, transpose=False))
