"""Numerical derivatives and their error model.

Everything here is a pure function of a scalar function ``phi(s)`` — in use, the loss
along a direction, ``phi(s) = L(θ + s·v)`` — and is tested on functions whose
derivatives are known exactly.

The error model.  A central difference ``D(h) = (phi(h) - phi(-h)) / 2h`` has a
truncation error ``h² phi'''/6`` and a rounding error of about ``ε_f / h``, where ``ε_f``
is the noise in one evaluation of ``phi``.  Two central differences at ``h`` and ``2h``
give both a better estimate (Richardson: ``R = (4 D(h) - D(2h)) / 3``) and a measured
bound on the truncation error (``|D(h) - D(2h)| / 3`` is the truncation error of
``D(h)``, so it bounds ``R``'s conservatively).  The five values
``phi(0), phi(±h), phi(±2h)`` also give the fourth difference

    Δ⁴ = phi(2h) - 4 phi(h) + 6 phi(0) - 4 phi(-h) + phi(-2h)

which is ``h⁴ phi''''`` for a smooth function, about ``8·ε_f`` of pure noise when that
is larger, and ``-2Jh`` when ``phi``'s slope jumps by ``J`` at 0: the kink signature.
Halving ``h`` divides a kink's Δ⁴ by 2, a smooth one's by 16, and leaves noise alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Δ⁴ of pure, independent noise of size ε has standard deviation √70·ε ≈ 8.4·ε
FOURTH_DIFFERENCE_NOISE = math.sqrt(70.0)
#: the odd difference O = (phi(h) - phi(-h)) - (phi(2h) - phi(-2h))/2 has noise √2.5·ε
ODD_DIFFERENCE_NOISE = math.sqrt(2.5)


class LowDtype:
    """A floating dtype NumPy has no name for (bfloat16): its name and its unit roundoff.

    It stands where a ``np.dtype`` would, so that NumPy never sees a bfloat16: it compares
    unequal to every NumPy dtype and prints as its name.
    """

    def __init__(self, name: str, eps: float) -> None:
        self.name, self.eps = name, eps

    def __str__(self) -> str:
        return self.name

    __repr__ = __str__

    def __eq__(self, other) -> bool:
        return isinstance(other, LowDtype) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


BFLOAT16 = LowDtype("bfloat16", 2.0**-7)


def machine_eps(dtype: object) -> float:
    """Unit roundoff of a floating dtype (complex types use their real part's; bfloat16's is 2^-7)."""
    if isinstance(dtype, LowDtype):
        return dtype.eps
    return float(np.finfo(np.dtype(dtype)).eps)


def default_step(eps: float) -> float:
    """The step for a Richardson pair in units of the direction's scale.

    Balances rounding ``ε/h`` against the truncation of the pair: ``h ≈ ε^(1/3)``
    (6e-6 in float64, 5e-3 in float32).
    """
    return eps ** (1.0 / 3.0)


def central_difference(phi: Callable[[float], float], h: float) -> float:
    """``(phi(h) - phi(-h)) / 2h``."""
    return (phi(h) - phi(-h)) / (2.0 * h)


def complex_step(phi: Callable[[complex], complex], h: float = 1e-30) -> float:
    """``Im phi(i·h) / h``: the derivative at 0 without subtractive cancellation.

    Exact to machine precision for any ``h`` small enough, provided ``phi`` is analytic
    (no abs, no max, no cast to real) along the path.
    """
    return float(np.imag(phi(1j * h)) / h)


@dataclass(frozen=True)
class Derivative:
    """A numerical directional derivative with its own error estimate."""

    value: float  # Richardson estimate
    truncation: float  # measured bound on the truncation error, |D(h) - D(2h)| / 3
    rounding: float  # ε_f / h
    step: float
    d1: float  # central difference at h
    d2: float  # central difference at 2h
    fourth_difference: float  # Δ⁴, see the module docstring
    odd_difference: float = 0.0  # O = -h³ phi''' + noise: blind to a kink at 0, so it measures noise there too
    evaluations: int = 4

    @property
    def error(self) -> float:
        """The estimated bound on ``|value - true derivative|``."""
        return self.truncation + self.rounding


def richardson(
    phi: Callable[[float], float], h: float, phi0: float, noise: float, extended: bool = False
) -> Derivative:
    """Central differences at ``h`` and ``2h``, extrapolated, with their error estimate.

    ``phi0`` is ``phi(0)``, already known to the caller; ``noise`` is the a-priori noise
    of one evaluation.  The noise actually used is the larger of that and what Δ⁴ shows.

    ``extended`` adds ``phi(±4h)``: the extrapolation is then repeated at ``2h`` and
    ``|R(h) - R(2h)| / 15`` bounds the truncation of ``R(h)`` itself (fourth order)
    instead of that of ``D(h)`` — a much tighter bound where rounding is large and the
    step must be long, as in float32.
    """
    p1, m1 = phi(h), phi(-h)
    p2, m2 = phi(2 * h), phi(-2 * h)
    d1 = (p1 - m1) / (2 * h)
    d2 = (p2 - m2) / (4 * h)
    value = (4 * d1 - d2) / 3
    fourth = p2 - 4 * p1 + 6 * phi0 - 4 * m1 + m2
    eps_f = max(noise, abs(fourth) / FOURTH_DIFFERENCE_NOISE)
    truncation, evaluations = abs(d1 - d2) / 3, 4
    if extended:
        d4 = (phi(4 * h) - phi(-4 * h)) / (8 * h)
        truncation = max(abs(value - (4 * d2 - d4) / 3) / 15, 0.0)
        evaluations = 6
    return Derivative(
        value=value,
        truncation=truncation,
        rounding=eps_f / h,
        step=h,
        d1=d1,
        d2=d2,
        fourth_difference=fourth,
        odd_difference=(p1 - m1) - (p2 - m2) / 2,
        evaluations=evaluations,
    )


def quantized_eps(values) -> float | None:
    """The unit roundoff of the coarsest dtype every one of ``values`` is exactly representable in.

    A loss computed in float64 lands on a float32 number by chance once in ~2^29; five
    that all do were rounded to float32 (or coarser) before they came back.  None when the
    values are not all float16, bfloat16 or float32 numbers, or fewer than three distinct.
    """
    vals = np.unique(np.asarray([v for v in values if math.isfinite(v) and v != 0.0], dtype=np.float64))
    if vals.size < 3:  # a loss that does not move (a constant) shows no grid, however round its one value is
        return None
    as32 = vals.astype(np.float32)
    if not np.array_equal(as32.astype(np.float64), vals):
        return None
    bits = as32.view(np.uint32)
    if np.all(bits & 0xFFFF == 0):
        return BFLOAT16.eps
    with np.errstate(over="ignore"):
        if np.array_equal(vals.astype(np.float16).astype(np.float64), vals):
            return machine_eps(np.float16)
    return machine_eps(np.float32)


def evaluation_noise(value: float, eps: float, terms: float = 4.0) -> float:
    """A-priori noise of one loss evaluation: ``terms·ε·|value|`` (at least ``ε``-tiny).

    The measured part of the error model (Δ⁴ and the Richardson pair) takes over where
    the loss has more rounding than this, as a sum of many terms that cancel does.
    """
    return terms * eps * max(abs(value), np.finfo(float).tiny)


def kink_scaling(fourth_h: float, fourth_half: float) -> str:
    """Classify how Δ⁴ changed when the step was divided by 8.

    Returns ``"kink"`` when it fell about 8-fold (a slope jump at the point),
    ``"smooth"`` when it fell far more, and ``"noise"`` when it did not fall.
    """
    if fourth_h == 0:
        return "smooth"
    ratio = abs(fourth_half) / abs(fourth_h)
    if 1 / 32 <= ratio <= 1 / 3:
        return "kink"
    if ratio < 1 / 32:
        return "smooth"
    return "noise"
