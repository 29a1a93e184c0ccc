"""The arithmetic of gradient flow: decay fits, verdicts, saturation, power iteration, Lyapunov.

Pure functions of arrays and callables, tested on problems with known answers.  The
thresholds are rnncheck's own choice unless a source is named next to them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .flowresults import FlowVerdict
from .reference import Mode

#: the propagation profile has fallen this far over the sequence: gradients vanish
#: (rnncheck's choice; the same 1e-3 defines the reported "lag to 1e-3")
VANISH_RATIO = 1e-3
#: the propagation profile has grown this far over the sequence: gradients explode (rnncheck's choice)
EXPLODE_RATIO = 1e3
#: a gate value below/above these counts as saturated (the usual 0.1/0.9 convention)
SATURATION = (0.1, 0.9)

THRESHOLDS = {
    "vanishing": {
        "rule": "fitted decay over the horizon K rho^K < 1e-3 (K: --horizon, default the sequence length - 1)",
        "value": VANISH_RATIO,
        "source": (
            "rnncheck's choice of 1e-3 (a step whose gradient is a thousandth of the last step's gets no "
            "credit an optimizer can use); the decay itself: Bengio, Simard & Frasconi, Learning long-term "
            "dependencies with gradient descent is difficult (IEEE TNN 1994)"
        ),
    },
    "exploding": {
        "rule": "fitted growth over the horizon K rho^K > 1e3, or values grown past the dtype's range",
        "value": EXPLODE_RATIO,
        "source": "rnncheck's choice of 1e3, the mirror of 1e-3; Pascanu, Mikolov & Bengio (ICML 2013)",
    },
    "nonfinite": {
        "rule": "a NaN or Inf that came in with the inputs or parameters, or that an operation made from finite values",
        "source": "rnncheck's choice",
    },
    "pascanu": {
        "rule": "sigma_max(W_hh) * gamma < 1 guarantees vanishing; > 1 is necessary for exploding",
        "source": "Pascanu, Mikolov & Bengio, On the difficulty of training recurrent neural networks (ICML 2013)",
    },
    "saturation": {"rule": "gate < 0.1 or > 0.9", "value": list(SATURATION), "source": "common convention"},
}

#: max |φ'| of each activation, the γ of Pascanu et al.'s bound
GAMMA = {Mode.RNN_TANH: 1.0, Mode.RNN_RELU: 1.0, Mode.RNN_SIGMOID: 0.25}


@dataclass
class Decay:
    """A straight-line fit of log p_ℓ against the lag ℓ."""

    rho: float | None  # fitted factor per step
    horizon: float | None  # τ = -1/ln ρ (inf when ρ ≥ 1)
    lag_1e3: int | None  # first lag where p_ℓ < 1e-3·p_0, None if never
    span: float | None  # ρ^(T-1): the fitted change over the whole sequence
    intercept: float | None = None  # the fit's log p at lag 0


def fit_decay(profile: np.ndarray) -> Decay:
    """Fit ``p_ℓ ≈ p_0 ρ^ℓ`` by least squares on log p over the finite, positive entries."""
    p = np.asarray(profile, dtype=float)
    lags = np.arange(len(p))
    ok = np.isfinite(p) & (p > 0)
    if ok.sum() < 2:
        return Decay(None, None, None, None)
    slope, intercept = line_fit(lags[ok].astype(float), np.log(p[ok]))
    rho = math.exp(slope)
    horizon = -1.0 / slope if slope < 0 else math.inf
    below = np.flatnonzero(ok & (p < VANISH_RATIO * p[0])) if p[0] > 0 else np.array([], dtype=int)
    lag = int(below[0]) if below.size else None
    span = math.exp(min(slope * (len(p) - 1), 700.0))
    return Decay(rho, horizon, lag, span, intercept)


def line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(slope, intercept)`` of the least-squares line through (x, y), in closed form about the means (what
    ``np.polyfit(x, y, 1)`` gives, to rounding, without its SVD: a third of the time on 50 points)."""
    xm, ym = x.mean(), y.mean()
    dx = x - xm
    slope = float(dx @ (y - ym) / (dx @ dx))
    return slope, float(ym - slope * xm)


#: why a value went non-finite; only growth through the recurrence is "exploding"
NONFINITE_CAUSES = ("input", "parameter", "operation", "overflow")


def flow_verdict(spans: list[float | None], nonfinite: bool, cause: str | None = None) -> FlowVerdict | None:
    """``exploding`` / ``vanishing`` / ``healthy`` from every layer's fitted span, or None if none.

    A non-finite value is ``exploding`` when the recurrence grew it past the dtype's range
    (``cause`` "overflow", or unknown); ``nonfinite`` when it arrived in the inputs or the
    parameters, or an operation made it from finite values (log of a negative number, 0/0).
    """
    if nonfinite:
        return FlowVerdict.NONFINITE if cause in ("input", "parameter", "operation") else FlowVerdict.EXPLODING
    known = [s for s in spans if s is not None]
    if not known:
        return None
    if any(s > EXPLODE_RATIO for s in known):
        return FlowVerdict.EXPLODING
    if any(s < VANISH_RATIO for s in known):
        return FlowVerdict.VANISHING
    return FlowVerdict.HEALTHY


def scaled_norms(rows: np.ndarray) -> np.ndarray:
    """The Euclidean norm of each row, scaled by its largest entry first.

    Squaring a value below 1e-154 underflows float64 to zero, so an unscaled norm of a
    gradient that has decayed to 6.6e-262 comes out 0.0; scaled, it is exact wherever the
    result itself is representable.
    """
    rows = np.asarray(rows, dtype=np.float64)
    rows = rows.reshape(rows.shape[0], -1) if rows.ndim > 1 else rows.reshape(1, -1)
    with np.errstate(invalid="ignore", over="ignore"):
        big = np.abs(rows).max(axis=1, initial=0.0)
        safe = np.where(np.isfinite(big) & (big > 0), big, 1.0)
        norms = safe * np.sqrt(((rows / safe[:, None]) ** 2).sum(axis=1))
    return np.where(np.isfinite(big), norms, big)


def saturation(gate: np.ndarray) -> tuple[float, float]:
    """Shares of entries below 0.1 and above 0.9."""
    g = np.asarray(gate, dtype=float)
    return float((g < SATURATION[0]).mean()), float((g > SATURATION[1]).mean())


def timescale(mean_gate: float) -> float:
    """1 / (1 - mean gate): how many steps a forget (or GRU update) gate keeps information."""
    return math.inf if mean_gate >= 1 else 1.0 / (1.0 - mean_gate)


#: above this size the spectral radius comes from Gelfand's formula instead of a full eigensolve
EIG_LIMIT = 128
GELFAND_POWER = 2**8
#: Gelfand's power is reached by this many squarings of W, then by products of the result with a
#: few random vectors: squarings cost n³ each, a product with p vectors n²p
GELFAND_SQUARINGS = 4
#: random vectors for the Frobenius norm of W^256 (Hutchinson: E‖A g‖² = ‖A‖_F² for a Gaussian g)
GELFAND_VECTORS = 8
#: from this size on σ_max comes from Lanczos; below it, from the top eigenvalue of WᵀW, whose
#: symmetric eigensolve on the CPU cost less than Lanczos's many small products up to 768 rows
#: (22 against 39 ms at 256, 238 against 287 ms at 768) and the same at 1024 (benchmarks/README.md §14)
LANCZOS_FROM = 1024
#: Lanczos stops when the largest Ritz value moved by less than this, relatively, over a few steps
LANCZOS_RTOL = 1e-10
LANCZOS_MAX_STEPS = 160


def spectral_torch(W) -> tuple[float, float, str]:
    """:func:`spectral` for a torch tensor, computed where it lives (on a GPU for weights there)."""
    (out,) = spectral_blocks(W.unsqueeze(0))
    return out


def sigma_max_gram(Ws):
    """The largest singular value of each block of ``Ws`` (k, n, n): √λ_max(WᵀW) by a symmetric eigensolve.

    Half an SVD's work or less, since no singular vectors and no bidiagonalization are
    needed.  Forming WᵀW squares the condition number, which touches only the small
    singular values: the largest eigenvalue's relative error stays about n·ε.  Each block
    is first divided by its largest |entry|, so that WᵀW neither overflows nor underflows.
    It runs in the weights' own precision (float32 weights: a float32 eigensolve, 5e-7
    relative on an LSTM(256)'s blocks, at two thirds of the float64 solve's time); float16
    and bfloat16 weights, which the eigensolver does not take, in float32.
    """
    import torch

    Ws = Ws.to(torch.float64 if Ws.dtype == torch.float64 else torch.float32)
    top = Ws.abs().amax(dim=(-2, -1))
    safe = top.clamp_min(torch.finfo(Ws.dtype).tiny)
    U = Ws / safe[:, None, None]
    lam = torch.linalg.eigvalsh(U.transpose(1, 2) @ U)[:, -1]
    return torch.where(top > 0, lam.clamp_min(0).sqrt() * safe, torch.zeros_like(top))


def sigma_max_lanczos(Ws, rtol: float = LANCZOS_RTOL, max_steps: int = LANCZOS_MAX_STEPS, check_every: int = 4):
    """The largest singular value of each block of ``Ws`` (k, n, n): Lanczos on WᵀW, or None if it did not settle.

    Two products with W per step and full reorthogonalization, so the cost is about
    ``2·steps`` reads of W instead of an SVD's n³ work: the extreme eigenvalue of WᵀW
    converges in a few dozen steps.  Each Ritz value is a lower bound that rises to
    σ_max²; the iteration stops when the largest moved by less than ``rtol`` relatively.
    It runs in float64: in float32 the reorthogonalized remainder of an exhausted Krylov
    space is float32's rounding, which the recurrence cannot tell from a direction.
    """
    import torch

    Ws = Ws.to(torch.float64)
    k, n, _ = Ws.shape
    steps = min(n, max_steps)
    gen = torch.Generator(device=Ws.device).manual_seed(0)
    tiny = torch.finfo(Ws.dtype).tiny
    Wt = Ws.transpose(1, 2).contiguous()

    def orthogonal(z, Qj):  # twice is enough (Kahan's "twice is enough")
        for _ in range(2):
            z = z - (Qj.transpose(1, 2) @ (Qj @ z.unsqueeze(-1))).squeeze(-1)
        return z

    q = torch.randn(k, n, generator=gen, dtype=Ws.dtype, device=Ws.device)
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True).clamp_min(tiny)
    Q = torch.zeros(k, steps, n, dtype=Ws.dtype, device=Ws.device)
    T = torch.zeros(k, steps, steps, dtype=torch.float64)  # tiny: its eigensolves run on the host, on a GPU too
    previous = None
    scale = torch.zeros(k, dtype=Ws.dtype, device=Ws.device)  # the largest |WᵀW q| met: the operator's size
    for j in range(steps):
        Q[:, j] = q
        z = (Wt @ (Ws @ q.unsqueeze(-1))).squeeze(-1)
        a = (q * z).sum(-1)
        T[:, j, j] = a.double().cpu()
        scale = torch.maximum(scale, torch.linalg.vector_norm(z, dim=-1))
        Qj = Q[:, : j + 1]
        z = orthogonal(z, Qj)
        b = torch.linalg.vector_norm(z, dim=-1)
        if (j + 1) % check_every == 0 or j + 1 == steps:
            top = torch.linalg.eigvalsh(T[:, : j + 1, : j + 1])[:, -1]
            settled = previous is not None and bool(((top - previous).abs() <= rtol * top.abs()).all())
            if settled or j + 1 == n:
                return top.clamp_min(0).sqrt()
            previous = top
        if j + 1 == steps:
            return None
        # a block whose Krylov space is exhausted goes on from a fresh direction (T stays block-diagonal)
        spent = b <= 1e-10 * scale.clamp_min(tiny)
        if bool(spent.any()):
            fresh = orthogonal(torch.randn(k, n, generator=gen, dtype=Ws.dtype, device=Ws.device), Qj)
            z = torch.where(spent[:, None], fresh, z)
            b = torch.where(spent, torch.zeros_like(b), b)
        q = z / torch.linalg.vector_norm(z, dim=-1, keepdim=True).clamp_min(tiny)
        T[:, j, j + 1] = T[:, j + 1, j] = b.double().cpu()
    return None


def gelfand_radius(Ws, power: int = GELFAND_POWER, squarings: int = GELFAND_SQUARINGS, vectors: int = GELFAND_VECTORS):
    """``‖W^power‖_F^(1/power)`` for each block of ``Ws`` (k, n, n), renormalized as it goes.

    ``squarings`` squarings give W^(2^s); its products with ``vectors`` Gaussian vectors
    then reach W^power, whose Frobenius norm is estimated from them (Hutchinson:
    E‖A g‖² = ‖A‖_F²).  The estimate's spread enters as its 1/(2·power)-th root: a factor
    of 10 in ‖A‖_F² moves the radius by 0.5%.  Where W^power vanishes, the radius is 0.
    """
    import torch

    k, n, _ = Ws.shape
    tiny = torch.finfo(Ws.dtype).tiny
    dead = torch.zeros(k, dtype=torch.bool, device=Ws.device)  # W^power is exactly 0 (a nilpotent block)

    def renormalized(A):  # by the largest |entry|, which neither underflows nor overflows as a sum of squares would
        top = A.abs().amax(dim=(-2, -1))
        return A / top.clamp_min(tiny)[:, None, None], top.double().clamp_min(tiny).log(), top == 0

    log_scale = torch.zeros(k, dtype=torch.float64, device=Ws.device)
    M, reached = Ws, 1
    for _ in range(squarings):
        if reached * 2 > power:
            break
        M, log_norm, zero = renormalized(M)
        log_scale, dead = 2 * (log_scale + log_norm), dead | zero
        M = M @ M
        reached *= 2
    gen = torch.Generator(device=Ws.device).manual_seed(1)
    G = torch.randn(k, n, vectors, generator=gen, dtype=Ws.dtype, device=Ws.device)
    V, log_v = G, torch.zeros(k, dtype=torch.float64, device=Ws.device)
    for _ in range(power // reached):  # W^power G = e^(log_v) V
        V, log_norm, zero = renormalized(M @ V)
        log_v, dead = log_v + log_norm, dead | zero
    log_v = log_v + (power // reached) * log_scale + torch.linalg.matrix_norm(V.double()).clamp_min(1e-300).log()
    radius = ((2 * log_v - math.log(vectors)) / (2 * power)).exp()
    return torch.where(dead | ~torch.isfinite(radius), torch.zeros_like(radius), radius)


def spectral_blocks(Ws) -> list[tuple[float, float, str]]:
    """:func:`spectral` for a stack of square blocks (k, n, n) at once, one transfer of results at the end.

    σ_max from the top eigenvalue of WᵀW (:func:`sigma_max_gram`), or from ``LANCZOS_FROM``
    rows by Lanczos on WᵀW (the eigensolve where it does not settle).  The radius: up to
    ``EIG_LIMIT`` rows from a nonsymmetric eigensolve; beyond, by Gelfand's formula in
    float32, whose rounding its 256th root makes invisible.
    """
    import torch

    Ws = Ws.detach()
    sigma = sigma_max_lanczos(Ws) if Ws.shape[-1] >= LANCZOS_FROM else None
    if sigma is None:
        sigma = sigma_max_gram(Ws)
    if Ws.shape[-1] <= EIG_LIMIT:
        radius = torch.linalg.eigvals(Ws.to(torch.float64).cpu()).abs().amax(dim=-1)
        how = "eigenvalues"
    else:
        radius = gelfand_radius(Ws.to(torch.float32))
        how = f"Gelfand ||W^{GELFAND_POWER}||_F^(1/{GELFAND_POWER})"
    return [(float(s_), float(r_), how) for s_, r_ in zip(sigma.double().cpu().tolist(), radius.cpu().tolist())]


def spectral(W: np.ndarray) -> tuple[float, float, str]:
    """``(σ_max, spectral radius, how the radius was found)`` of a square matrix.

    Up to ``EIG_LIMIT`` rows the radius is max |eig|.  Beyond, a nonsymmetric eigensolve
    costs more than the whole forward pass, so it is ``‖W^256‖_F^(1/256)`` (Gelfand's
    formula: four squarings, then sixteen products with a few random vectors, renormalized
    as it goes); its relative error is at most about (κ √n)^(1/256) - 1 for an eigenvector
    condition number κ and n rows (under 3% for κ ≤ 100, n ≤ 4096), and the random
    vectors' spread adds well under 1%.  σ_max comes from the top eigenvalue of WᵀW, or
    for large blocks from Lanczos on WᵀW, to 1e-10 relatively.
    """
    import torch

    return spectral_torch(torch.from_numpy(np.asarray(W, dtype=np.float64)))


def power_iteration(apply_j: Callable, apply_jt: Callable, v0: np.ndarray | object, iters: int = 4) -> float:
    """Largest singular value of J from products ``J v`` and ``Jᵀ u`` only (never forming J).

    ``v0`` and the callables work on any array type with ``*``, ``/`` and a norm that
    ``_norm`` knows (NumPy arrays and torch tensors).
    """
    v = v0 / _norm(v0)
    sigma = 0.0
    for _ in range(iters):
        u = apply_j(v)
        sigma = _norm(u)
        if sigma == 0 or not math.isfinite(sigma):
            return sigma
        w = apply_jt(u / sigma)
        n = _norm(w)
        if n == 0 or not math.isfinite(n):
            return sigma
        v = w / n
    return max(sigma, _norm(apply_j(v)))


def _norm(x) -> float:
    try:
        return float(np.linalg.norm(np.asarray(x)))
    except (TypeError, ValueError):
        return float(x.norm())


def lyapunov(apply_js: list[Callable], dim: int, k: int, warmup: int, rng: np.random.Generator) -> np.ndarray:
    """The ``k`` leading Lyapunov exponents (natural log, per step) by the QR method.

    ``apply_js[t](Q)`` returns ``J_t Q`` for a (dim, k) matrix ``Q``.  The first ``warmup``
    steps align ``Q`` and are not counted.
    """
    Q, _ = np.linalg.qr(rng.normal(size=(dim, k)))
    sums = np.zeros(k)
    counted = 0
    for t, apply_j in enumerate(apply_js):
        Q, R = np.linalg.qr(apply_j(Q))
        if t >= warmup:
            sums += np.log(np.maximum(np.abs(np.diag(R)), 1e-300))
            counted += 1
    return sums / max(counted, 1)


SPARK = "▁▂▃▄▅▆▇█"
SPARK_PLAIN = "_.-~=+*#"


def sparkline(values: np.ndarray, plain: bool = False, width: int = 60) -> str:
    """A one-line picture of ``values`` (already on the scale to show, e.g. log10 g_t).

    ``-inf`` (a log of an exact zero, say an underflowed gradient) is a blank; NaN and
    ``+inf`` are ``!``.  Longer series are averaged into ``width`` bins.
    """
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return ""
    if v.size > width:
        edges = np.linspace(0, v.size, width + 1).astype(int)
        binned = []
        for a, b in zip(edges[:-1], edges[1:]):
            chunk = v[a:b]
            if np.isnan(chunk).any() or np.isposinf(chunk).any():
                binned.append(np.nan)
            elif np.isneginf(chunk).all():
                binned.append(-np.inf)
            else:
                binned.append(float(np.mean(chunk[np.isfinite(chunk)])))
        v = np.array(binned)
    chars = SPARK_PLAIN if plain else SPARK
    finite = v[np.isfinite(v)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    span = hi - lo or 1.0
    out = []
    for x in v:
        if np.isneginf(x):
            out.append(" ")
        elif not np.isfinite(x):
            out.append("!")
        else:
            out.append(chars[min(len(chars) - 1, int((x - lo) / span * (len(chars) - 1) + 0.5))])
    return "".join(out)


#: what usually changes each verdict, with where the advice comes from
REMEDIES = {
    "vanishing": {
        Mode.LSTM: "a forget-gate bias of 1 or more (Jozefowicz, Zaremba & Sutskever, ICML 2015)",
        Mode.GRU: "update-gate biases that start near keeping the state, or shorter sequences",
        "rnn": "an identity- or orthogonally-initialised W_hh (Le, Jaitly & Hinton 2015), or a gated cell",
        "linear": (
            "decays initialised closer to 1 (LRU's ring of eigenvalues with r_min near 1, Orvieto et al. 2023; "
            "Mamba's Δ and A initialisation, Gu & Dao 2023; minGRU's gate bias)"
        ),
    },
    "exploding": "gradient clipping (Pascanu, Mikolov & Bengio, ICML 2013) or a smaller spectral radius of W_hh",
}


def plain_words(verdict: str, rho: float | None, steps: int, mode: str | None, lag_1e3: int | None) -> str:
    """The verdict's numbers in the user's terms: what a step k back gets, and what usually changes it."""
    if rho is None or not math.isfinite(rho) or rho <= 0 or steps < 2:
        return ""
    far = steps - 1
    near = min(10, far)
    move = "shrinks" if rho < 1 else "grows"
    text = (
        f"the gradient {move} {rho:.2g}× per step back: a step {near} back gets {rho**near:.1g} of the last "
        f"step's weight, a step {far} back {rho**far:.1g}"
    )
    if verdict == "vanishing":
        kind = mode if mode in (Mode.LSTM, Mode.GRU, "linear") else "rnn"
        reach = f"{lag_1e3} steps" if lag_1e3 is not None else "the sequence"
        text += (
            f". By the rule this is vanishing: the loss learns little from inputs more than {reach} back, which "
            f"matters only if the task needs longer memory (common at default initialisation); what usually "
            f"changes it: {REMEDIES['vanishing'][kind]}, or truncating backpropagation at the horizon you need"
        )
    elif verdict == "exploding":
        text += f". What usually changes it: {REMEDIES['exploding']}"
    return text


def describe_channels(channels) -> str:
    """``41 of 64 channels forget within 8 steps; 3 keep information past T = 512; median horizon 5.2 steps``
    (``channels``: a :class:`rnncheck.flowresults.Channels`)."""
    short, keep, horizon = channels.forget_within, channels.keep_past_sequence, channels.horizon
    parts = [
        f"{short.channels} of {channels.channels} channels forget within {short.steps} steps",
        f"{keep.channels} keep information past T = {keep.steps}",
        f"median horizon {_fmt(horizon.median)} steps (min {_fmt(horizon.min)}, max {_fmt(horizon.max)})",
    ]
    if channels.growing:
        parts.append(f"{channels.growing} grow (|a| > 1 on average)")
    return "; ".join(parts)


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.3g}"
