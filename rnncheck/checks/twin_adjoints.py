"""The adjoints of a fused layer's twin, worked out by hand from its recorded gates and states.

The reference's own backward step (``lstm.step_back``, ``gru.step_back``, ``rnn.step_back``:
the one home of each cell's backward) runs on the twin's tensors, with what it multiplies by
computed for every step at once.  A few kernels a step replace autograd's walk over the
twin's graph, and with the upstream gradients the fused layers received in the case's own
gradient call, the twin need not build a graph at all.

- :func:`propagation_by_hand`: ∂⟨u, h_T⟩/∂h_t for a unit functional u of the last state;
- :func:`total_adjoints`: dL/dh_t (and dL/dc_t) of every state of every layer and direction
  of each fused module, from the gradients of its output and final states, layer by layer
  down the stack.

Each is checked against autograd through the twin's graph (tests/checks/test_flow.py).
"""

from __future__ import annotations

import numpy as np
import torch

from ..recorders import RecordedLayer, Recording, stacked
from ..reference import Mode, gru, lstm, rnn
from ..reference.activations import ACTIVATIONS
from ..twins import on_host


def by_hand(layer: RecordedLayer) -> bool:
    """A twin of a built-in cell fed whole steps: its backward can be worked out by hand."""
    return layer.params is not None and not layer.packed and layer.mode is not None and layer.step is not None


def back_through(layer: RecordedLayer, direct, dh_T, dc_T=None, copies: int = 1, inputs_side: bool = True):
    """Back through one layer-direction: ``(dh, dc, da)``, each every step's at once, (K, rows, ·) in processing
    order (``dc`` None but for an LSTM; ``da`` None unless ``inputs_side``: a layer with none below needs none).

    ``direct`` (K, B, P) holds each step's direct dL/dh_k (None: none), ``dh_T`` and ``dc_T``
    what the last state receives from outside (None: nothing).  ``dh[k]`` is the total
    adjoint of state k's h, ``dc[k]`` of its c (an LSTM's), ``da[k]`` the input side's
    pre-activation adjoint, from which the layer below gets its share (``da @ W_ih``).

    The backward is linear in the adjoint: with ``copies`` = c, the batch is c blocks of
    rows, each its own adjoint through the same steps (``direct`` and ``dh_T`` c·B rows), at
    the cost of one pass.

    Where the layer is on the CPU in float32 or float64 (:func:`~rnncheck.twins.on_host`) the pass runs on NumPy
    views of its tensors: a step is a few ops on a few rows, and NumPy's call costs a third of
    torch's there.  The results are torch tensors either way.
    """
    with np.errstate(all="ignore"):  # an overflowed state is measured as it is, as torch does, without a warning
        return _back_through(layer, direct, dh_T, dc_T, copies, inputs_side)


def _back_through(layer: RecordedLayer, direct, dh_T, dc_T, copies: int, inputs_side: bool):
    K, arr = len(layer.states), _Arrays(layer.steps(0))
    factors, step = _stepper(layer, arr)
    dh = arr(dh_T) if dh_T is not None else arr.zeros(copies * factors[0].shape[1], layer.steps(0).shape[-1])
    carry = None  # an LSTM's dc carried back from the step after, c's rows beside h's
    if layer.mode == Mode.LSTM:
        carry = arr(dc_T) if dc_T is not None else arr.zeros(dh.shape[0], factors[0].shape[-1])
    if copies > 1:  # each factor's rows once per block of the batch
        factors = [arr.tile_rows(x, copies) for x in factors]
    rows = list(zip(*(arr.steps(x) for x in factors)))  # each step's factors as views, without an indexing kernel
    out_h, out_c, out_a = [None] * K, [None] * K, [None] * K
    direct = [None] * K if direct is None else arr.steps(arr(direct))
    if direct[-1] is not None:
        dh = direct[-1] + dh
    for k in range(K - 1, -1, -1):  # each step gives the next one's total dL/dh, its direct share added in
        out_h[k] = dh
        out_a[k], dh, carry, out_c[k] = step(rows[k], dh, carry, direct[k - 1] if k else None)
    return tuple(None if out[0] is None else arr.stack(out) for out in (out_h, out_c, out_a if inputs_side else [None]))


class _Arrays:
    """The few array functions the pass needs, on detached torch tensors or, on the host, on their NumPy views;
    new arrays like ``like``."""

    def __init__(self, like: torch.Tensor):
        self.host = on_host(like.detach())
        self._like = self(like)

    def __call__(self, t: torch.Tensor):
        return t.detach().numpy() if self.host else t.detach()

    def zeros(self, *shape):
        return self._like.new_zeros(shape) if not self.host else np.zeros(shape, self._like.dtype)

    def before(self, first, whole):
        """Each step's previous value: ``first`` (the initial state), then ``whole`` (K, B, ·) but its last step."""
        parts = [self(first)[None], whole[:-1]]
        return np.concatenate(parts) if self.host else torch.cat(parts)

    def tanh(self, x):
        return np.tanh(x) if self.host else torch.tanh(x)

    def tile_rows(self, x, copies: int):
        return np.tile(x, (1, copies, 1)) if self.host else x.repeat(1, copies, 1)

    def steps(self, x) -> list:
        return list(x) if self.host else list(x.unbind(0))

    def stack(self, steps: list) -> torch.Tensor:
        return torch.from_numpy(np.stack(steps)) if self.host else torch.stack(steps)


def _stepper(layer: RecordedLayer, arr: _Arrays):
    """The layer's cell one step back: ``(factors, step)``.  ``factors`` are what a step multiplies by, every step's
    at once; ``step(factors_k, dh_k, carry, direct_(k-1)) -> (da_k, dh_(k-1), carry, dc_k)`` (dh_(k-1) the total,
    ``direct_(k-1)`` added in where not None; the carry an LSTM's dc, None for the others)."""
    w = {k: arr(v) for k, v in layer.params.items()}
    W_hh, W_hr = w["W_hh"], w.get("W_hr")
    h = arr(layer.steps(0))
    if layer.mode == Mode.LSTM:
        c = arr(layer.steps(1))
        s = arr(layer.tanh_c) if layer.tanh_c is not None else arr.tanh(c)  # the kernel path's reconstruction has it
        acts = [arr(stacked(layer.gates[g])) for g in lstm.GATES]
        factors = lstm.back_factors(acts, s, arr.before(layer.state0[1], c))

        def step(factors_k, dh, carry, plus):
            dm = dh if W_hr is None else dh @ W_hr
            return lstm.step_back(dm, carry, *factors_k, W_hh, plus)

        return factors, step
    if layer.mode == Mode.GRU:
        H, h_prev = h.shape[-1], arr.before(layer.state0[0], h)
        h_n = h_prev @ w["W_hh"][2 * H :].T + w["b_hh"][2 * H :]
        factors = gru.back_factors([arr(stacked(layer.gates[g])) for g in gru.GATES], h_prev, h_n)

        def step(factors_k, dh, carry, plus):
            da_x, _, dh_prev = gru.step_back(dh, *factors_k, W_hh, plus)
            return da_x, dh_prev, None, None

        return factors, step

    def step(factors_k, dh, carry, plus):
        da, dh_prev = rnn.step_back(dh, *factors_k, W_hh, plus)
        return da, dh_prev, None, None

    return [ACTIVATIONS[Mode(layer.mode).activation][1](h)], step


def propagation_by_hand(layer: RecordedLayer, u: torch.Tensor) -> torch.Tensor | None:
    """‖∂⟨u, h_T⟩/∂h_t‖'s vectors for every step, lag 0 first; None where the layer is not :func:`by_hand`
    (a custom cell, or a PackedSequence, whose batch changes between steps): autograd then gives them."""
    if not by_hand(layer):
        return None
    with torch.no_grad():
        dh, _, _ = back_through(layer, None, u.detach(), inputs_side=False)
    return dh.flip(0)


def total_adjoints(recording: Recording, units: list | None = None) -> tuple[dict[int, torch.Tensor], list]:
    """dL/d(state) of every state of every fused module the recording holds, every step's at once by
    ``(part, id(layer))`` (:func:`_keep_adjoints`), from the upstream gradients of the
    module's output and final states (``recording.upstream``); and, where
    ``units`` gives a unit functional u of each layer's last state, the propagation ∂⟨u, h_T⟩/∂h_t of each
    layer (lag 0 first), carried in the same pass as extra rows."""
    adjoint: dict[int, torch.Tensor] = {}
    units = units or [None] * len(recording.layers)
    by_layer = {id(layer): u for layer, u in zip(recording.layers, units)}
    propagation: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for name, (spec, ups) in recording.upstream.items():
            layers = {layer.index: layer for layer in recording.layers if layer.module == name}
            _module_adjoints(spec, ups, layers, adjoint, by_layer, propagation)
    return adjoint, [propagation.get(id(layer)) for layer in recording.layers]


def _keep_adjoints(adjoint: dict, layer: RecordedLayer, dh, dc) -> None:
    """A layer's adjoints, every step's at once: under ``(0, id(layer))`` for h and ``(1, id(layer))`` for c (what
    the flow check's norms read)."""
    adjoint[(0, id(layer))] = dh
    if dc is not None:
        adjoint[(1, id(layer))] = dc


def _module_adjoints(spec, ups, layers: dict, adjoint: dict, units: dict, propagation: dict) -> None:
    """One fused module, top layer first: each layer's input adjoint is the direct dL/dh of the layer below."""
    D, P = spec.directions, spec.output_size
    first = layers[(0, 0)]
    T, like = len(first.states), first.states[0][0]
    d_seq = ups[0]
    finals = [None if g is None else (g.unsqueeze(1) if g.dim() == 2 else g) for g in ups[1:]]
    if d_seq is not None:
        d_seq = d_seq.unsqueeze(1) if d_seq.dim() == 2 else d_seq.transpose(0, 1) if spec.batch_first else d_seq
    d_out = d_seq if d_seq is not None else like.new_zeros((T, like.shape[0], D * P))
    for layer_index in range(spec.num_layers - 1, -1, -1):
        below = None
        for d in range(D):
            layer = layers[(layer_index, d)]
            k = layer_index * D + d
            part = d_out[..., d * P : (d + 1) * P]
            dh_T = finals[0][k] if finals and finals[0] is not None else None
            dc_T = finals[1][k] if len(finals) > 1 and finals[1] is not None else None
            direct = part.flip(0) if d else part
            u = units.get(id(layer))
            if u is not None:  # the unit functional's propagation rides along as B more rows
                B = like.shape[0]
                direct = torch.cat([direct, torch.zeros_like(direct)], dim=1)
                dh_T = torch.cat([torch.zeros_like(u) if dh_T is None else dh_T, u.detach()])
                dc_T = None if dc_T is None else torch.cat([dc_T, torch.zeros_like(dc_T)])
            dh, dc, da = back_through(layer, direct, dh_T, dc_T, 1 if u is None else 2, inputs_side=layer_index > 0)
            if u is not None:
                propagation[id(layer)] = dh[:, B:].flip(0)
                dh, dc, da = dh[:, :B], None if dc is None else dc[:, :B], None if da is None else da[:, :B]
            _keep_adjoints(adjoint, layer, dh, dc)
            if layer_index:
                share = (da.flip(0) if d else da) @ layer.params["W_ih"]
                below = share if below is None else below + share
        d_out = below
