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

import numpy as np

from ..cases.base import Block
from ..directions import EntryDirection, block_scales, probe_direction, signs, spanning_directions
from ..findings import (
    CheckName,
    CheckResult,
    EntrywiseSummary,
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
from .hints import find_hints
from .localize import attribute, narrow
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


def _confirm(prober: Prober, blocks, probes: list[Probe], directions, rng, target):
    """Localize the failing probes: ``(rows, findings)``, or None when nothing fails.

    In low precision a probe that fails by less than ``Tolerances.kink_dense_margin`` times its bound,
    where no block alone reproduces it, is not proof (a kink or a rounding burst inside the
    long stencil does that): it becomes unresolved, and the check says so instead of failing.
    """
    failing = [p for p in probes if p.status == Status.FAIL]
    if not failing:
        return None
    rows = _rows(prober, blocks, probes, directions)
    findings = _localize(prober, blocks, rows, rng, target.context or {})
    marginal = all(p.mismatch < tolerances().kink_dense_margin * p.bound for p in failing)
    if prober.extended and marginal and not any(f.kind == Kind.MISMATCH for f in findings):
        for p in failing:
            p.status = Status.UNRESOLVED
        return None
    if not any(f.kind == Kind.MISMATCH for f in findings):
        findings = _unlocalized(probes, directions, rows) + findings
    return rows, findings


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


def check_gradient(target, grad, options, rng, clock, known=None) -> CheckResult:
    """Compare ``grad`` (the user's gradient at the check point) with numerical derivatives.

    ``known``: ``(loss, seconds)`` of the sanity checks' gradient call, where its loss is the
    numerical side's own value at θ (``target.numeric_is_model``): the probes then start
    from it, and count in the call's seconds, an over-estimate of one loss evaluation's
    that errs toward fewer probes when a budget is tight.
    """
    clock.stage = "the gradient probes"
    analytic_noise = None
    start = target.evaluations
    if target.model_dtype != np.float64:
        _, g_j = target.gradient(_ulp_jitter(target.theta, target.model_eps, rng))
        analytic_noise = {n: np.abs(grad[n] - g_j[n]) for n in grad}
    t0 = time.perf_counter()
    if known is not None and target.numeric_is_model:
        prober = Prober(target, target.theta, grad, analytic_noise, clock, loss0=known[0])
        per_eval = known[1]
    else:
        prober = Prober(target, target.theta, grad, analytic_noise, clock)
        per_eval = time.perf_counter() - t0  # one loss evaluation: the unit the plan counts in
    blocks = target.blocks
    unrepeatable = _unrepeatable(prober, target)
    if unrepeatable is not None:
        return GradientResult(
            CheckName.GRADIENT, Verdict.ERROR, [unrepeatable], [], evaluations=target.evaluations - start
        )
    if options.full:
        return _full(prober, blocks, target, start, clock)
    k = plan_probes(options.probes, per_eval, clock.remaining)
    directions, probes = _probe_all(prober, target, grad, blocks, rng, k)
    findings: list[Finding] = []
    entries = sum(isinstance(v, EntryDirection) for v in directions)
    summary = ProbeSummary(
        len(directions) - entries,
        entries,
        str(target.numeric_dtype),
        str(target.model_dtype),
        measured_eps=prober.measured_eps,
    )

    if any(p.status == Status.KINK for p in probes):
        kinked = [p for p in probes if p.status == Status.KINK]
        moved = _jitter(target.theta, blocks, rng, tolerances().kink_jitter)
        _, g_moved = target.gradient(moved)
        first_count = len(probes)
        # a fresh prober measures the noise again at its own short step: the old step may straddle the kink,
        # and a low-precision loss with kinks this near gets no long steps (they would straddle more)
        prober = Prober(target, moved, g_moved, analytic_noise, clock, long_steps=not prober.extended)
        directions, probes = _probe_all(prober, target, g_moved, blocks, rng, k, moved)
        still = sum(p.status == Status.KINK for p in probes)
        if still:  # kinks even off the point: the smooth error model is not to be trusted to its margin
            for p in probes:
                if p.status == Status.FAIL and p.mismatch < tolerances().kink_dense_margin * p.bound:
                    p.status = Status.UNRESOLVED
        d = kinked[0].derivative
        findings.append(
            Finding(
                "kink",
                Verdict.WARN,
                f"the loss has a kink at the given parameters: along {len(kinked)} of {first_count} probes the slope jumps "
                f"(Δ⁴ shrank linearly with the step, {abs(d.fourth_difference):.2e} at h={d.step:.1e}); "
                + (
                    f"checked at a point moved by {tolerances().kink_jitter:g} of each block's size instead"
                    if not still
                    else f"{still} probes still sit on kinks after moving off: those directions are unchecked"
                ),
                numbers={"probes_on_kink": len(kinked), "after_moving": still},
                hint="a ReLU (or max, abs, clip) pre-activation exactly at its break point, e.g. padded steps with zero state and zero bias",
            )
        )
    localized = _confirm(prober, blocks, probes, directions, rng, target)
    if any(p.status == Status.UNRESOLVED for p in probes):
        n = sum(p.status == Status.UNRESOLVED for p in probes)
        findings.append(
            Finding(
                "unresolved",
                Verdict.WARN,
                f"{n} of {len(probes)} probes could not be resolved numerically (the finite differences did not settle as the step "
                "shrank, agreed only within more than 10%, or, in low precision, disagreed by less than "
                f"{tolerances().kink_dense_margin:g}x the bound where no block alone reproduces it); those directions are unchecked",
            )
        )
    failing = [p for p in probes if p.status == Status.FAIL]
    if failing:
        rows, more = localized
        findings += more
    else:
        rows = _rows(prober, blocks, probes, directions)
        findings += _unchecked(rows, target)
    evals = target.evaluations - start
    # the summary line speaks of the rows: the worst row's error and its tolerance
    worst_row = max(rows, key=lambda r: r.error, default=None)
    summary.worst_rel_error = worst_row.error if worst_row else max(p.rel_error for p in probes)
    summary.worst_rel_bound = worst_row.tolerance if worst_row else max(p.rel_bound for p in probes)
    summary.records = [_probe_record(p, v) for p, v in zip(probes, directions)]
    summary.step = prober.step
    verdict = worst([f.verdict for f in findings] + ([Verdict.FAIL] if failing else []))
    return GradientResult(CheckName.GRADIENT, verdict, findings, rows, evaluations=evals, summary=summary)


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
    rows = []
    err = max((p.rel_error for p in probes), default=0.0)
    tol = max((p.rel_bound for p in probes), default=0.0)
    pick = np.random.default_rng(0)
    for name, g in prober.grad.items():
        # the smallest relative error of a typical single entry that some probe would catch
        flat = g.ravel()
        idx = pick.choice(flat.size, DETECTION_SAMPLE, replace=False) if flat.size > DETECTION_SAMPLE else slice(None)
        gs = np.abs(flat[idx])
        reach = np.zeros(gs.size)
        for p, v in zip(probes, directions):
            if name in v and p.bound > 0:
                reach = np.maximum(reach, gs * np.abs(v[name].ravel()[idx]) / p.bound)
        nz = reach[reach > 0]
        detection = float(1.0 / np.median(nz)) if nz.size else None
        verdict = Verdict.FAIL if any(p.status == Status.FAIL for p in probes) else Verdict.PASS
        own = _own_numbers(name, g, probes, directions)
        row_err, row_tol = own if own is not None else (err, tol)
        rows.append(
            TensorRow(name, tuple(g.shape), float(np.sqrt(flat @ flat)), row_err, row_tol, verdict, "", detection)
        )
    return rows


def _own_numbers(name: str, g: np.ndarray, probes: list[Probe], directions) -> tuple[float, float] | None:
    """A passing tensor's own ``(rel err, tolerance)``: from the probe that resolves it best, relative to its share.

    A probe's disagreement, were it all this tensor's, is that fraction of the tensor's share
    Σ_(i in tensor) |g_i v_i| of the probe; its bound likewise.  The probe with the smallest
    such bound is the one that sees this tensor best.  None for a tensor no probe reaches
    (a gradient of zero): the case's worst then stands for it.
    """
    best = None
    for p, v in zip(probes, directions):
        if name not in v:
            continue
        share = float(np.abs(g.ravel()) @ np.abs(v[name].ravel()))
        if share <= 0:
            continue
        pair = (p.mismatch / share, p.bound / share)
        if best is None or pair[1] < best[1]:
            best = pair
    return best


#: probes along random signs over one failing tensor, for its own normwise relative error
ERROR_PROBES = 16


def block_errors(prober: Prober, blocks: list[Block], rng, probes: int = 8) -> dict[Block, float]:
    """Each gate block's own ``‖g − g_true‖ / ‖g_true‖``, from random-sign probes over that block alone.

    Probed one at a time, every block of a tensor whose recurrence carries a wrong gate's
    error back fails; their own errors say which one is wrong (f: 107%, the others 3%).
    """
    return {b: _normwise_error(prober, b.tensor, b.rows, rng, probes)[0] for b in blocks}


def tensor_error(prober: Prober, blocks: list[Block], name: str, rng) -> tuple[float, float]:
    """``‖g − g_true‖ / ‖g_true‖`` for one tensor, estimated from probes over that tensor alone, and its bound.

    For a direction v = s·r of independent random signs r, E[(e·r)²] = ‖e‖²: the mismatches
    a − n of a few such probes estimate the error's norm (exactly, for an error in one
    entry).  ‖g_true‖² = ‖g‖² − 2 g·e + ‖e‖², with E[(g·r)(e·r)] = g·e, is estimated as
    ‖g‖² + mean(n² − a²)/s²: the analytic gradient g is known exactly, so only the
    difference is left to chance, and it is small where the error is.  Where the error is
    as large as g itself that difference is not small, and mean(n²)/s², which does not
    depend on g, estimates ‖g_true‖² instead.
    """
    return _normwise_error(prober, name, Ellipsis, rng, ERROR_PROBES)


def _normwise_error(prober: Prober, name: str, rows, rng, count: int) -> tuple[float, float]:
    """:func:`tensor_error` over the rows ``rows`` of one tensor (``...``: all of it)."""
    block = Block(name, "") if rows is Ellipsis else Block(name, "part", rows.start, rows.stop)
    scale = block_scales(prober.theta, [block])[block]
    g = prober.grad[name][rows]
    shape = prober.theta[name].shape
    h = prober.step
    if g.size <= count:  # no more central differences than the estimate would take: each entry, exactly
        return _entrywise_error(prober, name, rows, scale)
    mismatch, shift, bound, numeric_sq = [], [], [], []
    for _ in range(count):
        # one central difference at the calibrated step: this estimate needs ~10%, not the fail's proof
        v = {name: np.zeros(shape)}
        v[name][rows] = signs(rng, np.shape(g), scale)
        a, a_err, _ = prober.analytic(v)
        phi = prober.phi(v)
        n = (phi(h) - phi(-h)) / (2 * h)
        numeric_sq.append(n**2)
        mismatch.append((a - n) ** 2)
        shift.append(n**2 - a**2)
        bound.append((tolerances().safety * prober.noise0 / h + a_err) ** 2)
    error_sq = float(np.mean(mismatch)) / scale**2
    g_sq = float(np.vdot(g, g))
    if error_sq <= 0.25 * g_sq:
        truth_sq = g_sq + float(np.mean(shift)) / scale**2
    else:
        truth_sq = float(np.mean(numeric_sq)) / scale**2
    if truth_sq <= float(np.mean(bound)) / scale**2:  # zero as far as the probes resolve: the loss's own scale
        truth_sq = (prober.scale_floor / scale) ** 2
    truth_sq = max(truth_sq, np.finfo(float).tiny)
    return float(np.sqrt(error_sq / truth_sq)), float(np.sqrt(np.mean(bound) / scale**2 / truth_sq))


def _entrywise_error(prober: Prober, name: str, rows, scale: float) -> tuple[float, float]:
    """``‖g − g_true‖ / ‖g_true‖`` of a small block from one central difference per entry."""
    shape = prober.theta[name].shape
    idx = np.arange(int(np.prod(shape))).reshape(shape)[rows].ravel() if shape else np.arange(1)
    h = prober.step
    err_sq = truth_sq = bound_sq = 0.0
    for j in idx:
        v = np.zeros(int(np.prod(shape)) if shape else 1)
        v[j] = scale
        d = {name: v.reshape(shape)}
        a, a_err, _ = prober.analytic(d)
        phi = prober.phi(d)
        n = (phi(h) - phi(-h)) / (2 * h)
        err_sq += (a - n) ** 2
        truth_sq += n**2
        bound_sq += (tolerances().safety * prober.noise0 / h + a_err) ** 2
    if truth_sq <= bound_sq:  # a true gradient of zero, as far as the probes resolve: relative to the loss's scale
        truth_sq = prober.scale_floor**2
    truth_sq = max(truth_sq, np.finfo(float).tiny)
    return float(np.sqrt(err_sq / truth_sq)), float(np.sqrt(bound_sq / truth_sq))


def _localize(prober: Prober, blocks: list[Block], rows: list[TensorRow], rng, context: dict) -> list[Finding]:
    """Probe every block alone, narrow each failing block to an entry, and look for a verified hint."""
    per_block = attribute(prober, blocks, rng)
    by_tensor: dict[str, list[tuple[Block, Probe]]] = {}
    for b, p in per_block.items():
        by_tensor.setdefault(b.tensor, []).append((b, p))
    findings = []
    for row in rows:
        results = by_tensor.get(row.name, [])
        row.error = max((p.rel_error for _, p in results), default=0.0)
        row.tolerance = max((p.rel_bound for _, p in results), default=0.0)
        bad = [(b, p) for b, p in results if p.status == Status.FAIL]
        row.verdict = Verdict.FAIL if bad else Verdict.PASS
        if bad:  # the column then says how wrong the tensor is, as ‖g − g_true‖ / ‖g_true‖
            row.error, row.tolerance = tensor_error(prober, blocks, row.name, rng)
        every_gate = len(bad) > 1 and len(bad) == len(results)
        ranking = ""
        if every_gate:  # one line, narrowed in the gate whose own error is largest
            own = block_errors(prober, [b for b, _ in bad], rng)
            bad = [max(bad, key=lambda bp: own[bp[0]])]
            ranking = _gate_ranking(own)
        for b, p in bad:
            place = narrow(prober, b, rng)
            row.worst = place.where()
            total = sum(q.evaluations for _, q in results) + place.evaluations
            spread = " — the error is spread over the block (both halves disagree)" if place.spread else ""
            if every_gate:
                spread += f"; all {len(results)} gate blocks of {b.tensor} disagree, {ranking}"
            findings.append(
                Finding(
                    "mismatch",
                    Verdict.FAIL,
                    f"{place.where()}: analytic {place.analytic:.6g}, numeric {place.numeric:.6g}, "
                    f"rel err {place.rel_error:.2g}, bound {place.bound:.1g}{spread} "
                    f"({total} evaluations to localize)",
                    tensor=b.tensor,
                    location={
                        "gate": b.label or None,
                        "index": list(place.index),  # in the whole tensor
                        "gate_index": list(place.gate_index),  # within the gate block, as the entry is printed
                        "entry": place.where(),
                        "block_rel_error": p.rel_error,
                    },
                    numbers={
                        "analytic": place.analytic,
                        "numeric": place.numeric,
                        "rel_error": place.rel_error,
                        "bound": place.bound,
                        "block_rel_error": p.rel_error,
                        "localization_evaluations": total,
                    },
                )
            )
    hints = find_hints(prober, blocks, per_block, rng, context)
    for h in hints:
        for f in findings:
            if (
                f.hint is None
                and (h.tensor is None or h.tensor == f.tensor)
                and (not (h.location or {}).get("gate") or (f.location or {}).get("gate") == h.location["gate"])
            ):
                f.hint = h.message
    return findings + hints


#: a gate whose own error is this many times every other gate's is the one named wrong
GATE_DOMINANCE = 5.0


def _gate_ranking(own: dict[Block, float]) -> str:
    """The gate blocks ranked by their own error, and what the ranking says (measured, not guessed)."""
    ranked = sorted(own.items(), key=lambda kv: -kv[1])
    listed = ", ".join(f"{b.label} {_percent(e)}" for b, e in ranked)
    top, second = ranked[0][1], ranked[1][1]
    if second > 0 and top >= GATE_DOMINANCE * second or second == 0 and top > 0:
        return (
            f"ranked by their own error: {listed}: the {ranked[0][0].label} gate's gradient is wrong, "
            f"{top / max(second, 1e-300):.3g}× any other's; the other gates' smaller errors are consistent with "
            "what the recurrence carries back from it"
        )
    return (
        f"no one gate accounting for it ({listed}, each its own ‖g − g_true‖/‖g_true‖): the error is consistent "
        "with one upstream of the gates, in what reaches all of them (dL/dh or dL/dc carried back from later steps)"
    )


def _percent(e: float) -> str:
    return f"{100 * e:.0f}%" if e >= 0.1 else f"{100 * e:.2g}%"


def _noise_floor(noise: dict[str, np.ndarray], blocks: list[Block]) -> dict[str, np.ndarray]:
    """Each entry's measured rounding |g − g'|, raised to its block's root mean square.

    One entry's difference is a single draw of its rounding, and may come out near zero by
    chance when the error itself is not: alone it would be a bound that a correct low
    precision gradient exceeds.  Entries of one block accumulate alike terms, so the
    block's RMS is the level any of its entries' rounding is expected at.  A probe over
    many entries sums those draws, which needs no floor.
    """
    floored = {n: np.array(a, dtype=np.float64, copy=True) for n, a in noise.items()}
    for b in blocks:
        if b.tensor in floored:
            part = floored[b.tensor][b.rows]
            if part.size:
                np.maximum(part, np.sqrt(np.mean(np.square(part))), out=part)
    return floored


def _full(prober: Prober, blocks: list[Block], target, start: int, clock) -> CheckResult:
    """Every entry on its own: one central difference each (two evaluations), screened against the
    error model measured on the first entry; an entry the screen does not pass gets a full probe."""
    clock.stage = "the element-wise check"
    scales = block_scales(prober.theta, blocks)
    if prober.analytic_noise is not None:
        prober.analytic_noise = _noise_floor(prober.analytic_noise, blocks)
    rows, findings = [], []
    worst_rel = 0.0
    calibrated = False
    truncation_per_scale = None
    for name, g in prober.grad.items():
        errs = np.zeros(g.size)
        bounds = np.zeros(g.size)
        status = np.empty(g.size, dtype=object)
        tensor_blocks = [b for b in blocks if b.tensor == name]
        flat_scale = np.zeros(g.shape)
        for b in tensor_blocks:
            flat_scale[b.rows] = scales[b]
        flat_scale = flat_scale.ravel()
        for j in range(g.size):
            v = np.zeros(g.size)
            v[j] = flat_scale[j]
            direction = {name: v.reshape(g.shape)}
            if not calibrated:  # the first entry in full: the noise and truncation the screens need
                p = prober.run_many([direction])[0]
                calibrated = True
                if p.derivative is not None and p.scale:
                    truncation_per_scale = p.derivative.truncation / p.scale
            else:
                phi = prober.phi(direction)
                p = prober.screen(direction, truncation_per_scale, phi) or prober.run(direction, phi=phi)
            errs[j] = p.mismatch / flat_scale[j]
            bounds[j] = p.bound / flat_scale[j]
            status[j] = p.status
        fails = np.flatnonzero(status == Status.FAIL)
        kinks = np.flatnonzero(status == Status.KINK)
        # relative to |g_j|, or to the bound where g_j is smaller: an entry near 0 has no relative error of its own
        denom = np.maximum(np.abs(g.ravel()), np.maximum(bounds, np.finfo(float).tiny))
        rel = errs / denom
        nonzero = np.abs(g.ravel()) > 0
        # what one entry catches: its bound relative to its own size (the median over the tensor's entries)
        catches = float(np.median(bounds[nonzero] / np.abs(g.ravel()[nonzero]))) if nonzero.any() else None
        j_worst = int(fails[np.argmax(rel[fails])]) if fails.size else int(np.argmax(rel))
        idx = tuple(int(i) for i in np.unravel_index(j_worst, g.shape))
        worst_rel = max(worst_rel, float(rel[j_worst]) if g.size else 0.0)
        verdict = Verdict.FAIL if fails.size else (Verdict.WARN if kinks.size else Verdict.PASS)
        rows.append(
            TensorRow(
                name,
                tuple(g.shape),
                float(np.linalg.norm(g)),
                float(rel.max(initial=0)),
                float((bounds / denom).max(initial=0)),
                verdict,
                f"{name}[{', '.join(map(str, idx))}]" if g.ndim else name,
                catches,
            )
        )
        if fails.size:
            findings.append(
                Finding(
                    "mismatch",
                    Verdict.FAIL,
                    f"{name}: {fails.size} of {g.size} entries disagree; worst {name}[{', '.join(map(str, idx))}] rel err {rel[j_worst]:.2g}",
                    tensor=name,
                    location={"index": list(idx)},
                    numbers={
                        "entries_wrong": int(fails.size),
                        "entries": int(g.size),
                        "rel_error": float(rel[j_worst]),
                    },
                )
            )
        if kinks.size:
            findings.append(
                Finding(
                    "kink",
                    Verdict.WARN,
                    f"{name}: {kinks.size} entries sit on a kink and were not checked",
                    tensor=name,
                )
            )
    evals = target.evaluations - start
    verdict = worst(r.verdict for r in rows)
    return GradientResult(
        CheckName.GRADIENT,
        verdict,
        findings,
        rows,
        evaluations=evals,
        summary=EntrywiseSummary(worst_rel),
    )
