"""The architectures the reference implements, with what each implies: its gates, their count, its activation."""

from __future__ import annotations

from ..strenum import StrEnum
from . import gru, lstm


class Mode(StrEnum):
    """A cell, named as ``nn.RNN``/``nn.LSTM``/``nn.GRU`` name their modes (the JSON and ``reference=`` use the values)."""

    RNN_TANH = "rnn_tanh"
    RNN_RELU = "rnn_relu"
    RNN_SIGMOID = "rnn_sigmoid"
    LSTM = "lstm"
    GRU = "gru"

    @property
    def gates(self) -> tuple[str, ...]:
        """Gate names in stacking order, or () for a plain RNN."""
        return lstm.GATES if self is Mode.LSTM else gru.GATES if self is Mode.GRU else ()

    @property
    def gate_count(self) -> int:
        """Blocks stacked in W_ih and W_hh: one per gate, one for a plain RNN."""
        return len(self.gates) or 1

    @property
    def plain(self) -> bool:
        """A plain (Elman) RNN: h_t = φ(a_t), no gates."""
        return not self.gates

    @property
    def activation(self) -> str | None:
        """A plain RNN's φ (``tanh``, ``relu``, ``sigmoid``); None for a gated cell, whose activations are fixed."""
        return self.value.split("_", 1)[1] if self.plain else None
