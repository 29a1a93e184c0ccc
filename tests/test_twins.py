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
