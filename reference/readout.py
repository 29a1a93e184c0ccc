"""A linear readout with a mean-squared-error loss, forward and backward.

This completes the model of the article rnncheck grew from::

    h_t = σ(W_hh h_{t-1} + W_xh x_t + b_h)        (an ``rnn_sigmoid`` layer)
    y_t = W_hy h_t + b_y
    L   = mean over every (t, b, k) of (y_t - target_t)²

Backward::

    dy_t  = 2 (y_t - target_t) / N          (N = number of entries of y)
    dW_hy = Σ_t dy_t h_tᵀ     db_y = Σ_t dy_t     dh_out[t] = W_hyᵀ dy_t
"""

from __future__ import annotations

import numpy as np


def forward(h: np.ndarray, W_hy: np.ndarray, b_y: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Return ``(loss, y)`` for hidden states ``h`` (T, B, H) and ``target`` (T, B, K)."""
    y = h @ W_hy.T + b_y
    diff = y - target
    return (diff * diff).mean(), y


def backward(
    h: np.ndarray, y: np.ndarray, W_hy: np.ndarray, target: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Return ``({"W_hy", "b_y"}, dh_out)`` where ``dh_out`` is ∂L/∂h_t through the readout."""
    dy = 2.0 * (y - target) / y.size
    K, H = W_hy.shape
    dy2 = dy.reshape(-1, K)
    grads = {"W_hy": dy2.T @ h.reshape(-1, H), "b_y": dy2.sum(axis=0)}
    return grads, dy @ W_hy
