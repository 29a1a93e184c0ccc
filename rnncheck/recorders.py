"""Recorders: one forward of a model with its hidden states kept, as a :class:`Recording` the flow check measures.

Four recorders, one product:

- **the fused-layer twins**: ``nn.RNN``/``nn.LSTM``/``nn.GRU`` inside a module are swapped for
  unrolled twins with the same weights (:mod:`rnncheck.twins`), which keep every state and
  gate, and are checked to reproduce the fused layers' output;
- **the cell loop**: a CellCase's loop over the user's cell keeps every state it runs;
- **``rnncheck.record``**: a model's own calls show its states, one step at a time or stacked
  (:mod:`rnncheck.recording`);
- **the NumPy reference**: a NumpyCase that names its architecture gets its states, and their
  adjoints, from the reference.

A target chooses its recorder (``CheckTarget.record_states``); the flow check reads the
Recording alone and never asks what kind of case or model made it.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from torch.func import functional_call

from . import reference as R
from .convert import mode_of, spec_of
from .findings import Finding, Verdict
from .flowresults import TwinAgreement
from .nested import float_outputs, replace
from .recording import Recorded, recording
from .tolerances import current as tolerances
from .twins import (
    GATES,
    Twin,
    active_dropout,
    cell_step,
    dropout_off,
    fused_layers,
    project_inputs,
    rel_diff,
    swap_fused,
)
from .usercode import call_user

#: why a model shows no states, and how to show them
NO_STATES = (
    "no nn.RNN/nn.LSTM/nn.GRU inside, not a CellCase, and no rnncheck.record(...) call in forward: "
    "rnncheck cannot see the hidden states (call rnncheck.record(h, name=...) on each step's state, "
    "or on the stacked states with time_dim=, and decay= for a diagonal linear recurrence)"
)


def as_tuple(state) -> tuple[torch.Tensor, ...]:
    return (state,) if isinstance(state, torch.Tensor) else tuple(state)


def stacked(steps) -> torch.Tensor:
    """Per-step tensors as one, time first: a list is stacked, a tensor already is one (a fused layer's gates)."""
    return steps if isinstance(steps, torch.Tensor) else torch.stack(list(steps))


@dataclass
class GivenNorms:
    """Adjoint norms a recorder computed itself (the NumPy reference), in time order; None: not known."""

    profile: np.ndarray | None  # ‖dL/dh_t‖ (None: no head to give dL/dh)
    propagation: np.ndarray  # ‖∂⟨u, h_T⟩/∂h_(T-ℓ)‖, lag 0 first (NaN where not measured)
    profile_c: np.ndarray | None = None


@dataclass
class RecordedLayer:
    """One recurrent layer-direction: its states in processing order, and how to step it where known."""

    name: str
    mode: str | None  # "lstm", "gru", "rnn_tanh" … or None for a custom cell
    states: list  # state tuples in processing order (torch tensors; NumPy arrays for the reference)
    inputs: list = field(default_factory=list)  # each step's input, in processing order
    step_in: Callable | None = None  # step_in(dtype) -> step(x_t, state_tuple) -> state_tuple; None: no step map
    weights: dict = field(default_factory=dict)  # {"W_hh": tensor} for the structure, may be empty
    gates: dict = field(default_factory=dict)  # gate -> activations per step (processing order), may be empty
    packed: bool = False  # fed a PackedSequence: inputs and states differ in batch rows
    state0: tuple | None = None  # the state before the first step, where known
    source: str | None = None  # where the states came from, when not a twin or the cell loop
    no_step: str | None = None  # why there is no step map to differentiate, where there is none
    given: GivenNorms | None = None  # adjoint norms the recorder computed itself
    params: dict | None = None  # a fused layer's weights as its twin used them (W_ih, W_hh, b_ih, b_hh, W_hr)
    module: str | None = None  # the fused module a twin's layer belongs to, by name
    index: tuple[int, int] | None = None  # its (layer, direction) in that module
    finite: bool = False  # known to hold only finite states (set by the flow check)
    whole: tuple | None = None  # the states' parts every step's at once, (K, B, ·) each, where a fused kernel gave them
    tanh_c: torch.Tensor | None = None  # an LSTM's tanh(c_t) of every step, where the recording computed it

    def steps(self, part: int = 0) -> torch.Tensor:
        """Part ``part`` of the states (0: h, 1: c) of every step at once, (K, rows, ·) in processing order."""
        return self.whole[part] if self.whole is not None else stacked([s[part] for s in self.states])

    @cached_property
    def step(self) -> Callable | None:
        return self.step_in(None) if self.step_in is not None else None

    @property
    def reverse(self) -> bool:
        return self.name.endswith("_reverse")


@dataclass
class Recording:
    """What one recorded forward showed: layers step by step, stacked records, the loss, and what could not be seen."""

    layers: list[RecordedLayer] = field(default_factory=list)
    stacked: list[Recorded] = field(default_factory=list)
    loss: torch.Tensor | None = None  # the loss tensor, in the graph of the recorded states
    leaves: dict = field(default_factory=dict)  # the leaves the loss was computed from
    findings: list[Finding] = field(default_factory=list)
    not_measured: str | None = None  # why there is nothing to measure
    not_computed: dict[str, str] = field(default_factory=dict)  # parts the recorder could not give, and why
    twin: TwinAgreement | None = None  # fused layers: how closely their twins reproduce them
    #: fused module name -> (its Spec, the gradients its output and final states received in the case's own
    #: gradient call): set where the twins ran without a graph, whose adjoints are then worked out by hand
    upstream: dict | None = None

    @property
    def steps(self) -> int:
        if self.layers:
            return len(self.layers[0].states)
        record = self.stacked[0]
        return record.stacked.shape[record.time_dim]


# --- a torch module, or a CellCase's loop ------------------------------------------------------


def record_module(target) -> Recording:
    """A module's forward with every ``rnncheck.record`` call kept, its fused layers swapped for recording twins.

    Where the case's own gradient call caught the upstream gradients of every fused layer
    (and nothing else shows states), the twins run without building a graph: their
    adjoints are worked out by hand from those gradients (see
    :mod:`rnncheck.checks.twin_adjoints`), and where that call also caught each layer's
    input, weights and output, the model does not run again (:func:`_replayed`).
    """
    upstream = _upstream(target)
    specs = {name: spec_of(mod) for name, mod in fused_layers(target.model)}
    replayed = _replayed(target) if upstream is not None else None
    if replayed is not None:  # what the gradient call caught is the forward: nothing runs again
        replayed.upstream = {name: (spec, upstream[name]) for name, spec in specs.items()}
        return replayed
    values, params, args = _fresh_leaves(target)
    recording_, recorder = _record_model(target, values, params, args, graph=upstream is None)
    once = all(
        sum(layer.module == name for layer in recording_.layers) == spec.num_layers * spec.directions
        for name, spec in specs.items()
    )
    if upstream is not None and (recorder.records or not once):
        # states shown by rnncheck.record need the graph, and so does a module called more than once (the
        # gradient call caught its last call's gradients only)
        upstream = None
        recording_, recorder = _record_model(target, values, params, args)
    if upstream is not None:
        recording_.upstream = {name: (spec, upstream[name]) for name, spec in specs.items()}
    if any(r.stacked is not None and r.decay is None for r in recorder.records.values()):
        # the inputs' influence needs every floating input as a leaf: one more forward, with them
        values = {**values, **_input_leaves(target)}
        args = tuple(_replace_inputs(target, values, every=True))
        recording_, recorder = _record_model(target, values, params, args)
    recording_.leaves = values
    recording_.layers += [_stepwise(r) for r in recorder.records.values() if r.stacked is None and len(r.steps)]
    recording_.stacked = [r for r in recorder.records.values() if r.stacked is not None]
    recording_.findings += [Finding("record_problem", Verdict.WARN, p) for p in recorder.problems]
    if not recording_.layers and not recording_.stacked:
        recording_.not_measured = NO_STATES
    return recording_


def record_cell_loop(target) -> Recording:
    """A CellCase: rnncheck's own loop records every state as it runs the user's cell."""
    values, params, args = _fresh_leaves(target)
    loop = target.cell_loop
    loop.record = []
    try:
        _, loss = _loss_through(target, loop, params, args)
    finally:
        record, loop.record = loop.record, None
    states = [as_tuple(s) for s in record]
    cell = loop.cell
    mode = mode_of(cell)
    cell_params = {n[len("cell.") :]: values[n].detach() for n in target.param_names if n.startswith("cell.")}

    def step_in(dtype, cell=cell, cell_params=cell_params):
        cp = cell_params if dtype is None else {n: v.to(dtype) for n, v in cell_params.items()}

        def step(x, s):
            return as_tuple(functional_call(cell, cp, (x, s[0] if len(s) == 1 else s)))

        return step

    weights = {n: p for n, p in cell_params.items() if "weight_hh" in n and p.dim() == 2}
    gates = _cell_gates(mode, cell_params, args, states)
    layer = RecordedLayer("cell", mode, states, list(args[0]), step_in, weights, gates, state0=as_tuple(args[1]))
    return Recording([layer], loss=loss, leaves=values)


def _cell_gates(mode, cell_params: dict, args, states) -> dict:
    """A built-in cell's gate activations at every step, recomputed from the recorded states."""
    gates: dict = {}
    if mode is None or mode not in GATES:
        return gates
    p = {
        "W_ih": cell_params["weight_ih"],
        "W_hh": cell_params["weight_hh"],
        "b_ih": cell_params["bias_ih"],
        "b_hh": cell_params["bias_hh"],
    }
    prev = as_tuple(args[1])
    with torch.no_grad():
        xp = project_inputs(mode, args[0], p)
        for x, s in zip(xp, states):
            cell_step(mode, x, tuple(t.detach() for t in prev), p, gates)
            prev = s
    return gates


def _fresh_leaves(target):
    """The check point's parameters and inputs as fresh leaves that require grad, and the model's arguments."""
    values = {n: t.clone().requires_grad_(True) for n, t in target.saved.items()}
    params = {n: values[n] for n in target.param_names}
    return values, params, tuple(_replace_inputs(target, values))


#: the most states (steps x batch x hidden size, of any one layer) whose adjoints are worked out by hand: up to it a
#: step's few kernels beat autograd's walk over the twin's graph; past it, what the hand-worked pass precomputes for
#: every step at once, (T, B, 4H) tensors, outgrows the caches and autograd is faster (benchmarks/README.md §20 and
#: §21: LSTM(256) at T=50, B=16 2.1-2.2x by hand against 2.5-2.8x, B=64 2.0-2.4x against 1.7-2.1x, T=100, B=32
#: 2.3-2.6x against 2.0-2.1x; LSTM(64) at T=50, B=64 3.5-3.7x against 4.1-4.4x, T=100, B=32 3.7-5.4x against 5.9-7.3x)
BY_HAND_MAX_STATES = 50 * 16 * 256


def _upstream(target) -> dict | None:
    """The gradients each fused layer's output and final states received in the case's first gradient call, by
    layer name; None unless every fused layer was caught, none takes a PackedSequence or holds more states than
    :data:`BY_HAND_MAX_STATES`, and no dropout is on."""
    fused = fused_layers(target.model)
    captured = target.captured or {}
    if not fused or active_dropout(target.model):
        return None
    out = {}
    for name, mod in fused:
        got = captured.get(name)
        if got is None or not isinstance(got.input, torch.Tensor):  # not called, or fed a PackedSequence
            return None
        x = got.input
        batch = 1 if x.dim() == 2 else x.shape[0 if mod.batch_first else 1]
        steps = x.shape[1 if mod.batch_first and x.dim() == 3 else 0]
        if steps * batch * mod.hidden_size > BY_HAND_MAX_STATES:
            return None
        out[name] = got.grads
    return out


def _record_model(target, values, params, args, graph: bool = True) -> tuple[Recording, object]:
    """One forward with every record() call kept, fused layers swapped for their recording twins; without a
    graph where ``graph`` is False."""
    case = target.case
    with recording() as recorder:
        if fused_layers(target.model):
            got = _record_twins(target, values, params, args, graph)
        else:
            out, loss = _loss_through(target, _flow_model(case, target), params, args)
            got = Recording(loss=loss)
            if not recorder.records:  # a FunctionCase: its output is the states
                case.output_states(recorder, out, values)
    return got, recorder


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


def _stepwise(record: Recorded) -> RecordedLayer:
    """States recorded one step at a time: a layer whose states sit in the recurrence's own graph."""
    return RecordedLayer(
        record.name,
        None,
        list(record.steps),
        source="rnncheck.record, one state per step",
        no_step="states recorded by rnncheck.record",
    )


def _loss_through(target, model, params, args, graph: bool = True):
    """``(output, loss)`` of ``model`` run on the case's values, with autograd on where ``graph``: the recorders'
    one forward."""
    with torch.enable_grad() if graph else torch.no_grad():
        target.seed_call()
        out = call_user("the model's forward", functional_call, model, params, args, user_file=target.case.file or None)
        return out, target.loss_of(out)


def _record_twins(target, values, params, args, graph: bool = True) -> Recording:
    """nn.RNN/LSTM/GRU: run the model with each fused layer swapped for its unrolled twin, which records the states."""
    with swap_fused(target.model) as twins:
        for twin in twins.values():
            twin.traces = []
            twin.fused_steps = not graph  # no graph to keep: each layer runs as its fused kernel
        try:
            out, loss = _loss_through(target, target.model, params, args, graph)
        finally:
            traces = {name: (tw, tw.traces) for name, tw in twins.items()}
            for tw in twins.values():
                tw.traces = None
    got = Recording(loss=loss)
    explained = [t.reconstruction for _, tr in traces.values() for t in tr if t.reconstruction is not None]
    got.twin = _twin_agreement(target, values, params, args, out, len(twins), got.findings, explained)
    got.layers = _traced_layers(traces)
    return got


def _replayed(target) -> Recording | None:
    """The fused layers' states from what the case's own gradient call caught of each, without running the model
    again; None where that cannot stand for a recorded forward.

    Each layer-direction runs as its fused kernel on the input and with the weights its call
    had, but the top layer, whose outputs and last states that call's output holds: nothing
    of the user's code runs, and the cell's equations are held to those outputs as to the
    kernel's (``Trace.reconstruction``).  It cannot stand for a forward that calls
    ``rnncheck.record`` (the gradient call saw none), calls a layer twice, is a StepCase's
    step form, or where a layer does not show the weights it used.
    """
    caught = target.captured
    if target.case.step_model is not None or target.capture_recorded or caught is None:
        return None
    twins = {}
    with torch.no_grad():
        for name, mod in fused_layers(target.model):
            got = caught.get(name)
            if got is None or got.calls != 1 or got.weights is None:
                return None
            twin = Twin(mod, {n: w.detach() for n, w in got.weights.items()})
            twin.traces, twin.fused_steps = [], True
            input_, hx, out = (replace(t, "caught", {}, torch.Tensor.detach) for t in (got.input, got.hx, got.out))
            twin.forward(input_, hx, known=out)
            twins[name] = (twin, twin.traces)
    recording_ = Recording(loss=target.capture_loss)
    explained = [t.reconstruction for _, tr in twins.values() for t in tr if t.reconstruction is not None]
    diff = max(explained, default=0.0)
    recording_.twin = _agreement(target, len(twins), diff, bool(explained), recording_.findings)
    recording_.layers = _traced_layers(twins)
    return recording_


def _traced_layers(traces: dict) -> list[RecordedLayer]:
    """The layers the twins traced (``name -> (twin, traces)``), in order."""
    layers = []
    for name, (twin, tr) in traces.items():
        for trace in tr:
            p = trace.params  # the weights the layer used in this very forward

            def step_in(dtype, mode=twin.spec.mode, p=p):
                pd = p if dtype is None else {k: v.to(dtype) for k, v in p.items()}
                return lambda x, s: cell_step(mode, x, s, pd)

            layers.append(
                RecordedLayer(
                    f"{name or 'rnn'}/{trace.name}",
                    twin.spec.mode,
                    trace.states,
                    trace.inputs,
                    step_in,
                    {"W_hh": recurrent_weight(p)},
                    trace.gates,
                    packed=trace.packed,
                    state0=trace.state0,
                    params=p,
                    module=name,
                    index=trace.index,
                    whole=trace.whole,
                    tanh_c=trace.tanh_c,
                )
            )
    return layers


def _twin_agreement(
    target, values, params, args, out, fused: int, findings: list[Finding], explained: list[float]
) -> TwinAgreement:
    """How closely the twins reproduced the fused model's own output (kept from the gradient call).

    Layers that ran as their fused kernel (``explained``: each one's reconstruction error) are
    held to the same bound by how closely the cell's equations, run on their states, give back
    their outputs.  The twin draws no inter-layer dropout masks, so a model with them on is
    compared, and described, with them off.
    """
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
    diff = max([_max_rel_diff(ref_out, out), *explained])
    return _agreement(target, fused, diff, bool(explained), findings)


def _agreement(target, fused: int, diff: float, explained: bool, findings: list[Finding]) -> TwinAgreement:
    """The twins' agreement at ``diff`` (max rel diff), held to a bound of many units in the model's last place; a
    finding where it does not hold (``explained``: the fused layers' own states were explained, not stepped)."""
    eps = max(torch.finfo(next(iter(target.saved.values())).dtype).eps, target.model_eps / 64)
    agreement = TwinAgreement(fused, diff, bool(diff <= tolerances().twin_ulps * eps))
    if not agreement.reproduces:
        findings.append(
            Finding(
                "twin_mismatch",
                Verdict.WARN,
                (
                    f"the unrolled twin does not reproduce the fused layers' output (max rel diff {diff:.2g}): "
                    "the profile describes the twin, which may not be the model"
                    if not explained
                    else f"the cell's equations, run on the fused layers' own states, do not give back their outputs "
                    f"(max rel diff {diff:.2g}): the gates and the adjoints measured from them may not be the model's"
                ),
                numbers={"max_rel_diff": diff},
            )
        )
    return agreement


def _replace_inputs(target, values, every: bool = False):
    names = [n for n in values if n in target.saved_inputs] if every else target.input_names
    return replace(target.inputs, "input", {n: values[n] for n in names}, lambda t: t)


def _max_rel_diff(a, b) -> float:
    """The largest :func:`rel_diff` of ``b``'s floating outputs from ``a``'s."""
    pairs = zip(float_outputs(a), float_outputs(b))
    return max((rel_diff(y.detach(), x.detach()) for x, y in pairs), default=0.0)


def recurrent_weight(p: dict):
    """The weight that carries the cell's own state to the next step's gates.

    With a projection (nn.LSTM(proj_size=P)) h_t = W_hr m_t, so the gates see W_hh W_hr m_(t-1):
    (4H, P) @ (P, H), a stack of square H×H blocks like any LSTM's W_hh.
    """
    return p["W_hh"] @ p["W_hr"] if "W_hr" in p else p["W_hh"]


# --- the NumPy reference -------------------------------------------------------------------------

#: why a NumpyCase without a named architecture shows no states
NUMPY_UNSEEN = (
    "a NumpyCase shows rnncheck its loss only as a whole, so the hidden states are out of sight; "
    "name the architecture with reference=, inputs= and head= to get the profile from the reference's adjoints"
)


def record_reference(target, rng: np.random.Generator) -> Recording:
    """A case linked to the NumPy reference: its states and their adjoints from the reference's own backward.

    The profile needs ``head=`` (dL/dh_t); the propagation of a unit functional of each
    layer-direction's last state is measured on the top layer, where the output shows it.
    """
    got = target.reference_link()
    if got is None:
        return Recording(not_measured=NUMPY_UNSEEN)
    link, _ = got
    d_out = target.head_gradient(link)
    spec, T = link.spec, link.x.shape[0]
    if T < 2:
        return Recording(layers=[RecordedLayer("reference/l0", spec.mode, [()] * T)])
    out, _, cache = link.forward()
    g = R.backward(cache, d_out) if d_out is not None else None
    recording_ = Recording()
    if g is None:
        recording_.not_computed["profile"] = "needs head= to know dL/dh_t"
    L, D = spec.num_layers, spec.directions
    for layer in range(L):
        if layer < L - 1:
            recording_.not_computed["propagation_lower_layers"] = (
                "the reference's propagation profile is measured on the top layer"
            )
        for d in range(D):
            k = layer * D + d
            names = spec.param_names(layer, d)
            lc = cache.layer_caches[layer][d]
            recording_.layers.append(
                RecordedLayer(
                    f"reference/l{layer}" + ("_reverse" if d else ""),
                    spec.mode,
                    [()] * T,
                    weights={"W_hh": recurrent_weight({n: torch.as_tensor(link.params[v]) for n, v in names.items()})},
                    gates=_reference_gates(lc, spec),
                    source="the NumPy reference's adjoints",
                    no_step="the reference path measures the propagation profile only",
                    given=_reference_norms(spec, cache, out, g, layer, d, k, rng),
                )
            )
    return recording_


def _reference_norms(spec, cache, out, g, layer: int, d: int, k: int, rng) -> GivenNorms:
    """One layer-direction's profile from the reference's adjoints, and its propagation on the top layer."""
    T = out.shape[0]
    profile = np.linalg.norm(g.dh[k].reshape(T, -1), axis=1) if g is not None else None
    profile_c = np.linalg.norm(g.dc[k].reshape(T, -1), axis=1) if g is not None and g.dc is not None else None
    # propagation: a unit functional of this layer-direction's last state, alone
    u = rng.normal(size=out.shape[1:2] + (spec.output_size,))
    u /= np.linalg.norm(u)
    if layer < spec.num_layers - 1:
        return GivenNorms(profile, np.full(T, np.nan), profile_c)
    last = T - 1 if not d else 0
    d_seq = np.zeros_like(out)
    d_seq[last, :, d * spec.output_size : (d + 1) * spec.output_size] = u
    p = np.linalg.norm(R.backward(cache, d_seq).dh[k].reshape(T, -1), axis=1)
    return GivenNorms(profile, p[::-1] if not d else p, profile_c)  # lag 0 = the last state processed


def _reference_gates(lc, spec) -> dict:
    """The gate activations of one of the reference's layer caches, whose ``gates`` are (T, B, G·H), per step."""
    acts = torch.as_tensor(lc.gates).chunk(spec.gate_count, dim=-1) if spec.gates else ()
    return {name: list(a) for name, a in zip(spec.gates, acts)}
