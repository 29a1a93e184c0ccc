"""Probes: compare the analytic gradient with a numerical derivative along one direction.

A probe is the unit every gradient check is built from.  Given a direction ``v`` over
the parameters, it compares ``a = g·v`` (the user's gradient) with the numerical
derivative of ``s ↦ L(θ + s·v)`` and decides, from the error model of
:mod:`rnncheck.numerics`, whether they agree:

- ``pass``: ``|a - R| ≤ bound``;
- ``fail``: they disagree, and a second Richardson pair at ``h/8`` confirms the same
  numerical value, so the numerical side is not the one at fault;
- ``kink``: the fourth difference shrank linearly with the step: the loss has a slope
  jump at θ along ``v``, where no derivative exists to compare with;
- ``unresolved``: the numerical side did not settle; never reported as a fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .numerics import (
    FOURTH_DIFFERENCE_NOISE,
    ODD_DIFFERENCE_NOISE,
    Derivative,
    default_step,
    evaluation_noise,
    kink_scaling,
    machine_eps,
    quantized_eps,
    richardson,
)
from .reductions import flat_tensor
from .strenum import StrEnum
from .tolerances import current as tolerances


class Status(StrEnum):
    """What one probe concluded (see the module's docstring for each)."""

    PASS = "pass"
    FAIL = "fail"
    KINK = "kink"
    UNRESOLVED = "unresolved"


@dataclass
class Probe:
    """The outcome of one probe."""

    analytic: float
    numeric: float
    bound: float
    scale: float  # Σ|g_j v_j|: the size of the terms the directional derivative sums
    status: Status
    derivative: Derivative | None = None
    evaluations: int = 0
    floor: float = 0.0  # the loss's own gradient scale, for a direction along which the gradient is zero

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    @property
    def mismatch(self) -> float:
        return abs(self.analytic - self.numeric)

    @property
    def rel_error(self) -> float:
        return self.mismatch / max(self.scale, abs(self.numeric), self.floor, np.finfo(float).tiny)

    @property
    def rel_bound(self) -> float:
        return self.bound / max(self.scale, abs(self.numeric), self.floor, np.finfo(float).tiny)


def _product(a: np.ndarray, b: np.ndarray, out=None):
    """a ⊙ b, flat, as a torch tensor (torch's threads for big arrays), written into ``out`` when given."""

    return torch.mul(flat_tensor(a), flat_tensor(b), out=out)


class Prober:
    """Runs probes against one target at one point θ with one analytic gradient."""

    def __init__(
        self, target, theta, grad, analytic_noise=None, clock=None, long_steps: bool = True, loss0: float | None = None
    ) -> None:
        """``loss0``: L(θ) where it is already known in the numerical side's own computation and dtype
        (the sanity checks' value, where ``target.numeric_is_model``); else it is evaluated here."""
        self.target = target
        self.theta = theta
        self.grad = grad
        self.analytic_noise = analytic_noise  # name -> |g - g'| from a jittered evaluation, or None
        self.clock = clock
        self.evaluations = 0 if loss0 is not None else 1
        self.loss0 = loss0 if loss0 is not None else self._loss(theta)  # first: it settles the numeric dtype
        self.eps_num = machine_eps(target.numeric_dtype)
        self.eps_model = target.model_eps
        self.noise0 = evaluation_noise(self.loss0, self.eps_num)
        self.step = default_step(self.eps_num)
        self._analytic_cache: dict = {}
        self._buffers: dict = {}
        # below float64 the fourth-order bound pays for its two extra evaluations
        self.extended = target.numeric_dtype != np.float64
        #: the unit roundoff the loss showed, when it is far coarser than its dtype's (else None)
        self.measured_eps: float | None = None
        #: whether a low-precision loss may get long steps (ε^(1/4)): not where kinks are dense
        self.long_steps = long_steps
        # a direction along which the true gradient is zero (a parameter the loss ignores, a symmetric
        # point) has no size of its own: it is judged against the lead probe's, the loss's own scale
        self.scale_floor = 0.0

    def _richardson(self, phi, h: float) -> Derivative:
        return richardson(phi, h, self.loss0, self.noise0, self.extended)

    def _loss(self, theta) -> float:
        value = self.target.loss(theta)
        if self.clock is not None:
            self.clock.tick()
        return value

    def phi(self, v: dict[str, np.ndarray]):
        """``s ↦ L(θ + s·v)``, remembering the values it has computed."""
        seen: dict[float, float] = {}
        offset = self.target.loss_offset  # the adapter may do θ + s·v where the model lives

        def at(s: float) -> float:
            if s not in seen:
                seen[s] = offset(self.theta, v, s)
                if self.clock is not None:
                    self.clock.tick()
            return seen[s]

        at.seen = seen
        return at

    def analytic(self, v: dict[str, np.ndarray]) -> tuple[float, float, float]:
        """``(g·v, its rounding bound, Σ|g_j v_j|)``.

        The products are summed in float64, so the analytic side's error is the rounding
        already in ``g``: random across entries, it adds up like ``‖g ⊙ v‖₂``.  Where the
        gradient was also measured at ulp-moved parameters, the difference of the two
        (``analytic_noise``) is that rounding, observed.
        """

        key = id(v)
        if self._analytic_cache.get("key") == key and self._analytic_cache.get("v") is v:
            return self._analytic_cache["value"]
        a = scale = l2sq = noise = 0.0
        for n in v:
            gv = _product(self.grad[n], v[n], out=self._scratch(n, v[n].size))
            a += float(gv.sum())
            scale += float(torch.linalg.vector_norm(gv, 1))
            l2sq += float(gv @ gv)
            if self.analytic_noise is not None and n in self.analytic_noise:
                nv = _product(self.analytic_noise[n], v[n], out=gv)
                noise += float(nv @ nv)
        err = 4 * self.eps_model * l2sq**0.5 + (
            tolerances().safety * noise**0.5 if self.analytic_noise is not None else 0.0
        )
        self._analytic_cache = {"key": key, "v": v, "value": (a, err, scale)}
        return a, err, scale

    def _scratch(self, name: str, size: int):
        """A float64 buffer of ``size`` entries kept for ``name``: a large model's products reuse it."""

        buf = self._buffers.get(name)
        if buf is None or buf.numel() != size:
            buf = self._buffers[name] = torch.empty(size, dtype=torch.float64)
        return buf

    def calibrate(self, v: dict[str, np.ndarray], first: Derivative | None = None, max_growth: int = 3) -> float:
        """Lengthen the step while rounding swamps truncation and the bound is far from what the dtype allows.

        A step relative to tiny parameters can move the loss by little more than its
        rounding; growing it 8-fold at a time while Δ⁴ stays at the noise level (at most
        ``8**max_growth``) restores the precision.  The step found is used by every later probe.
        """
        _, _, scale = self.analytic(v)
        target = 100 * self.eps_num ** (2 / 3)
        phi = self.phi(v)
        h = self.step
        d = first if first is not None else self._richardson(phi, h)
        for _ in range(max_growth):
            poor = d.error > target * max(scale, abs(d.value), np.finfo(float).tiny)
            # Δ⁴ still at the noise level: the loss is linear at this scale, a longer step is safe
            flat = abs(d.fourth_difference) < 4 * FOURTH_DIFFERENCE_NOISE * self.noise0
            if not (poor and flat):
                break
            if h * 8 > tolerances().max_step:
                break
            h *= 8
            d = self._richardson(phi, h)
        self.step = h
        return h

    def run_many(self, directions: list[dict[str, np.ndarray]]) -> list[Probe]:
        """Probe along every direction: the first in full, the rest screened with two evaluations.

        The first probe (a Richardson pair) measures what the others need: the evaluation
        noise — from its odd difference, which a kink at the point cannot inflate, since
        the a-priori ``4ε|L|`` is too small for a loss that sums large terms that cancel —
        the step, and the truncation error at that step.  Each further direction is then
        screened by one central difference; it passes only if it agrees within that
        error model, and anything else is probed in full.  A fail is never decided by
        the screen.
        """
        self.lead = self._lead(directions[0])
        self.scale_floor = self.lead.scale
        return [self.lead] + self.run_rest(directions[1:])

    def _lead(self, v: dict[str, np.ndarray]) -> Probe:
        h = self.step
        phi0 = self.phi(v)
        first = self._richardson(phi0, h)
        # the noise is the one measured at this short step: a longer one may straddle a kink
        # near the point (a ReLU's), which would pass for noise in the odd difference
        measured = abs(first.odd_difference) / ODD_DIFFERENCE_NOISE
        self.noise0 = max(self.noise0, measured)
        self._coarser_than_declared(list(phi0.seen.values()), measured)
        if self.extended:  # low precision: the step its fourth-order stencil balances best
            self.step = max(self.step, default_step(self.eps_num))
            if self.long_steps:
                self.step = min(tolerances().max_step, max(self.step, self.eps_num ** (1 / 4)))
        if self.step != h:
            h = self.step
            first = self._richardson(phi0, h)
        self.calibrate(v, first)
        return self.run(v, start=first if self.step == h else None, phi=phi0)

    def _coarser_than_declared(self, values: list[float], measured: float) -> None:
        """Where the loss comes back rounded far more coarsely than its dtype, take its precision.

        Code given float64 that casts to float32 itself returns float32 numbers, each
        rounded to ~1e-7 of the loss, not 1e-16.  The float64 step (ε^(1/3) ≈ 6e-6) then
        divides that noise by almost nothing: the step, the stencil (fourth order, with
        ±4h) and the noise model switch to the precision the values show.  The evidence is
        the values themselves (every one on the float32 grid), never a large difference
        alone, which a kink near the point also makes.

        Values on a low-precision grid also say what their noise is made of: the last
        rounding (at most ε|L|/2 each) plus what the computation accumulated, which the
        odd difference measured; that replaces the a-priori 4ε|L|.
        """
        coarse = quantized_eps([self.loss0, *values])
        if coarse is None or coarse < self.eps_num / 2:
            return
        self.noise0 = max(measured, evaluation_noise(self.loss0, coarse, terms=1.0))
        if not coarse > tolerances().low_precision_ratio * self.eps_num:
            return
        self.measured_eps = coarse
        self.eps_num = coarse
        self.extended = True

    def run_rest(self, directions: list[dict[str, np.ndarray]]) -> list[Probe]:
        """Probe further directions with the error model the lead probe measured."""
        lead = self.lead
        truncation_per_scale = (lead.derivative.truncation / lead.scale) if (lead.derivative and lead.scale) else None
        probes = []
        for v in directions:
            phi = self.phi(v)
            screened = self.screen(v, truncation_per_scale, phi) if lead.status == Status.PASS else None
            probes.append(screened if screened is not None else self.run(v, phi=phi))
        return probes

    def screen(self, v: dict[str, np.ndarray], truncation_per_scale: float | None, phi) -> Probe | None:
        """One central difference; a pass if it agrees within the error model, else None."""
        a, a_err, scale = self.analytic(v)
        h = self.step
        d = (phi(h) - phi(-h)) / (2 * h)
        truncation = 0.0 if truncation_per_scale is None else 3 * truncation_per_scale * scale
        bound = tolerances().safety * (self.noise0 / h + truncation) + a_err
        useless = bound > tolerances().useless_bound * max(scale, abs(d), self.scale_floor, np.finfo(float).tiny)
        if abs(a - d) <= bound and not useless:
            return Probe(a, d, bound, scale, Status.PASS, None, 2, self.scale_floor)
        return None

    def run(
        self, v: dict[str, np.ndarray], step: float | None = None, start: Derivative | None = None, phi=None
    ) -> Probe:
        """One probe along ``v`` (scaled so that a step of 1 is a relative change of order 1).

        Tries steps h, h/8, h/64.  A pass at a step whose error estimate is dominated by
        truncation, or whose Δ⁴ stands far above the noise, is not taken at face value:
        the step is shortened first, since a kink straddled by the step looks like that.
        A fail needs two consecutive Richardson estimates that agree with each other and
        not with the analytic value; a kink needs Δ⁴ well above the noise, shrinking
        linearly with the step.
        """
        a, a_err, scale = self.analytic(v)
        h = self.step if step is None else step
        phi = phi or self.phi(v)
        prev: Derivative | None = None
        evals = 0
        for stage in range(3):
            d = start if (stage == 0 and start is not None) else self._richardson(phi, h / 8**stage)
            evals += d.evaluations
            bound = tolerances().safety * d.error + a_err
            agrees = abs(a - d.value) <= bound
            if prev is not None:
                # against the a-priori noise too: a measured noise may be small by chance, a kink never is
                floor = max(self.noise0, evaluation_noise(self.loss0, self.eps_num))
                above_noise = min(abs(prev.fourth_difference), abs(d.fourth_difference)) > 20 * floor
                if above_noise and kink_scaling(prev.fourth_difference, d.fourth_difference) == "kink":
                    return Probe(a, d.value, bound, scale, Status.KINK, d, evals, self.scale_floor)
            rough = (
                d.truncation > 100 * d.rounding or abs(d.fourth_difference) > 10 * FOURTH_DIFFERENCE_NOISE * self.noise0
            )
            useless = bound > tolerances().useless_bound * max(
                scale, abs(d.value), self.scale_floor, np.finfo(float).tiny
            )
            if agrees and not useless and not (rough and stage < 2):
                return Probe(a, d.value, bound, scale, Status.PASS, d, evals, self.scale_floor)
            if (
                prev is not None
                and not agrees
                and abs(prev.value - d.value) <= tolerances().safety * (prev.error + d.error)
            ):
                return Probe(a, d.value, bound, scale, Status.FAIL, d, evals, self.scale_floor)
            prev = d
        return Probe(a, d.value, bound, scale, Status.UNRESOLVED, d, evals, self.scale_floor)
