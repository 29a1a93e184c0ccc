"""Random probe directions over the parameters, block by block.

Every gate block of every tensor gets its own random signs, scaled by the block's
parameter size (so a step of ``h`` is a relative change of ``h``) and weighted so that
each block adds about as much to ``g·v`` as any other: a wrong gradient in a small
bias then moves the probe as much as one in a large weight would.
"""

from __future__ import annotations

import numpy as np

from .cases.base import Block

#: blocks whose share of the gradient is below this fraction of the largest are not
#: amplified further (their perturbation would be too large to stay in the linear range)
MAX_AMPLIFICATION = 100.0


def block_scales(theta: dict[str, np.ndarray], blocks: list[Block]) -> dict[Block, float]:
    """Each block's parameter size: its RMS value, at least a tenth of the global RMS."""
    flat = np.concatenate([v.ravel() for v in theta.values()]) if theta else np.zeros(1)
    global_rms = float(np.sqrt(np.mean(flat**2))) or 1.0
    return {
        b: max(
            float(np.sqrt(np.mean(theta[b.tensor][b.rows] ** 2))) if theta[b.tensor][b.rows].size else 0.0,
            0.1 * global_rms,
        )
        for b in blocks
    }


def probe_direction(
    theta: dict[str, np.ndarray],
    grad: dict[str, np.ndarray],
    blocks: list[Block],
    rng: np.random.Generator,
    weighted: bool = True,
) -> dict[str, np.ndarray]:
    """A direction over ``blocks`` (zero elsewhere), normalized so its largest relative entry is 1."""
    scales = block_scales(theta, blocks)
    share = {b: float(np.linalg.norm(grad[b.tensor][b.rows])) * scales[b] for b in blocks}
    top = max(share.values(), default=0.0)
    weight = {}
    for b in blocks:
        weight[b] = 1.0 / max(share[b], top / MAX_AMPLIFICATION) if (weighted and top > 0) else 1.0
    wmax = max(weight.values(), default=1.0)
    v: dict[str, np.ndarray] = {}
    for b in blocks:
        arr = v.setdefault(b.tensor, np.zeros(theta[b.tensor].shape))
        sub = arr[b.rows]
        sub[...] = rng.choice((-1.0, 1.0), size=sub.shape) * scales[b] * weight[b] / wmax
    return v


def subset_direction(
    theta: dict[str, np.ndarray], block: Block, flat_indices: np.ndarray, scale: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Random signs on a subset of one tensor's entries (flat indices into the tensor)."""
    v = np.zeros(theta[block.tensor].size)
    v[flat_indices] = rng.choice((-1.0, 1.0), size=len(flat_indices)) * scale
    return {block.tensor: v.reshape(theta[block.tensor].shape)}


def block_indices(theta: dict[str, np.ndarray], block: Block) -> np.ndarray:
    """Flat indices (row-major) of a block's entries within its tensor."""
    shape = theta[block.tensor].shape
    idx = np.arange(int(np.prod(shape))).reshape(shape) if shape else np.arange(1)
    return idx[block.rows].ravel()
