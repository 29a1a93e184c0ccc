"""How a case reaches the NumPy reference: its link (architecture, weights, inputs), and the comparisons it offers.

A neutral module between the cases and the checks: an adapter builds :class:`Link` and
:class:`Comparison` objects with it (a NumpyCase that names its architecture, every fused
nn.RNN/LSTM/GRU a TorchCase captured), and the reference check reads them, so that
neither package imports the other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import reference as R
from .convert import has_param, spec_of
from .errors import CaseError
from .tolerances import current as tolerances
from .twins import dropout_off, fused_layers
from .usercode import call_user


@dataclass
class Link:
    """How a case maps onto the reference."""

    spec: R.Spec
    params: dict[str, np.ndarray]  # reference name -> float64 value
    names: dict[str, str]  # reference name -> case name (absent: taken as zero)
    x: np.ndarray  # (T, B, I) time-major
    h0: np.ndarray | None = None
    c0: np.ndarray | None = None
    label: str = ""
    _forward: tuple | None = field(default=None, repr=False, compare=False)

    def forward(self) -> tuple[np.ndarray, tuple[np.ndarray, ...], R.Cache]:
        """The reference's forward pass on this link, computed once: ``(output, states, cache)``.

        Nothing downstream changes it: every comparison, hypothesis and profile reads it.
        """
        if self._forward is None:
            self._forward = R.forward(self.spec, self.params, self.x, self.h0, self.c0)
        return self._forward


def map_parameters(spec: R.Spec, theta: dict[str, np.ndarray], names: dict[str, str]):
    """``(params, link names, missing)``: the case's arrays under the reference's names.

    ``names`` maps reference names to the case's; a reference parameter the case lacks (a
    second bias, say) is taken as zero and listed in ``missing``.
    """
    params, link_names, missing = {}, {}, []
    for ref_name, shape in spec.param_shapes().items():
        mine = names.get(ref_name, ref_name)
        if mine in theta:
            if theta[mine].size != int(np.prod(shape)):
                raise CaseError(
                    f"reference_map: {mine!r} has shape {theta[mine].shape}, the reference's {ref_name} has {shape}"
                )
            params[ref_name] = theta[mine].reshape(shape)
            link_names[ref_name] = mine
        else:
            params[ref_name] = np.zeros(shape)
            missing.append(ref_name)
    return params, link_names, missing


@dataclass
class Comparison:
    """Everything one comparison with the reference needs, as a target's adapter supplies it."""

    link: Link
    case_grad: dict[str, np.ndarray]  # the case's analytic gradient, by case name
    d_out: np.ndarray | None  # ∂L/∂output (time-major) for the reference backward, None: forward only
    d_hn: np.ndarray | None
    d_cn: np.ndarray | None
    h_case: np.ndarray | None  # the case's own hidden states (time-major), None if unknown
    tol: float
    note: str | None = None
    fused: bool = False  # the case side is a library layer (nn.LSTM …), not the user's code


def head_gradient(head, h: np.ndarray, params: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
    """∂head/∂h entry by entry, and the relative error of that estimate, measured.

    Each entry takes a central difference at two steps, h and 2h, combined by Richardson
    extrapolation (truncation O(h⁴)).  The error estimate adds what the extrapolation
    removed (|D(h) − D(2h)|/3, an upper bound on what is left for a smooth head) to the
    rounding of the differences (ε·|head|/h), relative to the gradient's norm.
    """
    eps = float(np.finfo(np.float64).eps)
    g = np.empty_like(h)
    flat, gflat = h.reshape(-1), g.reshape(-1)
    value = abs(float(call_user("head()", head, h, params)))
    err_sq = 0.0
    for j in range(flat.size):
        step = 1e-4 * max(1.0, abs(flat[j]))
        keep = flat[j]
        diffs = []
        for k in (1, 2):
            flat[j] = keep + k * step
            up = float(call_user("head()", head, h, params))
            flat[j] = keep - k * step
            down = float(call_user("head()", head, h, params))
            diffs.append((up - down) / (2 * k * step))
        flat[j] = keep
        gflat[j] = (4 * diffs[0] - diffs[1]) / 3
        err_sq += (abs(diffs[0] - diffs[1]) / 3 + 4 * eps * max(value, 1.0) / step) ** 2
    norm = float(np.linalg.norm(gflat))
    return g, (err_sq**0.5 / norm if norm > 0 else 0.0)


def _sub_batch(spec, args, out, ups, batch: int):
    """The first ``batch`` sequences of a layer's call, as plain tensors in the layer's own layout.

    A PackedSequence is unpacked and only its full-length sequences are kept: for them the
    packed and the padded computations are the same, and the reference needs no lengths.
    """
    x = args[0]
    seq_out = out[0]
    d_seq = (
        torch.zeros_like(seq_out.data if isinstance(seq_out, nn.utils.rnn.PackedSequence) else seq_out)
        if ups[0] is None
        else ups[0]
    ).detach()
    if isinstance(x, nn.utils.rnn.PackedSequence):
        x_tm, lengths = nn.utils.rnn.pad_packed_sequence(x)
        x_tm = x_tm.detach()
        full = torch.nonzero(lengths == lengths.max()).flatten()[:batch].to(x_tm.device)
        d_tm, _ = nn.utils.rnn.pad_packed_sequence(
            nn.utils.rnn.PackedSequence(d_seq, x.batch_sizes, x.sorted_indices, x.unsorted_indices)
        )
        x_sub, d_out = x_tm.index_select(1, full), d_tm.index_select(1, full)
        if spec.batch_first:
            x_sub, d_out = x_sub.transpose(0, 1), d_out.transpose(0, 1)
    else:
        x = x.detach()
        if x.dim() != 3:
            return None
        b_axis = 0 if spec.batch_first else 1
        full = torch.arange(min(batch, x.shape[b_axis]), device=x.device)
        x_sub, d_out = x.index_select(b_axis, full), d_seq.index_select(b_axis, full)
    hx = args[1] if len(args) > 1 else None
    if hx is not None:  # the states are in the caller's batch order (cuDNN wants them contiguous)
        hx = (
            tuple(t.detach().index_select(1, full).contiguous() for t in hx)
            if isinstance(hx, tuple)
            else hx.detach().index_select(1, full).contiguous()
        )
    d_states = [None if u is None else u.detach().index_select(1, full) for u in ups[1:]]
    return x_sub.contiguous(), hx, d_out, d_states


def fused_layer_comparisons(model: nn.Module, caught: dict, options, batch: int = 2) -> list[Comparison]:
    """Compare every nn.RNN/LSTM/GRU inside ``model`` with the reference on the first ``batch`` sequences.

    ``caught`` holds what :func:`rnncheck.twins.capturing` caught of each fused layer on the gradient call at
    the check point (``name ->`` :class:`~rnncheck.twins.Caught`): the layer's input,
    initial state and output, and ∂L/∂output.  Each layer is then run again on a small
    sub-batch with that upstream gradient: its output and its weight gradients (cuDNN's on
    a GPU) are compared with the reference's.  A frozen layer's forward pass alone is.
    """
    layers = fused_layers(model)
    if not layers:
        return []
    comparisons = []
    for name, mod in layers:
        if name not in caught:
            continue  # a layer the forward pass never called
        spec = spec_of(mod)
        got = caught[name]
        picked = _sub_batch(spec, got.args, got.out, got.grads, batch)
        if picked is None:
            continue
        x_sub, hx, d_out, d_states = picked
        prefix = f"{name}." if name else ""
        p_names = [n for n in spec.param_shapes() if has_param(mod, n)]
        trainable = [n for n in p_names if getattr(mod, n).requires_grad]  # a frozen weight has no gradient to compare
        fused_grads: tuple = ()
        # a parametrized weight (torch.nn.utils.parametrize) is computed anew on each access: cached, the
        # forward and the gradient see one tensor, the weight the layer really used
        # inter-layer dropout (nn.LSTM(num_layers=2, dropout=p) in training mode) draws masks the reference cannot
        # have: the layer's equations are compared with it off, and a note says so
        dropout = mod.dropout if (mod.training and mod.dropout and spec.num_layers > 1) else 0.0
        with torch.enable_grad(), torch.nn.utils.parametrize.cached(), dropout_off(mod, dropout):
            out_sub, states_sub = mod(x_sub, hx)
            states_sub = states_sub if isinstance(states_sub, tuple) else (states_sub,)
            pairs = [(out_sub, d_out)] + [(s, d) for s, d in zip(states_sub, d_states) if d is not None]
            if trainable:
                fused_grads = torch.autograd.grad(
                    [o for o, _ in pairs],
                    [getattr(mod, n) for n in trainable],
                    [d for _, d in pairs],
                    allow_unused=True,
                )
            np64 = lambda t: t.detach().to("cpu", torch.float64).numpy()  # noqa: E731
            ref_params = {n: np64(getattr(mod, n)) for n in p_names}
        ref_params.update({n: np.zeros(shape) for n, shape in spec.param_shapes().items() if n not in ref_params})
        tm = (lambda a: np.swapaxes(a, 0, 1)) if spec.batch_first else (lambda a: a)
        link = Link(
            dataclasses.replace(spec, batch_first=False),
            ref_params,
            {n: prefix + n for n in p_names},
            tm(np64(x_sub)),
            None if hx is None else np64(hx[0] if isinstance(hx, tuple) else hx),
            None if hx is None or not isinstance(hx, tuple) else np64(hx[1]),
            label=name or type(mod).__name__,
        )
        case_grad = {
            prefix + n: (np.zeros(ref_params[n].shape) if g is None else np64(g))
            for n, g in zip(trainable, fused_grads)
        }
        dt = out_sub.dtype
        eps = torch.finfo(dt).eps
        tol = max(tolerances().reference_floor, tolerances().reference_ulps * eps)
        notes = []
        if dropout:
            notes.append(
                f"{link.label}: compared with its inter-layer dropout ({dropout:g}) off, which the reference does "
                "not model; the model's own gradient, masks and all, is what the probes checked"
            )
        if not trainable:
            notes.append(
                f"{link.label}: its weights are frozen (requires_grad=False): only the forward pass is compared"
            )
        if out_sub.is_cuda and torch.backends.cudnn.allow_tf32:
            tol = max(tol, 1e-2)
            notes.append(
                f"{link.label}: cuDNN may use TF32 (torch.backends.cudnn.allow_tf32 is True): compared to 1e-2"
            )
        comparisons.append(
            Comparison(
                link,
                case_grad,
                tm(np64(d_out)) if trainable else None,
                None if d_states[0] is None else np64(d_states[0]),
                None if len(d_states) < 2 or d_states[1] is None else np64(d_states[1]),
                tm(np64(out_sub)),
                tol,
                "; ".join(notes) or None,
                fused=True,
            )
        )
    return comparisons
