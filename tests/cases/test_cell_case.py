"""CellCase takes gates= as TorchCase does; built-in cells get their gates; notes fit the model."""

from __future__ import annotations

import torch

import rnncheck


class MyCell(torch.nn.Module):
    """An LSTM cell written by hand, its four gates stacked in one weight."""

    def __init__(self):
        super().__init__()
        self.weight_ih = torch.nn.Parameter(torch.randn(20, 3, dtype=torch.float64) * 0.3)
        self.weight_hh = torch.nn.Parameter(torch.randn(20, 5, dtype=torch.float64) * 0.3)

    def forward(self, x, state):
        h, c = state
        i, f, g, o = (x @ self.weight_ih.T + h @ self.weight_hh.T).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


def _zeros():
    return torch.zeros(2, 5, dtype=torch.float64)


def _notes(case):
    result = rnncheck.verify_case(case, rnncheck.Options(diagnostics=False, reference=False))
    gradient = next(c for c in result.checks if c.name == "gradient")
    return result, gradient.notes


def test_a_custom_cell_accepts_gates_and_its_suggestion_is_gone():
    torch.manual_seed(0)
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    _, before = _notes(rnncheck.CellCase(MyCell(), x, (_zeros(), _zeros())))
    assert any("gates=" in n for n in before)  # the note that suggests them
    torch.manual_seed(0)
    case = rnncheck.CellCase(MyCell(), x, (_zeros(), _zeros()), gates={"weight_ih": "ifgo", "weight_hh": "ifgo"})
    result, after = _notes(case)
    assert result.verdict == "pass" and not any("gates=" in n for n in after)


def test_a_wrong_gate_in_a_custom_cell_is_named_by_its_gate():
    class Wrong(MyCell):
        def forward(self, x, state):
            return WrongO.apply(*super().forward(x, state))

    class WrongO(torch.autograd.Function):
        @staticmethod
        def forward(ctx, h, c):
            return h.clone(), c.clone()

        @staticmethod
        def backward(ctx, dh, dc):
            return dh * 1.3, dc

    torch.manual_seed(0)
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    case = rnncheck.CellCase(Wrong(), x, (_zeros(), _zeros()), gates={"weight_ih": "ifgo", "weight_hh": "ifgo"})
    result = rnncheck.verify_case(case, rnncheck.Options(diagnostics=False))
    mismatches = [f for f in result.findings if f.kind == "mismatch"]
    assert result.verdict == "fail" and mismatches and all(f.location["gate"] in "ifgo" for f in mismatches)
    assert all("-gate][" in f.location["entry"] for f in mismatches)


def test_built_in_cells_get_their_gates_and_no_suggestion():
    torch.manual_seed(0)
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    target = rnncheck.CellCase(torch.nn.LSTMCell(3, 5).double(), x, (_zeros(), _zeros())).bind(rnncheck.Options())
    assert target.gates["cell.weight_hh"] == ("i", "f", "g", "o") and not target.notes


def test_a_plain_rnn_is_never_told_to_declare_lstm_gates():
    torch.manual_seed(0)
    rnn = torch.nn.RNN(20, 5).double()  # weight_ih is 5x20: its shape alone would look stacked
    x = torch.randn(6, 2, 20, dtype=torch.float64)
    result, notes = _notes(rnncheck.TorchCase(rnn, inputs=(x,)))
    assert result.verdict == "pass" and not any("gates=" in n for n in notes)


def test_print_of_a_report_is_the_plain_text_report():
    import numpy as np

    case = rnncheck.NumpyCase(
        {"w": np.array([1.0, 2.0])}, lambda p: float((p["w"] ** 2).sum()), lambda p: {"w": 2 * p["w"]}
    )
    report = rnncheck.verify(case, rnncheck.Options(diagnostics=False))
    text = str(report)
    assert text.startswith("PASS  NumpyCase") and "worst entry" in text and "1 passed" in text
    assert "\x1b[" not in text and "Report(" not in text
    assert str(report.cases[0]).startswith("PASS  NumpyCase")
