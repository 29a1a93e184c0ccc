"""Where, and how wrong: narrow a wrong gradient down to its tensor, gate block, row and entry, and
estimate each wrong tensor's (and gate block's) own normwise error.

Group testing with random probes: probe each block alone, then halve the failing
block's entries again and again, keeping the half whose disagreement is larger.  An
entry is found in ``2·log2(n)`` probes, never one probe per parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cases.base import Block
from ..directions import block_indices, block_scales, probe_direction, signs, subset_direction
from ..findings import Finding, TensorRow, Verdict
from ..probe import Probe, Prober, Status
from ..tolerances import current as tolerances
from .hints import find_hints


@dataclass
class Place:
    """The narrowest place found for one wrong block."""

    block: Block
    index: tuple[int, ...]  # in the whole tensor
    analytic: float
    numeric: float
    bound: float
    spread: bool  # errors in both halves at the first split: more than one wrong entry
    evaluations: int

    @property
    def rel_error(self) -> float:
        return abs(self.analytic - self.numeric) / max(abs(self.numeric), abs(self.analytic), np.finfo(float).tiny)

    @property
    def gate_index(self) -> tuple[int, ...]:
        """The index within the gate block (the whole tensor's for a tensor without gates)."""
        idx = list(self.index)
        if self.block.label and idx and self.block.start is not None:
            idx[0] -= self.block.start
        return tuple(idx)

    def where(self) -> str:
        """``weight_hh_l0[f-gate][3, 7]``: the gate named, and the index within the gate block."""
        idx = self.gate_index
        return f"{self.block.title}[{', '.join(map(str, idx))}]" if idx else self.block.title


def attribute(prober: Prober, blocks: list[Block], rng: np.random.Generator) -> dict[Block, Probe]:
    """Probe every block on its own.

    In low precision a block that passes along random signs is probed once more along its
    gradient's own signs, as the probes that found the failure were: a block wrong by a
    common factor shows there by the whole factor.
    """
    out = {}
    for b in blocks:
        p = prober.run(probe_direction(prober.theta, prober.grad, [b], rng, weighted=False))
        if p.status != Status.FAIL and prober.extended:
            q = prober.run(probe_direction(prober.theta, prober.grad, [b], rng, weighted=False, aligned=True))
            p = q if q.status == Status.FAIL else p
        out[b] = p
    return out


def _badness(p: Probe) -> float:
    return p.mismatch / max(p.bound, np.finfo(float).tiny)


def narrow(prober: Prober, block: Block, rng: np.random.Generator) -> Place:
    """Halve the block's entries until one is left, following the worse half."""
    theta = prober.theta
    scale = block_scales(theta, [block])[block]
    candidates = block_indices(theta, block)
    evals = 0
    spread = False
    first = True
    while len(candidates) > 1:
        halves = np.array_split(candidates, 2)
        probes = [prober.run(subset_direction(theta, block, h, scale, rng)) for h in halves]
        evals += sum(p.evaluations for p in probes)
        failing = [p.status == Status.FAIL for p in probes]
        if first and all(failing):
            spread = True
        first = False
        candidates = halves[int(np.argmax([_badness(p) for p in probes]))]
    j = int(candidates[0])
    v = np.zeros(theta[block.tensor].size)
    v[j] = scale
    final = prober.run({block.tensor: v.reshape(theta[block.tensor].shape)})
    evals += final.evaluations
    index = tuple(int(i) for i in np.unravel_index(j, theta[block.tensor].shape))
    return Place(
        block,
        index,
        analytic=final.analytic / scale,
        numeric=final.numeric / scale,
        bound=final.bound / scale,
        spread=spread,
        evaluations=evals,
    )


def localize(prober: Prober, blocks: list[Block], rows: list[TensorRow], rng, context: dict) -> list[Finding]:
    """Probe every block alone, narrow each failing block to an entry, and look for a verified hint.

    ``rows`` are brought up to date: each tensor's verdict, its own error, and its worst entry.
    """
    per_block = attribute(prober, blocks, rng)
    by_tensor: dict[str, list[tuple[Block, Probe]]] = {}
    for b, p in per_block.items():
        by_tensor.setdefault(b.tensor, []).append((b, p))
    findings = []
    for row in rows:
        findings += _localize_tensor(prober, blocks, row, by_tensor.get(row.name, []), rng)
    hints = find_hints(prober, blocks, per_block, rng, context)
    for h in hints:
        for f in findings:
            if f.hint is None and _hint_fits(h, f):
                f.hint = h.message
    return findings + hints


def _hint_fits(hint: Finding, finding: Finding) -> bool:
    """A hint speaks of a finding's tensor (or of every tensor), and of its gate where it names one."""
    gate = (hint.location or {}).get("gate")
    same_tensor = hint.tensor is None or hint.tensor == finding.tensor
    return same_tensor and (not gate or (finding.location or {}).get("gate") == gate)


def _localize_tensor(prober: Prober, blocks: list[Block], row: TensorRow, results, rng) -> list[Finding]:
    """One tensor's blocks probed alone: its row's verdict and error, and a finding per wrong block."""
    row.error = max((p.rel_error for _, p in results), default=0.0)
    row.tolerance = max((p.rel_bound for _, p in results), default=0.0)
    bad = [(b, p) for b, p in results if p.status == Status.FAIL]
    row.verdict = Verdict.FAIL if bad else Verdict.PASS
    if bad:  # the column then says how wrong the tensor is, as ‖g − g_true‖ / ‖g_true‖
        row.error, row.tolerance = tensor_error(prober, blocks, row.name, rng)
    every_gate = len(bad) > 1 and len(bad) == len(results)
    also = ""
    if every_gate:  # one line, narrowed in the gate whose own error is largest
        own = block_errors(prober, [b for b, _ in bad], rng)
        bad = [max(bad, key=lambda bp: own[bp[0]])]
        also = f"; all {len(results)} gate blocks of {row.name} disagree, {_gate_ranking(own)}"
    spent = sum(q.evaluations for _, q in results)
    return [_mismatch(prober, row, b, p, spent, also, rng) for b, p in bad]


def _mismatch(prober: Prober, row: TensorRow, b: Block, p: Probe, spent: int, also: str, rng) -> Finding:
    """The wrong block narrowed to an entry, as a finding; the row's worst entry is that entry."""
    place = narrow(prober, b, rng)
    row.worst = place.where()
    total = spent + place.evaluations
    spread = " — the error is spread over the block (both halves disagree)" if place.spread else ""
    return Finding(
        "mismatch",
        Verdict.FAIL,
        f"{place.where()}: analytic {place.analytic:.6g}, numeric {place.numeric:.6g}, "
        f"rel err {place.rel_error:.2g}, bound {place.bound:.1g}{spread}{also} "
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
