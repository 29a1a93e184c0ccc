"""Random probe directions over the parameters, block by block.

Every gate block of every tensor gets its own random signs, scaled by the block's
parameter size (so a step of ``h`` is a relative change of ``h``) and weighted so that
each block adds about as much to ``g·v`` as any other: a wrong gradient in a small
bias then moves the probe as much as one in a large weight would.
"""

from __future__ import annotations

import numpy as np

from .cases.base import Block
from .tolerances import current as tolerances


def _sumsq(a: np.ndarray) -> float:
    flat = a.ravel()
    return float(flat @ flat)


_SCALE_CACHE: dict[int, tuple[dict, float]] = {}


def block_scales(theta: dict[str, np.ndarray], blocks: list[Block]) -> dict[Block, float]:
    """Each block's parameter size: its RMS value, at least a tenth of the global RMS.

    Remembered for the last ``theta`` dict seen (the check point, then a moved point):
    with millions of parameters this is worth not doing per probe.
    """
    key = id(theta)
    cached = _SCALE_CACHE.get(key)
    if cached is None or cached[0].get("__theta__") is not theta:
        total = sum(_sumsq(v) for v in theta.values())
        count = sum(v.size for v in theta.values())
        _SCALE_CACHE.clear()
        cached = ({"__theta__": theta}, float(np.sqrt(total / max(count, 1))) or 1.0)
        _SCALE_CACHE[key] = cached
    memo, global_rms = cached
    out = {}
    for b in blocks:
        if b not in memo:
            sub = theta[b.tensor][b.rows]
            memo[b] = max(float(np.sqrt(_sumsq(sub) / sub.size)) if sub.size else 0.0, 0.1 * global_rms)
        out[b] = memo[b]
    return out


_NORM_CACHE: dict[int, dict] = {}


def _grad_norms(grad: dict[str, np.ndarray], blocks: list[Block]) -> dict[Block, float]:
    """Each block's gradient norm, remembered for the last ``grad`` dict seen: every probe
    direction of a check weights its blocks by the same gradient."""
    memo = _NORM_CACHE.get(id(grad))
    if memo is None or memo.get("__grad__") is not grad:
        _NORM_CACHE.clear()
        memo = _NORM_CACHE[id(grad)] = {"__grad__": grad}
    for b in blocks:
        if b not in memo:
            memo[b] = float(np.sqrt(_sumsq(grad[b.tensor][b.rows])))
    return {b: memo[b] for b in blocks}


def _bits(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random bits as uint8 0/1: eight from each random byte."""
    return np.unpackbits(np.frombuffer(rng.bytes((n + 7) // 8), dtype=np.uint8), count=n)


def fill_weights(out: np.ndarray, rng: np.random.Generator, size: float) -> None:
    """Write random signs times magnitudes drawn from [size/2, 3·size/2) into ``out`` (C-contiguous) in place.

    Signs alone have atoms: an error that sums to zero over two entries ([+e, −e], what a
    flipped sign under a softmax or a normalization gives) cancels in half of all ±1
    probes, and three probes miss it one time in eight.  With continuous magnitudes
    e·v vanishes only on a set of measure zero, so no error of any size hides by cancelling;
    every entry still weighs within 2× of the block's size.
    """
    flat = out.reshape(-1)
    fill_signs(flat, rng, 1.0)
    flat *= rng.random(flat.size, dtype=np.float32) + np.float32(0.5)
    flat *= size


class EntryDirection(dict):
    """A direction along one entry of a small tensor (``entry`` names it, e.g. ``b[1]``)."""

    entry: str = ""


def spanning_directions(theta: dict[str, np.ndarray], blocks: list[Block]) -> list[dict[str, np.ndarray]]:
    """One direction per entry of every tensor of at most ``SMALL_TENSOR`` entries.

    For a small tensor random directions buy little and a design that spans its whole space
    costs little: every entry probed alone, an error in it shows at its full size whatever
    the other entries do (a gradient given for a parameter the loss ignores, one missing
    for a parameter it uses, a sign flipped under a softmax).
    """
    scales = block_scales(theta, blocks)
    out = []
    for name in dict.fromkeys(b.tensor for b in blocks):
        size = theta[name].size
        if size > SMALL_TENSOR:
            continue
        scale = max(scales[b] for b in blocks if b.tensor == name)
        shape = theta[name].shape
        for i in range(size):
            v = np.zeros(size)
            v[i] = scale
            d = EntryDirection({name: v.reshape(shape)})
            index = np.unravel_index(i, shape) if shape else ()
            d.entry = f"{name}[{', '.join(str(int(j)) for j in index)}]" if index else name
            out.append(d)
    return out


#: tensors of at most this many entries are probed entry by entry
SMALL_TENSOR = 8


def signs(rng: np.random.Generator, shape, size: float = 1.0) -> np.ndarray:
    """Random ±size (float64), eight signs from each random byte: far cheaper than ``rng.choice``."""
    out = np.empty(shape, dtype=np.float64)
    fill_signs(out, rng, size)
    return out


def fill_signs(out: np.ndarray, rng: np.random.Generator, size: float) -> None:
    """Write random ±size into ``out`` (C-contiguous) in place."""
    flat = out.reshape(-1)
    np.multiply(_bits(rng, flat.size), 2 * size, out=flat, casting="unsafe")
    flat -= size


def probe_direction(
    theta: dict[str, np.ndarray],
    grad: dict[str, np.ndarray],
    blocks: list[Block],
    rng: np.random.Generator,
    weighted: bool = True,
    aligned: bool = False,
) -> dict[str, np.ndarray]:
    """A direction over ``blocks`` (zero elsewhere), normalized so its largest relative entry is 1.

    Entries are random signs times continuous magnitudes (:func:`fill_weights`), so that no
    error cancels exactly.  ``aligned``: the signs are the gradient's own (random where it
    is 0), so every term of g·v adds up: a gradient wrong by a common factor over a block,
    a flipped sign, or a gradient where the true one is zero moves the probe by its whole
    size, where random signs would show it only as far as g·v rises above its terms'
    cancellation.
    """
    scales = block_scales(theta, blocks)
    norms = _grad_norms(grad, blocks)
    share = {b: norms[b] * scales[b] for b in blocks}
    top = max(share.values(), default=0.0)
    weight = {}
    for b in blocks:
        weight[b] = 1.0 / max(share[b], top / tolerances().max_amplification) if (weighted and top > 0) else 1.0
    wmax = max(weight.values(), default=1.0)
    v: dict[str, np.ndarray] = {}
    for b in blocks:
        if b.tensor not in v:
            v[b.tensor] = np.zeros(theta[b.tensor].shape)
        sub = v[b.tensor][b.rows]  # whole rows of a C-ordered array: contiguous, filled in place
        fill_weights(sub, rng, scales[b] * weight[b] / wmax)
        if aligned:  # the gradient's own sign where it has one, the random one where it is 0 (or NaN)
            g = grad[b.tensor][b.rows]
            np.copysign(sub, g, out=sub, where=(g > 0) | (g < 0))
    return v


def subset_direction(
    theta: dict[str, np.ndarray], block: Block, flat_indices: np.ndarray, scale: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Random signs on a subset of one tensor's entries (flat indices into the tensor)."""
    v = np.zeros(theta[block.tensor].size)
    v[flat_indices] = signs(rng, len(flat_indices), scale)
    return {block.tensor: v.reshape(theta[block.tensor].shape)}


def block_indices(theta: dict[str, np.ndarray], block: Block) -> np.ndarray:
    """Flat indices (row-major) of a block's entries within its tensor."""
    shape = theta[block.tensor].shape
    idx = np.arange(int(np.prod(shape))).reshape(shape) if shape else np.arange(1)
    return idx[block.rows].ravel()
