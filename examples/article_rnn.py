"""The model of the blog post rnncheck grew from, with its own backward pass made to run.

The post trains a sigmoid RNN with a linear readout and a mean-squared error::

    h_t = σ(W_hh h_{t-1} + W_xh x_t + b_h)
    y_t = W_hy h_t + b_y
    L   = Σ_t mean_k (y_t,k - target_t,k)²

Its NumPy code does not run as printed (the weight shapes do not fit the products),
so ``article_grad`` below keeps the post's backward pass and fixes only the shapes:

- the output error is ``2 (y_t - target_t) · σ(y_t)(1 - σ(y_t))``: the sigmoid's
  derivative is applied to ``y_t``, an output that never went through a sigmoid, and the
  mean's ``1/K`` is dropped;
- ``b_y`` receives the *sum* of that error over the outputs, the same number in every entry;
- the hidden layer is updated from the last time step only: the error is not carried
  back through time, so ``W_hh``, ``W_xh`` and ``b_h`` see one step of a T-step sum.

What ``rnncheck verify examples/article_rnn.py`` finds, in words a reader of the post
would use:

- Every one of the five gradients is wrong, most by nearly 100%: the table shows each
  tensor failing, with the entry rnncheck narrowed it to (``W_hh[.., ..]: analytic …,
  numeric …``) and "the error is spread over the block": no single typo, a wrong formula.
- The forward pass is right: it matches rnncheck's ``rnn_sigmoid`` reference at every one
  of the 100 steps, so the fault is in the backward pass alone, and the reference and the
  finite differences agree on the true gradient.
- ``W_hh`` and ``W_xh`` (and ``b_h`` with them) are built from the last step alone: every
  row of their gradient lies along step 99's input — the post never carries the error
  back through time, which is the whole point of backpropagation *through time*.
- ``b_y`` gets one number in every entry: ``np.sum(gradients)`` adds up the error of all
  outputs and puts that total into each bias, instead of one error per output.
- ``W_hy`` is wrong too, with no single pattern to name: the post multiplies the output
  error by σ'(y), the derivative of a sigmoid the output never went through (``y_t`` is
  linear), and drops the mean's 1/K.

``article_rnn_corrected`` is the same model with the backward pass of rnncheck's reference
(:mod:`rnncheck.reference.readout` on an ``rnn_sigmoid`` layer), and passes.
"""

import numpy as np
from rnncheck.reference import readout

import rnncheck
from rnncheck import reference as R

EXPECTED = {"article_rnn": "fail", "article_rnn_corrected": "pass"}

input_size, hidden_size, output_size, steps = 10, 20, 5, 100


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    params = {
        "W_hh": rng.standard_normal((hidden_size, hidden_size)) * 0.3,
        "W_xh": rng.standard_normal((hidden_size, input_size)) * 0.3,
        "W_hy": rng.standard_normal((output_size, hidden_size)),
        "b_h": np.zeros(hidden_size),
        "b_y": np.zeros(output_size),
    }
    X = rng.standard_normal((steps, input_size))
    Y = rng.standard_normal((steps, output_size))
    return params, X, Y


def forward(p, X):
    h = np.zeros(hidden_size)
    hs, ys = [], []
    for t in range(X.shape[0]):
        h = sigmoid(p["W_hh"] @ h + p["W_xh"] @ X[t] + p["b_h"])
        hs.append(h)
        ys.append(p["W_hy"] @ h + p["b_y"])
    return np.array(hs), np.array(ys)


def article_loss(p, X, Y):
    _, ys = forward(p, X)
    return sum(np.mean((Y[t] - ys[t]) ** 2) for t in range(len(X)))


def article_grad(p, X, Y):
    """The post's backward pass (its updates were ``W += lr·Δ``; the gradient is ``-Δ``)."""
    hs, ys = forward(p, X)
    g = {k: np.zeros_like(v) for k, v in p.items()}
    for t in range(len(X)):
        err = 2 * (ys[t] - Y[t]) * sigmoid(ys[t]) * (1 - sigmoid(ys[t]))
        g["W_hy"] += np.outer(err, hs[t])
        g["b_y"] += np.sum(err)
    # hidden layer: last step only, no recurrence
    T = len(X) - 1
    err = 2 * (ys[T] - Y[T]) * sigmoid(ys[T]) * (1 - sigmoid(ys[T]))
    delta = (p["W_hy"].T @ err) * hs[T] * (1 - hs[T])
    g["W_hh"] += np.outer(delta, hs[T - 1])
    g["W_xh"] += np.outer(delta, X[T])
    g["b_h"] += delta
    return g


def corrected_grad(p, X, Y):
    """The same model's gradient from rnncheck's reference."""
    spec = R.Spec("rnn_sigmoid", input_size, hidden_size)
    rnn_p = {
        "weight_ih_l0": p["W_xh"],
        "weight_hh_l0": p["W_hh"],
        "bias_ih_l0": p["b_h"],
        "bias_hh_l0": np.zeros(hidden_size),
    }
    x, target = X[:, None, :], Y[:, None, :]
    h, _, cache = R.forward(spec, rnn_p, x)
    # L = Σ_t mean_k(...)² = T · (mean over all (t, k)): scale the readout's mean-loss gradient by T
    loss, y = readout.forward(h, p["W_hy"], p["b_y"], target)
    g_out, dh = readout.backward(h, y, p["W_hy"], target)
    g = R.backward(cache, dh * steps)
    return {
        "W_hh": g.params["weight_hh_l0"],
        "W_xh": g.params["weight_ih_l0"],
        "b_h": g.params["bias_ih_l0"],
        "W_hy": g_out["W_hy"] * steps,
        "b_y": g_out["b_y"] * steps,
    }


def readout_loss(h, p, Y):
    """The rest of the loss given the hidden states h (T, 1, H): the readout and the error."""
    y = h[:, 0, :] @ p["W_hy"].T + p["b_y"]
    return float(np.sum(np.mean((Y - y) ** 2, axis=1)))


#: the article's names for the reference's parameters (it has one hidden bias, b_h)
REFERENCE_MAP = {"weight_ih_l0": "W_xh", "weight_hh_l0": "W_hh", "bias_ih_l0": "b_h"}


def _case(grad):
    params, X, Y = make_data()
    return rnncheck.NumpyCase(
        params,
        loss=lambda p: article_loss(p, X, Y),
        grad=lambda p: grad(p, X, Y),
        reference="rnn_sigmoid",
        reference_map=REFERENCE_MAP,
        inputs=X[:, None, :],
        head=lambda h, p: readout_loss(h, p, Y),
        hidden=lambda p: forward(p, X)[0][:, None, :],
    )


@rnncheck.case
def article_rnn():
    return _case(article_grad)


@rnncheck.case
def article_rnn_corrected():
    return _case(corrected_grad)
