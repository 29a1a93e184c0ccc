"""The error model's safety factors, in one place.

Every number here says how much margin rnncheck leaves between "agrees" and "disagrees",
or when a measurement is too weak to say either.  They are fields of one frozen
:class:`Tolerances`; the checks read the active one with :func:`current`.  A run sets it
from :attr:`rnncheck.Options.tolerances` (``Options(tolerances=Tolerances(safety=8))``),
and ``--safety`` overrides the one factor worth turning from the command line.

The flow verdict's thresholds (what counts as vanishing or exploding) are not here: they
are published with every verdict, in :data:`rnncheck.flowmath.THRESHOLDS`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerances:
    """The margins of rnncheck's error model.  Each field's docstring says what it scales."""

    safety: float = 4.0
    """A probe fails only when |analytic - numeric| exceeds this multiple of the estimated
    numerical and analytic errors.  Larger: fewer false alarms on unusual code, less power."""

    useless_bound: float = 0.1
    """A probe whose bound exceeds this fraction of its own size has checked nothing: it is
    ``unresolved``, never a pass."""

    low_precision_ratio: float = 1e3
    """A loss rounded this many times more coarsely than its dtype computes in lower precision
    than it is given (code that casts to float32 itself): the probes switch to that precision."""

    max_step: float = 1 / 16
    """The longest finite-difference step, relative to the parameters' size; the extended
    stencil reaches four times this, beyond which the loss is no longer local."""

    kink_jitter: float = 1e-3
    """How far the parameters move to step off a kink, relative to each block's size."""

    kink_dense_margin: float = 4.0
    """Where probes still sit on kinks after moving off, a fail must exceed its bound this many
    times: a kink inside the stencil shifts both Richardson estimates alike."""

    unchecked_power: float = 1.0
    """A tensor whose probes would miss a single entry off by this much (relative) is reported
    as ``unchecked``, and its case as a warn."""

    ratio_agreement: float = 1e-3
    """Two ratios analytic/numeric agree (a constant-factor hint) when they differ by less than this."""

    time_match: float = 1e-6
    """A hypothesis about the time structure (truncated BPTT …) holds when it reproduces the
    analytic gradient this closely (relative)."""

    reference_ulps: float = 1e4
    """The reference comparison allows this many units of the compared dtype's rounding."""

    reference_floor: float = 1e-9
    """… and never asks a torch layer for agreement closer than this (relative)."""

    numpy_reference_floor: float = 1e-8
    """… nor NumPy code, which sums in its own order, closer than this."""

    twin_ulps: float = 1e3
    """The unrolled twin must reproduce a fused layer's output within this many units of rounding."""

    repeat_ulps: float = 256.0
    """Two evaluations of the loss at the same point may differ by this many units of rounding
    before the loss is called nondeterministic."""

    stateful_ulps: float = 1e3
    """Two gradients at the same point may differ by this many units of rounding (relative to the
    largest entry) before the gradient is called stateful."""

    loss_agreement_ulps: float = 64.0
    """The loss the gradient function returns and the loss function's value may differ by this many
    units of rounding before they are called inconsistent."""

    module_factor: float = 3.0
    """A candidate may be this many times less accurate than the user's naive reference module run
    in the same dtype (measured: correct fused layers reach at most 0.48×)."""

    module_coarse: float = 0.05
    """A tensor whose resolution against the naive module is coarser than this is named in a note."""

    module_floor_ulps: float = 4.0
    """… and is never asked to be closer than this many units of its dtype's rounding."""

    module_scaled_margin: float = 4.0
    """A float64 model's rounding is measured in float32 and scaled by ε64/ε32; torch accumulates some
    float32 reductions in float64 on the CPU (cumsum, logcumsumexp), so a float32 run rounds less than its
    ε implies, and the scaled figure is widened by this much (measured: a correct log-space scan's gradient
    reached 3.6× the plain figure in 60 runs, 0.37× for a Blelloch scan)."""

    max_amplification: float = 100.0
    """Probe directions amplify small blocks at most this much, so that a step stays in the linear range."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"Tolerances.{f.name} must be a positive finite number, got {value!r}")

    def replace(self, **changes) -> Tolerances:
        return dataclasses.replace(self, **changes)


DEFAULT = Tolerances()

_active: ContextVar[Tolerances] = ContextVar("rnncheck_tolerances", default=DEFAULT)


def current() -> Tolerances:
    """The tolerances of the case being checked (the defaults outside a run)."""
    return _active.get()


@contextmanager
def using(tolerances: Tolerances) -> Iterator[Tolerances]:
    """Check with ``tolerances`` inside the block."""
    token = _active.set(tolerances)
    try:
        yield tolerances
    finally:
        _active.reset(token)
