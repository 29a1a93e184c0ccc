"""LSTM layer: forward and backward through time, side by side.

Forward, for t = 1..T (PyTorch's ``nn.LSTM`` equations and gate order i, f, g, o)::

    [a_i, a_f, a_g, a_o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
    i_t = σ(a_i)   f_t = σ(a_f)   g_t = tanh(a_g)   o_t = σ(a_o)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)                      (no projection)
    m_t = o_t ⊙ tanh(c_t),  h_t = W_hr m_t     (with a projection W_hr, (P, H): ``proj_size=P``)

With a projection the recurrent weight W_hh is (4H, P) and h_t has P entries; c_t keeps H.

Backward.  ``dh_t`` and ``dc_t`` are the *total* adjoints dL/dh_t and dL/dc_t::

    dh_t  = dh_out[t] + dh_next
    dm_t  = dh_t                  (with a projection: dm_t = W_hrᵀ dh_t,  dW_hr += dh_t m_tᵀ)
    dc_t  = dc_next + dm_t ⊙ o_t ⊙ (1 - tanh²(c_t))
    do_t  = dm_t ⊙ tanh(c_t)      da_o = do_t ⊙ o_t (1 - o_t)
    di_t  = dc_t ⊙ g_t            da_i = di_t ⊙ i_t (1 - i_t)
    df_t  = dc_t ⊙ c_{t-1}        da_f = df_t ⊙ f_t (1 - f_t)
    dg_t  = dc_t ⊙ i_t            da_g = dg_t ⊙ (1 - g_t²)
    dh_next = W_hhᵀ da_t          dc_next = dc_t ⊙ f_t
    dW_hh += da_t h_{t-1}ᵀ        dW_ih += da_t x_tᵀ        db_ih = db_hh = Σ_t da_t
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import dsigmoid_from_output, dtanh_from_output, sigmoid
from .blocks import addmatmul, addmul, blocks, join

GATES = ("i", "f", "g", "o")

#: each gate's activation, and ``"c"``: the squashing of the cell state on its way out
ACTS = {"i": sigmoid, "f": sigmoid, "g": np.tanh, "o": sigmoid, "c": np.tanh}


def cell(a, c_prev, act=ACTS, order=GATES):
    """One step's equations, from the gates' pre-activations ``a = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh``.

    ``a`` is (B, 4H) with the gate blocks in ``order``; ``c_prev`` is (B, H).  Returns
    ``(m_t, c_t, (i_t, f_t, g_t, o_t), s_t)`` with ``s_t = tanh(c_t)`` and ``m_t = o_t ⊙ s_t``
    (h_t itself without a projection).  Only blocks and arithmetic: it runs on NumPy
    arrays and on torch tensors alike, given that library's activations in ``act``; and a
    wrong forward is this cell with one substitution in ``act`` or ``order``.
    """
    i, f, g, o = activations(a, act, order)
    c = f * c_prev + i * g
    m, s = output(o, c, act)
    return m, c, (i, f, g, o), s


def activations(a, act=ACTS, order=GATES) -> tuple:
    """The gates ``(i, f, g, o)`` from their pre-activations ``a`` (·, 4H), blocks in ``order``: the first half
    of :func:`cell`, which needs no cell state (the gates of every step at once, where every h_(t-1) is known)."""
    block = dict(zip(order, blocks(a, len(order))))
    return tuple(act[name](block[name]) for name in GATES)


def output(o, c, act=ACTS) -> tuple:
    """``(m_t, s_t)``: the cell state's way out, ``s_t = tanh(c_t)`` and ``m_t = o_t ⊙ s_t``; the last half of
    :func:`cell`."""
    s = act["c"](c)
    return o * s, s


def back_factors(acts, s, c_prev):
    """What one step back through the cell multiplies by, for every step at once: ``(A, F, f)``.

    With ``acts = (i, f, g, o)``, ``s = tanh(c_t)`` and ``c_prev`` (each (T, B, H), or one step's
    (B, H)): ``A = o (1 - s²)`` carries dm_t into dc_t, and ``F`` (·, 4H) holds, block by block,
    what dc_t (for i, f, g) and dm_t (for o) are multiplied by to give the pre-activations'
    adjoint.  Arithmetic only: NumPy arrays and torch tensors alike.
    """
    i, f, g, o = acts
    A = o * dtanh_from_output(s)
    F = join(
        [
            g * dsigmoid_from_output(i),
            c_prev * dsigmoid_from_output(f),
            i * dtanh_from_output(g),
            s * dsigmoid_from_output(o),
        ]
    )
    return A, F, f


def step_back(dm_t, dc_next, A_t, F_t, f_t, W_hh, direct_prev=None):
    """One step back through the cell: ``(da_t, W_hhᵀ da_t, dc_{t-1}'s share, dc_t)`` from the total dL/dm_t and the
    dc carried back from step t+1.  The one home of the LSTM's backward step, for the reference and the twin.

    With ``direct_prev``, step t-1's direct dL/dh, the second value is the total dL/dh_(t-1) =
    direct_prev + W_hhᵀ da_t, from one fused product on tensors.
    """
    dc_t = addmul(dc_next, dm_t, A_t)
    da_t = join([dc_t, dc_t, dc_t, dm_t]) * F_t
    return da_t, addmatmul(direct_prev, da_t, W_hh), dc_t * f_t, dc_t


@dataclass
class LSTMCache:
    """What the backward pass needs from the forward pass."""

    x: np.ndarray  # (T, B, I)
    h_prev: np.ndarray  # (T, B, P) (P = H without a projection)
    c_prev: np.ndarray  # (T, B, H)
    gates: np.ndarray  # (T, B, 4H): activated i, f, g, o
    tanh_c: np.ndarray  # (T, B, H)
    W_ih: np.ndarray
    W_hh: np.ndarray
    W_hr: np.ndarray | None = None  # the projection (P, H), if any


def forward(
    x: np.ndarray,
    h0: np.ndarray,
    c0: np.ndarray,
    W_ih: np.ndarray,
    W_hh: np.ndarray,
    b_ih: np.ndarray,
    b_hh: np.ndarray,
    W_hr: np.ndarray | None = None,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], LSTMCache]:
    """Run the layer over ``x`` (T, B, I) from ``(h0, c0)``, (B, P) and (B, H).

    Returns ``(h, (h_T, c_T), cache)`` with ``h`` of shape (T, B, P); P = H without ``W_hr``.
    """
    T, B, _ = x.shape
    H = W_hh.shape[0] // 4
    P = H if W_hr is None else W_hr.shape[0]
    dtype = np.result_type(x, h0, c0, W_ih, W_hh, b_ih, b_hh, *(() if W_hr is None else (W_hr,)))
    a_x = (x.reshape(T * B, -1) @ W_ih.T).reshape(T, B, 4 * H) + (b_ih + b_hh)
    gates = np.empty((T, B, 4 * H), dtype=dtype)
    h = np.empty((T, B, P), dtype=dtype)
    h_prev = np.empty_like(h)
    c_prev = np.empty((T, B, H), dtype=dtype)
    tanh_c = np.empty_like(c_prev)
    h_t = h0.astype(dtype, copy=False)
    c_t = c0.astype(dtype, copy=False)
    W_hh_T = np.ascontiguousarray(W_hh.T)  # laid out as each step reads it: BLAS is 2-7× slower on a few rows of .T
    W_hr_T = None if W_hr is None else np.ascontiguousarray(W_hr.T)
    for t in range(T):
        h_prev[t], c_prev[t] = h_t, c_t
        m_t, c_t, acts, tanh_c[t] = cell(a_x[t] + h_t @ W_hh_T, c_t)
        for k, v in enumerate(acts):
            gates[t, :, k * H : (k + 1) * H] = v
        h_t = m_t
        if W_hr_T is not None:
            h_t = h_t @ W_hr_T
        h[t] = h_t
    cache = LSTMCache(x, h_prev, c_prev, gates, tanh_c, W_ih, W_hh, W_hr)
    return h, (h_t, c_t), cache


def backward(
    dh_out: np.ndarray,
    dstate_T: tuple[np.ndarray | None, np.ndarray | None],
    cache: LSTMCache,
) -> tuple[dict[str, np.ndarray], np.ndarray, tuple[np.ndarray, np.ndarray], dict[str, np.ndarray]]:
    """Backpropagate through time.

    ``dh_out`` (T, B, P) is ∂L/∂h_t through the output; ``dstate_T = (dh_T, dc_T)``
    through the final state (either may be None).  Returns
    ``(grads, dx, (dh0, dc0), adjoints)`` with total ``adjoints["h"]``, ``adjoints["c"]``, and
    the gate pre-activation adjoints ``adjoints["a_x"] = adjoints["a_h"]`` (T, B, 4H): step t's
    share of each weight gradient is ``a_x[t]ᵀ x_t`` and ``a_h[t]ᵀ h_{t-1}``.
    """
    T, B, H = cache.tanh_c.shape
    P = cache.h_prev.shape[-1]
    W_hr = cache.W_hr
    dtype = cache.gates.dtype
    dh_next = np.zeros((B, P), dtype=dtype) if dstate_T[0] is None else dstate_T[0]
    dc_next = np.zeros((B, H), dtype=dtype) if dstate_T[1] is None else dstate_T[1]
    da = np.empty_like(cache.gates)
    dh_total = np.empty_like(cache.h_prev)
    dc_total = np.empty_like(cache.tanh_c)
    dW_hr = None if W_hr is None else np.zeros_like(W_hr)
    acts = blocks(cache.gates, 4)
    A, F, f = back_factors(acts, cache.tanh_c, cache.c_prev)
    for t in reversed(range(T)):
        dh_t = dh_out[t] + dh_next
        dh_total[t] = dh_t
        if W_hr is not None:
            dW_hr += dh_t.T @ (acts[3][t] * cache.tanh_c[t])
            dh_t = dh_t @ W_hr  # dm_t: the adjoint of the unprojected o ⊙ tanh(c)
        da[t], dh_next, dc_next, dc_total[t] = step_back(dh_t, dc_next, A[t], F[t], f[t], cache.W_hh)
    da2 = da.reshape(T * B, 4 * H)
    db = da2.sum(axis=0)
    grads = {
        "W_ih": da2.T @ cache.x.reshape(T * B, -1),
        "W_hh": da2.T @ cache.h_prev.reshape(T * B, P),
        "b_ih": db,
        "b_hh": db.copy(),
    }
    if W_hr is not None:
        grads["W_hr"] = dW_hr
    dx = (da2 @ cache.W_ih).reshape(cache.x.shape)
    return grads, dx, (dh_next, dc_next), {"h": dh_total, "c": dc_total, "a_x": da, "a_h": da}
