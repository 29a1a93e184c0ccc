"""Gradient flow from states a model recorded with ``rnncheck.record`` (see :mod:`rnncheck.recording`).

Three ways a state can be recorded, three ways to measure it:

- **one step at a time** (a loop, or rnncheck's own loop over a StepCase's step form): the
  states are in the graph that carries the recurrence, so they become ordinary layers of
  the flow check, with the total dL/dh_t and the propagation ∂⟨u, h_T⟩/∂h_t from autograd;
- **stacked, with the decay** of a diagonal linear recurrence h_t = a_t ⊙ h_(t-1) + b_t
  (minGRU, LRU, Mamba, S4D, RG-LRU): everything is exact.  The total adjoint is
  λ_t = ∂L/∂h_t + a_(t+1) ⊙ λ_(t+1) from the direct partials; the propagation of a unit
  functional u of the last state is ‖u ⊙ a_T ⋯ a_(T-ℓ+1)‖; and each channel's decay per
  step is the geometric mean of its |a_t| over time and batch, its horizon −1/ln of that;
- **stacked, without the decay** (a scan rnncheck cannot see inside): the states' graph
  does not carry the recurrence from step to step, so the propagation is measured on what
  does: the influence of the inputs at step T−1−ℓ on the last state,
  ‖∂⟨u, h_T⟩/∂x_(T−1−ℓ)‖, and the profile is ‖dL/dx_t‖.  For h_t = a h_(t-1) + B x_t this
  falls as a^ℓ, the same decay.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import flowmath as fm
from ..flowresults import ChannelCount, Channels, Histogram, LayerFlow, NotComputed, Spread

#: a channel whose propagated factor falls below this has forgotten (the same 1e-3 as lag_1e3)
FORGOTTEN = 1e-3
#: the short range counted apart: channels that forget within this many steps
SHORT = 8


def _time_first(t: torch.Tensor, time_dim: int) -> torch.Tensor:
    return t.detach().movedim(time_dim, 0)


def _batch_axis(ndim: int, time_dim: int) -> int | None:
    """The batch axis of stacked states: axis 0, or 1 when time is axis 0; none for a 2-D tensor."""
    if ndim < 3:
        return None
    return 0 if time_dim != 0 else 1


def _per_step(x: torch.Tensor, time_dim: int, batch: int | None = None) -> torch.Tensor:
    """``x`` as (T, B, channels) in float64, B = 1 where there is no batch axis."""
    t = x.detach().to(torch.float64)
    T = t.shape[time_dim]
    if batch is None:
        return t.movedim(time_dim, 0).reshape(T, 1, -1)
    return t.movedim((time_dim, batch), (0, 1)).reshape(T, t.shape[batch], -1)


def channel_horizons(decay: torch.Tensor, time_dim: int, steps: int) -> Channels:
    """Each channel's decay per step (geometric mean of |a_t| over time and batch) and its horizon.

    A constant |a| = s gives s itself and the horizon −1/ln s exactly.  "Forgets within k
    steps" means its propagated factor falls below 1e-3 within k steps (lag = ln 1e-3 / ln s);
    "keeps information past T" means it is still above 1e-3 after the whole sequence.
    """
    a = _per_step(decay.abs(), time_dim, _batch_axis(decay.dim(), time_dim))  # (T, B, C)
    with np.errstate(divide="ignore"):
        log_a = torch.log(a).mean(dim=(0, 1)).numpy()  # -inf where a channel is exactly 0 somewhere
    rho = np.exp(log_a)
    with np.errstate(divide="ignore", invalid="ignore"):
        horizon = np.where(log_a < 0, -1.0 / log_a, np.inf)
        lag = np.where(log_a < 0, math.log(FORGOTTEN) / log_a, np.inf)
    C = len(rho)
    finite = horizon[np.isfinite(horizon)]
    return Channels(
        C,
        Spread(float(rho.min()), float(np.median(rho)), float(rho.max())),
        Spread(float(horizon.min()), float(np.median(horizon)), float(horizon.max())),
        forget_within=ChannelCount(SHORT, int((lag <= SHORT).sum())),
        keep_past_sequence=ChannelCount(steps, int((lag > steps).sum())),
        growing=int((log_a > 0).sum()),
        histogram_log10_horizon=_histogram(finite),
        method="geometric mean of |a_t| over time and batch per channel; horizon −1/ln of it",
    )


def _histogram(horizon: np.ndarray) -> Histogram:
    if not horizon.size:
        return Histogram([], [])
    logs = np.log10(np.maximum(horizon, 1e-3))
    counts, edges = np.histogram(logs, bins=min(10, max(1, horizon.size)))
    return Histogram([float(e) for e in edges], [int(c) for c in counts])


def measure_stacked(record, loss, leaves: dict[str, torch.Tensor], rng) -> LayerFlow:
    """One stacked record: exact from its decay where given, else from the inputs' influence on the last state."""
    h, time_dim = record.stacked, record.time_dim
    T = h.shape[time_dim]
    flow = LayerFlow(record.name, None, T)
    batch = _batch_axis(h.dim(), time_dim)
    last = h.select(time_dim, T - 1)
    u = torch.as_tensor(rng.normal(size=tuple(last.shape)), dtype=last.dtype, device=last.device)
    u = u / u.norm()
    if record.decay is not None:
        _exact(flow, record, loss, u, batch)
    else:
        _through_inputs(flow, record, loss, u, leaves)
    return flow


def _exact(flow: LayerFlow, record, loss, u: torch.Tensor, batch: int | None) -> None:
    """A diagonal linear recurrence: the adjoints and the propagation follow from the decay."""
    h, time_dim, T = record.stacked, record.time_dim, flow.steps
    a = _per_step(record.decay, time_dim, batch)  # (T, B, C)
    direct = torch.autograd.grad(loss, h, retain_graph=True, allow_unused=True)[0] if loss.requires_grad else None
    g = _per_step(direct if direct is not None else torch.zeros_like(h), time_dim, batch)
    lam = torch.zeros_like(g)
    lam[T - 1] = g[T - 1]
    for t in range(T - 2, -1, -1):
        lam[t] = g[t] + a[t + 1] * lam[t + 1]
    flow.profile = fm.scaled_norms(lam.reshape(T, -1).numpy()).tolist()
    carried = u.detach().to(torch.float64).reshape(1, *a.shape[1:]) if batch is not None else None
    carried = carried if carried is not None else u.detach().to(torch.float64).reshape(a.shape[1:])
    prop = [1.0]
    for lag in range(1, T):
        carried = carried * a[T - lag]
        prop.append(float(fm.scaled_norms(carried.reshape(1, -1).numpy())[0]))
    flow.propagation = prop
    flow.source = "exact, from the recorded decay of a diagonal linear recurrence"
    flow.channels = channel_horizons(record.decay, time_dim, T)


def _through_inputs(flow: LayerFlow, record, loss, u: torch.Tensor, leaves: dict[str, torch.Tensor]) -> None:
    """No decay given: the influence of each step's inputs on the last state, and dL/dx_t."""
    h, time_dim, T = record.stacked, record.time_dim, flow.steps
    sequences = [t for t in leaves.values() if t.dim() > time_dim and t.shape[time_dim] == T and t.requires_grad]
    flow.source = "the inputs' influence on the last state (stacked states without decay=)"
    if not sequences:
        flow.structure = NotComputed("no input with a time axis of the states' length requires grad")
        return
    last = h.select(time_dim, T - 1)
    grads = torch.autograd.grad((u * last).sum(), sequences, retain_graph=True, allow_unused=True)
    per_step = _input_norms(grads, time_dim, T)
    flow.propagation = per_step[::-1].tolist()  # lag 0 = the last step's inputs
    if loss.requires_grad:
        dl = torch.autograd.grad(loss, sequences, retain_graph=True, allow_unused=True)
        flow.profile = _input_norms(dl, time_dim, T).tolist()


def _input_norms(grads, time_dim: int, T: int) -> np.ndarray:
    total = np.zeros(T)
    for g in grads:
        if g is None:
            continue
        per = fm.scaled_norms(_time_first(g, time_dim).to(torch.float64).reshape(T, -1).cpu().numpy())
        total = np.hypot(total, per)
    return total
