"""Layer-by-layer NumPy functions in the style of the classic course assignments.

``rnn_step_forward``/``rnn_step_backward``, ``rnn_forward``/``rnn_backward`` over a
minibatch (N, T, D), a temporal affine readout and a temporal softmax loss — each
returning a cache for its backward.  ``captioning_rnn`` wires them into one loss and
one gradient and passes.  ``captioning_rnn_dnext_dropped`` makes the classic mistake
of not adding the gradient flowing back from step t+1 to step t: it fails.
"""

import numpy as np

import rnncheck

EXPECTED = {"captioning_rnn": "pass", "captioning_rnn_dnext_dropped": "fail"}


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h, cache):
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h**2)
    return da @ Wx.T, da @ Wh.T, x.T @ da, prev_h.T @ da, da.sum(axis=0)


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    h, caches, prev = np.zeros((N, T, h0.shape[1])), [], h0
    for t in range(T):
        prev, cache = rnn_step_forward(x[:, t], prev, Wx, Wh, b)
        h[:, t] = prev
        caches.append(cache)
    return h, caches


def rnn_backward(dh, caches, carry=True):
    N, T, H = dh.shape
    D = caches[0][0].shape[1]
    dx, dprev = np.zeros((N, T, D)), np.zeros((N, H))
    dWx, dWh, db = np.zeros((D, H)), np.zeros((H, H)), np.zeros(H)
    for t in reversed(range(T)):
        upstream = dh[:, t] + dprev if carry else dh[:, t]
        dx[:, t], dprev, dWx_t, dWh_t, db_t = rnn_step_backward(upstream, caches[t])
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev, dWx, dWh, db


def temporal_affine_forward(h, W, b):
    return h @ W + b, (h, W)


def temporal_affine_backward(dout, cache):
    h, W = cache
    N, T, _ = h.shape
    return dout @ W.T, h.reshape(N * T, -1).T @ dout.reshape(N * T, -1), dout.sum(axis=(0, 1))


def temporal_softmax_loss(scores, y):
    N, T, V = scores.shape
    flat = scores.reshape(N * T, V)
    probs = np.exp(flat - flat.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    loss = -np.log(probs[np.arange(N * T), y.ravel()]).sum() / N
    dflat = probs.copy()
    dflat[np.arange(N * T), y.ravel()] -= 1
    return loss, (dflat / N).reshape(N, T, V)


def make(seed=0, N=3, T=6, D=5, H=7, V=4):
    rng = np.random.default_rng(seed)
    params = {
        "Wx": rng.normal(size=(D, H)) * 0.4,
        "Wh": rng.normal(size=(H, H)) * 0.4,
        "b": rng.normal(size=H) * 0.1,
        "W_vocab": rng.normal(size=(H, V)) * 0.4,
        "b_vocab": np.zeros(V),
        "h0": rng.normal(size=(N, H)) * 0.5,
    }
    x = rng.normal(size=(N, T, D))
    y = rng.integers(0, V, size=(N, T))
    return params, x, y


def loss_and_grad(p, x, y, carry=True):
    h, caches = rnn_forward(x, p["h0"], p["Wx"], p["Wh"], p["b"])
    scores, acache = temporal_affine_forward(h, p["W_vocab"], p["b_vocab"])
    loss, dscores = temporal_softmax_loss(scores, y)
    dh, dWv, dbv = temporal_affine_backward(dscores, acache)
    _, dh0, dWx, dWh, db = rnn_backward(dh, caches, carry)
    return loss, {"Wx": dWx, "Wh": dWh, "b": db, "W_vocab": dWv, "b_vocab": dbv, "h0": dh0}


def _case(carry):
    params, x, y = make()
    return rnncheck.NumpyCase(
        params, loss=lambda p: loss_and_grad(p, x, y)[0], grad=lambda p: loss_and_grad(p, x, y, carry), reference=None
    )


@rnncheck.case
def captioning_rnn():
    return _case(carry=True)


@rnncheck.case
def captioning_rnn_dnext_dropped():
    return _case(carry=False)
