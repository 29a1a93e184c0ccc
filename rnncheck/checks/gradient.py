"""Gradient agreement: the analytic gradient against numerical derivatives.

Default mode: a few random probe directions, each over every tensor and gate block
(see :mod:`rnncheck.directions`), compared by :mod:`rnncheck.probe`.  When a probe fails,
every block is probed alone and each failing block is narrowed to an entry
(:mod:`.localize`).  ``--full``: every entry gets its own finite difference.

Precision: the numerical side runs in float64 where the case allows it.  For a model
in lower precision, the analytic gradient's own rounding is measured by computing it
once more at parameters moved by a few units in the last place.

Kinks: a probe that sits on a slope jump is a ``kink``, never a fail; the check is
then run again at a point moved off it, and the result is at worst a ``warn``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from ..cases.base import Block
from ..directions import EntryDirection, block_scales, probe_direction, spanning_directions
from ..findings import (
    CheckName,
    Finding,
    GradientResult,
    Kind,
    ProbeRecord,
    ProbeSummary,
    TensorRow,
    Verdict,
    worst,
)
from ..numerics import machine_eps
from ..probe import Probe, Prober, Status
from ..tolerances import current as tolerances
from .entrywise import check_entrywise
from .localize import localize
from .sanity import nondeterminism


def _ulp_jitter(theta, eps, rng) -> dict[str, np.ndarray]:
    return {n: v * (1 + rng.uniform(-4, 4, size=v.shape) * eps) for n, v in theta.items()}


def _jitter(theta, blocks, rng, size) -> dict[str, np.ndarray]:
    scales = block_scales(theta, blocks)
    moved = {n: v.copy() for n, v in theta.items()}
    for b in blocks:
        sub = moved[b.tensor][b.rows]
        sub += rng.normal(size=sub.shape) * scales[b] * size
    return moved


def _probe_record(p: Probe, v: dict | None = None) -> ProbeRecord:
    """What ``-v`` shows of one probe: both sides, the bound and where it came from."""
    entry = getattr(v, "entry", None)  # a small tensor's entry probed alone, else None
    record = ProbeRecord(entry, p.status, p.analytic, p.numeric, p.rel_error, p.rel_bound, p.evaluations)
    d = p.derivative
    if d is not None:
        record.step, record.truncation, record.rounding = d.step, d.truncation, d.rounding
    return record


def plan_probes(requested: int, seconds_per_eval: float, remaining: float | None) -> int:
    """As many probes as asked for, fewer if the budget cannot hold them (at least one)."""
    if remaining is None or seconds_per_eval <= 0:
        return requested
    fits = int(remaining * 0.6 / (4 * seconds_per_eval))
    return max(1, min(requested, fits))


def _directions(target, grad, blocks, rng, k, theta=None) -> list[dict[str, np.ndarray]]:
    """``k`` directions over every block; below float64 numerics, one per tensor as well.

    Where the numerical side is float32, one probe resolves ~1e-4 of its sum: a tensor
    that carries a small share of a probe over everything could hide a wrong gradient,
    so each tensor also gets a probe of its own.
    """
    theta = target.theta if theta is None else theta
    directions = [probe_direction(theta, grad, blocks, rng) for _ in range(max(k - 1, 1))]
    # the last shared probe runs along the gradient's own signs: a flipped sign, or a gradient given where the
    # true one is zero, shows there in full
    directions.append(probe_direction(theta, grad, blocks, rng, aligned=True))
    if target.numeric_dtype != np.float64 or _coarse_model(target):
        directions += _per_tensor(theta, grad, blocks, rng, aligned=True)
    return directions + spanning_directions(theta, blocks)


def _unrepeatable(prober: Prober, target) -> Finding | None:
    """A float16 or bfloat16 model's randomness, seen where the sanity checks cannot see it.

    Their repeat test allows a few hundred units in the model's last place, which in
    float16 is 25% of the loss and in bfloat16 more than all of it: dropout left on passes.
    The float64 copy the probes evaluate repeats to float64's precision, so one more
    evaluation there, at the same parameters, shows any randomness the model draws.
    """
    if not (_coarse_model(target) and target.numeric_dtype == np.float64):
        return None
    again = target.loss(target.theta)
    return nondeterminism(prober.loss0, again, machine_eps(np.float64), " of the model's float64 copy", target)


def _coarse_model(target) -> bool:
    """A float16 or bfloat16 model: its gradient's own rounding, not the numerical side, bounds the power.

    A wrong tensor then shows best along its own gradient's signs, where every term adds
    up, as it does for a loss computed in low precision.
    """
    return target.model_eps > machine_eps(np.float32)


def _per_tensor(theta, grad, blocks, rng, aligned: bool = False) -> list[dict[str, np.ndarray]]:
    """One direction over each tensor alone (none for a single tensor: the shared probes are its own).

    ``aligned`` adds one along each tensor's own gradient signs, the most sensitive to a
    tensor whose gradient is off by a common factor (a scale, a missing term's share).
    """
    by_tensor: dict[str, list[Block]] = {}
    for b in blocks:
        by_tensor.setdefault(b.tensor, []).append(b)
    groups = list(by_tensor.values())
    out = [probe_direction(theta, grad, bs, rng) for bs in groups] if len(groups) > 1 else []
    if aligned:
        out += [probe_direction(theta, grad, bs, rng, aligned=True) for bs in groups]
    return out


def _probe_all(prober: Prober, target, grad, blocks, rng, k: int, theta=None):
    """``(directions, probes)``: the planned directions, then one per tensor where the loss showed low precision."""
    directions = _directions(target, grad, blocks, rng, k, theta)
    probes = prober.run_many(directions)
    if prober.measured_eps is not None and target.numeric_dtype == np.float64:
        # float64 given, far coarser shown: the loss casts down itself, so each tensor gets its own probes too
        more = _per_tensor(target.theta if theta is None else theta, grad, blocks, rng, aligned=True)
        probes += prober.run_rest(more)
        directions += more
    return directions, probes


@dataclass
class Confirmation:
    """What localizing the failing probes showed: the rows and findings, or that the failures are not proof."""

    rows: list[TensorRow]
    findings: list[Finding]
    unresolved: bool = False  # marginal failures no block alone reproduces, in low precision: not proof


def _confirm(prober: Prober, blocks, rows: list[TensorRow], probes: list[Probe], directions, rng, target):
    """Localize the failing probes on copies of ``rows``: a :class:`Confirmation`, or None when nothing fails.

    In low precision a probe that fails by less than ``Tolerances.kink_dense_margin`` times its bound,
    where no block alone reproduces it, is not proof (a kink or a rounding burst inside the
    long stencil does that): the confirmation says it is unresolved, and the check says so instead of failing.
    The same holds where the numerical side is float64 but the model is not, for a disagreement
    below the model's own unit roundoff of the terms the probe sums: a float32 gradient's
    rounding is correlated across entries (each follows from the same rounded forward states),
    and along the gradient's own signs it adds up past the bound its entry-by-entry noise gives
    (a correct ``nn.LSTM(512)`` at batch 1: 4.5e-9 of the probe's scale, against an estimate of
    4.6e-10), while an error the model's arithmetic can mean is larger than that.
    """
    failing = [p for p in probes if p.status == Status.FAIL]
    if not failing:
        return None
    localized = [replace(r) for r in rows]
    findings = localize(prober, blocks, localized, rng, target.context or {})
    marginal = all(p.mismatch < tolerances().kink_dense_margin * p.bound for p in failing)
    below_model = all(p.mismatch < target.model_eps * p.scale for p in failing)
    low = prober.extended or (target.model_eps > machine_eps(np.float64) and below_model)
    if low and marginal and not any(f.kind == Kind.MISMATCH for f in findings):
        return Confirmation(rows, [], unresolved=True)
    if not any(f.kind == Kind.MISMATCH for f in findings):
        findings = _unlocalized(probes, directions, localized) + findings
    return Confirmation(localized, findings)


def _unresolve(probes: list[Probe], which) -> list[Probe]:
    """The probes, with the failing ones ``which`` accepts marked unresolved."""
    return [replace(p, status=Status.UNRESOLVED) if p.status == Status.FAIL and which(p) else p for p in probes]


def _unlocalized(probes: list[Probe], directions, rows: list[TensorRow]) -> list[Finding]:
    """Failing probes that no block probed alone reproduces, reported as they are, one finding per tensor.

    An error spread thinly over a tensor (a common factor, a missing term's share) can show
    along the tensor's own gradient signs and stay below what one block's random-sign
    probe resolves; the fail stands, on the tensor when the probe covered one.
    """
    by_name = {r.name: r for r in rows}
    groups: dict[str | None, list[Probe]] = {}
    for p, v in zip(probes, directions):
        if p.status == Status.FAIL:
            covered = [n for n, a in v.items() if np.any(a)]
            groups.setdefault(covered[0] if len(covered) == 1 else None, []).append(p)
    out = []
    for tensor, failed in groups.items():
        p = max(failed, key=lambda q: q.mismatch / max(q.bound, np.finfo(float).tiny))
        if tensor in by_name:
            row = by_name[tensor]
            row.verdict = Verdict.FAIL
            row.error, row.tolerance = p.rel_error, p.rel_bound
        over = f"{tensor}: a probe over {tensor} alone" if tensor else "a probe over several tensors"
        more = f" ({len(failed)} such probes fail)" if len(failed) > 1 else ""
        out.append(
            Finding(
                "mismatch",
                Verdict.FAIL,
                f"{over} disagrees{more}: analytic {p.analytic:.6g}, numeric {p.numeric:.6g}, "
                f"rel err {p.rel_error:.2g}, bound {p.rel_bound:.1g}; no block probed alone reproduces it: the error is "
                "spread thinly (a common factor, a missing term's share), below what one block's probe resolves",
                tensor=tensor,
                numbers={"analytic": p.analytic, "numeric": p.numeric, "rel_error": p.rel_error, "bound": p.bound},
            )
        )
    return out


def check_gradient(target, grad, options, rng, clock, known=None) -> GradientResult:
    """Compare ``grad`` (the user's gradient at the check point) with numerical derivatives.

    The steps: choose the mode (probes, or every entry with ``--full``), measure the
    analytic side's own rounding, build the prober, make sure the model repeats itself,
    then run the mode.  ``known``: ``(loss, seconds)`` of the sanity checks' gradient
    call, where its loss is the numerical side's own value at θ (``target.numeric_is_model``):
    the probes then start from it, and count in the call's seconds, an over-estimate of one
    loss evaluation's that errs toward fewer probes when a budget is tight.
    """
    clock.stage = "the gradient probes"
    mode = _entrywise_mode if options.full else _probe_mode
    start = target.evaluations
    noise = _analytic_noise(target, grad, rng)
    prober, per_eval = _prober(target, grad, noise, clock, known)
    unrepeatable = _unrepeatable(prober, target)
    if unrepeatable is not None:
        evaluations = target.evaluations - start
        return GradientResult(CheckName.GRADIENT, Verdict.ERROR, [unrepeatable], [], evaluations=evaluations)
    return mode(
        Run(target, grad, prober, noise, rng, clock, start, plan_probes(options.probes, per_eval, clock.remaining))
    )


@dataclass
class Run:
    """What one mode of the gradient check works with."""

    target: object
    grad: dict[str, np.ndarray]
    prober: Prober
    analytic_noise: dict[str, np.ndarray] | None
    rng: np.random.Generator
    clock: object
    start: int  # the target's evaluation count when the check began
    probes: int  # the shared probes planned within the budget


def _analytic_noise(target, grad, rng) -> dict[str, np.ndarray] | None:
    """Below float64, the analytic gradient's own rounding: |g − g'| with g' at parameters moved by a few ulps."""
    if target.model_dtype == np.float64:
        return None
    _, g_j = target.gradient(_ulp_jitter(target.theta, target.model_eps, rng))
    return {n: np.abs(grad[n] - g_j[n]) for n in grad}


def _prober(target, grad, noise, clock, known) -> tuple[Prober, float]:
    """The prober at the check point, and the seconds of one loss evaluation (the unit the plan counts in)."""
    if known is not None and target.numeric_is_model:
        return Prober(target, target.theta, grad, noise, clock, loss0=known[0]), known[1]
    t0 = time.perf_counter()
    prober = Prober(target, target.theta, grad, noise, clock)
    return prober, time.perf_counter() - t0


def _entrywise_mode(run: Run) -> GradientResult:
    return check_entrywise(run.prober, run.target, run.start, run.clock)


def _probe_mode(run: Run) -> GradientResult:
    """Random probe directions over every block; failures localized, kinks stepped off, weak tensors named."""
    target, blocks = run.target, run.target.blocks
    prober, grad = run.prober, run.grad
    directions, probes = _probe_all(prober, target, grad, blocks, run.rng, run.probes)
    summary = _summary(target, directions, prober)
    findings: list[Finding] = []
    if any(p.status == Status.KINK for p in probes):
        prober, directions, probes, kink = _off_the_kinks(run, probes)
        findings.append(kink)
    rows = _rows(prober, blocks, probes, directions)
    confirmation = _confirm(prober, blocks, rows, probes, directions, run.rng, target)
    if confirmation is not None and confirmation.unresolved:
        probes = _unresolve(probes, lambda p: True)
    findings += _unresolved(probes)
    failing = any(p.status == Status.FAIL for p in probes)
    if failing:
        rows = confirmation.rows
        findings += confirmation.findings
    else:
        findings += _unchecked(rows, target)
    # the summary line speaks of the rows: the worst row's error and its tolerance
    worst_row = max(rows, key=lambda r: r.error, default=None)
    summary.worst_rel_error = worst_row.error if worst_row else max(p.rel_error for p in probes)
    summary.worst_rel_bound = worst_row.tolerance if worst_row else max(p.rel_bound for p in probes)
    summary.records = [_probe_record(p, v) for p, v in zip(probes, directions)]
    summary.step = prober.step
    verdict = worst([f.verdict for f in findings] + ([Verdict.FAIL] if failing else []))
    evaluations = target.evaluations - run.start
    return GradientResult(CheckName.GRADIENT, verdict, findings, rows, evaluations=evaluations, summary=summary)


def _summary(target, directions, prober: Prober) -> ProbeSummary:
    entries = sum(isinstance(v, EntryDirection) for v in directions)
    return ProbeSummary(
        len(directions) - entries,
        entries,
        str(target.numeric_dtype),
        str(target.model_dtype),
        measured_eps=prober.measured_eps,
    )


def _off_the_kinks(run: Run, probes: list[Probe]):
    """Probes on a kink: the check again at a point moved off it; ``(prober, directions, probes, finding)``."""
    target, blocks = run.target, run.target.blocks
    kinked = [p for p in probes if p.status == Status.KINK]
    moved = _jitter(target.theta, blocks, run.rng, tolerances().kink_jitter)
    _, g_moved = target.gradient(moved)
    # a fresh prober measures the noise again at its own short step: the old step may straddle the kink,
    # and a low-precision loss with kinks this near gets no long steps (they would straddle more)
    prober = Prober(target, moved, g_moved, run.analytic_noise, run.clock, long_steps=not run.prober.extended)
    directions, again = _probe_all(prober, target, g_moved, blocks, run.rng, run.probes, moved)
    still = sum(p.status == Status.KINK for p in again)
    if still:  # kinks even off the point: the smooth error model is not to be trusted to its margin
        again = _unresolve(again, lambda p: p.mismatch < tolerances().kink_dense_margin * p.bound)
    d = kinked[0].derivative
    finding = Finding(
        "kink",
        Verdict.WARN,
        f"the loss has a kink at the given parameters: along {len(kinked)} of {len(probes)} probes the slope jumps "
        f"(Δ⁴ shrank linearly with the step, {abs(d.fourth_difference):.2e} at h={d.step:.1e}); "
        + (
            f"checked at a point moved by {tolerances().kink_jitter:g} of each block's size instead"
            if not still
            else f"{still} probes still sit on kinks after moving off: those directions are unchecked"
        ),
        numbers={"probes_on_kink": len(kinked), "after_moving": still},
        hint="a ReLU (or max, abs, clip) pre-activation exactly at its break point, e.g. padded steps with zero state and zero bias",
    )
    return prober, directions, again, finding


def _unresolved(probes: list[Probe]) -> list[Finding]:
    n = sum(p.status == Status.UNRESOLVED for p in probes)
    if not n:
        return []
    return [
        Finding(
            "unresolved",
            Verdict.WARN,
            f"{n} of {len(probes)} probes could not be resolved numerically (the finite differences did not settle as the step "
            "shrank, agreed only within more than 10%, or, in low precision, disagreed by less than "
            f"{tolerances().kink_dense_margin:g}x the bound where no block alone reproduces it); those directions are unchecked",
        )
    ]


#: the detection power is a median over entries; above this many it is taken over a random sample
DETECTION_SAMPLE = 100_000


def _unchecked(rows: list[TensorRow], target) -> list[Finding]:
    """A pass means what it says: a tensor the probes cannot resolve is ``unchecked``, and the case a warn."""
    weak = [
        r
        for r in rows
        if r.verdict == Verdict.PASS and r.detection is not None and r.detection > tolerances().unchecked_power
    ]
    for r in weak:
        r.verdict = Verdict.UNCHECKED
    if not weak:
        return []
    where = "; ".join(f"{r.name} catches only >= {r.detection:.2g}" for r in weak)
    how = "a float64 path for the numerical side, more probes (--probes 16) or --full"
    if target.numeric_dtype == np.float64:
        how = "more probes (--probes 16) or --full"
    return [
        Finding(
            "unchecked",
            Verdict.WARN,
            f"not checked: {where} (a single entry off by that factor would pass unseen); get the power from {how}",
            numbers={"tensors": {r.name: r.detection for r in weak}},
        )
    ]


def _rows(prober: Prober, blocks: list[Block], probes: list[Probe], directions) -> list[TensorRow]:
    """The table's rows, built once from the probes: each tensor's own error and detection power; every verdict
    a pass until localization (or the unchecked rule) judges it."""
    rows = []
    err = max((p.rel_error for p in probes), default=0.0)
    tol = max((p.rel_bound for p in probes), default=0.0)
    pick = np.random.default_rng(0)
    for name, g in prober.grad.items():
        # the smallest relative error of a typical single entry that some probe would catch
        flat, magnitude = g.ravel(), np.abs(g.ravel())
        # the sample's order does not matter (a median, entry by entry): the same set unshuffled costs a third less
        sample = flat.size > DETECTION_SAMPLE
        idx = pick.choice(flat.size, DETECTION_SAMPLE, replace=False, shuffle=False) if sample else slice(None)
        gs = magnitude[idx]
        reach, term = np.zeros(gs.size), np.empty(gs.size)
        for p, v in zip(probes, directions):
            if name in v and p.bound > 0:  # reach = max over probes of |g_i v_i| / bound, in place
                np.abs(v[name].ravel()[idx], out=term)
                term *= gs
                term /= p.bound
                np.maximum(reach, term, out=reach)
        nz = reach[reach > 0]
        detection = float(1.0 / np.median(nz)) if nz.size else None
        own = _own_numbers(name, magnitude, probes, directions)
        row_err, row_tol = own if own is not None else (err, tol)
        rows.append(
            TensorRow(name, tuple(g.shape), float(np.sqrt(flat @ flat)), row_err, row_tol, Verdict.PASS, "", detection)
        )
    return rows


def _own_numbers(name: str, magnitude: np.ndarray, probes: list[Probe], directions) -> tuple[float, float] | None:
    """A passing tensor's own ``(rel err, tolerance)``: from the probe that resolves it best, relative to its share.

    A probe's disagreement, were it all this tensor's, is that fraction of the tensor's share
    Σ_(i in tensor) |g_i v_i| of the probe; its bound likewise.  The probe with the smallest
    such bound is the one that sees this tensor best.  None for a tensor no probe reaches
    (a gradient of zero): the case's worst then stands for it.  ``magnitude``: |g|, flat.
    """
    best = None
    for p, v in zip(probes, directions):
        if name not in v:
            continue
        share = float(magnitude @ np.abs(v[name].ravel()))
        if share <= 0:
            continue
        pair = (p.mismatch / share, p.bound / share)
        if best is None or pair[1] < best[1]:
            best = pair
    return best
