"""``rnncheck.record``: a model shows rnncheck its recurrent states, and nothing happens outside a check.

Inside ``forward``::

    h = rnncheck.record(h, name="ssm")                       # one step's state, in a loop
    hs = rnncheck.record(hs, name="ssm", time_dim=1)          # every step at once, from a scan
    hs = rnncheck.record(hs, name="ssm", time_dim=1, decay=a)  # h_t = a_t ⊙ h_(t-1) + b_t

Outside a check ``record`` returns its argument and does nothing else.  While the flow
check runs the model, a :class:`Recorder` is active and keeps what was recorded:

- states recorded one step at a time sit in the graph that carries the recurrence, so
  autograd gives the *total* dL/dh_t and the propagation ∂⟨u, h_T⟩/∂h_t directly;
- states recorded at once (a parallel scan's output) do not: with ``decay=`` (a diagonal
  linear recurrence) the total adjoint and the exact per-channel decay follow from the
  decay itself; without it the flow is measured on the input's influence on the last state.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field

_active: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar("rnncheck_recorder", default=None)


@dataclass
class Recorded:
    """What one name recorded: a list of per-step states, or one stacked tensor of them."""

    name: str
    steps: list = field(default_factory=list)  # per-step states, each a tuple (h, …)
    stacked: object | None = None  # a tensor with every step along time_dim
    time_dim: int | None = None
    decay: object | None = None  # a_t of h_t = a_t ⊙ h_(t-1) + b_t, shaped like the stacked states


class Recorder:
    """Keeps every ``record`` call made while it is active, by name, in call order."""

    def __init__(self) -> None:
        self.records: dict[str, Recorded] = {}
        self.problems: list[str] = []

    def add(self, state, name: str, time_dim: int | None, decay) -> None:
        import torch

        tensors = (
            (state,) if isinstance(state, torch.Tensor) else tuple(state) if isinstance(state, tuple | list) else ()
        )
        if not tensors or not all(isinstance(t, torch.Tensor) and t.is_floating_point() for t in tensors):
            self.problems.append(
                f"rnncheck.record(name={name!r}) was given {type(state).__name__}, not a floating-point tensor "
                "or a tuple of them"
            )
            return
        if time_dim is None:
            entry = self.records.setdefault(name, Recorded(name))
            if entry.stacked is not None:
                self.problems.append(f"rnncheck.record(name={name!r}) was called both per step and with time_dim")
                return
            entry.steps.append(tensors)
            return
        h = tensors[0]
        if not -h.dim() <= time_dim < h.dim():
            self.problems.append(
                f"rnncheck.record(name={name!r}, time_dim={time_dim}): the state has shape {tuple(h.shape)}"
            )
            return
        if decay is not None:
            decay = decay if isinstance(decay, torch.Tensor) else torch.as_tensor(decay, dtype=h.dtype, device=h.device)
            try:
                decay = torch.broadcast_to(decay, h.shape)
            except RuntimeError:
                self.problems.append(
                    f"rnncheck.record(name={name!r}): decay of shape {tuple(decay.shape)} does not broadcast to "
                    f"the states' {tuple(h.shape)}"
                )
                decay = None
        key, n = name, 2
        while key in self.records:  # the same module used twice (two layers): each call its own record
            key, n = f"{name}#{n}", n + 1
        self.records[key] = Recorded(key, stacked=h, time_dim=time_dim % h.dim(), decay=decay)


def record(state, *, name: str = "state", time_dim: int | None = None, decay=None):
    """Show rnncheck a recurrent state; returns ``state`` unchanged, and does nothing outside a check.

    Args:
        state: the state ``h_t`` of one step (a tensor, or a tuple whose first item is h),
            or, with ``time_dim``, the states of every step stacked along that axis.
        name: one name per recurrence (``"ssm"``, ``"layer0"``); the report's layer name.
        time_dim: the time axis of stacked states; None for one step's state.
        decay: for a diagonal linear recurrence h_t = a_t ⊙ h_(t-1) + b_t recorded stacked,
            the a_t (shaped like the states, or broadcastable to them).  rnncheck then gives
            each channel's exact decay and horizon.
    """
    recorder = _active.get()
    if recorder is not None:
        recorder.add(state, name, time_dim, decay)
    return state


@contextlib.contextmanager
def recording():
    """Activate a :class:`Recorder` for the calls inside the block."""
    recorder = Recorder()
    token = _active.set(recorder)
    try:
        yield recorder
    finally:
        _active.reset(token)
