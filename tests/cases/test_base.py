"""Every adapter implements the declared CheckTarget protocol (the rules on the checks' side are in
tests/test_architecture.py)."""

from __future__ import annotations

import numpy as np
import torch

import rnncheck
from rnncheck.cases.base import CheckTarget  # the protocol itself: internal structure under test


def members():
    names = set(CheckTarget.__annotations__)
    names |= {n for n, v in vars(CheckTarget).items() if callable(v) and not n.startswith("_")}
    return names


def test_every_adapter_has_every_member_of_the_protocol():
    torch.manual_seed(0)
    cases = [
        rnncheck.TorchCase(torch.nn.GRU(3, 4).double(), inputs=(torch.randn(5, 2, 3, dtype=torch.float64),)),
        rnncheck.NumpyCase({"w": np.ones(2)}, loss=lambda p: float(p["w"].sum()), grad=lambda p: {"w": np.ones(2)}),
        rnncheck.CellCase(
            torch.nn.RNNCell(3, 4).double(),
            torch.randn(5, 2, 3, dtype=torch.float64),
            torch.zeros(2, 4, dtype=torch.float64),
        ),
    ]
    for case in cases:
        target = case.bind(rnncheck.Options())
        missing = [m for m in members() if not hasattr(target, m)]
        assert not missing, (type(target).__name__, missing)
    assert {"loss", "gradient", "loss_offset", "record_states", "reference_comparisons", "reference_link"} <= members()
