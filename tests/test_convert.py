"""Torch's recurrent modules in the reference's terms, both ways (internal structure under test)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnncheck.convert import from_torch, mode_of, to_torch  # the module under test


@pytest.mark.parametrize(
    "module,mode",
    [
        (torch.nn.LSTM(2, 3, num_layers=2, bidirectional=True), "lstm"),
        (torch.nn.GRU(2, 3), "gru"),
        (torch.nn.RNN(2, 3, nonlinearity="relu"), "rnn_relu"),
    ],
)
def test_a_module_goes_to_the_reference_and_back_unchanged(module, mode):
    assert mode_of(module) == mode
    spec, params = from_torch(module.double())
    again = to_torch(spec, params, dtype=torch.float64)
    for (name, a), (name2, b) in zip(module.named_parameters(), again.named_parameters()):
        assert name == name2 and torch.equal(a, b)
    assert set(params) == set(spec.param_shapes()) and all(isinstance(v, np.ndarray) for v in params.values())


def test_any_other_module_has_no_mode():
    assert mode_of(torch.nn.Linear(2, 3)) is None
    assert mode_of(torch.nn.LSTMCell(2, 3)) == "lstm"
