"""Where: narrow a wrong gradient down to its tensor, gate block, row and entry.

Group testing with random probes: probe each block alone, then halve the failing
block's entries again and again, keeping the half whose disagreement is larger.  An
entry is found in ``2·log2(n)`` probes, never one probe per parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cases.base import Block
from ..directions import block_indices, block_scales, probe_direction, subset_direction
from ..probe import Probe, Prober, Status


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
