"""The NumPy reference agrees with PyTorch autograd on nn.RNN / nn.LSTM / nn.GRU in float64."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from helpers import rel_err

from rnncheck import reference as R
from rnncheck.convert import from_torch, to_torch

MODULES = {
    "rnn_tanh": lambda **kw: torch.nn.RNN(nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: torch.nn.RNN(nonlinearity="relu", **kw),
    "lstm": torch.nn.LSTM,
    "gru": torch.nn.GRU,
    "lstm_proj": lambda **kw: torch.nn.LSTM(proj_size=3, **kw),
}

# the grid: every mode × layers × directions × layout × initial states, with the
# sequence length and odd sizes varied along it so every length 1..50 class appears
GRID = [
    (mode, layers, bidir, batch_first, with_state)
    for mode, layers, bidir, batch_first, with_state in itertools.product(
        MODULES, (1, 2, 3), (False, True), (False, True), (False, True)
    )
]
LENGTHS = (1, 2, 7, 50)


def _loss_weights(gen, out, states):
    return torch.randn(out.shape, generator=gen, dtype=out.dtype), [
        torch.randn(s.shape, generator=gen, dtype=s.dtype) for s in states
    ]


@pytest.mark.parametrize("mode,layers,bidir,batch_first,with_state", GRID)
def test_reference_matches_torch_autograd(mode, layers, bidir, batch_first, with_state):
    k = GRID.index((mode, layers, bidir, batch_first, with_state))
    T = LENGTHS[k % len(LENGTHS)]
    B, I, H = 3, 5 + k % 3, 7 + 2 * (k % 2)  # odd sizes
    gen = torch.Generator().manual_seed(k)
    torch.manual_seed(k)
    module = MODULES[mode](input_size=I, hidden_size=H, num_layers=layers, bidirectional=bidir, batch_first=batch_first)
    module = module.double()
    D = 2 if bidir else 1
    lstm = mode.startswith("lstm")
    P = getattr(module, "proj_size", 0) or H
    x = torch.randn((B, T, I) if batch_first else (T, B, I), generator=gen, dtype=torch.float64, requires_grad=True)
    state0 = None
    if with_state:
        h0 = torch.randn(layers * D, B, P, generator=gen, dtype=torch.float64, requires_grad=True)
        c0 = torch.randn(layers * D, B, H, generator=gen, dtype=torch.float64, requires_grad=True)
        state0 = (h0, c0) if lstm else h0
    out, states = module(x, state0)
    states = states if isinstance(states, tuple) else (states,)
    w_out, w_states = _loss_weights(gen, out, states)
    loss = (out * w_out).sum() + sum((s * w).sum() for s, w in zip(states, w_states))
    inputs = [x] + ([] if state0 is None else list(state0 if lstm else (state0,)))
    names = [n for n, _ in module.named_parameters()]
    grads = torch.autograd.grad(loss, inputs + [p for _, p in module.named_parameters()])

    spec, params = from_torch(module)
    h0_np = None if state0 is None else inputs[1].detach().numpy()
    c0_np = None if state0 is None or not lstm else inputs[2].detach().numpy()
    ref_out, ref_states, cache = R.forward(spec, params, x.detach().numpy(), h0_np, c0_np)
    g = R.backward(cache, w_out.numpy(), w_states[0].numpy(), w_states[1].numpy() if lstm else None)

    tol = 1e-10
    assert rel_err(ref_out, out.detach().numpy()) <= tol
    for mine, theirs in zip(ref_states, states):
        assert rel_err(mine, theirs.detach().numpy()) <= tol
    assert rel_err(g.x, grads[0].numpy()) <= tol
    if state0 is not None:
        assert rel_err(g.h0, grads[1].numpy()) <= tol
        if lstm:
            assert rel_err(g.c0, grads[2].numpy()) <= tol
    for name, theirs in zip(names, grads[len(inputs) :]):
        assert rel_err(g.params[name], theirs.numpy()) <= tol, name


def test_converters_round_trip_every_layer_and_direction():
    torch.manual_seed(0)
    module = torch.nn.GRU(4, 6, num_layers=2, bidirectional=True).double()
    spec, params = from_torch(module)
    assert spec.mode == "gru" and spec.num_layers == 2 and spec.bidirectional
    assert len(params) == 16
    back = to_torch(spec, params)
    for name, p in module.named_parameters():
        assert torch.equal(getattr(back, name), p), name


def test_article_sigmoid_rnn_matches_an_unrolled_torch_model():
    """The article's model: h_t = σ(W_hh h_{t-1} + W_xh x_t + b_h), y_t = W_hy h_t + b_y, MSE."""
    from rnncheck.reference import readout

    rng = np.random.default_rng(3)
    T, B, I, H, K = 9, 2, 10, 20, 5
    spec = R.Spec("rnn_sigmoid", I, H)
    params = spec.init_params(rng)
    W_hy, b_y = rng.normal(size=(K, H)), rng.normal(size=K)
    x, target = rng.normal(size=(T, B, I)), rng.normal(size=(T, B, K))

    h, _, cache = R.forward(spec, params, x)
    loss, y = readout.forward(h, W_hy, b_y, target)
    g_out, dh = readout.backward(h, y, W_hy, target)
    g = R.backward(cache, dh)

    tp = {n: torch.tensor(v, requires_grad=True) for n, v in params.items()}
    tW, tb = torch.tensor(W_hy, requires_grad=True), torch.tensor(b_y, requires_grad=True)
    h_t = torch.zeros(B, H, dtype=torch.float64)
    ys = []
    for t in range(T):
        a = torch.tensor(x[t]) @ tp["weight_ih_l0"].T + tp["bias_ih_l0"] + h_t @ tp["weight_hh_l0"].T + tp["bias_hh_l0"]
        h_t = torch.sigmoid(a)
        ys.append(h_t @ tW.T + tb)
    t_loss = ((torch.stack(ys) - torch.tensor(target)) ** 2).mean()
    t_grads = torch.autograd.grad(t_loss, list(tp.values()) + [tW, tb])
    assert abs(loss - t_loss.item()) <= 1e-12 * abs(loss)
    for name, theirs in zip(tp, t_grads):
        assert rel_err(g.params[name], theirs.numpy()) <= 1e-10, name
    assert rel_err(g_out["W_hy"], t_grads[-2].numpy()) <= 1e-10
    assert rel_err(g_out["b_y"], t_grads[-1].numpy()) <= 1e-10


def test_converters_round_trip_an_lstm_with_projections():
    torch.manual_seed(0)
    module = torch.nn.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=2).double()
    spec, params = from_torch(module)
    assert spec.proj_size == 2 and spec.output_size == 2
    assert params["weight_hr_l1_reverse"].shape == (2, 6) and params["weight_hh_l0"].shape == (24, 2)
    assert params["weight_ih_l1"].shape == (24, 4)  # layer 1 reads both directions' projected outputs
    back = to_torch(spec, params)
    assert back.proj_size == 2
    for name, p in module.named_parameters():
        assert torch.equal(getattr(back, name), p), name
