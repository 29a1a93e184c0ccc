"""``--full``: every entry of every tensor checked on its own, one central difference each.

The first entry is probed in full, which measures the noise and truncation the screen
needs; each later entry is screened against that error model (two evaluations) and gets a
full probe only where the screen does not pass it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cases.base import Block
from ..directions import block_scales
from ..findings import CheckName, EntrywiseSummary, Finding, GradientResult, TensorRow, Verdict, worst
from ..probe import Probe, Prober, Status


def check_entrywise(prober: Prober, target, start: int, clock) -> GradientResult:
    """Every entry on its own; a row per tensor with its worst entry, a finding per tensor with wrong entries."""
    clock.stage = "the element-wise check"
    blocks = target.blocks
    scales = block_scales(prober.theta, blocks)
    if prober.analytic_noise is not None:
        prober.analytic_noise = _noise_floor(prober.analytic_noise, blocks)
    screen = _Screen(prober)
    rows, findings = [], []
    worst_rel = 0.0
    for name, g in prober.grad.items():
        errs, bounds, status = screen.entries(name, g, _entry_scales(blocks, scales, name, g))
        row, rel_worst, more = _tensor_result(name, g, errs, bounds, status)
        rows.append(row)
        findings += more
        worst_rel = max(worst_rel, rel_worst)
    return GradientResult(
        CheckName.GRADIENT,
        worst(r.verdict for r in rows),
        findings,
        rows,
        evaluations=target.evaluations - start,
        summary=EntrywiseSummary(worst_rel),
    )


def _entry_scales(blocks: list[Block], scales: dict, name: str, g: np.ndarray) -> np.ndarray:
    """Each entry's step scale: its gate block's, flat."""
    flat_scale = np.zeros(g.shape)
    for b in blocks:
        if b.tensor == name:
            flat_scale[b.rows] = scales[b]
    return flat_scale.ravel()


@dataclass
class _Screen:
    """The first entry probed in full, every later one screened against the error model it measured."""

    prober: Prober
    calibrated: bool = False
    truncation_per_scale: float | None = None

    def probe(self, direction: dict) -> Probe:
        if not self.calibrated:  # the first entry in full: the noise and truncation the screens need
            p = self.prober.run_many([direction])[0]
            self.calibrated = True
            if p.derivative is not None and p.scale:
                self.truncation_per_scale = p.derivative.truncation / p.scale
            return p
        phi = self.prober.phi(direction)
        return self.prober.screen(direction, self.truncation_per_scale, phi) or self.prober.run(direction, phi=phi)

    def entries(self, name: str, g: np.ndarray, flat_scale: np.ndarray):
        """``(errors, bounds, statuses)`` of every entry of ``name``, each relative to its own step scale."""
        errs, bounds = np.zeros(g.size), np.zeros(g.size)
        status = np.empty(g.size, dtype=object)
        for j in range(g.size):
            v = np.zeros(g.size)
            v[j] = flat_scale[j]
            p = self.probe({name: v.reshape(g.shape)})
            errs[j], bounds[j], status[j] = p.mismatch / flat_scale[j], p.bound / flat_scale[j], p.status
        return errs, bounds, status


def _tensor_result(name: str, g: np.ndarray, errs, bounds, status) -> tuple[TensorRow, float, list[Finding]]:
    """One tensor's row, its worst relative error, and its findings (wrong entries, entries on a kink)."""
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
    where = f"{name}[{', '.join(map(str, idx))}]"
    verdict = Verdict.FAIL if fails.size else (Verdict.WARN if kinks.size else Verdict.PASS)
    row = TensorRow(
        name,
        tuple(g.shape),
        float(np.linalg.norm(g)),
        float(rel.max(initial=0)),
        float((bounds / denom).max(initial=0)),
        verdict,
        where if g.ndim else name,
        catches,
    )
    findings = []
    if fails.size:
        findings.append(
            Finding(
                "mismatch",
                Verdict.FAIL,
                f"{name}: {fails.size} of {g.size} entries disagree; worst {where} rel err {rel[j_worst]:.2g}",
                tensor=name,
                location={"index": list(idx)},
                numbers={"entries_wrong": int(fails.size), "entries": int(g.size), "rel_error": float(rel[j_worst])},
            )
        )
    if kinks.size:
        findings.append(
            Finding(
                "kink", Verdict.WARN, f"{name}: {kinks.size} entries sit on a kink and were not checked", tensor=name
            )
        )
    return row, float(rel[j_worst]) if g.size else 0.0, findings


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
