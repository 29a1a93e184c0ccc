"""Elman RNN layer: forward and backward through time, side by side.

Forward, for t = 1..T (PyTorch's ``nn.RNN`` equations; ``φ`` is tanh, relu or sigmoid)::

    a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
    h_t = φ(a_t)

Backward.  ``dh_out[t]`` is ∂L/∂h_t through the layer's output alone; the *total*
adjoint adds what flows back from step t+1::

    dh_t      = dh_out[t] + dh_next              (total dL/dh_t, returned as an adjoint)
    da_t      = dh_t ⊙ φ'(a_t)
    dh_next   = W_hhᵀ da_t                       (becomes dL/dh_{t-1}'s recurrent part)
    dW_hh    += da_t h_{t-1}ᵀ      dW_ih += da_t x_tᵀ      db_ih = db_hh = Σ_t da_t
    dx_t      = W_ihᵀ da_t

Shapes are time-major and batched: ``x`` is (T, B, I), ``h`` is (B, H).  All input
projections are one matrix product before the loop; the loop holds only what is
recurrent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import ACTIVATIONS
from .blocks import addmatmul


def cell(a, phi):
    """One step's equation, from the pre-activation ``a = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh``: h_t = φ(a).

    Its one home, as for the LSTM and GRU cells: it runs on NumPy arrays and on torch
    tensors alike, given that library's φ.
    """
    return phi(a)


def step_back(dh_t, D_t, W_hh, direct_prev=None):
    """One step back through the cell: ``(da_t, W_hhᵀ da_t)`` from the total dL/dh_t and ``D_t = φ'`` at step t (from
    the output: ``ACTIVATIONS[name][1](h)``).  The one home of the plain RNN's backward step, for the reference and
    the twin.  With ``direct_prev`` (step t-1's direct dL/dh) the second value is the total dL/dh_(t-1)."""
    da_t = dh_t * D_t
    return da_t, addmatmul(direct_prev, da_t, W_hh)


@dataclass
class RNNCache:
    """What the backward pass needs from the forward pass."""

    x: np.ndarray  # (T, B, I)
    h_prev: np.ndarray  # (T, B, H): h_{t-1} for every step, h_prev[0] = h0
    h: np.ndarray  # (T, B, H): h_t
    W_ih: np.ndarray
    W_hh: np.ndarray
    activation: str


def forward(
    x: np.ndarray,
    h0: np.ndarray,
    W_ih: np.ndarray,
    W_hh: np.ndarray,
    b_ih: np.ndarray,
    b_hh: np.ndarray,
    activation: str = "tanh",
) -> tuple[np.ndarray, np.ndarray, RNNCache]:
    """Run the layer over ``x`` (T, B, I) from ``h0`` (B, H).

    Returns ``(h, h_T, cache)`` with ``h`` of shape (T, B, H).
    """
    phi, _ = ACTIVATIONS[activation]
    T, B, _ = x.shape
    H = W_hh.shape[0]
    dtype = np.result_type(x, h0, W_ih, W_hh, b_ih, b_hh)
    # one product for every step's input projection: (T·B, I) @ (I, H)
    a_x = (x.reshape(T * B, -1) @ W_ih.T).reshape(T, B, H) + (b_ih + b_hh)
    h = np.empty((T, B, H), dtype=dtype)
    h_prev = np.empty((T, B, H), dtype=dtype)
    h_t = h0.astype(dtype, copy=False)
    W_hh_T = np.ascontiguousarray(W_hh.T)  # laid out as each step reads it: BLAS is 2-7× slower on a few rows of .T
    for t in range(T):
        h_prev[t] = h_t
        h_t = cell(a_x[t] + h_t @ W_hh_T, phi)
        h[t] = h_t
    return h, h_t, RNNCache(x, h_prev, h, W_ih, W_hh, activation)


def backward(
    dh_out: np.ndarray, dh_T: np.ndarray | None, cache: RNNCache
) -> tuple[dict[str, np.ndarray], np.ndarray, tuple[np.ndarray], dict[str, np.ndarray]]:
    """Backpropagate through time.

    ``dh_out`` (T, B, H) is ∂L/∂h_t through the layer's output; ``dh_T`` is ∂L/∂h_T
    through the final state (or None).  Returns ``(grads, dx, (dh0,), adjoints)``
    where ``adjoints["h"][t]`` is the total dL/dh_t and ``adjoints["a_x"]``/``["a_h"]`` (T, B, H)
    are dL/da_t for the input and recurrent projections (here the same array): step t's
    share of each weight gradient is ``a_x[t]ᵀ x_t`` and ``a_h[t]ᵀ h_{t-1}``.
    """
    _, dphi = ACTIVATIONS[cache.activation]
    T, B, H = cache.h.shape
    dh_next = np.zeros((B, H), dtype=cache.h.dtype) if dh_T is None else dh_T
    da = np.empty_like(cache.h)
    dh_total = np.empty_like(cache.h)
    D = dphi(cache.h)
    for t in reversed(range(T)):
        dh_t = dh_out[t] + dh_next
        dh_total[t] = dh_t
        da[t], dh_next = step_back(dh_t, D[t], cache.W_hh)
    da2 = da.reshape(T * B, H)
    db = da2.sum(axis=0)
    grads = {
        "W_ih": da2.T @ cache.x.reshape(T * B, -1),
        "W_hh": da2.T @ cache.h_prev.reshape(T * B, H),
        "b_ih": db,
        "b_hh": db.copy(),
    }
    dx = (da2 @ cache.W_ih).reshape(cache.x.shape)
    return grads, dx, (dh_next,), {"h": dh_total, "a_x": da, "a_h": da}
