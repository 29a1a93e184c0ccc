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

import contextlib
import copy
import math
import time

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

from .. import flowmath as fm
from .. import reference as R
from ..convert import mode_of
from ..errors import first_line
from ..findings import CheckName, CheckResult, Finding, FlowDiagnostics, FlowVerdict, LayerFlow, Verdict, worst
from ..nested import float_outputs, replace
from ..recording import recording
from ..reference import Mode
from ..tolerances import current as tolerances
from ..twins import GATES, active_dropout, cell_step, dropout_off, fused_layers, project_inputs, swap_fused
from ..usercode import call_user
from .flow_recorded import measure_stacked


def _as_tuple(state) -> tuple[torch.Tensor, ...]:
    return (state,) if isinstance(state, torch.Tensor) else tuple(state)


class _Layer:
    """One recurrent layer-direction: its recorded states and how to step it."""

    def __init__(self, name, mode, states, inputs, step_in, weights, gates):
        self.name = name
        self.mode = mode  # "lstm", "gru", "rnn_tanh" … or None for a custom cell
        self.states = states  # list of state tuples in processing order
        self.inputs = inputs  # list of the step's inputs in processing order
        self.step_in = step_in  # step_in(dtype) -> step(x_t, state_tuple) -> state_tuple, parameters in dtype
        self.step = step_in(None)
        self.weights = weights  # {"W_hh": tensor} for structure, may be empty
        self.gates = gates  # gate -> list of activations (processing order), may be empty
        self.packed = False  # fed a PackedSequence: inputs and states differ in batch rows
        self.state0 = None  # the state before the first step, where known
        self.source = None  # where the states came from, when not a twin or the cell loop
        self.finite = False  # known to hold only finite states (set by _all_finite)


def _collect(case, target) -> tuple[list[_Layer], list, object, dict, list[Finding], str | None, dict | None]:
    """Run one recorded forward: the layers recorded step by step, the stacked records, the loss tensor,
    the leaves it was computed from, findings, a reason if nothing to measure, and for fused layers how well
    their unrolled twin reproduces them."""
    values = {n: t.clone().requires_grad_(True) for n, t in target.saved.items()}
    params = {n: values[n] for n in target.param_names}
    args = tuple(_replace_inputs(target, values))
    if target.cell_loop is not None:
        layers, loss, findings, reason = _record_cell_loop(target, values, params, args)
        return layers, [], loss, values, findings, reason, None
    layers, loss, findings, twin, recorder = _record_model(case, target, values, params, args)
    if any(r.stacked is not None and r.decay is None for r in recorder.records.values()):
        # the inputs' influence needs every floating input as a leaf: one more forward, with them
        values = {**values, **_input_leaves(target)}
        args = tuple(_replace_inputs(target, values, every=True))
        layers, loss, findings, twin, recorder = _record_model(case, target, values, params, args)
    layers += [_recorded_layer(r) for r in recorder.records.values() if r.stacked is None and len(r.steps)]
    stacked = [r for r in recorder.records.values() if r.stacked is not None]
    findings += [Finding("record_problem", Verdict.WARN, p) for p in recorder.problems]
    reason = None
    if not layers and not stacked:
        reason = (
            "no nn.RNN/nn.LSTM/nn.GRU inside, not a CellCase, and no rnncheck.record(...) call in forward: "
            "rnncheck cannot see the hidden states (call rnncheck.record(h, name=...) on each step's state, "
            "or on the stacked states with time_dim=, and decay= for a diagonal linear recurrence)"
        )
    return layers, stacked, loss, values, findings, reason, twin


def _record_model(case, target, values, params, args):
    """One forward with every record() call kept, fused layers swapped for their recording twins."""
    with recording() as recorder:
        if fused_layers(target.model):
            layers, loss, findings, _, twin = _record_twins(target, values, params, args)
        else:
            out, loss = _loss_through(target, _flow_model(case, target), params, args)
            layers, findings, twin = [], [], None
            if not recorder.records:  # a FunctionCase: its output is the states
                case.output_states(recorder, out, values)
    return layers, loss, findings, twin, recorder


def _flow_model(case, target):
    """The module whose states the flow check records: a StepCase's step form (rnncheck loops it), else the model."""
    model = case.step_model
    if model is None:
        return target.model
    dtype = getattr(torch, target.dtype_option) if target.dtype_option else None
    if target.device.type != "cpu" or dtype is not None:
        model = copy.deepcopy(model).to(device=target.device, dtype=dtype)
    return model


def _input_leaves(target) -> dict[str, torch.Tensor]:
    """Every floating input the case does not already check, as a leaf that requires grad."""
    return {
        p: t.detach().clone().requires_grad_(True)
        for p, t in target.saved_inputs.items()
        if t.is_floating_point() and p not in target.input_names
    }


def _recorded_layer(record) -> _Layer:
    """States recorded one step at a time: a layer whose states sit in the recurrence's own graph."""
    layer = _Layer(record.name, None, list(record.steps), [], lambda dtype: None, {}, {})
    layer.step = None
    layer.source = "rnncheck.record, one state per step"
    return layer


def _loss_through(target, model, params, args):
    """``(output, loss)`` of ``model`` run on the case's values with autograd on: the recorders' one forward."""
    with torch.enable_grad():
        target.seed_call()
        out = call_user("the model's forward", functional_call, model, params, args, user_file=target.case.file or None)
        return out, target.loss_of(out)


def _record_cell_loop(target, values, params, args) -> tuple[list[_Layer], object, list[Finding], str | None]:
    """A CellCase: rnncheck's own loop records every state as it runs the user's cell."""
    loop = target.cell_loop
    loop.record = []
    try:
        _, loss = _loss_through(target, loop, params, args)
    finally:
        record, loop.record = loop.record, None
    states = [_as_tuple(s) for s in record]
    cell = loop.cell
    mode = mode_of(cell)
    cell_params = {n[len("cell.") :]: values[n].detach() for n in target.param_names if n.startswith("cell.")}

    def step_in(dtype, cell=cell, cell_params=cell_params):
        cp = cell_params if dtype is None else {n: v.to(dtype) for n, v in cell_params.items()}

        def step(x, s):
            return _as_tuple(functional_call(cell, cp, (x, s[0] if len(s) == 1 else s)))

        return step

    weights = {n: p for n, p in cell_params.items() if "weight_hh" in n and p.dim() == 2}
    gates: dict = {}
    if mode is not None and mode in GATES:
        p = {
            "W_ih": cell_params["weight_ih"],
            "W_hh": cell_params["weight_hh"],
            "b_ih": cell_params["bias_ih"],
            "b_hh": cell_params["bias_hh"],
        }
        prev = _as_tuple(args[1])
        with torch.no_grad():
            xp = project_inputs(mode, args[0], p)
            for x, s in zip(xp, states):
                cell_step(mode, x, tuple(t.detach() for t in prev), p, gates)
                prev = s
    layer = _Layer("cell", mode, states, list(args[0]), step_in, weights, gates)
    layer.state0 = _as_tuple(args[1])
    return [layer], loss, [], None


def _record_twins(target, values, params, args) -> tuple[list[_Layer], object, list[Finding], str | None, dict]:
    """nn.RNN/LSTM/GRU: run the model with each fused layer swapped for its unrolled twin, which records the states."""
    findings: list[Finding] = []
    with swap_fused(target.model) as twins:
        for twin in twins.values():
            twin.traces = []
        try:
            out, loss = _loss_through(target, target.model, params, args)
        finally:
            traces = {name: (tw, tw.traces) for name, tw in twins.items()}
            for tw in twins.values():
                tw.traces = None
    # the twin must reproduce the fused model's own output (kept from the gradient call); the twin draws no
    # inter-layer dropout masks, so a model with them on is compared, and described, with them off
    dropping = active_dropout(target.model)
    ref_out = target.last_output if not dropping else None
    if ref_out is None:
        with torch.no_grad(), contextlib.ExitStack() as stack:
            for mod, p in dropping:
                stack.enter_context(dropout_off(mod, p))
            ref_out = functional_call(target.model, {n: v.detach() for n, v in params.items()}, args)
    if dropping:
        findings.append(
            Finding(
                "flow_dropout",
                Verdict.NOTE,
                f"the flow is measured with the inter-layer dropout of {len(dropping)} layer(s) off (p = "
                f"{', '.join(f'{p:g}' for _, p in dropping)}): the unrolled twin draws no masks",
            )
        )
    diff = _max_rel_diff(ref_out, out)
    eps = max(torch.finfo(next(iter(values.values())).dtype).eps, target.model_eps / 64)
    agreement = {
        "fused_layers": len(twins),
        "max_rel_diff": diff,
        "reproduces": bool(diff <= tolerances().twin_ulps * eps),
    }
    if not agreement["reproduces"]:
        findings.append(
            Finding(
                "twin_mismatch",
                Verdict.WARN,
                f"the unrolled twin does not reproduce the fused layers' output (max rel diff {diff:.2g}): "
                "the profile describes the twin, which may not be the model",
                numbers={"max_rel_diff": diff},
            )
        )
    layers = []
    for name, (twin, tr) in traces.items():
        for trace in tr:
            p = trace.params  # the weights the layer used in this very forward

            def step_in(dtype, mode=twin.spec.mode, p=p):
                pd = p if dtype is None else {k: v.to(dtype) for k, v in p.items()}
                return lambda x, s: cell_step(mode, x, s, pd)

            layers.append(
                _Layer(
                    f"{name or 'rnn'}/{trace.name}",
                    twin.spec.mode,
                    trace.states,
                    trace.inputs,
                    step_in,
                    {"W_hh": _recurrent_weight(p)},
                    trace.gates,
                )
            )
            layers[-1].packed = trace.packed
            layers[-1].state0 = trace.state0
    return layers, loss, findings, None, agreement


def _replace_inputs(target, values, every: bool = False):
    names = [n for n in values if n in target.saved_inputs] if every else target.input_names
    return replace(target.inputs, "input", {n: values[n] for n in names}, lambda t: t)


def _max_rel_diff(a, b) -> float:
    xs, ys = float_outputs(a), float_outputs(b)
    worst = 0.0
    for x, y in zip(xs, ys):
        x, y = x.detach(), y.detach()
        scale = float(x.abs().max()) or 1.0
        worst = max(worst, float((x - y).abs().max()) / scale)
    return worst


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

    Same-shaped runs are stacked and reduced at once: one pass per run, not one per step.
    """
    out = np.zeros(len(tensors))
    present = [(i, t) for i, t in enumerate(tensors) if t is not None]
    start = 0
    for group in _groups([t for _, t in present]):
        rows = torch.stack([t.detach().reshape(-1) for t in group]).double()
        big = rows.abs().amax(dim=1)
        safe = torch.where(torch.isfinite(big) & (big > 0), big, torch.ones_like(big))
        norms = safe * (rows / safe[:, None]).pow(2).sum(dim=1).sqrt()
        norms = torch.where(torch.isfinite(big), norms, big)
        for k, value in enumerate(norms.cpu().tolist()):
            out[present[start + k][0]] = value
        start += len(group)
    return out


def _first_nonfinite_forward(layer: _Layer, time_of) -> dict | None:
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
                return {"layer": layer.name, "step": time_of(k), "tensor": f"gate {gate}", "k": k}
        for name, t in zip(("h", "c"), s):
            if not torch.isfinite(t).all():
                return {"layer": layer.name, "step": time_of(k), "tensor": name, "k": k}
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


def _nonfinite_cause(layer: _Layer, bad: dict, source: dict | None) -> dict:
    """Why the first non-finite forward value appeared: it came in, the recurrence outgrew the dtype, or an operation made it."""
    if source is not None:
        where = f"{source['tensor']}{source['index']}"
        return {
            "cause": source["cause"],
            "explanation": f"it came in with the {source['cause']} {where} = {source['value']}: "
            "the data holds it, the gradient flow does not make it",
            "source": source,
        }
    k = bad.get("k", 0)
    prev = layer.states[k - 1] if k > 0 else layer.state0
    if prev is None:
        return {}
    finite_prev = [t.detach() for t in prev if bool(torch.isfinite(t).all())]
    big = max((float(t.abs().max()) for t in finite_prev if t.numel()), default=0.0)
    dtype = prev[0].dtype
    if big >= math.sqrt(torch.finfo(dtype).max):
        return {
            "cause": "overflow",
            "explanation": f"the state before it reached |h| = {big:.3g}: the recurrence grew it past {dtype}'s range",
        }
    op = _first_nonfinite_op(layer, k, prev)
    return {
        "cause": "operation",
        "operation": op,
        "explanation": "an operation made it from finite values of moderate size"
        + (f" ({op})" if op else "")
        + ", e.g. the log or square root of a negative number, or 0/0",
    }


def _first_nonfinite_op(layer: _Layer, k: int, prev) -> str | None:
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
) -> tuple[CheckResult | None, FlowDiagnostics]:
    """The flow diagnostics of one case: a CheckResult (or None) and the :class:`FlowDiagnostics`.

    With a ``clock``, the soft budget holds here too: it ticks between layers (stopping the
    case once the budget is spent) and the costly opt-in extras are skipped, with the
    reason said, when what is left of the budget could not hold them.
    """
    diagnostics = FlowDiagnostics(thresholds=fm.THRESHOLDS)
    if not target.records_states:
        return _numpy_flow(target, options, rng, diagnostics)
    layers, stacked, loss, leaves, findings, reason, diagnostics.twin = _collect(case, target)
    if reason:
        diagnostics.not_computed["all"] = reason
        return (
            CheckResult(CheckName.FLOW, worst(f.verdict for f in findings), findings) if findings else None
        ), diagnostics
    T = len(layers[0].states) if layers else stacked[0].stacked.shape[stacked[0].time_dim]
    if T < 2:
        diagnostics.not_computed["all"] = f"the sequence has {T} step(s): there is no flow through time to measure"
        return (CheckResult(CheckName.FLOW, Verdict.PASS, findings) if findings else None), diagnostics

    # the total dL/d(state) of every step, and nothing else: asking autograd for these
    # tensors alone spares it the weight gradients
    state_tensors = [t for layer in layers for s in layer.states for t in s]
    wanted = [t for t in state_tensors if t.requires_grad]
    loss_value = float(loss.detach())
    # and, per layer, the propagation of a unit functional u of its last state alone;
    # all of them in one batched backward pass where the ops allow it
    units = []
    for layer in layers:
        last = layer.states[-1][0]
        u = torch.as_tensor(rng.normal(size=tuple(last.shape)), dtype=last.dtype, device=last.device)
        units.append(u / u.norm())
    adjoint, propagation = _adjoints(loss, layers, units, wanted)

    nonfinite = not math.isfinite(loss_value)
    source = _nonfinite_source(target) if nonfinite or not _all_finite(layers) else None
    causes: list[str | None] = []
    layer_started = time.perf_counter()
    for li, layer in enumerate(layers):
        if clock is not None:
            clock.tick()
        per_layer = (time.perf_counter() - layer_started) / max(li, 1)
        extras_fit = _extras_fit(clock, per_layer, len(layers) - li)
        flow = measure_layer(layer, adjoint, propagation[li], options, rng, extras_fit, source)
        diagnostics.layers.append(flow)
        if flow.nonfinite is not None or not np.all(np.isfinite(flow.propagation + flow.profile)):
            nonfinite = True
        if flow.nonfinite is not None:
            causes.append(flow.nonfinite.get("cause"))
            findings.append(_nonfinite_finding(flow.nonfinite))

    for record in stacked:
        flow = measure_stacked(record, loss, leaves, rng)
        _fit(flow, np.asarray(flow.propagation if flow.propagation else [np.nan] * flow.steps, dtype=float))
        _not_measured(flow, "stacked states recorded by rnncheck.record")
        diagnostics.layers.append(flow)
        if not bool(torch.isfinite(record.stacked).all()) or not np.all(np.isfinite(flow.propagation + flow.profile)):
            nonfinite = True
        if flow.channels is not None:
            findings.append(
                Finding(
                    "flow_channels",
                    Verdict.NOTE,
                    f"{flow.name}: {fm.describe_channels(flow.channels)}",
                    numbers={"channels": flow.channels["channels"]},
                )
            )

    _at_horizon(diagnostics, options.horizon)
    spans = [flow.span for flow in diagnostics.layers]
    cause = next((c for c in causes if c), source["cause"] if source else None)
    verdict = fm.flow_verdict(spans, nonfinite, cause)
    diagnostics.gradient_flow = verdict and FlowVerdict(verdict)
    if nonfinite:
        diagnostics.nonfinite_cause = cause
    if diagnostics.gradient_flow in (FlowVerdict.VANISHING, FlowVerdict.EXPLODING):
        findings.append(_verdict_finding(diagnostics.gradient_flow, diagnostics.layers, options.horizon))
    result = CheckResult(
        CheckName.FLOW, worst(f.verdict for f in findings), findings, numbers={"gradient_flow": verdict}
    )
    return result, diagnostics


def measure_layer(layer: _Layer, adjoint: dict, propagation: dict, options, rng, extras_fit: bool, source) -> LayerFlow:
    """Everything measured on one layer-direction from its recorded states and the adjoints of one backward pass."""
    T = len(layer.states)
    reverse = layer.name.endswith("_reverse")

    def time_of(k):
        return T - 1 - k if reverse else k

    flow = LayerFlow(layer.name, layer.mode, T)
    h = [s[0] for s in layer.states]
    g = _norms([adjoint.get(id(t)) for t in h])
    flow.profile = (g[::-1] if reverse else g).tolist()  # time order
    if len(layer.states[0]) > 1:
        gc = _norms([adjoint.get(id(s[1])) for s in layer.states])
        flow.profile_c = (gc[::-1] if reverse else gc).tolist()
    # propagation: lag 0 = the last state
    p = _norms([propagation.get(id(t)) for t in h])[::-1]
    _fit(flow, p)
    flow.structure = _structure(layer.mode, _recurrent_of(layer)) if options.spectral else dict(SPECTRAL_ON_REQUEST)
    flow.gates = _gates(layer.mode, layer.gates, T)

    if layer.step is None:  # states recorded by rnncheck.record: no step function to differentiate
        flow.source, flow.structure = layer.source, {}
        _not_measured(flow, "states recorded by rnncheck.record")
        flow.nonfinite = _backward_nonfinite(layer, adjoint, h, time_of) or _first_nonfinite_forward(layer, time_of)
        return flow
    packed_why = {"not_computed": "a PackedSequence changes the batch between steps: step maps are not square"}
    skipped = {"not_computed": f"skipped: --budget {options.budget} s leaves too little time"}
    if layer.packed and (options.jacobian or options.lyapunov):
        flow.jacobian = flow.lyapunov = packed_why
    elif options.jacobian:
        flow.jacobian = _jacobian_norms(layer, rng) if extras_fit else skipped
    else:
        flow.jacobian = {"not_computed": "runs on request: --jacobian (power iteration at lags 1, 2, 4, …, T-1)"}

    bad = _first_nonfinite_forward(layer, time_of)
    if bad is not None:
        bad.update(_nonfinite_cause(layer, bad, source))
        bad["pass"] = "forward"
    else:
        bad = _backward_nonfinite(layer, adjoint, h, time_of)
    flow.nonfinite = bad
    if options.lyapunov and not layer.packed:
        flow.lyapunov = _lyapunov(layer, rng) if extras_fit else skipped
    return flow


def _not_measured(flow: LayerFlow, what: str) -> None:
    """What recorded states cannot show: no weights, gates or step function of rnncheck's knowing."""
    why = f"{what}: rnncheck sees the states, not the weights or the step that made them"
    flow.structure = flow.structure or {"not_computed": why}
    flow.gates = {"not_computed": why}
    flow.jacobian = {"not_computed": why}


def _fit(flow: LayerFlow, p: np.ndarray) -> None:
    """The propagation profile and its fitted decay."""
    flow.propagation = p.tolist()
    decay = fm.fit_decay(p)
    flow.rho, flow.horizon, flow.lag_1e3 = decay.rho, decay.horizon, decay.lag_1e3
    flow.span, flow.fit_intercept = decay.span, decay.intercept


def _backward_nonfinite(layer: _Layer, adjoint: dict, h: list, time_of) -> dict | None:
    """The first non-finite dL/dh_t in the order the backward pass visits the steps."""
    for k in range(len(h) - 1, -1, -1):
        gk = adjoint.get(id(h[k]))
        if gk is not None and not torch.isfinite(gk).all():
            return {
                "layer": layer.name,
                "step": time_of(k),
                "tensor": "dL/dh",
                "pass": "backward",
                "cause": "overflow",
                "explanation": "the forward pass is finite: the gradient grew past the dtype's range going back",
            }
    return None


def _nonfinite_finding(bad: dict) -> Finding:
    return Finding(
        "nonfinite",
        Verdict.WARN,
        f"first non-finite value in the {bad['pass']} pass: {bad['tensor']} of {bad['layer']} at step {bad['step']}"
        + (" (the backward pass visits the steps last to first)" if bad["pass"] == "backward" else "")
        + (f"; {bad['explanation']}" if bad.get("explanation") else ""),
        location=bad,
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
    ts = (layer.gates or {}).get("timescale")
    if not ts:
        return ""
    gate = layer.gates.get(ts["gate"], {})
    return (
        f"; the memory is set by the {ts['gate']} gate (mean {gate.get('mean', float('nan')):.2g}, timescale "
        f"{_fmt(ts['steps'])} steps)"
    )


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


def _adjoints(loss, layers, units, wanted):
    """dL/d(state) for every recorded state, and ∂⟨u_l, h_T⟩/∂h_t for every layer l.

    One backward pass per output, each asking for the states alone, so that autograd
    skips the weight gradients.  (A single pass batched over the cotangents with
    ``is_grads_batched`` measured about twice as slow on the CPU.)
    """
    outputs = [loss] + [(u * layer.states[-1][0]).sum() for u, layer in zip(units, layers)]
    rows: list[dict[int, torch.Tensor | None]] = []
    for out in outputs:
        if not wanted or not out.requires_grad:
            rows.append({})
            continue
        got = torch.autograd.grad(out, wanted, retain_graph=True, allow_unused=True)
        rows.append({id(t): g for t, g in zip(wanted, got)})
    return rows[0], rows[1:]


def _fmt(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.3g}"


def _recurrent_weight(p: dict):
    """The weight that carries the cell's own state to the next step's gates.

    With a projection (nn.LSTM(proj_size=P)) h_t = W_hr m_t, so the gates see W_hh W_hr m_(t-1):
    (4H, P) @ (P, H), a stack of square H×H blocks like any LSTM's W_hh.
    """
    return p["W_hh"] @ p["W_hr"] if "W_hr" in p else p["W_hh"]


#: the structure's entry where ``--spectral`` was not given: its eigensolves cost about one forward+backward
#: of an LSTM(256) at batch 8 whatever the batch, and no verdict reads them (benchmarks/README.md §17)
SPECTRAL_ON_REQUEST = {
    "not_computed": "runs on request: --spectral (sigma_max and spectral radius of each recurrent block)"
}


def _recurrent_of(layer: _Layer):
    """The layer's recurrent weight: its ``W_hh``, else the one weight it shows, else None."""
    return layer.weights.get("W_hh") if "W_hh" in layer.weights else next(iter(layer.weights.values()), None)


def _structure(mode, W) -> dict:
    """``--spectral``: σ_max and the spectral radius of each square block of the recurrent weight ``W``."""
    out: dict = {}
    if W is None:
        out["not_computed"] = "no recurrent weight rnncheck can identify in this cell"
        return out
    W = W.detach()
    H = W.shape[1]
    names = GATES.get(mode, ()) if mode else ()
    if W.shape[0] % H != 0:
        out["not_computed"] = f"recurrent weight of shape {tuple(W.shape)} is not a stack of square blocks"
        return out
    blocks = W.shape[0] // H
    if not bool(torch.isfinite(W).all()):
        out["not_computed"] = "the recurrent weight has non-finite entries (see the non-finite location)"
        return out
    names = names if len(names) == blocks else tuple(str(i) for i in range(blocks)) if blocks > 1 else ("",)
    for gname, (smax, rad, how) in zip(names, fm.spectral_blocks(W.reshape(blocks, H, H))):
        out[gname or "W_hh"] = {"sigma_max": smax, "spectral_radius": rad, "radius_method": how}
    if mode in fm.GAMMA:
        gamma = fm.GAMMA[mode]
        smax = out["W_hh"]["sigma_max"]
        out["pascanu"] = {
            "gamma": gamma,
            "sigma_max_times_gamma": smax * gamma,
            "reading": "vanishing guaranteed" if smax * gamma < 1 else "exploding possible (necessary condition met)",
        }
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


def _jacobian_norms(layer: _Layer, rng) -> dict:
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
            return {
                "not_computed": f"the cell does not support JVP/VJP ({type(exc).__name__}: {first_line(exc)})"[:200]
            }
    return {"method": "power iteration with JVP/VJP, 4 iterations", "norms": norms}


def _flat(ts) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


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


def _gates(mode, gates: dict, T: int) -> dict:
    """Each gate's mean, saturation shares and histogram (``gates``: name -> activations per step); every
    number in one pass and one transfer."""
    if not gates:
        return {
            "not_computed": "the cell does not expose its gates"
            if mode not in (Mode.RNN_TANH, Mode.RNN_RELU, Mode.RNN_SIGMOID)
            else "a plain RNN has no gates"
        }
    names = list(gates)
    lows = [-1.0 if name in TANH_GATES else 0.0 for name in names]  # a histogram's range: tanh's or sigmoid's
    stats, bins = [], []
    for k, (name, lo) in enumerate(zip(names, lows)):
        a = torch.cat([t.detach().reshape(-1) for t in gates[name]]).float()  # steps may differ in rows
        # as torch.histc(bins=GATE_BINS, min=lo, max=1): the top edge joins the last bin, values outside are left out
        inside = (a >= lo) & (a <= 1.0)
        b = ((a - lo) * (GATE_BINS / (1.0 - lo))).floor().clamp(0, GATE_BINS - 1)
        bins.append(torch.where(inside, b + k * GATE_BINS, len(names) * GATE_BINS).long())
        stats.append(
            torch.stack(
                [
                    a.mean(),
                    (a < fm.SATURATION[0]).float().mean(),
                    (a > fm.SATURATION[1]).float().mean(),
                    (a.abs() > fm.SATURATION[1]).float().mean(),
                ]
            )
        )
    counts = torch.bincount(torch.cat(bins), minlength=len(names) * GATE_BINS + 1).tolist()
    out = {}
    for k, (name, lo, (mean, low, high, wide)) in enumerate(zip(names, lows, torch.stack(stats).double().tolist())):
        entry = {
            "mean": mean,
            "histogram": {
                "edges": np.linspace(lo, 1.0, GATE_BINS + 1).tolist(),
                "counts": counts[k * GATE_BINS : (k + 1) * GATE_BINS],
            },
        }
        if name in TANH_GATES:  # saturated means |a| > 0.9
            entry["saturated"] = wide
        else:
            entry.update(below=low, above=high, saturated=low + high)
        out[name] = entry
    keep = "f" if "f" in out else "z" if "z" in out else None
    if keep:
        ts = fm.timescale(out[keep]["mean"])
        out["timescale"] = {"gate": keep, "steps": ts, "sequence_length": T, "ratio": ts / T}
    return out


def _lyapunov(layer: _Layer, rng, k: int = 4) -> dict:
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
        return {"not_computed": f"{type(exc).__name__}: {first_line(exc)}"[:200]}
    return {"exponents": exps.tolist(), "log_base": "e", "per": "step", "warmup_steps": warmup, "sample": 0}


def _numpy_flow(target, options, rng, diagnostics: FlowDiagnostics) -> tuple[CheckResult | None, FlowDiagnostics]:
    """A NumpyCase's flow, from the reference's adjoints where it names one; else what cannot be seen, and why."""

    got = target.reference_link()
    if got is None:
        diagnostics.not_computed["all"] = (
            "a NumpyCase shows rnncheck its loss only as a whole, so the hidden states are out of sight; "
            "name the architecture with reference=, inputs= and head= to get the profile from the reference's adjoints"
        )
        return None, diagnostics
    link, _ = got
    d_out = target.head_gradient(link)
    spec = link.spec
    T = link.x.shape[0]
    if T < 2:
        diagnostics.not_computed["all"] = f"the sequence has {T} step(s): there is no flow through time to measure"
        return None, diagnostics
    out, _, cache = link.forward()
    g = R.backward(cache, d_out) if d_out is not None else None
    findings: list[Finding] = []
    spans, nonfinite = [], False
    L, D = spec.num_layers, spec.directions
    for layer in range(L):
        for d in range(D):
            k = layer * D + d
            name = f"reference/l{layer}" + ("_reverse" if d else "")
            flow = LayerFlow(name, spec.mode, T, source="the NumPy reference's adjoints")
            if g is not None:
                flow.profile = np.linalg.norm(g.dh[k].reshape(T, -1), axis=1).tolist()
                if g.dc is not None:
                    flow.profile_c = np.linalg.norm(g.dc[k].reshape(T, -1), axis=1).tolist()
            else:
                flow.profile = [float("nan")] * T
                diagnostics.not_computed["profile"] = "needs head= to know dL/dh_t"
            # propagation: a unit functional of this layer-direction's last state, alone
            last = T - 1 if not d else 0
            u = rng.normal(size=out.shape[1:2] + (spec.output_size,))
            u /= np.linalg.norm(u)
            d_seq = np.zeros_like(out)
            if layer == L - 1:
                d_seq[last, :, d * spec.output_size : (d + 1) * spec.output_size] = u
                gp = R.backward(cache, d_seq)
                p = np.linalg.norm(gp.dh[k].reshape(T, -1), axis=1)
                p = p[::-1] if not d else p  # lag 0 = the last state processed
            else:
                p = np.full(T, np.nan)
                diagnostics.not_computed["propagation_lower_layers"] = (
                    "the reference's propagation profile is measured on the top layer"
                )
            _fit(flow, p)
            if layer == L - 1:
                spans.append(flow.span)
            names = spec.param_names(layer, d)
            W = _recurrent_weight({k: torch.as_tensor(link.params[v]) for k, v in names.items()})
            flow.structure = _structure(spec.mode, W) if options.spectral else dict(SPECTRAL_ON_REQUEST)
            flow.gates = _reference_gates(cache.layer_caches[layer][d], spec, T)
            flow.jacobian = {"not_computed": "the reference path measures the propagation profile only"}
            if not np.all(np.isfinite(flow.profile)) and g is not None:
                nonfinite = True
            diagnostics.layers.append(flow)
    _at_horizon(diagnostics, options.horizon)
    spans = [flow.span for flow in diagnostics.layers if flow.span is not None] or spans
    verdict = fm.flow_verdict(spans, nonfinite)
    diagnostics.gradient_flow = verdict and FlowVerdict(verdict)
    return (
        CheckResult(CheckName.FLOW, worst(f.verdict for f in findings), findings, numbers={"gradient_flow": verdict}),
        diagnostics,
    )


def _reference_gates(lc, spec, T: int) -> dict:
    """The gate statistics of one of the reference's layer caches, whose ``gates`` are (T, B, G·H)."""
    acts = torch.as_tensor(lc.gates).chunk(spec.gate_count, dim=-1) if spec.gates else ()
    return _gates(spec.mode, {name: list(a) for name, a in zip(spec.gates, acts)}, T)
