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
