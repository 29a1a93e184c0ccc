"""CellCase: a custom recurrent cell that rnncheck steps through time itself."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..convert import mode_of
from ..errors import CaseError
from .base import GATE_NAMES
from .torch_case import TorchCase


class CellLoop(nn.Module):
    """Runs ``state = cell(x_t, state)`` over time and stacks ``readout(state)``.

    With ``record`` set to a list, every step's state is appended to it, so that the
    flow diagnostics can read the total dL/dh_t from it after a backward pass.
    """

    def __init__(self, cell: nn.Module, readout: Callable | None = None) -> None:
        super().__init__()
        self.cell = cell
        self.readout = readout
        self.record: list | None = None

    @staticmethod
    def hidden(state):
        """The hidden state h_t: the state itself, or its first element for a tuple state."""
        return state if isinstance(state, torch.Tensor) else state[0]

    def forward(self, inputs: torch.Tensor, state0):
        state = state0
        outs = []
        for t in range(inputs.shape[0]):
            state = self.cell(inputs[t], state)
            if self.record is not None:
                self.record.append(state)
            outs.append(self.readout(state) if self.readout is not None else self.hidden(state))
        return torch.stack(outs)


class CellCase(TorchCase):
    """A custom cell ``state = cell(x_t, state)``; rnncheck owns the loop over time.

    Args:
        cell: an ``nn.Module`` called as ``cell(x_t, state)``; ``state`` may be a tensor or
            a tuple of tensors (an LSTM's ``(h, c)``), and ``h`` is its first element.
        inputs: (T, B, ...) time-major, or (B, T, ...) with ``batch_first=True``.
        state0: the initial state; if it requires grad, its gradient is checked too.
        readout: optional module or function of the state, applied at every step.
        loss: optional function of the stacked readouts (T, B, ...); default: a fixed random
            linear functional.
        gates: tensor name -> gate names stacked along its first axis, as for a TorchCase;
            names may be the cell's own (``"weight_hh"``) or the case's (``"cell.weight_hh"``).
    """

    def __init__(
        self,
        cell: nn.Module,
        inputs: torch.Tensor,
        state0,
        readout: Callable | None = None,
        loss: Callable | None = None,
        batch_first: bool = False,
        gates: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        if not isinstance(cell, nn.Module):
            raise CaseError("CellCase needs the cell as a torch.nn.Module: its parameters are what rnncheck checks")
        if not isinstance(inputs, torch.Tensor) or inputs.dim() < 2:
            raise CaseError(
                "CellCase inputs must be a tensor of shape (T, B, ...) (or (B, T, ...) with batch_first=True)"
            )
        x = inputs.transpose(0, 1) if batch_first else inputs
        self.cell = cell
        self.loop = CellLoop(cell, readout)

        mode = mode_of(cell)
        if gates is None and mode in GATE_NAMES:  # nn.LSTMCell / nn.GRUCell stack their gates as the layers do
            gates = {
                n: GATE_NAMES[mode]
                for n, p in cell.named_parameters()
                if p.dim() >= 1 and p.shape[0] % len(GATE_NAMES[mode]) == 0
            }
        if isinstance(gates, dict):  # the cell's own names ("weight_hh") or the case's ("cell.weight_hh")
            gates = {n if n.startswith("cell.") else f"cell.{n}": g for n, g in gates.items()}
        super().__init__(self.loop, inputs=(x, state0), loss=loss, gates=gates)

    def bind(self, options):
        target = super().bind(options)
        target.cell_loop = target.model  # the loop placed on the device and in the dtype asked for
        return target

    def known_tensors(self, params) -> set[str]:
        """A built-in cell (nn.RNNCell, nn.LSTMCell, nn.GRUCell): its architecture is known."""

        return {n for n in params if n.startswith("cell.")} if mode_of(self.cell) is not None else set()
