"""The torch side of the reference comparison.

Two sources of comparisons: every ``nn.RNN``/``nn.LSTM``/``nn.GRU`` inside the model
(captured by hooks, see :func:`rnncheck.reference_link.fused_layer_comparisons`), and
the model itself when the case names the architecture it implements (``reference="lstm"``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import functional_call

from .. import reference as R
from ..errors import CaseError
from ..nested import leaves, replace
from ..numerics import machine_eps
from ..reference_link import Comparison, Link, fused_layer_comparisons, map_parameters
from ..tolerances import current as tolerances
from .base import unmapped_reference


def reference_comparisons(target, grad, options) -> list:
    """The torch side of the reference comparison: fused layers inside, and the model itself if it names one."""
    # the fused layers' inputs and upstream gradients, caught on the sanity checks' gradient call
    comparisons = fused_layer_comparisons(target.model, target.captured or {}, options)
    if target.case.reference is not None:
        comparisons.append(own_reference(target, grad))
    return comparisons


def own_reference(target, grad):
    """The model claims to be ``reference``: called as nn.LSTM is, compared on its first input."""

    case = target.case
    names = dict(case.reference_map or {})
    x_path = next(iter(p for p, t in leaves(target.inputs, "input") if t.is_floating_point()), None)
    if x_path is None:
        raise CaseError(f"reference={case.reference!r}: the model has no floating-point input sequence to compare on")
    batch_first = bool(getattr(target.model, "batch_first", False))
    values = {n: t.clone().requires_grad_(True) for n, t in target.saved.items()}
    with torch.enable_grad():
        params = {n: values[n] for n in target.param_names}
        args = replace(target.inputs, "input", {n: values[n] for n in target.input_names}, lambda t: t)
        out = functional_call(target.model, params, tuple(args))
        # the loss on detached copies of the outputs: what it reads from each, directly
        cut = {p: t.detach().requires_grad_(t.is_floating_point()) for p, t in leaves(out, "out")}
        out_cut = replace(out, "out", cut, lambda t: t)
        first_path = "out[0]" if isinstance(out, tuple | list) else "out"
        first = cut[first_path]
        rest = [t for p, t in cut.items() if p != first_path and t.requires_grad]
        loss = target.loss_of(out_cut)
        d_first, *d_rest = torch.autograd.grad(loss, [first] + rest, allow_unused=True)
    reads_states = any(d is not None and bool(d.abs().sum() > 0) for d in d_rest)
    np64 = lambda t: t.detach().to("cpu", torch.float64).numpy()  # noqa: E731
    tm = (lambda a: np.swapaxes(a, 0, 1)) if batch_first else (lambda a: a)
    x = tm(np64(dict(leaves(target.inputs, "input"))[x_path]))
    h_case = tm(np64(first))
    w_hh = names.get("weight_hh_l0", "weight_hh_l0")
    if w_hh not in target.theta:
        raise unmapped_reference(case.reference, names, target.theta)
    spec = R.Spec(case.reference, x.shape[-1], target.theta[w_hh].shape[-1])
    ref_params, link_names, missing = map_parameters(spec, target.theta, names)
    tol = max(tolerances().reference_floor, tolerances().reference_ulps * machine_eps(target.model_dtype))
    d_out = None if d_first is None else tm(np64(d_first))
    note_states = "the loss also reads the final states: only the forward pass is compared" if reads_states else None
    notes = [
        n
        for n in (
            note_states,
            f"reference parameters absent from the model, taken as zero: {', '.join(missing)}" if missing else None,
        )
        if n
    ]
    case_grad = {mine: grad[mine].reshape(ref_params[ref].shape) for ref, mine in link_names.items()}
    if note_states:
        d_out = None  # the states' share would be missing from the reference's gradient: compare the forward only
    return Comparison(
        Link(spec, ref_params, link_names, x, label=type(target.model).__name__),
        case_grad,
        d_out,
        None,
        None,
        h_case,
        tol,
        "; ".join(notes) or None,
    )
