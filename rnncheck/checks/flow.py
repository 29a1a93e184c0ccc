"""Gradient flow through time: does the gradient vanish or explode as it goes back?

Where the hidden states come from:

- ``nn.RNN``/``nn.LSTM``/``nn.GRU`` inside a TorchCase: an unrolled twin with the same
  weights (:mod:`rnncheck.twins`), first checked to reproduce the fused layer's output;
- a CellCase: rnncheck's own loop records every state;
- anything else: nothing to measure, and the report says why.

What it measures, per layer and direction:

1. the profile g_t = ‖dL/dh_t‖, the *total* derivative through the recurrence;
2. the propagation profile p_ℓ = ‖∂L_T/∂h_{T-1-ℓ}‖ for a random unit functional of the
   last state alone, its fitted decay per step ρ̂, horizon τ = -1/ln ρ̂ and the lag at
   which it falls below 1e-3;
3. structure: σ_max and spectral radius of every recurrent weight block, Pascanu et al.'s
   bound for plain RNNs, and ‖∂h_T/∂h_k‖ by power iteration with JVPs and VJPs;
4. gates: saturation shares and forget/update timescales;
5. the first non-finite value, forward and backward;
6. optionally the leading Lyapunov exponents.

The verdict (``diagnostics.gradient_flow``) comes with the thresholds that decided it.
"""

from __future__ import annotations

import functools
import math
import time

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
from torch.overrides import TorchFunctionMode

from .. import flowmath as fm
from ..errors import first_line
from ..findings import CheckName, Finding, FlowResult, Verdict, worst
from ..flowresults import (
    BlockSpectrum,
    FlowDiagnostics,
    FlowVerdict,
    Gates,
    GateStats,
    Histogram,
    JacobianNorms,
    LayerFlow,
    Lyapunov,
    Nonfinite,
    NotComputed,
    PascanuBound,
    Structure,
    Timescale,
)
from ..recorders import RecordedLayer, Recording
from ..reference import Mode
from ..twins import GATES
from .flow_recorded import measure_stacked
from .twin_adjoints import propagation_by_hand, total_adjoints


def _groups(tensors: list, size: int = 256):
    """Same-shaped runs of tensors, so that they can be stacked."""
    group: list = []
    for t in tensors:
        if group and (t.shape != group[0].shape or len(group) >= size):
            yield group
            group = []
        group.append(t)
    if group:
        yield group


def _norms(tensors) -> np.ndarray:
    """‖t‖ of each tensor (None: 0), scaled so that a gradient that decayed to 1e-262 is not 0.0.

    Same-shaped runs are stacked and reduced at once: one pass per run, not one per step; a
    tensor holding every step at once (K, ...) is one run already.
    """
    if isinstance(tensors, torch.Tensor):
        return _row_norms(tensors.detach().reshape(len(tensors), -1))
    out = np.zeros(len(tensors))
    present = [(i, t) for i, t in enumerate(tensors) if t is not None]
    start = 0
    for group in _groups([t for _, t in present]):
        norms = _row_norms(torch.stack([t.detach().reshape(-1) for t in group]))
        for k, value in enumerate(norms):
            out[present[start + k][0]] = value
        start += len(group)
    return out


#: a float64 norm computed directly is exact to rounding between these: no sum of squares overflows, and the
#: squares that underflow (entries below 1e-154) weigh less than 1e-27 of a norm's square above 1e-140
_PLAIN_NORMS = (1e-140, 1e150)


def _row_norms(rows: torch.Tensor) -> np.ndarray:
    """Each row's norm in float64 (a NaN or Inf row: that entry).

    One pass on the rows' device where every norm lies well inside float64's range (the usual
    case); :func:`flowmath.scaled_norms`, which scales each row by its largest entry first,
    only where one does not.
    """
    plain = torch.linalg.vector_norm(rows, dim=1, dtype=torch.float64).cpu().numpy()
    if np.all((plain > _PLAIN_NORMS[0]) & (plain < _PLAIN_NORMS[1])):
        return plain
    return fm.scaled_norms(rows.detach().to("cpu", torch.float64).numpy())


def _first_nonfinite_forward(layer: RecordedLayer, time_of) -> Nonfinite | None:
    if layer.finite:  # the recurrence carries a NaN or Inf forward: finite last states were finite all along
        return None
    everything = [t for s in layer.states for t in s] + [t for acts in layer.gates.values() for t in acts]
    if all(
        bool(torch.isfinite(torch.cat([t.detach().reshape(-1) for t in group])).all()) for group in _groups(everything)
    ):
        return None  # one look at everything; the step-by-step scan only when something is off
    for k, s in enumerate(layer.states):
        for gate, acts in layer.gates.items():
            if k < len(acts) and not torch.isfinite(acts[k]).all():
                return Nonfinite(layer.name, time_of(k), f"gate {gate}", k=k)
        for name, t in zip(("h", "c"), s):
            if not torch.isfinite(t).all():
                return Nonfinite(layer.name, time_of(k), name, k=k)
    return None


def _all_finite(layers) -> bool:
    """Whether every recorded state is finite, looked at once per layer.

    A NaN or Inf in a step's state or gates reaches every later state through the recurrence,
    so a layer whose last states are finite (with a packed input, every sequence's own last
    step, which the last states of the batch hold) held finite values throughout.
    """
    for layer in layers:
        last = [t for t in layer.states[-1]] if layer.states else []
        layer.finite = bool(all(bool(torch.isfinite(t).all()) for t in last)) and not layer.packed
        if not layer.finite and not all(bool(torch.isfinite(t).all()) for s in layer.states for t in s):
            return False
    return True


def _nonfinite_source(target) -> dict | None:
    """The first parameter or input that already holds a NaN/Inf, with the entry: the cause is in the data."""
    params = [(n, target.saved[n]) for n in target.param_names]
    inputs = list(target.saved_inputs.items())
    for cause, group in (("input", inputs), ("parameter", params)):
        for name, t in group:
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                index = [int(i) for i in torch.nonzero(~torch.isfinite(t))[0]]
                value = float(t[tuple(index)])
                return {"cause": cause, "tensor": name, "index": index, "value": value}
    return None


def _explain_nonfinite(layer: RecordedLayer, bad: Nonfinite, source: dict | None) -> None:
    """Why the first non-finite forward value appeared: it came in, the recurrence outgrew the dtype, or an operation made it."""
    if source is not None:
        where = f"{source['tensor']}{source['index']}"
        bad.cause, bad.source = source["cause"], source
        bad.explanation = (
            f"it came in with the {source['cause']} {where} = {source['value']}: "
            "the data holds it, the gradient flow does not make it"
        )
        return
    k = bad.k or 0
    prev = layer.states[k - 1] if k > 0 else layer.state0
    if prev is None:
        return
    finite_prev = [t.detach() for t in prev if bool(torch.isfinite(t).all())]
    big = max((float(t.abs().max()) for t in finite_prev if t.numel()), default=0.0)
    dtype = prev[0].dtype
    if big >= math.sqrt(torch.finfo(dtype).max):
        bad.cause = "overflow"
        bad.explanation = f"the state before it reached |h| = {big:.3g}: the recurrence grew it past {dtype}'s range"
        return
    bad.cause = "operation"
    bad.operation = _first_nonfinite_op(layer, k, prev)
    bad.explanation = (
        "an operation made it from finite values of moderate size"
        + (f" ({bad.operation})" if bad.operation else "")
        + ", e.g. the log or square root of a negative number, or 0/0"
    )


def _first_nonfinite_op(layer: RecordedLayer, k: int, prev) -> str | None:
    """Rerun step k and name the first torch function whose finite inputs gave a non-finite output."""

    class Watch(TorchFunctionMode):
        found: str | None = None

        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if self.found is None and isinstance(out, torch.Tensor) and out.is_floating_point():
                ins = [a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
                if not bool(torch.isfinite(out).all()) and all(bool(torch.isfinite(a).all()) for a in ins):
                    self.found = getattr(func, "__name__", str(func))
            return out

    if k >= len(layer.inputs):
        return None
    watch = Watch()
    try:
        with torch.no_grad(), watch:
            layer.step(layer.inputs[k], tuple(t.detach() for t in prev))
    except Exception:  # the step may not run on its own: the cause is then said without the op
        return None
    return watch.found


def _extras_fit(clock, per_layer: float, layers_left: int) -> bool:
    """The opt-in extras (Jacobian norms, Lyapunov exponents) run only where the budget can hold them."""
    remaining = None if clock is None else clock.remaining
    return remaining is None or remaining > 4 * per_layer * max(layers_left, 1)


def check_flow(
    case, target, options, rng: np.random.Generator, clock=None
) -> tuple[FlowResult | None, FlowDiagnostics]:
    """The flow diagnostics of one case: record, adjoints, measure each layer, verdict.

    Returns a :class:`FlowResult` (None where there is nothing to say) and the :class:`FlowDiagnostics`.
    With a ``clock``, the soft budget holds here too: it ticks between layers (stopping the
    case once the budget is spent) and the costly opt-in extras are skipped, with the
    reason said, when what is left of the budget could not hold them.
    """
    diagnostics = FlowDiagnostics(thresholds=fm.THRESHOLDS)
    recording = target.record_states(rng)
    diagnostics.twin, findings = recording.twin, list(recording.findings)
    diagnostics.not_computed.update(recording.not_computed)
    if recording.not_measured or recording.steps < 2:
        diagnostics.not_computed["all"] = recording.not_measured or (
            f"the sequence has {recording.steps} step(s): there is no flow through time to measure"
        )
        verdict = worst(f.verdict for f in findings) if recording.not_measured else Verdict.PASS
        return (FlowResult(CheckName.FLOW, verdict, findings) if findings else None), diagnostics
    adjoint, propagation = _adjoints(recording, rng)
    measured = _measure_layers(recording, adjoint, propagation, target, options, rng, clock)
    diagnostics.layers = [flow for flow, _ in measured]
    stacked = [_measure_stacked(record, recording, rng) for record in recording.stacked]
    diagnostics.layers += stacked
    findings += [_nonfinite_finding(flow.nonfinite) for flow in diagnostics.layers if flow.nonfinite is not None]
    findings += [_channels_finding(flow) for flow in diagnostics.layers if flow.channels is not None]
    findings += _judge(diagnostics, recording, measured, stacked, target, options)
    result = FlowResult(
        CheckName.FLOW,
        worst(f.verdict for f in findings),
        findings,
        gradient_flow=diagnostics.gradient_flow,
        measured=True,
    )
    return result, diagnostics


def _judge(diagnostics: FlowDiagnostics, recording: Recording, measured, stacked, target, options) -> list[Finding]:
    """The verdict over every layer, at the horizon asked for, with the finding that explains it and the
    ``--fail-on`` policy's failure where it names the verdict."""
    _at_horizon(diagnostics, options.horizon)
    nonfinite = (
        not _loss_finite(recording)
        or any(bad for _, bad in measured)
        or any(_stacked_nonfinite(r, flow) for r, flow in zip(recording.stacked, stacked))
    )
    causes = [
        flow.nonfinite.cause for flow in diagnostics.layers if flow.nonfinite is not None and flow.nonfinite.cause
    ]
    source = _nonfinite_source(target) if nonfinite else None
    cause = causes[0] if causes else source["cause"] if source else None
    verdict = fm.flow_verdict([flow.span for flow in diagnostics.layers], nonfinite, cause)
    diagnostics.gradient_flow = verdict
    if nonfinite and recording.loss is not None:
        diagnostics.nonfinite_cause = cause
    findings = []
    if verdict in (FlowVerdict.VANISHING, FlowVerdict.EXPLODING):
        findings.append(_verdict_finding(verdict, diagnostics.layers, options.horizon))
    failure = verdict.failure(options.fail_on) if verdict is not None else None
    if failure:
        findings.append(Finding("flow_verdict", Verdict.FAIL, failure))
    return findings


def _measure_layers(recording, adjoint, propagation, target, options, rng, clock) -> list[tuple[LayerFlow, bool]]:
    """Each layer recorded step by step, measured: ``(flow, whether it holds a non-finite value)``."""
    layers = recording.layers
    source = _nonfinite_source(target) if not _loss_finite(recording) or not _all_finite(layers) else None
    out = []
    layer_started = time.perf_counter()
    for li, layer in enumerate(layers):
        if clock is not None:
            clock.tick()
        per_layer = (time.perf_counter() - layer_started) / max(li, 1)
        extras_fit = _extras_fit(clock, per_layer, len(layers) - li)
        flow = measure_layer(layer, adjoint, propagation[li], options, rng, extras_fit, source)
        if layer.given is not None:  # the reference's own adjoints: a profile it could not give is no NaN
            bad = layer.given.profile is not None and not np.all(np.isfinite(flow.profile))
        else:
            bad = flow.nonfinite is not None or not np.all(np.isfinite(flow.propagation + flow.profile))
        out.append((flow, bad))
    return out


def _measure_stacked(record, recording, rng) -> LayerFlow:
    """Stacked states recorded by ``rnncheck.record``: measured from the decay, or from the inputs' influence."""
    flow = measure_stacked(record, recording.loss, recording.leaves, rng)
    _fit(flow, np.asarray(flow.propagation if flow.propagation else [np.nan] * flow.steps, dtype=float))
    _not_measured(flow, "stacked states recorded by rnncheck.record")
    return flow


def _loss_finite(recording: Recording) -> bool:
    return recording.loss is None or math.isfinite(float(recording.loss.detach()))


def _stacked_nonfinite(record, flow: LayerFlow) -> bool:
    return not bool(torch.isfinite(record.stacked).all()) or not np.all(np.isfinite(flow.propagation + flow.profile))


def _channels_finding(flow: LayerFlow) -> Finding:
    return Finding(
        "flow_channels",
        Verdict.NOTE,
        f"{flow.name}: {fm.describe_channels(flow.channels)}",
        numbers={"channels": flow.channels.channels},
    )


def measure_layer(
    layer: RecordedLayer, adjoint: dict, propagation, options, rng, extras_fit: bool, source
) -> LayerFlow:
    """Everything measured on one layer-direction from its recorded states and the adjoints of one backward pass."""
    T = len(layer.states)
    flow = LayerFlow(layer.name, layer.mode, T)
    if layer.given is not None:
        return _measure_given(flow, layer, options)
    g = _norms(_stepwise(adjoint, layer, 0))
    flow.profile = _time_order(g, layer).tolist()
    if len(layer.states[0]) > 1:
        flow.profile_c = _time_order(_norms(_stepwise(adjoint, layer, 1)), layer).tolist()
    _fit(flow, _norms(propagation))  # lag 0 = the last state
    flow.structure = _structure(layer.mode, _recurrent_of(layer)) if options.spectral else SPECTRAL_ON_REQUEST
    flow.gates = _gates(layer.mode, layer.gates, T)

    def time_of(k):
        return T - 1 - k if layer.reverse else k

    if layer.step is None:  # states recorded by rnncheck.record: no step function to differentiate
        flow.source, flow.structure = layer.source, None
        _not_measured(flow, layer.no_step)
        flow.nonfinite = _backward_nonfinite(layer, g, time_of) or _first_nonfinite_forward(layer, time_of)
        return flow
    _extras(flow, layer, options, rng, extras_fit)
    bad = _first_nonfinite_forward(layer, time_of)
    if bad is not None:
        _explain_nonfinite(layer, bad, source)
    else:
        bad = _backward_nonfinite(layer, g, time_of)
    flow.nonfinite = bad
    return flow


def _stepwise(adjoint: dict, layer: RecordedLayer, part: int):
    """The adjoints of part ``part`` of the layer's states (0: h, 1: c), in processing order: one tensor where the
    hand-worked pass kept every step's at once (under ``(part, id(layer))``), else a list by step."""
    whole = adjoint.get((part, id(layer)))
    return whole if whole is not None else [adjoint.get(id(s[part])) for s in layer.states]


def _time_order(norms: np.ndarray, layer: RecordedLayer) -> np.ndarray:
    return norms[::-1] if layer.reverse else norms


def _measure_given(flow: LayerFlow, layer: RecordedLayer, options) -> LayerFlow:
    """A layer whose recorder gave its adjoint norms (the NumPy reference): the profile, propagation, structure, gates."""
    given, T = layer.given, flow.steps
    flow.source = layer.source
    flow.profile = given.profile.tolist() if given.profile is not None else [float("nan")] * T
    if given.profile_c is not None:
        flow.profile_c = given.profile_c.tolist()
    _fit(flow, given.propagation)
    flow.structure = _structure(layer.mode, _recurrent_of(layer)) if options.spectral else SPECTRAL_ON_REQUEST
    flow.gates = _gates(layer.mode, layer.gates, T)
    flow.jacobian = NotComputed(layer.no_step)
    return flow


def _extras(flow: LayerFlow, layer: RecordedLayer, options, rng, extras_fit: bool) -> None:
    """The opt-in measures of a layer with a step map: ``--jacobian`` and ``--lyapunov``, as the budget allows."""
    packed_why = NotComputed("a PackedSequence changes the batch between steps: step maps are not square")
    skipped = NotComputed(f"skipped: --budget {options.budget} s leaves too little time")
    if layer.packed and (options.jacobian or options.lyapunov):
        flow.jacobian = flow.lyapunov = packed_why
    elif options.jacobian:
        flow.jacobian = _jacobian_norms(layer, rng) if extras_fit else skipped
    else:
        flow.jacobian = NotComputed("runs on request: --jacobian (power iteration at lags 1, 2, 4, …, T-1)")
    if options.lyapunov and not layer.packed:
        flow.lyapunov = _lyapunov(layer, rng) if extras_fit else skipped


def _not_measured(flow: LayerFlow, what: str) -> None:
    """What recorded states cannot show: no weights, gates or step function of rnncheck's knowing."""
    why = f"{what}: rnncheck sees the states, not the weights or the step that made them"
    flow.structure = flow.structure or NotComputed(why)
    flow.gates = NotComputed(why)
    flow.jacobian = NotComputed(why)


def _fit(flow: LayerFlow, p: np.ndarray) -> None:
    """The propagation profile and its fitted decay."""
    flow.propagation = p.tolist()
    decay = fm.fit_decay(p)
    flow.rho, flow.horizon, flow.lag_1e3 = decay.rho, decay.horizon, decay.lag_1e3
    flow.span, flow.fit_intercept = decay.span, decay.intercept


def _backward_nonfinite(layer: RecordedLayer, norms: np.ndarray, time_of) -> Nonfinite | None:
    """The first non-finite dL/dh_t in the order the backward pass visits the steps, read from their norms in
    processing order (:func:`_norms`: a tensor's norm is finite exactly when all its entries are)."""
    for k in range(len(norms) - 1, -1, -1):
        if not math.isfinite(norms[k]):
            return Nonfinite(
                layer.name,
                time_of(k),
                "dL/dh",
                "backward",
                cause="overflow",
                explanation="the forward pass is finite: the gradient grew past the dtype's range going back",
            )
    return None


def _nonfinite_finding(bad: Nonfinite) -> Finding:
    return Finding(
        "nonfinite",
        Verdict.WARN,
        f"first non-finite value in the {bad.pass_} pass: {bad.tensor} of {bad.layer} at step {bad.step}"
        + (" (the backward pass visits the steps last to first)" if bad.pass_ == "backward" else "")
        + (f"; {bad.explanation}" if bad.explanation else ""),
        location=bad.to_json(),
    )


def _at_horizon(diagnostics: FlowDiagnostics, horizon: int | None) -> None:
    """Each layer's fitted change over the K steps the task needs (``--horizon``; default its own length)."""
    diagnostics.thresholds = {**diagnostics.thresholds, "horizon_steps": horizon}
    if horizon is None:
        return
    for flow in diagnostics.layers:
        if flow.rho is not None and flow.rho > 0:
            flow.span = math.exp(max(min(math.log(flow.rho) * horizon, 700.0), -745.0))


def _limiting_gate(layer: LayerFlow) -> str:
    """The gate whose timescale is the layer's memory, where its gates were seen (LSTM f, GRU z)."""
    if not isinstance(layer.gates, Gates) or layer.gates.timescale is None:
        return ""
    ts = layer.gates.timescale
    gate = layer.gates.gates.get(ts.gate)
    mean = gate.mean if gate is not None else float("nan")
    return f"; the memory is set by the {ts.gate} gate (mean {mean:.2g}, timescale {_fmt(ts.steps)} steps)"


def _verdict_finding(verdict: FlowVerdict, layers: list[LayerFlow], horizon: int | None = None) -> Finding:
    """The vanishing or exploding verdict, said with the layer that decided it, the rule, and what it is about."""
    spans = [flow.span for flow in layers]
    known = [s for s in spans if s is not None]
    if verdict == FlowVerdict.VANISHING and len(known) == len(spans):
        worst_span = min(spans)
    else:
        worst_span = max(known) if known else None
    rule = fm.THRESHOLDS[verdict]["rule"]
    at = int(np.nanargmin(spans) if verdict == FlowVerdict.VANISHING else np.nanargmax([s or 0 for s in spans]))
    layer = layers[at]
    K = horizon if horizon is not None else layer.steps - 1
    needs = f"the {K} steps --horizon asks for" if horizon is not None else f"the sequence's {K} steps back"
    message = (
        f"gradients are {verdict} through time in {layer.name}, the layer that limits the memory: fitted factor "
        f"per step ρ̂ = {_fmt(layer.rho)} of how far one step's loss reaches back (the k-steps-back decay, not the "
        f"per-step profile ‖dL/dh_t‖), {_fmt(worst_span)} over {needs} (rule: {rule}; "
        f"{fm.THRESHOLDS[verdict]['source']})"
    )
    if layer.horizon not in (None, math.inf):
        message += f"; horizon τ = {_fmt(layer.horizon)} steps"
    if layer.lag_1e3 is not None:
        message += f"; below 1e-3 after {layer.lag_1e3} steps"
    message += _limiting_gate(layer)
    mode = "linear" if layer.channels is not None else layer.mode
    words = fm.plain_words(verdict, layer.rho, layer.steps, mode, layer.lag_1e3)
    if words:
        message += f". In plain words: {words}"
    return Finding(
        "gradient_flow",
        Verdict.NOTE,
        message,
        numbers={"rho": layer.rho, "span": worst_span, "horizon": layer.horizon},
    )


def _adjoints(recording: Recording, rng) -> tuple[dict, list]:
    """dL/d(state) for every recorded state (by the state tensor's id, or every step's at once: :func:`_stepwise`),
    and for every layer l the propagation ∂⟨u_l, h_T⟩/∂h_t of a random unit functional u_l of its last state
    alone, lag 0 first.

    A fused layer's twin gets both by hand (:mod:`.twin_adjoints`); everything else from
    autograd, asked for the state tensors and nothing else, which spares it the weight
    gradients.  (A single pass batched over the cotangents with ``is_grads_batched``
    measured about twice as slow on the CPU.)  A recorder that gave its layers' norms
    itself (no loss tensor) needs none.
    """
    layers, loss = recording.layers, recording.loss
    if loss is None:
        return {}, [None for _ in layers]
    units = [_unit(layer, rng) for layer in layers]
    if recording.upstream is not None:  # the twins ran without a graph: every adjoint by hand
        return total_adjoints(recording, units)
    adjoint = _grads(loss, [t for layer in layers for s in layer.states for t in s if t.requires_grad])
    propagation = []
    for layer, u in zip(layers, units):
        known = propagation_by_hand(layer, u)
        if known is None:
            hs = [s[0] for s in layer.states]
            got = _grads((u * hs[-1]).sum(), [h for h in hs if h.requires_grad])
            known = [got.get(id(h)) for h in hs[::-1]]
        propagation.append(known)
    return adjoint, propagation


def _grads(out, wanted: list) -> dict[int, torch.Tensor | None]:
    """d out / d t for every tensor t in ``wanted``, by the tensor's id (none where ``out`` has no graph)."""
    if not wanted or not out.requires_grad:
        return {}
    got = torch.autograd.grad(out, wanted, retain_graph=True, allow_unused=True)
    return {id(t): g for t, g in zip(wanted, got)}


def _unit(layer: RecordedLayer, rng) -> torch.Tensor:
    """A random unit functional of the layer's last state."""
    last = layer.states[-1][0]
    u = torch.as_tensor(rng.normal(size=tuple(last.shape)), dtype=last.dtype, device=last.device)
    return u / u.norm()


def _fmt(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.3g}"


#: the structure's entry where ``--spectral`` was not given: its eigensolves cost about one forward+backward
#: of an LSTM(256) at batch 8 whatever the batch, and no verdict reads them (benchmarks/README.md §17)
SPECTRAL_ON_REQUEST = NotComputed("runs on request: --spectral (sigma_max and spectral radius of each recurrent block)")


def _recurrent_of(layer: RecordedLayer):
    """The layer's recurrent weight: its ``W_hh``, else the one weight it shows, else None."""
    return layer.weights.get("W_hh") if "W_hh" in layer.weights else next(iter(layer.weights.values()), None)


def _structure(mode, W) -> Structure | NotComputed:
    """``--spectral``: σ_max and the spectral radius of each square block of the recurrent weight ``W``."""
    if W is None:
        return NotComputed("no recurrent weight rnncheck can identify in this cell")
    W = W.detach()
    H = W.shape[1]
    names = GATES.get(mode, ()) if mode else ()
    if W.shape[0] % H != 0:
        return NotComputed(f"recurrent weight of shape {tuple(W.shape)} is not a stack of square blocks")
    blocks = W.shape[0] // H
    if not bool(torch.isfinite(W).all()):
        return NotComputed("the recurrent weight has non-finite entries (see the non-finite location)")
    names = names if len(names) == blocks else tuple(str(i) for i in range(blocks)) if blocks > 1 else ("",)
    spectra = fm.spectral_blocks(W.reshape(blocks, H, H))
    out = Structure({gname or "W_hh": BlockSpectrum(*spectrum) for gname, spectrum in zip(names, spectra)})
    if mode in fm.GAMMA:
        gamma, smax = fm.GAMMA[mode], out.blocks["W_hh"].sigma_max
        reading = "vanishing guaranteed" if smax * gamma < 1 else "exploding possible (necessary condition met)"
        out.pascanu = PascanuBound(gamma, smax * gamma, reading)
    return out


def _jvp(run, primals: tuple, tangents: tuple) -> tuple:
    """``J v`` by forward-mode AD (torch.autograd.forward_ad: far lighter than torch.func.jvp here)."""
    with fwAD.dual_level():
        duals = tuple(fwAD.make_dual(p, t) for p, t in zip(primals, tangents))
        out = run(*duals)
        return tuple(fwAD.unpack_dual(o).tangent for o in out)


def _vjp(run, primals: tuple, cotangents: tuple) -> tuple:
    """``Jᵀ u`` by reverse-mode AD on a fresh graph."""
    with torch.enable_grad():
        leaves = tuple(p.detach().requires_grad_(True) for p in primals)
        out = run(*leaves)
        grads = torch.autograd.grad(out, leaves, cotangents, allow_unused=True)
    return tuple(torch.zeros_like(p) if g is None else g for p, g in zip(primals, grads))


def _jacobian_norms(layer: RecordedLayer, rng) -> JacobianNorms | NotComputed:
    """‖∂state_T/∂state_k‖ at lags 1, 2, 4, … and T-1 by power iteration (4 iterations), never forming J.

    J v comes from forward-mode AD and Jᵀ u from reverse mode.  This is what shows the
    transient growth of non-normal weights at intermediate lags that the spectral radius
    misses.  It costs about 8·(T + T/2 + …) cell steps, so it runs on request (``--jacobian``).
    """
    T = len(layer.states)
    lags = sorted({min(2**i, T - 1) for i in range(int(math.log2(max(T - 1, 1))) + 1)} | {T - 1})
    xs = [x.detach() for x in layer.inputs]
    norms = {}
    for lag in lags:
        k = T - 1 - lag
        s0 = tuple(t.detach() for t in layer.states[k])

        def run(*state, k=k, step=layer.step, xs=xs):
            s = tuple(state)
            for t in range(k + 1, T):
                s = step(xs[t], s)
            return s

        try:
            v0 = _flat(
                tuple(torch.as_tensor(rng.normal(size=tuple(t.shape)), dtype=t.dtype, device=t.device) for t in s0)
            )
            norms[str(lag)] = fm.power_iteration(
                lambda v, run=run, s0=s0: _flat(_jvp(run, s0, _unflat(v, s0))),
                lambda u, run=run, s0=s0: _flat(_vjp(run, s0, _unflat(u, s0))),
                v0,
                iters=4,
            )
        except Exception as exc:  # a custom cell may not support forward-mode AD
            return NotComputed(f"the cell does not support JVP/VJP ({type(exc).__name__}: {first_line(exc)})"[:200])
    return JacobianNorms("power iteration with JVP/VJP, 4 iterations", norms)


def _unflat(v: torch.Tensor, like) -> tuple[torch.Tensor, ...]:
    out, i = [], 0
    for t in like:
        out.append(v[i : i + t.numel()].reshape(t.shape))
        i += t.numel()
    return tuple(out)


#: bins of each gate's histogram, over [0, 1] for a sigmoid gate and [-1, 1] for a tanh candidate
GATE_BINS = 20
#: the candidates squashed by tanh (an LSTM's g, a GRU's n); every other gate is a sigmoid
TANH_GATES = ("g", "n")


def _flat(steps) -> torch.Tensor:
    """Every step's values in one flat tensor: a fused layer's (T, B, H) at once, a list step by step (a packed
    input's steps differ in rows)."""
    if isinstance(steps, torch.Tensor):
        return steps.detach().reshape(-1)
    return torch.cat([t.detach().reshape(-1) for t in steps])


def _gates(mode, gates: dict, T: int) -> Gates | NotComputed:
    """Each gate's mean, saturation shares and histogram (``gates``: name -> activations per step).

    The saturation thresholds (0.1 and 0.9; |a| > 0.9 for a tanh candidate) fall on the
    histogram's bin edges, and each value's bin is exact (:func:`_gate_counts`), so the shares
    are sums of the counts, exactly what comparing every value with the thresholds gives.  A value outside
    its gate's range (a custom cell's) or a NaN is left out of the histogram; the shares are
    then counted by comparison.
    """
    if not gates:
        plain = mode in (Mode.RNN_TANH, Mode.RNN_RELU, Mode.RNN_SIGMOID)
        return NotComputed("a plain RNN has no gates" if plain else "the cell does not expose its gates")
    names = list(gates)
    tanh = [name in TANH_GATES for name in names]
    # every gate at once: (gates, values), in float32 (a float64 model's rounded, as the thresholds are read)
    a = torch.stack([_flat(gates[name]) for name in names]).float()
    n = a.shape[1]
    lo = [-1.0 if t else 0.0 for t in tanh]
    # (aminmax measured 15x slower than amin and amax on the CPU)
    stats = torch.stack([a.mean(1, dtype=torch.float64), a.amin(1).double(), a.amax(1).double()], 1).tolist()
    inside = all(least >= low_end and most <= 1.0 for (_, least, most), low_end in zip(stats, lo))
    counts = _gate_counts(a, lo, inside)
    per_gate = [counts[k * GATE_BINS : (k + 1) * GATE_BINS] for k in range(len(names))]
    if inside:  # each gate's (below, above) counts, from its histogram: the thresholds are bin edges
        tails = [_edge_counts(c, t) for c, t in zip(per_gate, tanh)]
    else:
        low, high = fm.SATURATION
        thresholds = torch.tensor([-high if t else low for t in tanh], dtype=a.dtype, device=a.device)[:, None]
        tails = list(zip((a < thresholds).sum(1).tolist(), (a > high).sum(1).tolist()))
    out = Gates({})
    for name, is_tanh, (mean, _, _), counts_k, (below, above) in zip(names, tanh, stats, per_gate, tails):
        histogram = Histogram(list(_EDGES[is_tanh]), counts_k)
        if is_tanh:  # saturated means |a| > 0.9
            out.gates[name] = GateStats(mean, histogram, (below + above) / n)
        else:
            out.gates[name] = GateStats(mean, histogram, (below + above) / n, below=below / n, above=above / n)
    keep = "f" if "f" in out.gates else "z" if "z" in out.gates else None
    if keep:
        ts = fm.timescale(out.gates[keep].mean)
        out.timescale = Timescale(keep, ts, T, ts / T)
    return out


#: each histogram's edges: a tanh candidate's over [-1, 1], a sigmoid gate's over [0, 1]
_EDGES = {t: np.linspace(-1.0 if t else 0.0, 1.0, GATE_BINS + 1).tolist() for t in (True, False)}


def _saturation_bins(tanh: bool) -> tuple[int, int]:
    """How many bins lie below the low saturation threshold, and from which bin on a value is above the high one."""
    low, high = fm.SATURATION
    lo = -1.0 if tanh else 0.0
    edges = [((-high if tanh else low) - lo) * GATE_BINS / (1 - lo), (high - lo) * GATE_BINS / (1 - lo)]
    if any(abs(e - round(e)) > 1e-9 for e in edges):
        raise RuntimeError("the gate saturation thresholds must fall on the histogram's bin edges")
    return round(edges[0]), round(edges[1])


_SATURATION_BINS = {t: _saturation_bins(t) for t in (True, False)}


def _edge_counts(counts: list[int], tanh: bool) -> tuple[int, int]:
    """How many of one gate's values lie below the low threshold and above the high one, from its histogram."""
    below, above = _SATURATION_BINS[tanh]
    return sum(counts[:below]), sum(counts[above:])


def _gate_counts(a: torch.Tensor, lo: list[float], inside: bool) -> list[int]:
    """Each gate's histogram counts, gate after gate: bin ⌊(a − lo)·GATE_BINS/(1 − lo)⌋, the top edge joining the
    last bin; values outside the range (or NaN) left out.  ``a`` holds float32 values: in float64 a value times
    20 (or 10) is exact, and no value lies within float64's rounding of an edge without lying on it, so every
    value lands in its own bin.  ``inside``: every value is in range, which spares the mask."""
    G, width = len(lo), GATE_BINS + 1  # each gate's bins, and one more for a value on the top edge
    scale = [GATE_BINS / (1.0 - low) for low in lo]
    column = functools.partial(torch.tensor, dtype=torch.float64, device=a.device)
    # gate k's bins numbered from k·width on, in one multiply-add; in range the argument is ≥ 0, so that
    # truncation to an integer is the floor
    x = a.double()  # (a multiply-add that mixes dtypes measured 10x slower than the conversion and one in float64)
    bins = torch.addcmul(
        column([k * width - low * s for k, (low, s) in enumerate(zip(lo, scale))])[:, None], x, column(scale)[:, None]
    )
    if not inside:
        low_end = column(lo)[:, None]
        bins = torch.where((x >= low_end) & (x <= 1.0), bins, G * width)
    counts = torch.bincount(bins.int().reshape(-1), minlength=G * width + 1).tolist()
    out = []
    for k in range(G):  # the top edge joins the last bin
        own = counts[k * width : (k + 1) * width]
        out += own[: GATE_BINS - 1] + [own[GATE_BINS - 1] + own[GATE_BINS]]
    return out


def _lyapunov(layer: RecordedLayer, rng, k: int = 4) -> Lyapunov | NotComputed:
    """Leading Lyapunov exponents of the first sequence in the batch, QR method, natural log per step."""
    T = len(layer.states)
    warmup = T // 4
    s_prev = [tuple(t.detach()[:1] for t in layer.states[i - 1]) if i else None for i in range(T)]
    xs = [x.detach()[:1] for x in layer.inputs]
    like = tuple(t.detach()[:1] for t in layer.states[0])
    dim = sum(t.numel() for t in like)
    k = min(k, dim)
    apply_js = []
    for t in range(1, T):

        def apply(Q, t=t):
            cols = []
            for j in range(Q.shape[1]):
                tangent = _unflat(torch.as_tensor(Q[:, j], dtype=like[0].dtype, device=like[0].device), like)
                cols.append(
                    _flat(_jvp(lambda *s: layer.step(xs[t], tuple(s)), s_prev[t], tangent)).double().cpu().numpy()
                )
            return np.stack(cols, axis=1)

        apply_js.append(apply)
    try:
        exps = fm.lyapunov(apply_js, dim, k, warmup, rng)
    except Exception as exc:  # a custom cell may not support forward-mode AD
        return NotComputed(f"{type(exc).__name__}: {first_line(exc)}"[:200])
    return Lyapunov(exps.tolist(), warmup)
