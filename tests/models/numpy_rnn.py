"""A hand-written NumPy Elman RNN with a softmax cross-entropy readout and its BPTT: no cases,
a helper the model files in this folder (and the tests' own model files) import."""

import numpy as np

T, B, I, H, C = 20, 4, 8, 16, 10
rng = np.random.default_rng(0)
X = rng.normal(size=(T, B, I))
Y = rng.integers(0, C, size=(T, B))
P = {
    "weight_ih_l0": rng.normal(size=(H, I)) * 0.5,
    "weight_hh_l0": rng.normal(size=(H, H)) * 0.5,
    "bias_ih_l0": rng.normal(size=H) * 0.1,
    "bias_hh_l0": rng.normal(size=H) * 0.1,
    "W_y": rng.normal(size=(C, H)) * 0.5,
}


def hidden(p):
    h, hs = np.zeros((B, H)), []
    for t in range(T):
        h = np.tanh(X[t] @ p["weight_ih_l0"].T + h @ p["weight_hh_l0"].T + p["bias_ih_l0"] + p["bias_hh_l0"])
        hs.append(h)
    return np.stack(hs)


def head(h, p):
    z = h @ p["W_y"].T
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(-np.take_along_axis(logp, Y[..., None], -1).sum())


def loss(p):
    return head(hidden(p), p)


def grad(p, truncate=False):
    hs = hidden(p)
    g = {k: np.zeros_like(v) for k, v in p.items()}
    z = hs @ p["W_y"].T
    pr = np.exp(z - z.max(-1, keepdims=True))
    pr /= pr.sum(-1, keepdims=True)
    dz = pr.copy()
    np.put_along_axis(dz, Y[..., None], np.take_along_axis(dz, Y[..., None], -1) - 1, -1)
    g["W_y"] = np.einsum("tbc,tbh->ch", dz, hs)
    dh_out = dz @ p["W_y"]
    dh = np.zeros((B, H))
    for t in reversed(range(T)):
        dh = dh + dh_out[t]
        da = dh * (1 - hs[t] ** 2)
        h_prev = hs[t - 1] if t else np.zeros((B, H))
        g["weight_ih_l0"] += da.T @ X[t]
        g["weight_hh_l0"] += da.T @ h_prev
        g["bias_ih_l0"] += da.sum(0)
        g["bias_hh_l0"] += da.sum(0)
        dh = da @ p["weight_hh_l0"] * (0.0 if truncate else 1.0)
    return g
