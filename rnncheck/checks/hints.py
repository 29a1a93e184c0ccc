"""Why: recognise the usual bugs from the numbers, and check each guess before saying it.

Every hint here is a transformation of the user's gradient — rescale it, flip a gate's
sign, transpose a block, drop the entries at a clip value — under which it should agree
with the numerical derivative if the guess is right.  A hint is printed only when fresh
probes with the transformed gradient *pass*; the message names that evidence.  A guess
that fails its check is dropped, never shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import numpy as np

from ..cases.base import Block
from ..directions import block_indices, block_scales, probe_direction, spanning_directions, subset_direction
from ..findings import Finding, Verdict
from ..probe import Probe, Prober, Status
from ..tolerances import current as tolerances

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
    directions = [probe_direction(prober.theta, grad, blocks, rng) for _ in range(VERIFY_PROBES - 1)]
    directions.append(probe_direction(prober.theta, grad, blocks, rng, aligned=True))
    directions += spanning_directions(prober.theta, blocks)  # a small tensor: every entry, so no claim rests on luck
    return all(check.run(v).status == Status.PASS for v in directions)


def _hint(message: str, tensor: str | None = None, **where) -> Finding:
    """A verified hint: a note that moves no verdict."""
    return Finding("hint", Verdict.NOTE, message, tensor=tensor, **where)


def _block_hint(b: Block, message: str, **numbers) -> Finding:
    """A verified hint about one block, located at its gate (None for a tensor without gates)."""
    return _hint(message, tensor=b.tensor, location={"gate": b.label or None}, **numbers)


def _replace(grad: dict[str, np.ndarray], name: str, rows: slice, new: np.ndarray) -> dict[str, np.ndarray]:
    out = dict(grad)
    out[name] = grad[name].copy()
    out[name][rows] = new
    return out


@dataclass
class Scene:
    """What every hint may read: the failing check's probes, per block, and the gradient under test."""

    prober: Prober
    blocks: list[Block]
    per_block: dict[Block, Probe]
    rng: np.random.Generator
    context: dict  # may give "batch" and "steps", to name a factor

    @property
    def grad(self) -> dict[str, np.ndarray]:
        return self.prober.grad

    def ratio(self, b: Block) -> float | None:
        return _ratio(self.per_block[b])

    def common_factor(self, blocks: list[Block]) -> float | None:
        """The one factor ≠ 1 by which the analytic side is off in every one of ``blocks``, if there is one."""
        r = [self.ratio(b) for b in blocks]
        if not r or any(x is None for x in r):
            return None
        c = float(np.median(r))
        if (
            c == 0
            or any(abs(x - c) > tolerances().ratio_agreement * abs(c) for x in r)
            or abs(c - 1) <= tolerances().ratio_agreement
        ):
            return None
        return c


class Hint(Protocol):
    """One kind of bug recognised from the numbers.

    ``scope`` says what it speaks about: ``"gradient"`` (every block at once), ``"tensor"``
    (the blocks of one tensor) or ``"block"`` (one failing block).  ``applies`` makes the
    guess from what is already measured (None: not this bug); ``verify`` checks the guess
    with fresh evaluations and returns its evidence (None: the guess is dropped, never
    shown); ``message`` says it.
    """

    scope: str

    def applies(self, scene: Scene, where: list[Block]) -> Any | None: ...

    def verify(self, scene: Scene, where: list[Block], guess: Any) -> Any | None: ...

    def message(self, scene: Scene, where: list[Block], guess: Any, evidence: Any) -> Finding: ...


class CommonFactor:
    """Every block off by one constant (a flipped sign is the factor -1): a mean for a sum, or the reverse."""

    def __init__(self, scope: str):
        self.scope = scope

    def applies(self, scene, where):
        return scene.common_factor(where)

    def verify(self, scene, where, c):
        names = {b.tensor for b in where}
        fixed = {n: (g / c if n in names else g) for n, g in scene.grad.items()}
        return True if _verify(scene.prober, fixed, where, scene.rng) else None

    def message(self, scene, where, c, evidence):
        what = "the whole gradient" if self.scope == "gradient" else where[0].tensor
        return _factor_hint(what, c, scene.context, len(where))


class ZeroGradient:
    """A tensor's analytic gradient is exactly zero while the numerical one is not: an accumulation typo."""

    scope = "tensor"

    def applies(self, scene, where):
        return True if not np.any(scene.grad[where[0].tensor]) else None

    def verify(self, scene, where, guess):
        failing = [scene.per_block[b] for b in where if scene.per_block[b].status == Status.FAIL]
        numeric = next((p.numeric for p in failing if p.numeric != 0), None)
        return numeric  # the failing probe itself is the evidence: a nonzero slope where the gradient says none

    def message(self, scene, where, guess, numeric):
        name = where[0].tensor
        return _hint(
            f"{name}: the analytic gradient is exactly zero in every entry while the numerical one is not "
            f"(e.g. {numeric:.3g} along a probe): an accumulation typo — "
            "'=' where '+=' belongs, or the result written to the wrong variable",
            tensor=name,
            numbers={"numeric": numeric},
        )


class GateFactor:
    """One gate's block off by a factor (a flipped sign is -1) while the tensor's other gates agree."""

    scope = "block"

    def applies(self, scene, where):
        (b,) = where
        rb = scene.ratio(b)
        several = sum(o.tensor == b.tensor for o in scene.blocks) > 1
        return rb if rb is not None and abs(rb - 1) > tolerances().ratio_agreement and several else None

    def verify(self, scene, where, rb):
        (b,) = where
        fixed = _replace(scene.grad, b.tensor, b.rows, scene.grad[b.tensor][b.rows] / rb)
        return True if _verify(scene.prober, fixed, where, scene.rng) else None

    def message(self, scene, where, rb, evidence):
        (b,) = where
        what = "has its sign flipped" if abs(rb + 1) < 1e-3 else f"is {_nice(rb)}× the true one"
        return _hint(
            f"{b.title}: this gate's gradient {what}, the other gates of {b.tensor} agree "
            f"(verified: with {b.title} divided by {_nice(rb)}, {VERIFY_PROBES} fresh probes pass)",
            tensor=b.tensor,
            location={"gate": b.label},
            numbers={"factor": rb},
        )


class Transposed:
    """A square block holding the transpose of the true gradient: an outer product taken the wrong way round."""

    scope = "block"

    def applies(self, scene, where):
        (b,) = where
        sub = scene.grad[b.tensor][b.rows]
        return True if sub.ndim == 2 and sub.shape[0] == sub.shape[1] and not np.allclose(sub, sub.T) else None

    def verify(self, scene, where, guess):
        (b,) = where
        fixed = _replace(scene.grad, b.tensor, b.rows, scene.grad[b.tensor][b.rows].T)
        return True if _verify(scene.prober, fixed, where, scene.rng) else None

    def message(self, scene, where, guess, evidence):
        (b,) = where
        return _block_hint(
            b,
            f"{b.title}: the analytic gradient is the transpose of the true one "
            f"(verified: transposed, fresh probes pass) — the outer product taken the wrong way round, "
            "e.g. dW += np.outer(h_prev, da) instead of np.outer(da, h_prev)",
        )


class Clipped:
    """Entries stuck at ±c disagree while the rest agree: clipping inside the gradient function."""

    scope = "block"

    def applies(self, scene, where):
        (b,) = where
        idx = block_indices(scene.prober.theta, b)
        vals = np.abs(scene.grad[b.tensor].ravel()[idx])
        top = float(vals.max()) if vals.size else 0.0
        at = idx[vals == top]
        if top == 0 or len(at) < 2 or len(at) == len(idx):
            return None
        return top, at, idx[vals < top]

    def verify(self, scene, where, guess):
        (b,) = where
        _, at, rest = guess
        theta = scene.prober.theta
        scale = block_scales(theta, [b])[b]

        def probe(sub):
            return scene.prober.run(subset_direction(theta, b, sub, scale, scene.rng))

        return True if probe(rest).status == Status.PASS and probe(at).status == Status.FAIL else None

    def message(self, scene, where, guess, evidence):
        (b,) = where
        top, at, rest = guess
        return _block_hint(
            b,
            f"{b.title}: {len(at)} entries sit exactly at ±{top:.4g} and disagree, the other {len(rest)} agree "
            f"(verified by probing each group): the gradient is clipped at {top:.4g} inside the gradient "
            "function — clipping belongs to the training step, after the gradient is checked",
            numbers={"clip": top, "entries_clipped": int(len(at))},
        )


class Broadcast:
    """Every entry of a block is one number while the true entries differ: a sum over every axis, broadcast."""

    scope = "block"

    def applies(self, scene, where):
        (b,) = where
        idx = block_indices(scene.prober.theta, b)
        vals = scene.grad[b.tensor].ravel()[idx]
        if len(idx) < 2 or not np.all(vals == vals[0]) or vals[0] == 0:
            return None
        return float(vals[0]), idx

    def verify(self, scene, where, guess):
        # a direction with zero sum: the constant gradient sees nothing along it, the true one does
        (b,) = where
        _, idx = guess
        g = scene.grad[b.tensor]
        scale = block_scales(scene.prober.theta, [b])[b]
        v = np.zeros(g.size)
        signs = scene.rng.choice((-1.0, 1.0), size=len(idx))
        signs -= signs.mean()
        v[idx] = signs * scale
        p = scene.prober.run({b.tensor: v.reshape(g.shape)})
        return p.numeric if p.status == Status.FAIL and abs(p.analytic) <= 1e-12 * max(p.scale, 1e-300) else None

    def message(self, scene, where, guess, numeric):
        (b,) = where
        value, _ = guess
        return _hint(
            f"{b.title}: every entry of the analytic gradient is the same number ({value:.4g}), while the true entries "
            f"differ (verified: along a zero-sum direction the analytic slope is 0, the numerical {numeric:.3g}): "
            "a total summed over all entries and broadcast into each — a sum over every axis where one axis belongs",
            tensor=b.tensor,
            numbers={"value": value, "numeric_zero_sum_slope": numeric},
        )


#: the hints, tried in this order at each scope; the first verified one speaks for what it covers
HINTS: list[Hint] = [
    CommonFactor("gradient"),
    ZeroGradient(),
    CommonFactor("tensor"),
    GateFactor(),
    Transposed(),
    Clipped(),
    Broadcast(),
]


def _first(scene: Scene, scope: str, where: list[Block]) -> Finding | None:
    for hint in HINTS:
        if hint.scope != scope:
            continue
        guess = hint.applies(scene, where)
        if guess is None:
            continue
        evidence = hint.verify(scene, where, guess)
        if evidence is not None:
            return hint.message(scene, where, guess, evidence)
    return None


def find_hints(prober: Prober, blocks: list[Block], per_block: dict[Block, Probe], rng, context: dict) -> list[Finding]:
    """Verified hints for the failing blocks.  ``context`` may give ``batch`` and ``steps`` to name factors.

    The scopes go from the widest to the narrowest: one hint about the whole gradient
    covers every block; a hint about a tensor covers its blocks; what is left is tried
    block by block.
    """
    failing = [b for b, p in per_block.items() if p.status == Status.FAIL]
    if not failing:
        return []
    scene = Scene(prober, blocks, per_block, rng, context)
    if len(per_block) == len(blocks) and (whole := _first(scene, "gradient", blocks)) is not None:
        return [whole]
    hints: list[Finding] = []
    by_tensor: dict[str, list[Block]] = {}
    for b in blocks:
        by_tensor.setdefault(b.tensor, []).append(b)
    for tblocks in by_tensor.values():
        bad = [b for b in tblocks if b in failing]
        if not bad:
            continue
        found = _first(scene, "tensor", tblocks)
        if found is not None:
            hints.append(found)
            continue
        hints.extend(h for b in bad if (h := _first(scene, "block", [b])) is not None)
    return hints


def _factor_hint(what: str, c: float, context: dict, nblocks: int) -> Finding:
    names = []
    for label, value in (("batch size", context.get("batch")), ("sequence length", context.get("steps"))):
        if value:
            if abs(c - value) <= tolerances().ratio_agreement * value:
                names.append(f"= the {label} {value}")
            elif abs(c - 1 / value) <= tolerances().ratio_agreement / value:
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
    return _hint(
        f"{text} (verified: divided by {_nice(c)}, {VERIFY_PROBES} fresh probes pass); likely cause: {cause}",
        tensor=None if what == "the whole gradient" else what,
        numbers={"factor": c},
    )
