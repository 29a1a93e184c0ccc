"""Unrolled twins of ``nn.RNN``/``nn.LSTM``/``nn.GRU``: the same weights, one step at a time.

A fused recurrent layer (cuDNN on a GPU, a single ``torch.lstm`` call on the CPU) hides
its hidden states: hooks see its output, which carries only the *direct* gradient of
each h_t, never the total one through the recurrence.  The twin runs the same equations
step by step in plain torch ops, with the same parameter names, so that

- every h_t (and c_t, and every gate) is a tensor in the graph, and ``h_t.grad`` after a
  backward pass is the total dL/dh_t;
- the step is a function ``state_{t} = step(x_t, state_{t-1})`` that JVPs and VJPs can run
  (Jacobian-product norms, Lyapunov exponents, time localization);
- ``torch.func.vmap`` can batch it, which the fused kernels do not allow.

Where no graph is wanted (the flow check, when the case's own gradient call caught what each
fused layer received), ``Twin.fused_steps`` runs each layer-direction as its fused kernel
instead: its states are the kernel's own outputs, every step's gates are recomputed from them
at once, and the cell's equations run on them are held to the outputs (``Trace.reconstruction``).

``swap_fused(model)`` runs every fused layer of a model as its twin inside a ``with`` block;
``capturing(layers)`` records what the fused layers themselves are given, give and are sent
back during one forward and backward pass (:class:`Caught`): the reference comparison's
inputs, and what the flow check replays instead of running the model again (a twin given
the layer's own output, ``Twin.forward(..., known=)``, runs no kernel for the top layer).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .convert import has_param, spec_of
from .reference import GATES, Mode, gru, lstm, rnn  # the gate names and order, and the cell equations, have one home


@dataclass
class Trace:
    """What one layer-direction of a twin recorded during a forward pass."""

    name: str  # e.g. "lstm/l0" or "lstm/l1_reverse"
    mode: str
    #: W_ih x_t + b_ih in processing order (the kernel path: one (T, B, G·H) tensor)
    inputs: Sequence[torch.Tensor] = field(default_factory=list)
    #: (h_t,) or (h_t, c_t), processing order (the kernel path: a :class:`StepView` of ``whole``)
    states: Sequence[tuple[torch.Tensor, ...]] = field(default_factory=list)
    gates: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # gate -> activations per step
    state0: tuple[torch.Tensor, ...] = ()
    reverse: bool = False
    packed: bool = False  # fed a PackedSequence: step t advances only its first batch_sizes[t] rows
    params: dict[str, torch.Tensor] = field(default_factory=dict)  # the weights this call used, detached
    index: tuple[int, int] = (0, 0)  # (layer, direction) in the fused module
    #: run by the fused kernel (:meth:`Twin._direction_fused`): how far the cell's equations, run on its states,
    #: are from its outputs and last cell state (max rel diff); None: stepped by the twin itself
    reconstruction: float | None = None
    #: the same run's states, every step's at once: ``(h,)`` or ``(h, c)``, each (T, B, ·) in processing order
    whole: tuple[torch.Tensor, ...] | None = None
    tanh_c: torch.Tensor | None = None  # an LSTM's tanh(c_t) of every step, as the reconstruction computed it


class StepView(Sequence):
    """Every step's state tuple, ``(h_t,)`` or ``(h_t, c_t)``, read from the whole (K, B, ·) tensors only where a step
    is asked for: a sequence like the stepped twin's list, without making K views up front."""

    def __init__(self, parts: tuple[torch.Tensor, ...]):
        self.parts = parts

    def __len__(self) -> int:
        return len(self.parts[0])

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        return tuple(part[k] for part in self.parts)


def project_inputs(mode: str, x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    """Every step's input projection W_ih x_t + b_ih at once, (T, B, G·H): one matrix product."""
    return torch.nn.functional.linear(x, p["W_ih"], p["b_ih"])


#: the reference's activations, in torch
TORCH_ACTS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}
_LSTM_ACTS = {"i": torch.sigmoid, "f": torch.sigmoid, "g": torch.tanh, "o": torch.sigmoid, "c": torch.tanh}
_GRU_ACTS = {"r": torch.sigmoid, "z": torch.sigmoid, "n": torch.tanh}


def cell_step(
    mode: str,
    xp: torch.Tensor,
    state: tuple[torch.Tensor, ...],
    p: dict[str, torch.Tensor],
    gates_out=None,
    folded: torch.Tensor | None = None,
):
    """One step of the cell of ``mode`` from the projected input ``xp = W_ih x_t + b_ih``.

    The equations are the reference's own cells (``reference.lstm.cell``, ``reference.gru.cell``),
    run on torch tensors with torch's activations, so that autograd sees every step.  A loop
    over many steps of an LSTM or a plain RNN may pass ``xp + b_hh`` with ``folded = W_hhᵀ``:
    the pre-activation is then one ``addmm`` per step, one node of the graph where there were
    four (benchmarks/README.md §17).
    """
    h = state[0]
    if mode != Mode.GRU:
        pre = torch.addmm(xp, h, folded) if folded is not None else xp + h @ p["W_hh"].T + p["b_hh"]
    if mode == Mode.LSTM:
        h_new, c, acts, _ = lstm.cell(pre, state[1], _LSTM_ACTS)
        if "W_hr" in p:  # nn.LSTM(proj_size=P): h_t = W_hr (o ⊙ tanh c_t)
            h_new = h_new @ p["W_hr"].T
        _record(gates_out, Mode.LSTM, acts)
        return (h_new, c)
    if mode == Mode.GRU:
        h_new, acts, _ = gru.cell(xp, h, p["W_hh"], p["b_hh"], _GRU_ACTS)
        _record(gates_out, Mode.GRU, acts)
        return (h_new,)
    return (rnn.cell(pre, TORCH_ACTS[Mode(mode).activation]),)


def _record(gates_out: dict | None, mode: str, acts) -> None:
    if gates_out is not None:
        for k, v in zip(GATES[mode], acts):
            gates_out.setdefault(k, []).append(v)


@dataclass
class _Batch:
    """A fused layer's input as the twin steps it: time first, each step's active rows, and how to give back
    the outputs in the caller's layout (batch first, unbatched, or packed)."""

    data: torch.Tensor  # (T, B, ·), or a PackedSequence's data
    sizes: list[int]  # the rows active at each step
    packed: bool = False
    unbatched: bool = False
    batch_sizes: torch.Tensor | None = None
    sorted_idx: torch.Tensor | None = None
    unsorted_idx: torch.Tensor | None = None

    @property
    def T(self) -> int:
        return len(self.sizes)

    @property
    def B(self) -> int:
        return self.sizes[0]

    @classmethod
    def of(cls, input, batch_first: bool) -> _Batch:
        if isinstance(input, nn.utils.rnn.PackedSequence):
            data, batch_sizes, sorted_idx, unsorted_idx = input
            return cls(data, [int(n) for n in batch_sizes], True, False, batch_sizes, sorted_idx, unsorted_idx)
        unbatched = input.dim() == 2  # (T, features) whatever batch_first says
        x = input.unsqueeze(1) if unbatched else input.transpose(0, 1) if batch_first else input
        return cls(x, [x.shape[1]] * x.shape[0], unbatched=unbatched)

    def restore(self, out, hn, cn, batch_first: bool):
        """The outputs and last states in the caller's layout."""
        if self.packed:
            out = nn.utils.rnn.PackedSequence(out, self.batch_sizes, self.sorted_idx, self.unsorted_idx)
            if self.unsorted_idx is not None:
                hn = hn.index_select(1, self.unsorted_idx)
                cn = None if cn is None else cn.index_select(1, self.unsorted_idx)
        if self.unbatched:
            out, hn = out.squeeze(1), hn.squeeze(1)
            cn = None if cn is None else cn.squeeze(1)
        if batch_first and not self.unbatched and not self.packed:
            out = out.transpose(0, 1)
        return out, hn, cn


class Twin:
    """The unrolled twin of a fused recurrent module: its equations step by step, on its weights.

    The weights are read from the fused module each time the twin runs, as the module itself
    would read them then: a weight that a wrapper rewrites in ``forward`` (AWD-LSTM's
    WeightDrop), or that ``weight_norm``, ``spectral_norm`` or ``torch.nn.utils.parametrize``
    compute on access, is the one the twin uses, and a ``functional_call`` that swaps the
    module's parameters swaps the twin's too.
    """

    def __init__(self, fused: nn.RNNBase, weights: dict[str, torch.Tensor] | None = None) -> None:
        self.fused = fused
        self.spec = spec_of(fused)
        #: the weights by name where they were caught from a call of the fused layer (:class:`Caught`); None: read
        #: from the layer each time the twin runs
        self.weights = weights
        self.traces: list[Trace] | None = None  # set to [] to record the next forward
        #: without a graph, each layer-direction may run as the fused kernel itself, its gates recomputed at once
        self.fused_steps = False

    def layer_params(self, layer: int, direction: int) -> dict[str, torch.Tensor]:
        out = {}
        for short, long in self.spec.param_names(layer, direction).items():
            if has_param(self.fused, long):
                out[short] = getattr(self.fused, long) if self.weights is None else self.weights[long]
            else:  # bias=False: the equations with zero biases
                ref = getattr(self.fused, self.spec.param_names(layer, direction)["W_hh"])
                out[short] = ref.new_zeros(self.spec.param_shapes()[long])
        return out

    def __call__(self, input, hx=None):
        return self.forward(input, hx)

    def forward(self, input, hx=None, known=None):
        """The fused layer's equations step by step; a PackedSequence advances only its active rows at each step.

        ``known``, the fused layer's own output on this very input (``(seq, h_n)`` or ``(seq, (h_n, c_n))``), spares
        the top layer's kernel where each layer-direction runs as its kernel (``fused_steps``): the top layer's
        outputs and last states are read from it, and explained as the kernel's would be.
        """
        spec, batch = self.spec, _Batch.of(input, self.spec.batch_first)
        h0, c0 = self._initial_states(hx, batch)
        h_n, c_n = [], []
        layer_in = batch.data
        top = self._top_layer(known, batch) if known is not None else None
        for layer in range(spec.num_layers):
            outs = []
            for d in range(spec.directions):
                k = layer * spec.directions + d
                state = (h0[k], c0[k]) if spec.mode == Mode.LSTM else (h0[k],)
                given = top(d, k) if top is not None and layer == spec.num_layers - 1 else None
                out, state = self._direction(layer, d, layer_in, state, batch, given)
                outs.append(out)
                h_n.append(state[0])
                if spec.mode == Mode.LSTM:
                    c_n.append(state[1])
            layer_in = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
        hn = torch.stack(h_n)
        cn = torch.stack(c_n) if spec.mode == Mode.LSTM else None
        out, hn, cn = batch.restore(layer_in, hn, cn, spec.batch_first)
        return (out, (hn, cn)) if spec.mode == Mode.LSTM else (out, hn)

    def _top_layer(self, known, batch: _Batch):
        """``given(d, k)``: the top layer's direction d (layer-direction k) as ``(outputs in processing order, last
        state)``, read from the fused layer's output ``known``."""
        seq, states = known[0], known[1] if isinstance(known[1], tuple) else (known[1],)
        seq = _Batch.of(seq, self.spec.batch_first).data
        states = [t.unsqueeze(1) for t in states] if batch.unbatched else states
        P = self.spec.output_size

        def given(d: int, k: int):
            part = seq[..., d * P : (d + 1) * P]
            return (part.flip(0) if d else part), tuple(t[k] for t in states)

        return given

    def _initial_states(self, hx, batch: _Batch):
        """``(h0, c0)`` with a batch axis, rows in the packed order (c0 None but for an LSTM)."""
        spec, lstm = self.spec, self.spec.mode == Mode.LSTM
        if hx is None:  # made with the batch axis an unbatched input lacks: it is not added again below
            zeros = batch.data.new_zeros(spec.num_layers * spec.directions, batch.B, spec.output_size)
            hx = (
                (zeros, batch.data.new_zeros(spec.num_layers * spec.directions, batch.B, spec.hidden_size))
                if lstm
                else zeros
            )
        elif batch.unbatched:
            hx = tuple(h.unsqueeze(1) for h in hx) if lstm else hx.unsqueeze(1)
        h0, c0 = hx if lstm else (hx, None)
        if batch.sorted_idx is not None:  # the states come in the caller's order, the packed rows in sorted order
            h0 = h0.index_select(1, batch.sorted_idx)
            c0 = None if c0 is None else c0.index_select(1, batch.sorted_idx)
        return h0, c0

    def _direction(self, layer: int, d: int, layer_in, state: tuple, batch: _Batch, given=None):
        """One layer-direction over every step: ``(its outputs, its last state)``, traced where asked; ``given``, the
        kernel's outputs and last state where they are known (see :meth:`forward`)."""
        spec, sizes, T, B = self.spec, batch.sizes, batch.T, batch.B
        p = self.layer_params(layer, d)
        trace = None
        if self.traces is not None:
            name = f"l{layer}" + ("_reverse" if d else "")
            trace = Trace(name, spec.mode, state0=state, reverse=bool(d), packed=batch.packed, index=(layer, d))
            trace.params = {k: v.detach() for k, v in p.items()}
            self.traces.append(trace)
        if self.fused_steps and not batch.packed and spec.mode in _KERNELS:
            return self._direction_fused(p, d, layer_in, state, trace, given)
        gates = trace.gates if trace else None
        projected = project_inputs(spec.mode, layer_in, p)
        xp = torch.split(projected, sizes) if batch.packed else projected
        folded = None if spec.mode == Mode.GRU or batch.packed else p["W_hh"].T
        xb = xp if folded is None else projected + p["b_hh"]  # what each step reads
        hs = [None] * T
        for t in range(T - 1, -1, -1) if d else range(T):
            n = sizes[t]
            if n == B:
                state = cell_step(spec.mode, xb[t], state, p, gates, folded)
            else:  # only the first n (sorted) sequences are still running at step t
                new = cell_step(spec.mode, xp[t], tuple(s[:n] for s in state), p, gates)
                state = tuple(torch.cat([a, s[n:]]) for a, s in zip(new, state))
            if trace is not None:
                trace.inputs.append(xp[t])
                trace.states.append(state)
            hs[t] = state[0][:n]
        return (torch.cat(hs) if batch.packed else torch.stack(hs)), state

    def _direction_fused(self, p: dict, d: int, layer_in, state: tuple, trace: Trace | None, given=None):
        """One layer-direction run by the fused kernel, without a graph; its gates and cell states recomputed for every
        step at once from the outputs, and the cell's equations run on them checked to give the kernel's outputs back.

        The states are the kernel's own outputs (``given``: ``(outputs, last state)`` where the layer's
        own call gave them), so what the flow check measures is the model's layer; the check that
        the equations explain them is ``trace.reconstruction``.
        """
        mode, lstm_ = self.spec.mode, self.spec.mode == Mode.LSTM
        x = layer_in.flip(0) if d else layer_in  # processing order
        if given is not None:
            out, last = given
        else:
            weights = [p["W_ih"], p["W_hh"], p["b_ih"], p["b_hh"], *([p["W_hr"]] if "W_hr" in p else [])]
            hx = (state[0][None], state[1][None]) if lstm_ else state[0][None]
            with warnings.catch_warnings():  # cuDNN warns that these weights are not one flat buffer: it copies them
                warnings.filterwarnings("ignore", message=".*single contiguous chunk of memory.*")
                out, *last = _KERNELS[mode](x, hx, weights, True, 1, 0.0, False, False, False)
            last = tuple(t[0] for t in last)
        if trace is not None:
            xp = project_inputs(mode, x, p)
            h_prev = torch.cat([state[0][None], out[:-1]])
            whole, gates, worst, trace.tanh_c = _explain(mode, xp, h_prev, out, state, last, p)
            trace.inputs, trace.gates, trace.reconstruction = xp, gates, worst
            trace.whole, trace.states = whole, StepView(whole)
        return (out.flip(0) if d else out), last


#: each mode's fused kernel over one layer-direction: (input, hx, weights, has_biases, num_layers, dropout, train,
#: bidirectional, batch_first) -> (output, h_n[, c_n])
_KERNELS = {Mode.LSTM: torch.lstm, Mode.GRU: torch.gru, Mode.RNN_TANH: torch.rnn_tanh, Mode.RNN_RELU: torch.rnn_relu}


def _explain(mode, xp, h_prev, out, state0: tuple, last: tuple, p: dict):
    """A fused layer-direction's states and gates at every step, and how far the cell's equations are from its
    outputs: ``(states, gates, max rel diff, tanh(c))``, the states ``(h,)`` or ``(h, c)``, every step's at once
    (tanh(c) None but for an LSTM).  Each step's gates need only the previous output, so they come for
    every step at once; an LSTM's cell state then follows from its two-term recurrence, and its last value is held
    against the kernel's own."""
    step_gates: dict = {}
    if mode != Mode.LSTM:
        (h,) = cell_step(mode, xp, (h_prev,), p, step_gates)
        return (out,), {k: v[0] for k, v in step_gates.items()}, rel_diff(h, out), None
    pre = torch.addmm(xp.flatten(0, 1), h_prev.flatten(0, 1), p["W_hh"].T).view_as(xp) + p["b_hh"]
    # the cell's equations in three parts: the gates (they need only h_(t-1)), c_t = f_t c_(t-1) + i_t g_t
    # step by step, and the way out
    acts = lstm.activations(pre, _LSTM_ACTS)
    i, f, g, o = acts
    ig, c = i * g, torch.empty_like(f)
    if on_host(c):  # a step is two ops on a few rows: NumPy's views and calls cost a third of torch's there
        c_, f_, ig_, prev = c.numpy(), f.numpy(), ig.numpy(), state0[1].detach().numpy()
        with np.errstate(all="ignore"):  # an overflowed cell state is explained as it is, as torch does, unwarned
            for k in range(len(c_)):
                prev = np.multiply(f_[k], prev, out=c_[k])
                prev += ig_[k]
    else:
        prev = state0[1]
        for k in range(len(c)):
            prev = torch.addcmul(ig[k], f[k], prev, out=c[k])
    h, tanh_c = lstm.output(o, c, _LSTM_ACTS)
    if "W_hr" in p:  # nn.LSTM(proj_size=P): h_t = W_hr (o ⊙ tanh c_t)
        h = h @ p["W_hr"].T
    gates = dict(zip(GATES[Mode.LSTM], acts))
    return (out, c), gates, max(rel_diff(h, out), rel_diff(c[-1], last[1])), tanh_c


#: the most values (every step's states of one layer-direction) whose time loops run on NumPy views: up to it a step's
#: few ops on a few rows cost NumPy about a third of torch's calls; past it the ops themselves weigh, where torch's
#: threads and kernels win, and NumPy's larger temporaries were measured slowing the check: at twice this bound a
#: float32 LSTM(256) at B=16 inside ``verify`` took 6.4-7.6 units of flow against 3.2-4.2 with torch, and with no bound
#: an LSTM(256) at B=64 at two threads 2.1-2.4 against 1.7 (benchmarks/README.md §25)
HOST_MAX_VALUES = 50 * 8 * 256


def on_host(t: torch.Tensor) -> bool:
    """Whether a time loop over ``t``'s steps (``t``: every step's states, (K, B, ·)) runs on NumPy views: a CPU tensor
    of a dtype NumPy computes in as torch does (float32, float64), outside autograd, and no larger than
    :data:`HOST_MAX_VALUES`."""
    return (
        t.device.type == "cpu"
        and t.dtype in (torch.float32, torch.float64)
        and not t.requires_grad
        and t.numel() <= HOST_MAX_VALUES
    )


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b| over the entries where ``b``, the layer's own output, is finite (an overflowed output has
    no value to hold anything to); a non-finite ``a`` where ``b`` is finite is an infinite difference."""
    if on_host(a) and on_host(b):  # a few values on the CPU: NumPy's calls cost a fraction of torch's
        a_, b_ = a.numpy(), b.numpy()
        with np.errstate(all="ignore"):
            gap, scale = float(np.abs(a_ - b_).max(initial=0.0)), float(np.abs(b_).max(initial=0.0))
    else:
        gap, scale = torch.stack([(a - b).abs().max(), b.abs().max()]).tolist()
    if math.isfinite(gap) and math.isfinite(scale):  # the usual case, everything finite, needs no mask
        return gap / (scale or 1.0)
    keep = torch.isfinite(b)
    if not bool(keep.all()):
        if not bool(keep.any()):
            return 0.0
        a, b = a[keep], b[keep]
    gap = (a - b).abs()
    scale = float(b.abs().max()) or 1.0
    return float(torch.where(torch.isfinite(gap), gap, torch.inf).max()) / scale


def fused_layers(model: nn.Module) -> list[tuple[str, nn.RNNBase]]:
    """``(name, module)`` of every fused recurrent layer (nn.RNN, nn.LSTM, nn.GRU) inside ``model``."""
    return [(name, mod) for name, mod in model.named_modules() if isinstance(mod, nn.RNN | nn.LSTM | nn.GRU)]


@contextmanager
def swap_fused(model: nn.Module):
    """Inside the block every fused recurrent layer of ``model`` runs as its twin; ``name -> Twin``.

    The layers are not copied: each one's ``forward`` is its twin's for the duration, so the
    model's own code (wrappers that rewrite weights, hooks, parametrizations) runs as it is.
    """
    twins: dict[str, Twin] = {}
    patched = []
    try:
        for name, mod in fused_layers(model):
            twin = twins[name] = Twin(mod)
            had = "forward" in mod.__dict__
            patched.append((mod, had, mod.__dict__.get("forward")))
            mod.forward = twin.forward
        yield twins
    finally:
        for mod, had, old in patched:
            if had:
                mod.forward = old
            else:
                del mod.forward


@dataclass
class Caught:
    """What a fused layer was given, gave and was sent back on one forward and backward pass (its last call)."""

    input: object  # the input sequence (a tensor or a PackedSequence), in the caller's layout
    hx: object  # the initial state given (positionally or as hx=), None where none was
    out: tuple  # the layer's output: (seq, h_n) or (seq, (h_n, c_n))
    grads: list  # the gradients its output sequence and final states received (None where none came)
    weights: dict | None  # the weights the call used, by name (None: the layer does not show them)
    calls: int = 1  # how often the pass called the layer

    @property
    def args(self) -> tuple:
        """The call's arguments as ``(input, hx)``, or ``(input,)`` without an initial state."""
        return (self.input,) if self.hx is None else (self.input, self.hx)


@contextmanager
def capturing(layers):
    """Hooks on every fused layer for the forward passes inside: ``name ->`` :class:`Caught`.

    The output sequence and final states that require grad each get a tensor hook that keeps
    the gradient a later backward pass sends into it (``grads``).  The hooks only read: what
    the model computes, and its gradient, stay as they are.  Layers are matched by the module
    that fired the hook, whatever order the forward pass calls them in; a layer called twice
    keeps its last call, and counts both.  The weights are the list the layer's own forward
    read (``_flat_weights``, refreshed there when a wrapper or ``functional_call`` swapped
    them), so a parametrized weight is not computed again.
    """
    caught: dict[str, Caught] = {}

    def on_forward(mod, args, kwargs, out, name):
        seq, states = out[0], out[1] if isinstance(out[1], tuple) else (out[1],)
        seq = seq.data if isinstance(seq, nn.utils.rnn.PackedSequence) else seq
        tensors = [seq, *states]
        grads: list = [None] * len(tensors)
        flat, names = getattr(mod, "_flat_weights", None), getattr(mod, "_flat_weights_names", None)
        shown = flat is not None and names is not None and all(isinstance(w, torch.Tensor) for w in flat)
        weights = dict(zip(names, flat)) if shown else None
        calls = caught[name].calls + 1 if name in caught else 1
        x = args[0] if args else kwargs.get("input")
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
        caught[name] = Caught(x, hx, out, grads, weights, calls)
        for i, t in enumerate(tensors):
            if t.requires_grad:
                t.register_hook(functools.partial(_keep, grads, i))

    hooks = [
        mod.register_forward_hook(functools.partial(on_forward, name=name), with_kwargs=True) for name, mod in layers
    ]
    try:
        yield caught
    finally:
        for h in hooks:
            h.remove()


def _keep(grads: list, i: int, g: torch.Tensor) -> None:
    grads[i] = g.detach()  # returns None: the gradient passes on unchanged


@contextmanager
def dropout_off(mod, dropout: float):
    """The fused layer with its inter-layer dropout set to 0 inside the block (nothing done for 0)."""
    if not dropout:
        yield
        return
    mod.dropout = 0.0
    try:
        yield
    finally:
        mod.dropout = dropout


def active_dropout(model: nn.Module) -> list[tuple[nn.RNNBase, float]]:
    """Fused layers whose inter-layer dropout is on (training mode, p > 0, two layers or more)."""
    return [(mod, mod.dropout) for _, mod in fused_layers(model) if mod.training and mod.dropout and mod.num_layers > 1]
