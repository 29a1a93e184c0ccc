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

from .numerics import Derivative, default_step, evaluation_noise, kink_scaling, machine_eps, richardson

#: the error model's safety factor: a probe fails only when the disagreement exceeds
#: this multiple of the estimated numerical and analytic errors
SAFETY = 4.0


@dataclass
class Probe:
    """The outcome of one probe."""

    analytic: float
    numeric: float
    bound: float
    scale: float  # Σ|g_j v_j|: the size of the terms the directional derivative sums
    status: str
    derivative: Derivative | None = None
    evaluations: int = 0

    @property
    def mismatch(self) -> float:
        return abs(self.analytic - self.numeric)

    @property
    def rel_error(self) -> float:
        return self.mismatch / max(self.scale, abs(self.numeric), np.finfo(float).tiny)

    @property
    def rel_bound(self) -> float:
        return self.bound / max(self.scale, abs(self.numeric), np.finfo(float).tiny)


class Prober:
    """Runs probes against one target at one point θ with one analytic gradient."""

    def __init__(self, target, theta, grad, analytic_noise=None, clock=None) -> None:
        self.target = target
        self.theta = theta
        self.grad = grad
        self.analytic_noise = analytic_noise  # name -> |g - g'| from a jittered evaluation, or None
        self.clock = clock
        self.eps_num = machine_eps(target.numeric_dtype)
        self.eps_model = machine_eps(target.model_dtype)
        self.loss0 = self._loss(theta)
        self.noise0 = evaluation_noise(self.loss0, self.eps_num)
        self.evaluations = 1

    def _loss(self, theta) -> float:
        value = self.target.loss(theta)
        if self.clock is not None:
            self.clock.tick()
        return value

    def phi(self, v: dict[str, np.ndarray]):
        def at(s: float) -> float:
            return self._loss({n: self.theta[n] + s * v[n] if n in v else self.theta[n] for n in self.theta})

        return at

    def analytic(self, v: dict[str, np.ndarray]) -> tuple[float, float, float]:
        """``(g·v, its rounding bound, Σ|g_j v_j|)``."""
        a = sum(float(np.vdot(self.grad[n], v[n])) for n in v)
        scale = sum(float(np.abs(self.grad[n] * v[n]).sum()) for n in v)
        err = 16 * self.eps_model * scale if self.target.model_dtype != np.float64 else 4 * self.eps_model * scale
        if self.analytic_noise is not None:
            err += SAFETY * sum(
                float(np.abs(self.analytic_noise[n] * v[n]).sum()) for n in v if n in self.analytic_noise
            )
        return a, err, scale

    def run(self, v: dict[str, np.ndarray], step: float | None = None) -> Probe:
        """One probe along ``v`` (scaled so that a step of 1 is a relative change of order 1).

        Tries steps h, h/8, h/64.  A fail needs two consecutive Richardson estimates that
        agree with each other and not with the analytic value; a kink needs Δ⁴ well above
        the noise and shrinking linearly with the step.
        """
        a, a_err, scale = self.analytic(v)
        h = default_step(self.eps_num) if step is None else step
        phi = self.phi(v)
        prev: Derivative | None = None
        evals = 0
        for stage in range(3):
            d = richardson(phi, h / 8**stage, self.loss0, self.noise0)
            evals += 4
            bound = SAFETY * d.error + a_err
            if abs(a - d.value) <= bound:
                return Probe(a, d.value, bound, scale, "pass", d, evals)
            if prev is not None:
                above_noise = min(abs(prev.fourth_difference), abs(d.fourth_difference)) > 20 * self.noise0
                if above_noise and kink_scaling(prev.fourth_difference, d.fourth_difference) == "kink":
                    return Probe(a, d.value, bound, scale, "kink", d, evals)
                if abs(prev.value - d.value) <= SAFETY * (prev.error + d.error):
                    return Probe(a, d.value, bound, scale, "fail", d, evals)
            prev = d
        return Probe(a, d.value, bound, scale, "unresolved", d, evals)
