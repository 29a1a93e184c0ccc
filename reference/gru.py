"""GRU layer: forward and backward through time, side by side.

Forward, for t = 1..T (PyTorch's ``nn.GRU`` equations and gate order r, z, n)::

    [x_r, x_z, x_n] = W_ih x_t + b_ih          [h_r, h_z, h_n] = W_hh h_{t-1} + b_hh
    r_t = σ(x_r + h_r)
    z_t = σ(x_z + h_z)
    n_t = tanh(x_n + r_t ⊙ h_n)
    h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

Backward, with ``dh_t`` the *total* adjoint dL/dh_t::

    dh_t  = dh_out[t] + dh_next
    dn_t  = dh_t ⊙ (1 - z_t)               da_n = dn_t ⊙ (1 - n_t²)
    dz_t  = dh_t ⊙ (h_{t-1} - n_t)         da_z = dz_t ⊙ z_t (1 - z_t)
    dr_t  = da_n ⊙ h_n                     da_r = dr_t ⊙ r_t (1 - r_t)
    input side:      d[x_r, x_z, x_n] = [da_r, da_z, da_n]
    recurrent side:  d[h_r, h_z, h_n] = [da_r, da_z, da_n ⊙ r_t]
    dh_next = dh_t ⊙ z_t + W_hhᵀ d[h_r, h_z, h_n]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import dsigmoid_from_output, dtanh_from_output, sigmoid
from .blocks import addmatmul, addmul, blocks, join

GATES = ("r", "z", "n")

#: each gate's activation
ACTS = {"r": sigmoid, "z": sigmoid, "n": np.tanh}


def reset_after(r, h_prev, h_n, W_hn, b_hn):
    """PyTorch's form: the reset gate scales ``h_n = W_hn h_{t-1} + b_hn``."""
    return r * h_n


def cell(ax, h_prev, W_hh, b_hh, act=ACTS, reset=reset_after):
    """One step's equations, from the input projection ``ax = W_ih x_t + b_ih`` (B, 3H).

    Returns ``(h_t, (r_t, z_t, n_t), h_n)`` with ``h_n = W_hn h_{t-1} + b_hn`` (what the
    backward needs).  Only blocks and arithmetic: it runs on NumPy arrays and on torch
    tensors alike, given that library's activations in ``act``; and a wrong forward is
    this cell with one substitution in ``act`` or ``reset``.
    """
    H = h_prev.shape[-1]
    ax_r, ax_z, ax_n = blocks(ax, 3)
    ah_r, ah_z, h_n = blocks(h_prev @ W_hh.T + b_hh, 3)
    r = act["r"](ax_r + ah_r)
    z = act["z"](ax_z + ah_z)
    n = act["n"](ax_n + reset(r, h_prev, h_n, W_hh[2 * H :], b_hh[2 * H :]))
    return (1 - z) * n + z * h_prev, (r, z, n), h_n


def back_factors(acts, h_prev, h_n):
    """What one step back through the cell multiplies by, for every step at once: ``(Kx, Kh, z)``.

    With ``acts = (r, z, n)``, ``h_prev`` and ``h_n = W_hn h_{t-1} + b_hn`` (each (T, B, H), or one
    step's (B, H)), ``Kx`` (·, 3H) turns dh_t into the input side's pre-activation adjoint and
    ``Kh`` into the recurrent side's (its n block scaled by r).  Arithmetic only: NumPy arrays
    and torch tensors alike.
    """
    r, z, n = acts
    k_n = (1 - z) * dtanh_from_output(n)
    k_z = (h_prev - n) * dsigmoid_from_output(z)
    k_r = k_n * h_n * dsigmoid_from_output(r)
    return join([k_r, k_z, k_n]), join([k_r, k_z, k_n * r]), z


def step_back(dh_t, Kx_t, Kh_t, z_t, W_hh, direct_prev=None):
    """One step back through the cell: ``(da_x, da_h, dh_{t-1}'s share)`` from the total dL/dh_t.  The one home
    of the GRU's backward step, for the reference and the twin.  With ``direct_prev`` (step t-1's direct dL/dh)
    the third value is the total dL/dh_(t-1)."""
    dh3 = join([dh_t, dh_t, dh_t])
    da_h = dh3 * Kh_t
    return dh3 * Kx_t, da_h, addmatmul(addmul(direct_prev, dh_t, z_t), da_h, W_hh)


@dataclass
class GRUCache:
    """What the backward pass needs from the forward pass."""

    x: np.ndarray  # (T, B, I)
    h_prev: np.ndarray  # (T, B, H)
    gates: np.ndarray  # (T, B, 3H): activated r, z, n
    h_n: np.ndarray  # (T, B, H): W_hn h_{t-1} + b_hn, before the reset gate
    W_ih: np.ndarray
    W_hh: np.ndarray


def forward(
    x: np.ndarray,
    h0: np.ndarray,
    W_ih: np.ndarray,
    W_hh: np.ndarray,
    b_ih: np.ndarray,
    b_hh: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, GRUCache]:
    """Run the layer over ``x`` (T, B, I) from ``h0`` (B, H).

    Returns ``(h, h_T, cache)`` with ``h`` of shape (T, B, H).
    """
    T, B, _ = x.shape
    H = W_hh.shape[1]
    dtype = np.result_type(x, h0, W_ih, W_hh, b_ih, b_hh)
    a_x = (x.reshape(T * B, -1) @ W_ih.T).reshape(T, B, 3 * H) + b_ih
    gates = np.empty((T, B, 3 * H), dtype=dtype)
    h = np.empty((T, B, H), dtype=dtype)
    h_prev = np.empty_like(h)
    h_n = np.empty_like(h)
    h_t = h0.astype(dtype, copy=False)
    for t in range(T):
        h_prev[t] = h_t
        h_t, acts, h_n[t] = cell(a_x[t], h_t, W_hh, b_hh)
        for k, v in enumerate(acts):
            gates[t, :, k * H : (k + 1) * H] = v
        h[t] = h_t
    return h, h_t, GRUCache(x, h_prev, gates, h_n, W_ih, W_hh)


def backward(
    dh_out: np.ndarray, dh_T: np.ndarray | None, cache: GRUCache
) -> tuple[dict[str, np.ndarray], np.ndarray, tuple[np.ndarray], dict[str, np.ndarray]]:
    """Backpropagate through time.

    Returns ``(grads, dx, (dh0,), adjoints)`` with the total ``adjoints["h"]`` and the
    pre-activation adjoints of the input side ``adjoints["a_x"]`` and of the recurrent side
    ``adjoints["a_h"]`` (T, B, 3H): step t's share of each weight gradient is ``a_x[t]ᵀ x_t``
    and ``a_h[t]ᵀ h_{t-1}``.
    """
    T, B, H = cache.h_prev.shape
    dh_next = np.zeros((B, H), dtype=cache.gates.dtype) if dh_T is None else dh_T
    da_x = np.empty_like(cache.gates)  # gradient of the input-side pre-activations
    da_h = np.empty_like(cache.gates)  # gradient of the recurrent-side pre-activations
    dh_total = np.empty_like(cache.h_prev)
    Kx, Kh, z = back_factors(blocks(cache.gates, 3), cache.h_prev, cache.h_n)
    for t in reversed(range(T)):
        dh_t = dh_out[t] + dh_next
        dh_total[t] = dh_t
        da_x[t], da_h[t], dh_next = step_back(dh_t, Kx[t], Kh[t], z[t], cache.W_hh)
    dax2 = da_x.reshape(T * B, 3 * H)
    dah2 = da_h.reshape(T * B, 3 * H)
    grads = {
        "W_ih": dax2.T @ cache.x.reshape(T * B, -1),
        "W_hh": dah2.T @ cache.h_prev.reshape(T * B, H),
        "b_ih": dax2.sum(axis=0),
        "b_hh": dah2.sum(axis=0),
    }
    dx = (dax2 @ cache.W_ih).reshape(cache.x.shape)
    return grads, dx, (dh_next,), {"h": dh_total, "a_x": da_x, "a_h": da_h}
