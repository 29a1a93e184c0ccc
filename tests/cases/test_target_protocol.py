"""Every adapter implements the declared CheckTarget protocol, and no check asks a target what it is."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

import rnncheck
from rnncheck.cases.base import CheckTarget  # the protocol itself: internal structure under test

CHECKS = Path(rnncheck.__file__).parent / "checks"


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


def test_no_check_asks_a_case_a_target_or_a_model_what_it_is():
    pattern = re.compile(r"(hasattr|isinstance|getattr)\(\s*(target|case|target\.model|target\.case|model)\s*[,)]")
    offenders = [
        f"{p.name}:{i}"
        for p in CHECKS.glob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, offenders


def test_every_target_attribute_a_check_reads_is_a_member_of_the_protocol():
    import ast

    used = {
        (node.attr, f"{p.name}:{node.lineno}")
        for p in CHECKS.glob("*.py")
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "target"
    }
    assert len(used) > 50  # the walk sees the checks' reads at all
    outside = sorted(where + " ." + attr for attr, where in used if attr not in members())
    assert not outside, outside
    assert not [m for m in members() if m.startswith("_")]  # nothing private in the protocol
