"""Hand-written BPTT for RNN, LSTM and GRU, with switches that plant the classic bugs.

Each ``*_grad(p, data, bug)`` is a student-style backward pass (independent of
rnncheck's reference); ``bug=None`` is correct, any name in ``MUTANTS`` plants one
mistake.  The loss is ``Σ_t Σ w_t ⊙ h_t`` (plus ``w_c ⊙ c_T`` for the LSTM) over a
batch, so every step's hidden state matters.
"""

from __future__ import annotations

import numpy as np

import rnncheck

GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}


def sig(a):
    return 0.5 * (1 + np.tanh(0.5 * a))


# ---------------------------------------------------------------- problems


def make_problem(cell, seed=0, dtype=np.float64, T=8, B=3, I=4, H=5, w_scale=None, bias=None, zero_pad=0):
    rng = np.random.default_rng(seed)
    G = {"lstm": 4, "gru": 3}.get(cell, 1)
    k = (w_scale if w_scale is not None else 1.0) / np.sqrt(H)
    p = {
        "W_ih": rng.uniform(-k, k, (G * H, I)),
        "W_hh": rng.uniform(-k, k, (G * H, H)),
        "b_ih": rng.uniform(-k, k, G * H) if bias is None else np.full(G * H, bias[0]),
        "b_hh": rng.uniform(-k, k, G * H) if bias is None else np.full(G * H, bias[1]),
    }
    p = {n: v.astype(dtype) for n, v in p.items()}
    x = rng.normal(size=(T, B, I))
    if zero_pad:
        x[:zero_pad] = 0.0  # padded steps: zero input, zero state, zero bias: pre-activations exactly 0
    # the loss reads h_t at every step; with reference checks it must be a function of h alone
    data = {"x": x, "w": rng.normal(size=(T, B, H)), "w_c": np.zeros((B, H)), "H": H}
    return p, data


# ---------------------------------------------------------------- Elman RNN


def rnn_forward(p, x, act="tanh"):
    T, B, _ = x.shape
    H = p["W_hh"].shape[0]
    h = np.zeros((B, H), dtype=np.result_type(p["W_hh"], x))
    hs, pre = [], []
    for t in range(T):
        a = x[t] @ p["W_ih"].T + p["b_ih"] + h @ p["W_hh"].T + p["b_hh"]
        h = np.tanh(a) if act == "tanh" else a * (a > 0)
        hs.append(h)
        pre.append(a)
    return hs, pre


def rnn_loss(p, data, act="tanh"):
    hs, _ = rnn_forward(p, data["x"], act)
    return float(sum((h * w).sum() for h, w in zip(hs, data["w"])))


_STATE = {}


def rnn_grad_truncated(p, data, k):
    """Truncated BPTT: the loss at step τ is carried back k steps, no further."""
    x, w = data["x"], data["w"]
    T, B, _ = x.shape
    hs, _ = rnn_forward(p, x)
    g = {n: np.zeros(v.shape) for n, v in p.items()}
    for tau in range(T):
        dh = w[tau]
        for t in range(tau, max(tau - k, 0) - 1, -1):
            h_prev = hs[t - 1] if t > 0 else np.zeros_like(hs[t])
            da = dh * (1 - hs[t] ** 2)
            g["W_ih"] += da.T @ x[t]
            g["W_hh"] += da.T @ h_prev
            g["b_ih"] += da.sum(0)
            g["b_hh"] += da.sum(0)
            dh = da @ p["W_hh"]
    return g


def rnn_grad(p, data, bug=None, act="tanh"):
    if bug == "truncated_3":
        return rnn_grad_truncated(p, data, 3)
    x, w = data["x"], data["w"]
    T, B, _ = x.shape
    hs, pre = rnn_forward(p, x, act)
    g = {n: np.zeros(v.shape) for n, v in p.items()}
    if bug == "stateful_accumulator":
        g = _STATE.setdefault("rnn", {n: np.zeros(v.shape) for n, v in p.items()})
    if bug == "inplace_change":
        p["b_hh"] *= 0.5
    dh_next = np.zeros((B, p["W_hh"].shape[0]))
    last = 1 if bug == "skip_t0" else 0
    for t in range(T - 1, last - 1, -1):
        if bug == "skip_t5" and t == 5:
            dh_next = (w[t] + dh_next) * (1 - hs[t] ** 2) @ p["W_hh"]  # carried on, but step 5 adds nothing
            continue
        h, h_prev = hs[t], (hs[t - 1] if t > 0 else np.zeros_like(hs[t]))
        dh = w[t] if bug == "dropped_dh_next" else w[t] + dh_next
        if act == "tanh":
            da = dh * (1 - np.tanh(h) ** 2) if bug == "deriv_of_activated" else dh * (1 - h**2)
        else:
            da = dh * (pre[t] > 0)
        g["W_ih"] += da.T @ x[t]
        g["W_hh"] += da.T @ (h if bug == "h_t_for_h_prev" else h_prev)
        if bug == "bias_assigned":
            g["b_ih"] = da.sum(0)
        else:
            g["b_ih"] += da.sum(0)
        g["b_hh"] += da.sum(0)
        dh_next = da @ (p["W_hh"].T if bug == "missing_transpose" else p["W_hh"])
    if bug == "transposed_weight_grad":
        g["W_hh"] = g["W_hh"].T.copy()
    if bug == "zero_bias_grad":
        g["b_hh"] = np.zeros_like(g["b_hh"])
    if bug == "bias_sum_broadcast":
        g["b_hh"] = np.full_like(g["b_hh"], g["b_hh"].sum())
    if bug == "flipped_sign":
        g["W_ih"] = -g["W_ih"]
    if bug == "batch_scale":
        g["W_hh"] = g["W_hh"] / B
    if bug == "clipped":
        for v in g.values():
            np.clip(v, -1.0, 1.0, out=v)
    return {n: v.copy() for n, v in g.items()}


# ---------------------------------------------------------------- LSTM


def lstm_forward(p, x):
    T, B, _ = x.shape
    H = p["W_hh"].shape[1]
    dt = np.result_type(p["W_hh"], x)
    h, c = np.zeros((B, H), dt), np.zeros((B, H), dt)
    cache = []
    for t in range(T):
        a = x[t] @ p["W_ih"].T + p["b_ih"] + h @ p["W_hh"].T + p["b_hh"]
        i, f, g, o = sig(a[:, :H]), sig(a[:, H : 2 * H]), np.tanh(a[:, 2 * H : 3 * H]), sig(a[:, 3 * H :])
        c_prev, h_prev = c, h
        c = f * c + i * g
        h = o * np.tanh(c)
        cache.append((h_prev, c_prev, i, f, g, o, c, h))
    return cache


def lstm_loss(p, data):
    cache = lstm_forward(p, data["x"])
    return float(sum((step[7] * w).sum() for step, w in zip(cache, data["w"])) + (cache[-1][6] * data["w_c"]).sum())


def lstm_grad(p, data, bug=None):
    x, w = data["x"], data["w"]
    T, B, _ = x.shape
    H = p["W_hh"].shape[1]
    cache = lstm_forward(p, x)
    g = {n: np.zeros(v.shape) for n, v in p.items()}
    dh_next, dc_next = np.zeros((B, H)), data["w_c"].copy()
    for t in reversed(range(T)):
        h_prev, c_prev, i, f, gg, o, c, h = cache[t]
        tc = np.tanh(c)
        dh = w[t] if bug == "dropped_dh_next" else w[t] + dh_next
        dtc = (1 - c**2) if bug == "tanh_c_deriv" else (1 - tc**2)
        dc = (0 if bug == "dropped_dc_next" else dc_next) + dh * o * dtc
        if bug == "deriv_of_activated":
            ds = lambda s: sig(s) * (1 - sig(s))  # noqa: E731
        else:
            ds = lambda s: s * (1 - s)  # noqa: E731
        blocks = [dc * gg * ds(i), dc * c_prev * ds(f), dc * i * (1 - gg**2), dh * tc * ds(o)]
        if bug == "swapped_gates":
            blocks[0], blocks[1] = blocks[1], blocks[0]
        da = np.concatenate(blocks, axis=1)
        g["W_ih"] += da.T @ x[t]
        g["W_hh"] += da.T @ h_prev
        g["b_ih"] += da.sum(0)
        g["b_hh"] += da.sum(0)
        dh_next = da @ p["W_hh"]
        dc_next = dc if bug == "missing_forget" else dc * f
    if bug == "small_tensor_scale":
        g["b_hh"] = g["b_hh"] * 1.02  # a 2% error in one small tensor of a large model
    if bug == "gate_sign":
        g["W_hh"][H : 2 * H] *= -1
    return g


# ---------------------------------------------------------------- GRU


def gru_forward(p, x):
    T, B, _ = x.shape
    H = p["W_hh"].shape[1]
    h = np.zeros((B, H), np.result_type(p["W_hh"], x))
    cache = []
    for t in range(T):
        ax = x[t] @ p["W_ih"].T + p["b_ih"]
        ah = h @ p["W_hh"].T + p["b_hh"]
        r = sig(ax[:, :H] + ah[:, :H])
        z = sig(ax[:, H : 2 * H] + ah[:, H : 2 * H])
        n = np.tanh(ax[:, 2 * H :] + r * ah[:, 2 * H :])
        h_prev = h
        h = (1 - z) * n + z * h
        cache.append((h_prev, r, z, n, ah[:, 2 * H :], h))
    return cache


def gru_loss(p, data):
    cache = gru_forward(p, data["x"])
    return float(sum((step[5] * w).sum() for step, w in zip(cache, data["w"])))


def gru_grad(p, data, bug=None):
    x, w = data["x"], data["w"]
    T, B, _ = x.shape
    H = p["W_hh"].shape[1]
    cache = gru_forward(p, x)
    g = {n: np.zeros(v.shape) for n, v in p.items()}
    dh_next = np.zeros((B, H))
    for t in reversed(range(T)):
        h_prev, r, z, n, hn, h = cache[t]
        dh = w[t] + dh_next
        dn = dh * (1 - z)
        dz = dh * (n - h_prev) if bug == "z_sign" else dh * (h_prev - n)
        dan = dn * (1 - n**2)
        dar = dan * hn * r * (1 - r)
        daz = dz * z * (1 - z)
        dhn = dan if bug == "reset_gate_dropped" else dan * r
        dax = np.concatenate([dar, daz, dan], axis=1)
        dah = np.concatenate([dar, daz, dhn], axis=1)
        g["W_ih"] += dax.T @ x[t]
        g["W_hh"] += dah.T @ h_prev
        g["b_ih"] += dax.sum(0)
        g["b_hh"] += (dax if bug == "bias_hh_n" else dah).sum(0)
        dh_next = dah @ p["W_hh"] + (0 if bug == "dropped_direct_path" else dh * z)
    return g


# ---------------------------------------------------------------- catalogue

CORRECT = {
    "rnn_tanh": (rnn_loss, rnn_grad, {}),
    "rnn_relu": (lambda p, d: rnn_loss(p, d, "relu"), lambda p, d, bug=None: rnn_grad(p, d, bug, "relu"), {}),
    "lstm": (lstm_loss, lstm_grad, {}),
    "gru": (gru_loss, gru_grad, {}),
}

#: mutant name -> (cell, bug, problem overrides)
MUTANTS = {
    "rnn_missing_transpose": ("rnn_tanh", "missing_transpose", {}),
    "rnn_dropped_dh_next": ("rnn_tanh", "dropped_dh_next", {}),
    "rnn_deriv_of_activated": ("rnn_tanh", "deriv_of_activated", {}),
    "rnn_h_t_for_h_prev": ("rnn_tanh", "h_t_for_h_prev", {}),
    "rnn_flipped_sign": ("rnn_tanh", "flipped_sign", {}),
    "rnn_batch_scale": ("rnn_tanh", "batch_scale", {}),
    "rnn_bias_assigned": ("rnn_tanh", "bias_assigned", {}),
    "rnn_skip_t0": ("rnn_tanh", "skip_t0", {}),
    "rnn_stateful_accumulator": ("rnn_tanh", "stateful_accumulator", {}),
    "rnn_inplace_change": ("rnn_tanh", "inplace_change", {}),
    "rnn_clipped": ("rnn_tanh", "clipped", {}),
    "rnn_transposed_weight_grad": ("rnn_tanh", "transposed_weight_grad", {}),
    "rnn_zero_bias_grad": ("rnn_tanh", "zero_bias_grad", {}),
    "rnn_truncated_bptt": ("rnn_tanh", "truncated_3", {}),
    "rnn_skips_step_5": ("rnn_tanh", "skip_t5", {}),
    "relu_dropped_dh_next": ("rnn_relu", "dropped_dh_next", {}),
    "lstm_dropped_dh_next": ("lstm", "dropped_dh_next", {}),
    "lstm_dropped_dc_next": ("lstm", "dropped_dc_next", {}),
    "lstm_missing_forget": ("lstm", "missing_forget", {}),
    "lstm_swapped_gates": ("lstm", "swapped_gates", {}),
    "lstm_deriv_of_activated": ("lstm", "deriv_of_activated", {}),
    "lstm_tanh_c_deriv": ("lstm", "tanh_c_deriv", {}),
    "lstm_gate_sign": ("lstm", "gate_sign", {}),
    "lstm_small_tensor_in_large_model": ("lstm", "small_tensor_scale", {"H": 48, "I": 40, "T": 6}),
    "gru_z_sign": ("gru", "z_sign", {}),
    "gru_reset_gate_dropped": ("gru", "reset_gate_dropped", {}),
    "gru_bias_hh_n": ("gru", "bias_hh_n", {}),
    "gru_dropped_direct_path": ("gru", "dropped_direct_path", {}),
}

#: correct models under stress: long vanishing sequences, exploding weights, saturated gates, ReLU kinks
STRESS = {
    "rnn_long_vanishing": ("rnn_tanh", {"T": 300, "w_scale": 0.5}),
    "rnn_exploding": ("rnn_tanh", {"T": 60, "w_scale": 3.0}),
    "lstm_saturated": ("lstm", {"T": 40, "bias": (4.0, 3.0), "w_scale": 4.0}),
    "gru_long": ("gru", {"T": 200}),
    "relu_kinks": ("rnn_relu", {"T": 12, "bias": (0.0, 0.0), "zero_pad": 4}),
}


def case_for(cell, bug=None, seed=0, dtype=np.float64, float32_only=False, with_reference=False, **overrides):
    """A NumpyCase of ``cell`` with ``bug`` planted (None: correct)."""
    loss_fn, grad_fn, _ = CORRECT[cell]
    p, data = make_problem(cell, seed=seed, dtype=dtype, **overrides)
    _STATE.clear()

    def cast(params):
        return {n: np.asarray(v, dtype=np.float32) for n, v in params.items()} if float32_only else params

    def loss(params):
        q = cast(params)
        if float32_only:
            d = dict(
                data, x=data["x"].astype(np.float32), w=data["w"].astype(np.float32), w_c=data["w_c"].astype(np.float32)
            )
            return np.float32(loss_fn(q, d))
        return loss_fn(q, data)

    def grad(params):
        q = params if bug == "inplace_change" else cast(params)
        return grad_fn(q, data, bug)

    gates = {n: GATES[cell] for n in p} if cell in GATES else None
    link = {}
    if with_reference and not float32_only:
        link = dict(
            reference=cell,
            reference_map={"weight_ih_l0": "W_ih", "weight_hh_l0": "W_hh", "bias_ih_l0": "b_ih", "bias_hh_l0": "b_hh"},
            inputs=data["x"],
            head=lambda h, _p: float((h * data["w"]).sum()),
        )
    case = rnncheck.NumpyCase(p, loss=loss, grad=grad, gates=gates, **link)
    case.name = f"{cell}:{bug or 'correct'}"
    return case


#: mutants that exist to show a hint, kept out of the mutation suite's table
HINT_ONLY = {
    "rnn_bias_sum_broadcast": ("rnn_tanh", "bias_sum_broadcast", {}),
}

#: every hint rnncheck gives, the mutant that must produce it, and words the hint must contain
HINT_MUTANTS = {
    "rnn_bias_sum_broadcast": "every entry of the analytic gradient is the same number",
    "rnn_batch_scale": "1/3× the true one (= 1/the batch size 3)",
    "rnn_flipped_sign": "sign flipped",
    "lstm_gate_sign": "W_hh[f-gate]: this gate's gradient has its sign flipped",
    "rnn_zero_bias_grad": "exactly zero in every entry",
    "rnn_transposed_weight_grad": "transpose of the true one",
    "rnn_clipped": "clipped at 1",
    "rnn_truncated_bptt": "truncated BPTT with k = 3 steps back",
    "rnn_dropped_dh_next": "truncated BPTT with k = 0 steps back",
    "rnn_skip_t0": "steps 0..0 left out",
    "rnn_h_t_for_h_prev": "h_t used where h_(t-1) belongs",
    "rnn_bias_assigned": "step 0's share alone",
    "rnn_stateful_accumulator": "only the first call is right",
}
