"""Your own naive implementation as the oracle: ``TorchCase(fast, inputs=(x,), reference=naive)``.

``naive`` is an ``nn.Module`` with the same parameter names and shapes as the case's model
(or a ``reference_map`` from its names to the case's), written plainly with autograd and
loops.  The check

1. copies the case's parameters into the naive module, in float64, and runs both on the
   same inputs;
2. compares every output element and, through the case's loss, every parameter gradient;
3. measures the tolerance instead of assuming one: the naive module is run once more in
   the candidate's own dtype, which is the error of the same arithmetic with no bug.  The
   candidate passes when its error against the float64 naive run is at most
   :attr:`Tolerances.module_factor` times that (never below a few units of rounding).

Finite differences cannot see a forward pass that computes the wrong function with a
backward that matches it (relu where tanh belongs, in both); this comparison can.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch.func import functional_call

from ..errors import CaseError
from ..findings import CheckResult, Finding, Verdict, worst
from ..tolerances import current as tolerances
from ..usercode import call_user


def _float_leaves(out):
    """``(path, tensor)`` for every floating tensor in a model's (nested) output."""
    from ..cases.torch_case import _leaves

    return ((p, t) for p, t in _leaves(out, "out") if t.is_floating_point())


def _names(target, naive) -> dict[str, str]:
    """naive parameter name -> the case's name, checked for existence and shape."""
    mapping = dict(target.case.reference_map or {})
    shapes = target.shapes
    pairs, missing, wrong = {}, [], []
    for name, p in naive.named_parameters():
        mine = mapping.get(name, name)
        if mine not in shapes:
            missing.append(name)
        elif tuple(p.shape) != tuple(shapes[mine]):
            wrong.append(f"{name} {tuple(p.shape)} vs {mine} {tuple(shapes[mine])}")
        else:
            pairs[name] = mine
    if missing or wrong:
        parts = ([f"no parameter for {', '.join(missing)}"] if missing else []) + (
            [f"shapes differ: {'; '.join(wrong)}"] if wrong else []
        )
        raise CaseError(
            f"reference module {type(naive).__name__}: {', '.join(parts)}; give it the case's parameter names, "
            "or pass reference_map={'naive name': 'case name', ...}"
        )
    return pairs


def _run(target, module, values: dict[str, torch.Tensor], dtype: torch.dtype | None, what: str):
    """Outputs and parameter gradients of ``module`` on the case's inputs (cast to ``dtype`` when given)."""
    inputs = target.inputs
    if dtype is not None:
        from ..cases.torch_case import _replace

        inputs = _replace(inputs, "input", {}, lambda t: t.to(dtype) if t.is_floating_point() else t)
    with torch.enable_grad():
        params = {n: v.detach().clone().requires_grad_(True) for n, v in values.items()}
        out = call_user(what, functional_call, module, params, tuple(inputs), user_file=target.case.file or None)
        loss = target._loss_of(out)
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    outs = {p: t.detach().to("cpu", torch.float64) for p, t in _float_leaves(out)}
    grad = {
        n: (torch.zeros(v.shape, dtype=torch.float64) if g is None else g.detach().to("cpu", torch.float64))
        for (n, v), g in zip(params.items(), grads)
    }
    return outs, grad


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    scale = float(ref.norm())
    return float((a - ref).norm()) / scale if scale > 0 else float((a - ref).norm())


def _entry(name: str, index: tuple[int, ...], gates: tuple[str, ...], rows: int) -> str:
    if gates and index:
        block = rows // len(gates)
        gate, row = divmod(index[0], block)
        return f"{name}[{gates[gate]}-gate][{', '.join(map(str, (row, *index[1:])))}]"
    return f"{name}[{', '.join(map(str, index))}]" if index else name


def check_reference_module(target) -> CheckResult | None:
    """Compare the case's model with the user's naive module, with a tolerance measured in the case's own dtype."""
    naive = target.case.reference_module
    if naive is None:
        return None
    pairs = _names(target, naive)
    dtype = target.leaf_dtypes.get(next(iter(pairs.values())), torch.float64)
    device = target.device
    saved = target.saved
    # the candidate, as the user runs it
    cand_out, cand_grad = _run(
        target, target.model, {n: saved[n] for n in target.param_names}, None, "the model's forward"
    )
    # the naive module in float64, and in the candidate's dtype
    naive64 = copy.deepcopy(naive).to(device=device, dtype=torch.float64)
    ref_out, ref_grad = _run(
        target, naive64, {n: saved[m].double() for n, m in pairs.items()}, torch.float64, "the reference module"
    )
    if dtype != torch.float64:
        naive_lp = copy.deepcopy(naive).to(device=device, dtype=dtype)
        low_out, low_grad = _run(
            target, naive_lp, {n: saved[m] for n, m in pairs.items()}, dtype, "the reference module"
        )
    else:
        low_out, low_grad = ref_out, ref_grad
    eps = float(torch.finfo(dtype).eps)
    dtype_name = str(dtype).replace("torch.", "")
    findings: list[Finding] = []
    ratios: list[float] = []
    coarse: list[str] = []

    def compare(kind: str, label: str, cand: torch.Tensor, ref: torch.Tensor, low: torch.Tensor, entry) -> None:
        own = max(_rel(low, ref), tolerances().module_floor_ulps * eps)
        err = _rel(cand, ref)
        ratio = err / own
        ratios.append(ratio)
        if tolerances().module_factor * own > tolerances().module_coarse:
            coarse.append(f"{label} ({tolerances().module_factor * own:.1%})")
        if ratio <= tolerances().module_factor:
            return
        diff = (cand - ref).abs()
        index = tuple(int(i) for i in np.unravel_index(int(diff.argmax()), tuple(diff.shape))) if diff.dim() else ()
        allowed = tolerances().module_factor * torch.maximum(
            (low - ref).abs(), torch.tensor(tolerances().module_floor_ulps * eps) * ref.abs().max()
        )
        over = torch.nonzero(diff > allowed)
        first = f"; first beyond tolerance at index {over[0].tolist()}" if over.numel() and diff.dim() else ""
        findings.append(
            Finding(
                kind,
                Verdict.FAIL,
                f"{label}: candidate error {err:.2g} against the float64 naive reference, {ratio:.3g}× the naive "
                f"implementation's own in {dtype_name} ({own:.2g}); worst at {entry(index)}: candidate "
                f"{float(cand[index]):.6g}, naive {float(ref[index]):.6g}{first}",
                tensor=label,
                location={"index": list(index)},
                numbers={"error": err, "naive_error": own, "ratio": ratio},
            )
        )

    for path, ref in ref_out.items():
        if path not in cand_out or cand_out[path].shape != ref.shape:
            raise CaseError(
                f"reference module {type(naive).__name__}: its output {path} does not match the model's in shape"
            )
        compare(
            "reference_module_forward",
            f"output {path}",
            cand_out[path],
            ref,
            low_out[path],
            lambda i, p=path: f"{p}{list(i)}",
        )
    forward_ok = not findings
    for n, mine in pairs.items():
        rows = cand_grad[mine].shape[0] if cand_grad[mine].dim() else 0
        compare(
            "reference_module_gradient",
            f"gradient of {mine}",
            cand_grad[mine],
            ref_grad[n],
            low_grad[n],
            lambda i, m=mine, r=rows: _entry(m, i, target.gates.get(m, ()), r),
        )
    worst_ratio = max(ratios, default=0.0)
    if forward_ok and any(f.kind == "reference_module_gradient" for f in findings):
        findings.append(
            Finding(
                "reference_module_note",
                Verdict.NOTE,
                "the forward pass matches the naive reference but a gradient does not: the backward is wrong",
            )
        )
    elif not forward_ok:
        findings.append(
            Finding(
                "reference_module_note",
                Verdict.NOTE,
                "the forward pass differs from the naive reference: the candidate computes another function "
                "(finite differences cannot see this when its backward matches its own forward)",
            )
        )
    if coarse:
        findings.append(
            Finding(
                "reference_module_resolution",
                Verdict.NOTE,
                f"in {dtype_name} the naive implementation's own rounding limits what this comparison resolves: "
                f"relative errors below {', '.join(coarse)} pass unseen; check in float32 (--dtype float32) "
                "to see smaller ones",
            )
        )
    findings.append(
        Finding(
            "reference_module_match"
            if not any(f.verdict == Verdict.FAIL for f in findings)
            else "reference_module_ratio",
            Verdict.NOTE,
            f"candidate error {worst_ratio:.2g}× the naive implementation's in {dtype_name} at worst, over "
            f"{len(ref_out)} output(s) and {len(pairs)} gradient(s) (passes up to {tolerances().module_factor:g}×)",
            numbers={"worst_ratio": worst_ratio, "factor": tolerances().module_factor, "dtype": dtype_name},
        )
    )
    return CheckResult("reference_module", worst(f.verdict for f in findings), findings)
