"""The checks as a list, each behind one interface: ``run(target, context) -> CheckResult | None``.

:func:`rnncheck.runner.verify_case` runs :data:`CHECKS` in order.  A check that raises
becomes that check's ``error`` result with its one-line reason; the checks that ran
before it keep their results, and the ones after it still run.  A new check is one
module plus one line in :data:`CHECKS`.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..findings import CheckName, CheckResult, FlowDiagnostics, FlowResult, GradientResult, Kind, Verdict
from .flow import check_flow
from .gradient import check_gradient
from .reference import check_reference
from .reference_module import check_reference_module
from .sanity import check_sanity


@dataclass
class Context:
    """What the checks of one case share: the options, the clock, and what earlier checks found."""

    case: Any
    name: str
    options: Any
    clock: Any
    grad: dict[str, np.ndarray] | None = None  # the user's gradient at the check point (from sanity)
    loss: float | None = None
    call_seconds: float = 0.0  # one call of the user's gradient: the fastest the sanity checks timed
    diagnostics: FlowDiagnostics | None = None  # the flow diagnostics, when they ran
    results: list[CheckResult] = field(default_factory=list)

    def rng(self, stream: int | None = None) -> np.random.Generator:
        """A random stream of its own per check, so that one check's draws never move another's numbers.

        ``None`` is the stream the gradient probes have always drawn from (baselines depend on it).
        """
        key = [self.options.seed, zlib.crc32(self.name.encode())]
        return np.random.default_rng(key if stream is None else [*key, stream])

    def result(self, name: str) -> CheckResult | None:
        return next((r for r in self.results if r.name == name), None)

    @property
    def sane(self) -> bool:
        sanity = self.result(CheckName.SANITY)
        return sanity is not None and sanity.verdict != Verdict.ERROR


class Sanity:
    name, stage, result_type = CheckName.SANITY, "the sanity checks", CheckResult

    def applies(self, ctx: Context) -> bool:
        return True

    def run(self, target, ctx: Context) -> CheckResult:

        started, calls = time.perf_counter(), target.evaluations
        result, ctx.loss, ctx.grad, fastest = check_sanity(target)
        # one call of the gradient: the fastest the checks timed (the first pays for warming up), else the mean
        ctx.call_seconds = fastest or (time.perf_counter() - started) / max(target.evaluations - calls, 1)
        return result


class Gradient:
    name, stage, result_type = CheckName.GRADIENT, "the gradient probes", GradientResult

    def applies(self, ctx: Context) -> bool:
        return ctx.options.gradient and ctx.sane

    def run(self, target, ctx: Context) -> CheckResult:

        rng = ctx.rng()
        grad, notes = ctx.grad, []
        nonfinite = [n for n, g in grad.items() if not np.isfinite(g).all()]
        if nonfinite:
            # a NaN poisons every probe it touches; as a zero it is one wrong entry the probes can pin down
            grad = {n: np.where(np.isfinite(g), g, 0.0) if n in nonfinite else g for n, g in grad.items()}
            notes.append(f"non-finite gradient entries of {', '.join(nonfinite)} probed as 0 (see nonfinite_gradient)")
        known = (ctx.loss, ctx.call_seconds) if ctx.loss is not None else None
        result = check_gradient(target, grad, ctx.options, rng, ctx.clock, known)
        result.notes = list(target.notes) + notes
        return result


class Reference:
    name, stage, result_type = CheckName.REFERENCE, "the reference comparison", CheckResult

    def applies(self, ctx: Context) -> bool:
        return ctx.options.reference and ctx.sane

    def run(self, target, ctx: Context) -> CheckResult | None:

        gradient = ctx.result(CheckName.GRADIENT)
        rows = gradient.tensors if gradient is not None else []
        return check_reference(target, ctx.grad, rows, ctx.options)


class ReferenceModule:
    name, stage, result_type = CheckName.REFERENCE_MODULE, "the comparison with your reference module", CheckResult

    def applies(self, ctx: Context) -> bool:
        return ctx.options.reference and ctx.sane and ctx.case.reference_module is not None

    def run(self, target, ctx: Context) -> CheckResult | None:

        return check_reference_module(target)


class Flow:
    name, stage, result_type = CheckName.FLOW, "the gradient-flow diagnostics", FlowResult
    advisory = True  # it measures, it does not judge the gradient: its own failure is a warn, never an error

    def applies(self, ctx: Context) -> bool:
        # a non-finite loss is when locating the first non-finite value matters most
        sanity = ctx.result(CheckName.SANITY)
        nonfinite = sanity is not None and any(f.kind == Kind.NONFINITE_LOSS for f in sanity.findings)
        return ctx.options.diagnostics and (ctx.sane or nonfinite)

    def run(self, target, ctx: Context) -> CheckResult | None:

        check, ctx.diagnostics = check_flow(ctx.case, target, ctx.options, ctx.rng(1), ctx.clock)
        return check


#: the checks, in the order they run
CHECKS = [Sanity(), Gradient(), Reference(), ReferenceModule(), Flow()]
