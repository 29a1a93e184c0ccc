"""What the flow check measured, as types: one dataclass per sub-result, and :class:`NotComputed` for a part
that was not measured, with the reason.

Each type writes the JSON report's shape with ``to_json`` (or as a plain dataclass), so the
report reads the same as when these were dicts; the terminal renderer reads the fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .strenum import StrEnum


class FlowVerdict(StrEnum):
    """How the gradient fares going back through time (``diagnostics.gradient_flow``)."""

    HEALTHY = "healthy"
    VANISHING = "vanishing"
    EXPLODING = "exploding"
    NONFINITE = "nonfinite"  # a NaN/Inf came in with the data or was made by an operation, not by the flow

    def failure(self, fail_on) -> str | None:
        """The ``--fail-on`` policy: why this verdict fails the case, where ``fail_on`` names it; else None."""
        if self not in fail_on:
            return None
        return f"the gradient flow is {self}, which --fail-on {','.join(fail_on)} makes a failure"


@dataclass(frozen=True)
class NotComputed:
    """A part of the flow that was not measured, and why (the JSON's ``{"not_computed": why}``)."""

    reason: str

    def to_json(self) -> dict[str, str]:
        return {"not_computed": self.reason}


@dataclass
class BlockSpectrum:
    """One square block of a recurrent weight: its largest singular value and spectral radius."""

    sigma_max: float
    spectral_radius: float
    radius_method: str


@dataclass
class PascanuBound:
    """Pascanu et al.'s bound for a plain RNN: σ_max·γ < 1 guarantees vanishing gradients."""

    gamma: float
    sigma_max_times_gamma: float
    reading: str


@dataclass
class Structure:
    """``--spectral``: each recurrent block's spectrum, by gate (``W_hh`` for a single block)."""

    blocks: dict[str, BlockSpectrum]
    pascanu: PascanuBound | None = None

    def to_json(self) -> dict[str, Any]:
        return _named(self.blocks, "pascanu", self.pascanu)


@dataclass
class Histogram:
    edges: list[float]
    counts: list[int]


@dataclass
class GateStats:
    """One gate's activations over every step: mean, saturated share and histogram.

    A sigmoid gate's saturation is below + above (``below``/``above`` set); a tanh
    candidate's is the share with |a| > 0.9 (``below``/``above`` None).
    """

    mean: float
    histogram: Histogram
    saturated: float
    below: float | None = None
    above: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mean": self.mean, "histogram": asdict(self.histogram)}
        if self.below is not None:
            out.update(below=self.below, above=self.above)
        out["saturated"] = self.saturated
        return out


@dataclass
class Timescale:
    """The forget (or update) gate's mean as a memory length: 1/(1 − mean) steps."""

    gate: str
    steps: float
    sequence_length: int
    ratio: float


@dataclass
class Gates:
    """Every gate's statistics, and the timescale its forget or update gate implies."""

    gates: dict[str, GateStats]
    timescale: Timescale | None = None

    def to_json(self) -> dict[str, Any]:
        return _named(self.gates, "timescale", self.timescale)


@dataclass
class JacobianNorms:
    """``--jacobian``: ‖∂h_T/∂h_(T-lag)‖ by lag (the keys are the lags, as strings)."""

    method: str
    norms: dict[str, float]


@dataclass
class Lyapunov:
    """``--lyapunov``: the leading Lyapunov exponents of one sequence."""

    exponents: list[float]
    warmup_steps: int
    log_base: str = "e"
    per: str = "step"
    sample: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "exponents": self.exponents,
            "log_base": self.log_base,
            "per": self.per,
            "warmup_steps": self.warmup_steps,
            "sample": self.sample,
        }


@dataclass
class Nonfinite:
    """The first NaN/Inf in a pass, where it sits, and what made it."""

    layer: str
    step: int
    tensor: str  # "h", "c", "gate f", "dL/dh"
    pass_: str = "forward"  # "forward" or "backward" (the JSON's "pass")
    k: int | None = None  # the position in processing order, for a forward value
    cause: str | None = None  # "input", "parameter", "overflow", "operation"
    explanation: str | None = None
    operation: str | None = None  # the torch function that made it, for cause "operation" (None: not found)
    source: dict[str, Any] | None = None  # the input or parameter entry that held it, for cause "input"/"parameter"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"layer": self.layer, "step": self.step, "tensor": self.tensor}
        if self.k is not None:
            out["k"] = self.k
        for key in ("cause", "explanation"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.cause == "operation":
            out["operation"] = self.operation
        if self.source is not None:
            out["source"] = self.source
        out["pass"] = self.pass_
        return out


@dataclass
class Spread:
    min: float
    median: float
    max: float


@dataclass
class ChannelCount:
    """How many channels forget within (or keep past) ``steps`` steps."""

    steps: int
    channels: int


@dataclass
class Channels:
    """A diagonal linear recurrence's channels: each one's decay per step and horizon, summarised."""

    channels: int
    rho: Spread
    horizon: Spread
    forget_within: ChannelCount
    keep_past_sequence: ChannelCount
    growing: int
    histogram_log10_horizon: Histogram
    method: str


@dataclass
class TwinAgreement:
    """How closely the unrolled twins, which record the states, reproduce the fused layers' output."""

    fused_layers: int
    max_rel_diff: float
    reproduces: bool


#: a sub-result of a layer's flow: measured, or why not
StructureResult = Structure | NotComputed
GatesResult = Gates | NotComputed
JacobianResult = JacobianNorms | NotComputed
LyapunovResult = Lyapunov | NotComputed


@dataclass
class LayerFlow:
    """What the flow diagnostics measured on one recurrent layer and direction."""

    name: str  # e.g. "lstm/l0_reverse", "cell"
    mode: str | None  # "lstm", "gru", "rnn_tanh" …, or None for a custom cell
    steps: int
    profile: list[float] = field(default_factory=list)  # ‖dL/dh_t‖ in time order (total, through the recurrence)
    propagation: list[float] = field(default_factory=list)  # ‖∂⟨u, h_T⟩/∂h_(T-ℓ)‖, lag ℓ = 0 first
    rho: float | None = None  # fitted decay per step of the propagation
    horizon: float | None = None  # -1/ln ρ̂, in steps
    lag_1e3: int | None = None  # the lag at which the propagation falls below 1e-3 of its start
    span: float | None = None  # the propagation's fall (or growth) over the whole sequence
    fit_intercept: float | None = None
    structure: StructureResult | None = None  # σ_max, spectral radius per gate block, Pascanu's bound
    gates: GatesResult | None = None  # saturation shares, histograms, timescale
    jacobian: JacobianResult | None = None  # ‖∂h_T/∂h_k‖ by lag
    profile_c: list[float] | None = None  # ‖dL/dc_t‖ for an LSTM
    lyapunov: LyapunovResult | None = None
    nonfinite: Nonfinite | None = None  # the first NaN/Inf: pass, step, tensor, cause
    source: str | None = None  # where the states came from, when not the model's own forward
    channels: Channels | None = None  # a diagonal linear recurrence: per-channel decay and horizons

    #: left out of the JSON where not measured
    OPTIONAL = ("profile_c", "lyapunov", "nonfinite", "source", "channels")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value is None and name in self.OPTIONAL:
                continue
            if name in ("structure", "gates", "jacobian") and value is None:
                value = {}
            out[name] = _json(value)
        return out


def _named(parts: dict, key: str, extra) -> dict[str, Any]:
    """``{name: part, …}`` as the JSON writes it, then ``key: extra`` where there is one."""
    out = {name: _json(part) for name, part in parts.items()}
    if extra is not None:
        out[key] = _json(extra)
    return out


def _json(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    return value


@dataclass
class FlowDiagnostics:
    """The gradient-flow diagnostics of one case; ``gradient_flow`` is the verdict, with the thresholds that decided it."""

    gradient_flow: FlowVerdict | None = None
    thresholds: dict[str, Any] = field(default_factory=dict)
    layers: list[LayerFlow] = field(default_factory=list)
    not_computed: dict[str, str] = field(default_factory=dict)  # what was not measured, and why
    nonfinite_cause: str | None = None
    twin: TwinAgreement | None = None  # fused layers: how closely their unrolled twin reproduces them

    def __post_init__(self) -> None:
        if self.gradient_flow is not None:
            self.gradient_flow = FlowVerdict(self.gradient_flow)

    def to_json(self) -> dict[str, Any]:
        """The report's ``diagnostics`` object; optional fields that were not measured are left out."""
        out: dict[str, Any] = {
            "gradient_flow": self.gradient_flow,
            "thresholds": self.thresholds,
            "layers": [la.to_json() for la in self.layers],
            "not_computed": self.not_computed,
        }
        if self.nonfinite_cause is not None:
            out["nonfinite_cause"] = self.nonfinite_cause
        if self.twin is not None:
            out["twin"] = asdict(self.twin)
        return out
