"""Why: recognise the usual bugs from the numbers, and check each guess before saying it.

Every hint here is a transformation of the user's gradient — rescale it, flip a gate's
sign, transpose a block, drop the entries at a clip value — under which it should agree
with the numerical derivative if the guess is right.  A hint is printed only when fresh
probes with the transformed gradient *pass*; the message names that evidence.  A guess
that fails its check is dropped, never shown.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..cases.base import Block
from ..directions import block_indices, block_scales, probe_direction
from ..findings import Finding, Verdict
from ..probe import Probe, Prober, Status

#: two ratios agree when they differ by less than this (relative)
RATIO_AGREEMENT = 1e-3
VERIFY_PROBES = 2


def _ratio(p: Probe) -> float | None:
    if p.numeric == 0 or not np.isfinite(p.numeric):
        return None
    return p.analytic / p.numeric


def _nice(c: float) -> str:
    """``20`` / ``1/20`` / ``-1`` / ``0.37``: a constant in the words a reader would use."""
    if abs(c + 1) < 1e-6:
        return "-1"
    for value in (c, 1 / c if c else 0):
        frac = Fraction(value).limit_denominator(4096)
        if abs(float(frac) - value) <= 1e-6 * abs(value):
            if frac.denominator == 1:
                return str(frac.numerator)
            if frac.numerator == 1:
                return f"1/{frac.denominator}"
    return f"{c:.4g}"


def _verify(prober: Prober, grad: dict[str, np.ndarray], blocks: list[Block], rng) -> bool:
    """Fresh probes over ``blocks`` with the transformed gradient all pass."""
    check = Prober(prober.target, prober.theta, grad, prober.analytic_noise, prober.clock)
    check.step = prober.step
    for _ in range(VERIFY_PROBES):
        v = probe_direction(prober.theta, grad, blocks, rng)
        if check.run(v).status != Status.PASS:
            return False
    return True


def _replace(grad: dict[str, np.ndarray], name: str, rows: slice, new: np.ndarray) -> dict[str, np.ndarray]:
    out = dict(grad)
    out[name] = grad[name].copy()
    out[name][rows] = new
    return out


def find_hints(prober: Prober, blocks: list[Block], per_block: dict[Block, Probe], rng, context: dict) -> list[Finding]:
    """Verified hints for the failing blocks.  ``context`` may give ``batch`` and ``steps`` to name factors."""
    hints: list[Finding] = []
    failing = [b for b, p in per_block.items() if p.status == Status.FAIL]
    if not failing:
        return hints
    grad = prober.grad
    covered: set[Block] = set()

    # 1. the whole gradient off by one constant factor
    ratios = {b: _ratio(p) for b, p in per_block.items()}
    known = [r for r in ratios.values() if r is not None]
    if len(known) == len(per_block) and known:
        c = float(np.median(known))
        if c != 0 and all(abs(r - c) <= RATIO_AGREEMENT * abs(c) for r in known) and abs(c - 1) > RATIO_AGREEMENT:
            scaled = {n: g / c for n, g in grad.items()}
            if _verify(prober, scaled, blocks, rng):
                hints.append(_factor_hint("the whole gradient", c, context, len(blocks)))
                covered.update(blocks)

    by_tensor: dict[str, list[Block]] = {}
    for b in blocks:
        by_tensor.setdefault(b.tensor, []).append(b)
    for name, tblocks in by_tensor.items():
        bad = [b for b in tblocks if b in failing and b not in covered]
        if not bad:
            continue
        g = grad[name]
        # 2. a tensor whose gradient is all zero
        if not np.any(g):
            hints.append(
                Finding(
                    "hint",
                    Verdict.NOTE,
                    f"{name}: the analytic gradient is exactly zero in every entry while the numerical one is not "
                    f"(e.g. {per_block[bad[0]].numeric:.3g} along a probe): an accumulation typo — "
                    "'=' where '+=' belongs, or the result written to the wrong variable",
                    tensor=name,
                    numbers={"numeric": per_block[bad[0]].numeric},
                )
            )
            covered.update(tblocks)
            continue
        # 3. the tensor off by one constant factor (a flipped sign is the factor -1)
        r = [ratios[b] for b in tblocks]
        if all(x is not None for x in r):
            c = float(np.median(r))
            if c != 0 and all(abs(x - c) <= RATIO_AGREEMENT * abs(c) for x in r) and abs(c - 1) > RATIO_AGREEMENT:
                if _verify(prober, {**grad, name: g / c}, tblocks, rng):
                    hints.append(_factor_hint(name, c, context, len(tblocks)))
                    covered.update(tblocks)
                    continue
        for b in bad:
            sub = g[b.rows]
            # 4. one gate block with its sign flipped (or scaled)
            rb = ratios[b]
            if rb is not None and abs(rb - 1) > RATIO_AGREEMENT and len(tblocks) > 1:
                if _verify(prober, _replace(grad, name, b.rows, sub / rb), [b], rng):
                    what = "has its sign flipped" if abs(rb + 1) < 1e-3 else f"is {_nice(rb)}× the true one"
                    hints.append(
                        Finding(
                            "hint",
                            Verdict.NOTE,
                            f"{b.title}: this gate's gradient {what}, the other gates of {name} agree "
                            f"(verified: with {b.title} divided by {_nice(rb)}, {VERIFY_PROBES} fresh probes pass)",
                            tensor=name,
                            location={"gate": b.label},
                            numbers={"factor": rb},
                        )
                    )
                    covered.add(b)
                    continue
            # 5. the transpose of the true gradient
            if sub.ndim == 2 and sub.shape[0] == sub.shape[1] and not np.allclose(sub, sub.T):
                if _verify(prober, _replace(grad, name, b.rows, sub.T), [b], rng):
                    hints.append(
                        Finding(
                            "hint",
                            Verdict.NOTE,
                            f"{b.title}: the analytic gradient is the transpose of the true one "
                            f"(verified: transposed, {VERIFY_PROBES} fresh probes pass) — the classic missing "
                            "transpose, e.g. dh_prev = W_hh @ da instead of W_hh.T @ da",
                            tensor=name,
                            location={"gate": b.label or None},
                        )
                    )
                    covered.add(b)
                    continue
            # 6. values clipped at a constant
            clip = _clipped(prober, b, rng)
            if clip is not None:
                hints.append(clip)
                covered.add(b)
                continue
            # 7. one number broadcast into every entry
            same = _broadcast(prober, b, rng)
            if same is not None:
                hints.append(same)
                covered.add(b)
    return hints


def _broadcast(prober: Prober, b: Block, rng) -> Finding | None:
    """Every entry of the block's analytic gradient is one number, and the true entries are not."""
    g = prober.grad[b.tensor]
    idx = block_indices(prober.theta, b)
    vals = g.ravel()[idx]
    if len(idx) < 2 or not np.all(vals == vals[0]) or vals[0] == 0:
        return None
    # a direction with zero sum: the constant gradient sees nothing along it, the true one does
    scale = block_scales(prober.theta, [b])[b]
    v = np.zeros(g.size)
    signs = rng.choice((-1.0, 1.0), size=len(idx))
    signs -= signs.mean()
    v[idx] = signs * scale
    p = prober.run({b.tensor: v.reshape(g.shape)})
    if p.status == Status.FAIL and abs(p.analytic) <= 1e-12 * max(p.scale, 1e-300):
        return Finding(
            "hint",
            Verdict.NOTE,
            f"{b.title}: every entry of the analytic gradient is the same number ({vals[0]:.4g}), while the true entries "
            f"differ (verified: along a zero-sum direction the analytic slope is 0, the numerical {p.numeric:.3g}): "
            "a total summed over all entries and broadcast into each — a sum over every axis where one axis belongs",
            tensor=b.tensor,
            numbers={"value": float(vals[0]), "numeric_zero_sum_slope": p.numeric},
        )
    return None


def _factor_hint(what: str, c: float, context: dict, nblocks: int) -> Finding:
    names = []
    for label, value in (("batch size", context.get("batch")), ("sequence length", context.get("steps"))):
        if value:
            if abs(c - value) <= RATIO_AGREEMENT * value:
                names.append(f"= the {label} {value}")
            elif abs(c - 1 / value) <= RATIO_AGREEMENT / value:
                names.append(f"= 1/the {label} {value}")
    named = f" ({', '.join(names)})" if names else ""
    if abs(c + 1) < 1e-3:
        text = f"{what}: the analytic gradient has its sign flipped (factor -1 in every block)"
        cause = "a flipped sign: the update direction (-g) returned instead of the gradient, or a - for a +"
    else:
        every = f" in all {nblocks} blocks" if nblocks > 1 else ""
        text = f"{what}: the analytic gradient is {_nice(c)}× the true one{named}{every}"
        cause = (
            "the loss averages over N terms but the gradient sums them, or the reverse"
            if abs(c) > 1 or abs(1 / c) > 1
            else "a constant factor"
        )
    return Finding(
        "hint",
        Verdict.NOTE,
        f"{text} (verified: divided by {_nice(c)}, {VERIFY_PROBES} fresh probes pass); likely cause: {cause}",
        tensor=None if what == "the whole gradient" else what,
        numbers={"factor": c},
    )


def _clipped(prober: Prober, b: Block, rng) -> Finding | None:
    """Entries stuck at ±c: the rest agree, those do not."""
    g = prober.grad[b.tensor]
    idx = block_indices(prober.theta, b)
    vals = np.abs(g.ravel()[idx])
    top = float(vals.max()) if vals.size else 0.0
    at = idx[vals == top]
    if top == 0 or len(at) < 2 or len(at) == len(idx):
        return None
    rest = idx[vals < top]
    scale = block_scales(prober.theta, [b])[b]

    def probe(sub):
        v = np.zeros(g.size)
        v[sub] = rng.choice((-1.0, 1.0), size=len(sub)) * scale
        return prober.run({b.tensor: v.reshape(g.shape)})

    if probe(rest).status == Status.PASS and probe(at).status == Status.FAIL:
        return Finding(
            "hint",
            Verdict.NOTE,
            f"{b.title}: {len(at)} entries sit exactly at ±{top:.4g} and disagree, the other {len(rest)} agree "
            f"(verified by probing each group): the gradient is clipped at {top:.4g} inside the gradient "
            "function — clipping belongs to the training step, after the gradient is checked",
            tensor=b.tensor,
            location={"gate": b.label or None},
            numbers={"clip": top, "entries_clipped": int(len(at))},
        )
    return None
