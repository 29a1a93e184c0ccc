"""The adjoints of a fused layer's twin worked out by hand (the reference's backward step on the twin's tensors):
each must be what autograd gives through the twin's graph (internal structure under test)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rnncheck
from rnncheck import Options


@pytest.mark.parametrize(
    "module",
    [
        lambda: torch.nn.LSTM(4, 5, num_layers=2, bidirectional=True),
        lambda: torch.nn.LSTM(4, 5, proj_size=3),
        lambda: torch.nn.LSTM(4, 5, bias=False),
        lambda: torch.nn.GRU(4, 5, num_layers=2, bidirectional=True),
        lambda: torch.nn.GRU(4, 5, bias=False),
        lambda: torch.nn.RNN(4, 5),
        lambda: torch.nn.RNN(4, 5, nonlinearity="relu", bidirectional=True),
    ],
)
def test_the_propagation_by_the_references_backward_step_equals_autograds(module):
    """The twin's propagation comes from the reference's own backward step, run on the recorded gates: it must be
    autograd's ∂⟨u, h_T⟩/∂h_t through the twin's graph, step for step, in every layer and direction."""
    from rnncheck.checks.flow import propagation_by_hand  # internal structure under test

    torch.manual_seed(0)
    x = torch.randn(9, 3, 4, dtype=torch.float64)
    target = rnncheck.TorchCase(module().double(), inputs=(x,)).bind(Options())
    recording = target.record_states(np.random.default_rng(0))
    for layer in recording.layers:
        u = torch.randn_like(layer.states[-1][0])
        hs = [s[0] for s in layer.states]
        grads = torch.autograd.grad((u * hs[-1]).sum(), hs, retain_graph=True, allow_unused=True)
        auto = torch.stack([torch.zeros_like(h) if g is None else g for h, g in zip(hs, grads)][::-1])
        by_hand = propagation_by_hand(layer, u)
        assert torch.allclose(by_hand, auto, rtol=1e-12, atol=1e-14 * float(auto.abs().max())), layer.name


class _TwoModules(torch.nn.Module):
    """An LSTM, a layer between, then a two-layer bidirectional GRU; the loss reads outputs and final states."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.LSTM(4, 5, batch_first=True)
        self.mid = torch.nn.Linear(5, 3)
        self.b = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True)

    def forward(self, x):
        y, (_, c) = self.a(x)
        z, hn = self.b(torch.tanh(self.mid(y)))
        return z.sum(-1) + hn.sum() + c.sum()


@pytest.mark.parametrize(
    "build",
    [
        lambda: (torch.nn.LSTM(4, 5, num_layers=2, bidirectional=True), (7, 3, 4)),
        lambda: (torch.nn.LSTM(4, 5, proj_size=3, num_layers=2), (7, 3, 4)),
        lambda: (torch.nn.GRU(4, 5, num_layers=2, bidirectional=True), (7, 3, 4)),
        lambda: (torch.nn.RNN(4, 5, nonlinearity="relu", num_layers=3), (7, 3, 4)),
        lambda: (torch.nn.LSTM(4, 5, bidirectional=True), (7, 4)),  # unbatched
        lambda: (torch.nn.GRU(4, 5, batch_first=True), (7, 4)),  # unbatched, batch_first
        lambda: (_TwoModules(), (3, 7, 4)),
    ],
)
@pytest.mark.parametrize("host", [True, False], ids=["numpy", "torch"])
def test_the_total_adjoints_by_hand_equal_autograds_through_the_twins_graph(build, host, monkeypatch):
    """Where the case's gradient call caught the fused layers' upstream gradients, the twins run without a graph
    and every dL/dh_t (and dL/dc_t) is worked out by hand, layer by layer down each module: it must be what
    autograd gives through the twins' graph, with the time loop on NumPy views (a small layer on the CPU) or on
    torch tensors (a large one, a GPU's)."""
    from rnncheck.checks import twin_adjoints  # internal structure under test
    from rnncheck.checks.twin_adjoints import total_adjoints

    monkeypatch.setattr(twin_adjoints, "on_host", lambda t: host)

    torch.manual_seed(0)
    module, shape = build()
    loss = (
        (lambda o: (o[0] ** 2).sum() + o[1][0].sum() + o[1][1].pow(2).sum())
        if isinstance(module, torch.nn.LSTM)
        else None
    )
    target = rnncheck.TorchCase(module.double(), inputs=(torch.randn(*shape, dtype=torch.float64),), loss=loss).bind(
        Options()
    )
    target.gradient()  # as the sanity checks' call does: the fused layers' upstream gradients are caught
    by_hand = target.record_states(np.random.default_rng(0))
    assert by_hand.upstream is not None and not by_hand.loss.requires_grad  # no graph was built
    units = [torch.randn_like(layer.states[-1][0]) for layer in by_hand.layers]
    adjoint, propagation = total_adjoints(by_hand, units)  # the propagation rides along as extra rows
    target.captured = None  # nothing caught: the twins' graph, and autograd
    graph = target.record_states(np.random.default_rng(0))
    assert graph.upstream is None
    for hand_layer, graph_layer in zip(by_hand.layers, graph.layers):
        states = [t for s in graph_layer.states for t in s]
        grads = torch.autograd.grad(graph.loss, states, retain_graph=True, allow_unused=True)
        parts = [adjoint[(part, id(hand_layer))] for part in range(len(hand_layer.states[0]))]  # every step at once
        mine = [whole[k] for k in range(len(hand_layer.states)) for whole in parts]
        for m, g, t in zip(mine, grads, states):
            g = torch.zeros_like(t) if g is None else g
            assert torch.allclose(m, g, rtol=1e-12, atol=1e-13 * float(g.abs().max() + 1)), hand_layer.name
    for u, prop, graph_layer in zip(units, propagation, graph.layers):
        hs = [s[0] for s in graph_layer.states]
        grads = torch.autograd.grad((u * hs[-1]).sum(), hs, retain_graph=True, allow_unused=True)
        auto = torch.stack([torch.zeros_like(h) if g is None else g for h, g in zip(hs, grads)][::-1])
        assert torch.allclose(prop, auto, rtol=1e-12, atol=1e-14 * float(auto.abs().max())), graph_layer.name


def test_an_overflowed_relu_state_passes_the_gradient_on_by_hand_as_autograd_does():
    """A relu RNN whose states overflow to inf and NaN: autograd's ReLU backward reads ``h <= 0``, so a NaN state
    passes the gradient on; the reference's derivative must read it the same way, or the propagation by hand
    stops at the first NaN where autograd's goes on."""
    from rnncheck.checks.twin_adjoints import total_adjoints  # internal structure under test

    torch.manual_seed(0)
    m = torch.nn.RNN(3, 8, nonlinearity="relu")
    with torch.no_grad():
        m.weight_hh_l0.copy_(torch.eye(8) * 1e5)
    target = rnncheck.TorchCase(m, inputs=(torch.rand(40, 2, 3),)).bind(Options())
    target.gradient()
    by_hand = target.record_states(np.random.default_rng(0))
    u = torch.randn_like(by_hand.layers[0].states[-1][0])
    _, (propagation,) = total_adjoints(by_hand, [u])
    target.captured = None
    graph = target.record_states(np.random.default_rng(0))
    hs = [s[0] for s in graph.layers[0].states]
    auto = torch.stack(list(torch.autograd.grad((u * hs[-1]).sum(), hs, retain_graph=True))[::-1])
    assert not torch.isfinite(hs[-1]).all()  # the states did overflow
    assert torch.allclose(propagation, auto, equal_nan=True)


def test_past_the_size_where_hand_work_pays_the_twins_keep_their_graph_and_autograd_gives_the_adjoints():
    torch.manual_seed(0)
    # steps x batch x hidden: 50 x 16 x 256 = 50 x 64 x 64 is the largest worked out by hand
    for steps, batch, by_hand in ((50, 64, True), (50, 65, False), (100, 32, True), (101, 32, False)):
        x = torch.randn(steps, batch, 3, dtype=torch.float64)
        case = rnncheck.TorchCase(torch.nn.GRU(3, 64).double(), inputs=(x,))
        target = case.bind(Options())
        target.gradient()
        recording = target.record_states(np.random.default_rng(0))
        assert (recording.upstream is not None) is by_hand and recording.loss.requires_grad is not by_hand


class _KeywordState(torch.nn.Module):
    """An LSTM given its initial state as ``hx=``, which a forward hook's positional arguments do not hold."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.LSTM(4, 5, batch_first=True)
        self.h0 = torch.nn.Parameter(torch.randn(1, 3, 5))

    def forward(self, x):
        return self.rnn(x, hx=(self.h0, torch.tanh(self.h0)))[0]


class _RewrittenWeight(torch.nn.Module):
    """A WeightDrop-style wrapper: the GRU's recurrent weight is set from a raw parameter in every forward."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRU(4, 5)
        self.raw = torch.nn.Parameter(self.rnn.weight_hh_l0.detach().clone())
        del self.rnn.weight_hh_l0

    def forward(self, x):
        self.rnn.weight_hh_l0 = self.raw * 0.9
        return self.rnn(x)[0]


_REPLAYED = [
    lambda: (torch.nn.LSTM(4, 5, num_layers=2, bidirectional=True), (7, 3, 4)),
    lambda: (torch.nn.LSTM(4, 5, proj_size=3), (7, 3, 4)),
    lambda: (torch.nn.GRU(4, 5, batch_first=True, bidirectional=True), (3, 7, 4)),
    lambda: (torch.nn.RNN(4, 5, nonlinearity="relu"), (7, 4)),  # unbatched
    lambda: (_KeywordState(), (3, 7, 4)),
    lambda: (_RewrittenWeight(), (7, 3, 4)),
    lambda: (torch.nn.utils.parametrizations.weight_norm(torch.nn.LSTM(4, 5), "weight_hh_l0"), (7, 3, 4)),
    lambda: (_TwoModules(), (3, 7, 4)),
]


@pytest.mark.parametrize("build", _REPLAYED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_states_from_the_gradient_calls_capture_equal_a_recorded_forwards(build, dtype):
    """Where the case's gradient call caught each fused layer's input, weights and output, the recording replays it
    without running the model: its states, gates and initial states must be what a forward with the twins swapped
    in records (an initial state given as hx=, a weight a wrapper sets in forward, a parametrized weight)."""
    torch.manual_seed(0)
    module, shape = build()
    target = rnncheck.TorchCase(module.to(dtype), inputs=(torch.randn(*shape, dtype=dtype),)).bind(Options())
    target.gradient()
    calls = []
    handle = target.model.register_forward_pre_hook(lambda *a: calls.append(1))
    replayed = target.record_states(np.random.default_rng(0))
    assert not calls  # nothing of the model ran again
    target.capture_recorded = True  # as if the forward had shown states itself: it runs again
    ran = target.record_states(np.random.default_rng(0))
    handle.remove()
    assert calls and replayed.upstream is not None and ran.upstream is not None
    assert replayed.twin.reproduces and ran.twin.reproduces
    assert [layer.name for layer in replayed.layers] == [layer.name for layer in ran.layers]
    # a stacked module's top layer comes from its own kernel call, the rerun's from a one-layer kernel: the two may
    # round apart, within the dtype's default tolerance
    for mine, theirs in zip(replayed.layers, ran.layers):
        for part in range(len(mine.states[0])):
            torch.testing.assert_close(mine.steps(part), theirs.steps(part), msg=mine.name)
        for a, b in zip(mine.state0, theirs.state0):
            assert torch.equal(a.detach(), b.detach()), mine.name
        for gate in mine.gates:
            torch.testing.assert_close(mine.gates[gate], theirs.gates[gate], msg=f"{mine.name} {gate}")
        for name in mine.params:
            assert torch.equal(mine.params[name], theirs.params[name]), (mine.name, name)


class _CalledTwice(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRU(4, 4)

    def forward(self, x):
        return self.rnn(self.rnn(x)[0])[0]


class _Recorded(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRU(4, 4)

    def forward(self, x):
        y = self.rnn(x)[0]
        return rnncheck.record(torch.cumsum(y, 0), name="sum", time_dim=0)


@pytest.mark.parametrize("module", [_CalledTwice, _Recorded])
def test_a_forward_the_capture_cannot_stand_for_runs_again(module):
    """A layer called twice (the capture keeps its last call) or a forward that shows states with rnncheck.record
    (the capture holds none): the model runs again, and every state is recorded."""
    torch.manual_seed(0)
    target = rnncheck.TorchCase(module(), inputs=(torch.randn(6, 2, 4),)).bind(Options())
    target.gradient()
    calls = []
    target.model.register_forward_pre_hook(lambda *a: calls.append(1))
    recording = target.record_states(np.random.default_rng(0))
    assert calls
    assert len(recording.layers) == 2 if module is _CalledTwice else len(recording.stacked) == 1


def test_a_replayed_layer_whose_caught_weights_do_not_explain_its_output_is_named():
    """The replay's states are held to the layer's own output through the cell's equations: a weight planted 1% off
    in what the capture holds is a twin mismatch, not a silent profile of other weights."""
    torch.manual_seed(0)
    target = rnncheck.TorchCase(torch.nn.LSTM(4, 5), inputs=(torch.randn(7, 3, 4),)).bind(Options())
    target.gradient()
    good = target.record_states(np.random.default_rng(0))
    assert good.twin.reproduces and not good.findings
    weights = target.captured[""].weights
    weights["weight_hh_l0"] = weights["weight_hh_l0"] * 1.01
    bad = target.record_states(np.random.default_rng(0))
    assert not bad.twin.reproduces
    assert [f.kind for f in bad.findings] == ["twin_mismatch"]
