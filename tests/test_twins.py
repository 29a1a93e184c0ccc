"""The unrolled twins run in place of fused layers and reproduce them, and the swap is undone
(internal structure under test)."""

from __future__ import annotations

import pytest
import torch

from rnncheck.twins import fused_layers, swap_fused  # the module under test


@pytest.mark.parametrize("cls", [torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN])
def test_a_twin_reproduces_its_fused_layer_and_the_layer_is_restored(cls):
    torch.manual_seed(0)
    model = torch.nn.Sequential(cls(3, 4, num_layers=2, bidirectional=True)).double()
    x = torch.randn(7, 2, 3, dtype=torch.float64)
    expected, _ = model[0](x)
    with swap_fused(model) as twins:
        assert list(twins) == ["0"] and "forward" in model[0].__dict__
        got, _ = model[0](x)
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert "forward" not in model[0].__dict__  # the class's own forward again
    assert [name for name, _ in fused_layers(model)] == ["0"]


def test_a_twin_takes_every_layout_the_fused_layer_takes():
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(2, 3, batch_first=True, bidirectional=True).double()
    x = torch.randn(3, 6, 2, dtype=torch.float64)  # batch first
    lengths = torch.tensor([4, 6, 2])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    layouts = [(x,), (x[0],), (packed,), (x, (torch.randn(2, 3, 3, dtype=torch.float64),) * 2)]
    for args in layouts:
        expected = lstm(*args)
        with swap_fused(lstm):
            got = lstm(*args)
        flat = lambda o: [o[0].data if hasattr(o[0], "batch_sizes") else o[0], *o[1]]  # noqa: E731
        for a, b in zip(flat(got), flat(expected)):
            assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def _traced(module, args, fused_steps: bool):
    """The traces a twin of ``module`` records on ``args``, stepping the cell itself or running its fused kernel."""
    with swap_fused(module) as twins, torch.no_grad():
        (twin,) = twins.values()
        twin.traces, twin.fused_steps = [], fused_steps
        out = module(*args)
    return out, twin.traces


MODULES = [
    lambda: torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True),
    lambda: torch.nn.LSTM(3, 5, proj_size=2, batch_first=True),
    lambda: torch.nn.LSTM(3, 5, bias=False),
    lambda: torch.nn.GRU(3, 5, num_layers=2, bidirectional=True),
    lambda: torch.nn.RNN(3, 5, nonlinearity="relu", bidirectional=True),
    lambda: torch.nn.RNN(3, 5, num_layers=3),
]


@pytest.mark.parametrize("host", [True, False], ids=["numpy", "torch"])
@pytest.mark.parametrize("make", MODULES)
def test_the_fused_kernel_path_records_what_the_stepped_twin_records(make, host, monkeypatch):
    """The kernel path's cell states come from a loop on NumPy views (a small layer on the CPU) or on torch tensors
    (a large one, a GPU's, a half-precision one): either must record what the stepped twin records."""
    from rnncheck import twins

    monkeypatch.setattr(twins, "on_host", lambda t: host)
    torch.manual_seed(2)
    module = make().double()
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    expected = module(x)
    stepped_out, stepped = _traced(module, (x,), fused_steps=False)
    fused_out, fused = _traced(module, (x,), fused_steps=True)
    flat = lambda o: [o[0], *(o[1] if isinstance(o[1], tuple) else (o[1],))]  # noqa: E731
    for a, b in zip(flat(expected), flat(fused_out), strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    assert [t.name for t in fused] == [t.name for t in stepped]
    for s, f in zip(stepped, fused):
        assert f.reconstruction is not None and f.reconstruction < 1e-13 and s.reconstruction is None
        assert len(f.states) == len(s.states) == len(f.inputs) > 1
        for a, b in zip(s.states, f.states):
            assert all(torch.allclose(u, v, atol=1e-12) for u, v in zip(a, b))
        assert set(f.gates) == set(s.gates)
        for g in s.gates:
            assert torch.allclose(torch.stack(s.gates[g]), f.gates[g], atol=1e-12)


def test_the_fused_kernel_path_reports_equations_that_do_not_give_its_outputs_back(monkeypatch):
    from rnncheck import twins

    # the LSTM's cell state on its way out, off by 1%: the kernel path runs the cell's parts on every step at once
    real = twins._LSTM_ACTS["c"]
    monkeypatch.setitem(twins._LSTM_ACTS, "c", lambda c: real(c) * 1.01)
    torch.manual_seed(3)
    module = torch.nn.LSTM(3, 5).double()
    _, traces = _traced(module, (torch.randn(6, 2, 3, dtype=torch.float64),), fused_steps=True)
    assert traces[0].reconstruction > 1e-3


@pytest.mark.parametrize("host", [True, False], ids=["numpy", "torch"])
def test_the_kernel_path_holds_the_equations_to_the_finite_outputs_only(host, monkeypatch):
    from rnncheck import twins
    from rnncheck.twins import rel_diff as _rel

    monkeypatch.setattr(twins, "on_host", lambda t: host)

    out = torch.tensor([1.0, float("nan"), 2.0])
    assert _rel(torch.tensor([1.0, 5.0, 2.0]), out) == 0.0  # the kernel's NaN has no value to compare
    assert _rel(torch.tensor([1.0, 5.0, float("nan")]), out) == float("inf")  # the equations' NaN is a difference
    assert _rel(torch.tensor([1.1, 5.0, 2.0]), out) == pytest.approx(0.05)
