"""Stacks of recurrent layers: several layers, both directions, either batch layout.

This is the shape of ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``: layer ``k`` reads the
concatenated outputs of both directions of layer ``k-1``; the reverse direction runs
the same cell over the sequence read backwards.  Parameters are named as PyTorch
names them (``weight_ih_l0``, ``bias_hh_l1_reverse`` …) so that weights map one to one.

Initial and final states are laid out as PyTorch lays them: (layers·directions, B, H),
entry ``layer·directions + direction``.  An LSTM with a projection (``proj_size=P``) has
h states and outputs of P entries per direction, and an extra ``weight_hr_l{k}`` (P, H).

The backward returns the gradient of every weight, of the input sequence and of the
initial states, and the per-step total adjoints dL/dh_t (and dL/dc_t) of every layer
and direction, in the original time order: ``Gradients.dh[layer·directions + direction]``
is (T, B, H) (P with a projection).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import gru, lstm, rnn
from .modes import Mode

MODES = tuple(m.value for m in Mode)
GATES = {m: m.gates for m in Mode if m.gates}


@dataclass(frozen=True)
class Spec:
    """The architecture: which cell, how many layers, which directions, which layout."""

    mode: Mode  # given as its value ("lstm") or a member
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    proj_size: int = 0  # an LSTM's projection of h_t (0: none), as nn.LSTM(proj_size=...)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        object.__setattr__(self, "mode", Mode(self.mode))
        if self.proj_size and (self.mode is not Mode.LSTM or not 0 < self.proj_size < self.hidden_size):
            raise ValueError("proj_size needs mode 'lstm' and 0 < proj_size < hidden_size, as nn.LSTM requires")

    @property
    def output_size(self) -> int:
        """The size of h_t (and of each direction's output): proj_size if there is a projection."""
        return self.proj_size or self.hidden_size

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def gate_count(self) -> int:
        return self.mode.gate_count

    @property
    def gates(self) -> tuple[str, ...]:
        """Gate names in stacking order, or () for a plain RNN."""
        return self.mode.gates

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.output_size * self.directions

    def param_names(self, layer: int, direction: int) -> dict[str, str]:
        """Map the layer modules' names (W_ih …) to PyTorch's names (weight_ih_l0 …)."""
        sfx = f"l{layer}" + ("_reverse" if direction else "")
        names = {
            "W_ih": f"weight_ih_{sfx}",
            "W_hh": f"weight_hh_{sfx}",
            "b_ih": f"bias_ih_{sfx}",
            "b_hh": f"bias_hh_{sfx}",
        }
        if self.proj_size:
            names["W_hr"] = f"weight_hr_{sfx}"
        return names

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter's name and shape, in PyTorch's order."""
        G, H = self.gate_count, self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(self.num_layers):
            for d in range(self.directions):
                n = self.param_names(layer, d)
                shapes[n["W_ih"]] = (G * H, self.layer_input_size(layer))
                shapes[n["W_hh"]] = (G * H, self.output_size)
                shapes[n["b_ih"]] = (G * H,)
                shapes[n["b_hh"]] = (G * H,)
                if self.proj_size:
                    shapes[n["W_hr"]] = (self.proj_size, H)
        return shapes

    def init_params(
        self, rng: np.random.Generator, dtype: type = np.float64, scale: float | None = None
    ) -> dict[str, np.ndarray]:
        """Uniform(-k, k) weights with k = 1/√H, as PyTorch initializes them."""
        k = 1.0 / np.sqrt(self.hidden_size) if scale is None else scale
        return {n: rng.uniform(-k, k, size=s).astype(dtype) for n, s in self.param_shapes().items()}


@dataclass
class Gradients:
    """Everything the backward pass returns."""

    params: dict[str, np.ndarray]
    x: np.ndarray
    h0: np.ndarray
    c0: np.ndarray | None
    dh: np.ndarray  # (layers·directions, T, B, H or P): total dL/dh_t
    dc: np.ndarray | None = None  # same for the LSTM cell state


@dataclass
class Cache:
    spec: Spec
    layer_caches: list = field(default_factory=list)  # [layer][direction]
    layer_inputs: list = field(default_factory=list)  # time-major input of every layer


def _run_layer(spec: Spec, x, state0, p):
    if spec.mode is Mode.LSTM:
        return lstm.forward(x, state0[0], state0[1], p["W_ih"], p["W_hh"], p["b_ih"], p["b_hh"], p.get("W_hr"))
    if spec.mode is Mode.GRU:
        h, h_T, cache = gru.forward(x, state0[0], p["W_ih"], p["W_hh"], p["b_ih"], p["b_hh"])
        return h, (h_T,), cache
    act = spec.mode.activation
    h, h_T, cache = rnn.forward(x, state0[0], p["W_ih"], p["W_hh"], p["b_ih"], p["b_hh"], act)
    return h, (h_T,), cache


def backward_layer(spec: Spec, dh_out, dstate, cache):
    """One layer-direction's backward: ``(parameter gradients, dx, d state0, adjoints)``.

    ``dh_out`` is ∂L/∂h_t for every step in processing order; ``dstate`` is ∂L/∂ of the final
    state, ``(dh_T,)`` or ``(dh_T, dc_T)``, with None for zero.
    """
    if spec.mode is Mode.LSTM:
        return lstm.backward(dh_out, dstate, cache)
    module = gru if spec.mode is Mode.GRU else rnn
    return module.backward(dh_out, dstate[0], cache)


def forward(
    spec: Spec,
    params: dict[str, np.ndarray],
    x: np.ndarray,
    h0: np.ndarray | None = None,
    c0: np.ndarray | None = None,
) -> tuple[np.ndarray, tuple[np.ndarray, ...], Cache]:
    """Run the stack.  Returns ``(output, (h_n,) or (h_n, c_n), cache)`` as PyTorch does."""
    xt = np.swapaxes(x, 0, 1) if spec.batch_first else x
    T, B, _ = xt.shape
    L, D, H = spec.num_layers, spec.directions, spec.hidden_size
    dtype = np.result_type(xt, *params.values(), *(s for s in (h0, c0) if s is not None))
    h0 = np.zeros((L * D, B, spec.output_size), dtype=dtype) if h0 is None else h0
    if spec.mode is Mode.LSTM:
        c0 = np.zeros((L * D, B, H), dtype=dtype) if c0 is None else c0
    cache = Cache(spec)
    h_n, c_n = [], []
    inp = xt
    for layer in range(L):
        cache.layer_inputs.append(inp)
        outs, caches = [], []
        for d in range(D):
            k = layer * D + d
            p = {short: params[long] for short, long in spec.param_names(layer, d).items()}
            state0 = (h0[k], c0[k]) if spec.mode is Mode.LSTM else (h0[k],)
            seq = inp[::-1] if d else inp
            h, state_T, lc = _run_layer(spec, seq, state0, p)
            outs.append(h[::-1] if d else h)
            caches.append(lc)
            h_n.append(state_T[0])
            if spec.mode is Mode.LSTM:
                c_n.append(state_T[1])
        cache.layer_caches.append(caches)
        inp = outs[0] if D == 1 else np.concatenate(outs, axis=-1)
    out = np.swapaxes(inp, 0, 1) if spec.batch_first else inp
    states = (np.stack(h_n),) + ((np.stack(c_n),) if spec.mode is Mode.LSTM else ())
    return out, states, cache


def backward(
    cache: Cache,
    d_output: np.ndarray,
    d_h_n: np.ndarray | None = None,
    d_c_n: np.ndarray | None = None,
) -> Gradients:
    """Backpropagate ∂L/∂output (and ∂L/∂h_n, ∂L/∂c_n) through the whole stack."""
    spec = cache.spec
    L, D, H, P = spec.num_layers, spec.directions, spec.hidden_size, spec.output_size
    d_out = np.swapaxes(d_output, 0, 1) if spec.batch_first else d_output
    T, B, _ = d_out.shape
    dtype = d_out.dtype
    grads: dict[str, np.ndarray] = {}
    dh0 = np.zeros((L * D, B, P), dtype=dtype)
    dc0 = np.zeros((L * D, B, H), dtype=dtype) if spec.mode is Mode.LSTM else None
    dh_all = np.empty((L * D, T, B, P), dtype=dtype)
    dc_all = np.empty((L * D, T, B, H), dtype=dtype) if spec.mode is Mode.LSTM else None
    for layer in reversed(range(L)):
        d_inp = None
        for d in range(D):
            k = layer * D + d
            dh_seq = d_out[:, :, d * P : (d + 1) * P]
            dstate = (
                None if d_h_n is None else d_h_n[k],
                None if d_c_n is None else d_c_n[k],
            )
            lg, dx, dstate0, adj = backward_layer(
                spec, dh_seq[::-1] if d else dh_seq, dstate, cache.layer_caches[layer][d]
            )
            for short, long in spec.param_names(layer, d).items():
                grads[long] = lg[short]
            dx = dx[::-1] if d else dx
            d_inp = dx if d_inp is None else d_inp + dx
            dh0[k] = dstate0[0]
            dh_all[k] = adj["h"][::-1] if d else adj["h"]
            if spec.mode is Mode.LSTM:
                dc0[k] = dstate0[1]
                dc_all[k] = adj["c"][::-1] if d else adj["c"]
        d_out = d_inp
    dx = np.swapaxes(d_out, 0, 1) if spec.batch_first else d_out
    ordered = {n: grads[n] for n in spec.param_shapes()}
    return Gradients(ordered, dx, dh0, dc0, dh_all, dc_all)
