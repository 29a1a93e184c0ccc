"""The terminal report at 80 columns keeps every number whole, and each row shows its own tensor's numbers."""

from __future__ import annotations

import io
import re

import torch
from rich.console import Console

import rnncheck


class Deep(torch.nn.Module):
    def __init__(self):
        super().__init__()
        block = torch.nn.LSTM(3, 4, bidirectional=True).double()
        self.encoder_stack = torch.nn.ModuleDict({"bidirectional_recurrent_block": block})

    def forward(self, x):
        return self.encoder_stack["bidirectional_recurrent_block"](x)[0]


def _result():
    torch.manual_seed(0)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    return rnncheck.verify_case(rnncheck.TorchCase(Deep(), inputs=(x,)), rnncheck.Options(diagnostics=False))


def _rendered(result, width):
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    console.plain = False
    console.print(result)  # a CaseResult renders itself: what a terminal of this width shows
    return console.file.getvalue()


def test_at_80_columns_the_numbers_stay_whole_and_long_names_shorten():
    result = _result()
    text = _rendered(result, 80)
    rows = [line for line in text.splitlines() if re.search(r">= \d", line)]
    assert len(rows) == 8
    for line, row in zip(rows, next(c for c in result.checks if c.name == "gradient").tensors):
        assert len(line) <= 80
        assert f"{row.norm:.3g}" in line and f">= {row.detection:.1e}" in line  # whole, not cut
        assert line.strip().startswith("…") and row.name.endswith(line.split()[0].lstrip("…"))


def test_each_passing_row_shows_its_own_numbers():
    gradient = next(c for c in _result().checks if c.name == "gradient")
    errors = {(r.error, r.tolerance) for r in gradient.tensors}
    assert len(errors) > 1  # not the case's worst repeated in every row
    assert all(r.error <= r.tolerance for r in gradient.tensors)


def test_verbose_output_says_where_the_time_went_in_units_of_one_forward_and_backward():
    from click.testing import CliRunner
    from helpers import EXAMPLES

    from rnncheck import main

    out = CliRunner().invoke(main, ["verify", str(EXAMPLES / "lstm_module.py"), "-v", "--no-color"]).output
    line = next(s for s in out.splitlines() if s.strip().startswith("time: "))
    for check in ("sanity", "gradient", "reference", "flow"):
        assert re.search(rf"{check} \d+\.\d+ s = \d+\.\d units", line), line
    assert "one forward+backward" in line
