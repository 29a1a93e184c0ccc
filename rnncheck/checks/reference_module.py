"""Your own naive implementation as the oracle: ``TorchCase(fast, inputs=(x,), reference=naive)``.

``naive`` is an ``nn.Module`` (or, for a FunctionCase, a function; for a StepCase, the
module's own step form) with the same parameter names and shapes as the case's model (or a
``reference_map`` from its names to the case's), written plainly with autograd and loops.
The check

1. copies the case's parameters into the naive module, in float64, and runs both on the
   same inputs;
2. compares every output element and, through the case's loss, every parameter gradient
   and the gradient of every input that requires grad;
3. measures the tolerance from how each implementation rounds, instead of assuming one.
   Two implementations of one recurrence by different algorithms (a log-space or Blelloch
   scan against a sequential loop) never agree bit for bit, so a fixed floor of a few
   units of rounding would fail a correct scan on some seeds and not others.

   - A model in float32, float16 or bfloat16: its own rounding is its error against itself
     run in float64, and the naive module's its error against the float64 naive run.  The
     candidate passes while its error against the float64 naive run is at most
     :attr:`Tolerances.module_factor` times the larger of the two.
   - A model in float64, where nothing finer exists to measure against: both are run in
     float32 as well, their errors there measured against their float64 runs, and scaled
     by ε(float64)/ε(float32).  Rounding errors of a fixed algorithm scale with the unit
     roundoff, so this is each one's float64 rounding, measured rather than assumed; the
     candidate passes while its error is at most the factor times their sum.

   Neither is ever asked to be closer than :attr:`Tolerances.module_floor_ulps` units.

Finite differences cannot see a forward pass that computes the wrong function with a
backward that matches it (relu where tanh belongs, in both); this comparison can.  When the
two disagree, :mod:`rnncheck.checks.time_hints` says which step the disagreement starts at
and which time bug it is, each hint checked by rerunning the reference as it says.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.func import functional_call

from ..errors import CaseError, UserCodeError, first_line
from ..findings import CheckName, CheckResult, Finding, Verdict, worst
from ..nested import common_dtype
from ..tolerances import current as tolerances
from ..usercode import call_user
from . import time_hints


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


@dataclass
class Side:
    """One implementation run in one dtype: its floating outputs and gradients, in float64 on the CPU."""

    outs: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor]  # keyed by the case's names (parameters and checked inputs)

    def __sub__(self, other: Side) -> Side:
        return Side(
            {p: self.outs[p] - other.outs[p] for p in self.outs if p in other.outs},
            {n: self.grads[n] - other.grads[n] for n in self.grads if n in other.grads},
        )

    def scaled(self, factor: float) -> Side:
        return Side({p: t * factor for p, t in self.outs.items()}, {n: t * factor for n, t in self.grads.items()})

    def get(self, what: str, key: str) -> torch.Tensor | None:
        return (self.outs if what == "output" else self.grads).get(key)


class Runner:
    """Runs the candidate or the naive module on the case's inputs, in a chosen dtype."""

    def __init__(self, target, naive, pairs: dict[str, str]) -> None:
        self.target, self.naive, self.pairs = target, naive, pairs
        self.dtype = common_dtype(target.saved.values())

    def module(self, which: str, dtype: torch.dtype | None) -> torch.nn.Module:
        module = self.target.model if which == "candidate" else self.naive
        if dtype is None:
            return module
        return copy.deepcopy(module).to(device=self.target.device, dtype=dtype)

    def run(
        self,
        which: str,
        dtype: torch.dtype | None,
        inputs: dict | None = None,
        params: dict | None = None,
        forward_only: bool = False,
    ) -> Side:
        """Outputs and gradients of one implementation (``dtype`` None: the candidate as the user runs it)."""
        target = self.target
        saved = target.saved
        names = target.param_names if which == "candidate" else list(self.pairs)
        case_name = (lambda n: n) if which == "candidate" else self.pairs.__getitem__
        cast = (lambda t: t) if dtype is None else (lambda t: t.to(dtype) if t.is_floating_point() else t)
        what = "the model's forward" if which == "candidate" else "the reference module"
        source = {**saved, **(params or {})}
        with torch.enable_grad():
            values = {n: cast(source[case_name(n)]).detach().clone().requires_grad_(True) for n in names}
            leaves = {n: cast(t).detach().clone().requires_grad_(True) for n, t in (inputs or {}).items()}
            leaves.update(
                {n: cast(saved[n]).detach().clone().requires_grad_(True) for n in target.input_names if n not in leaves}
            )
            args = time_hints.replace_inputs(target, leaves, cast)
            target.seed_call()
            out = call_user(
                what,
                functional_call,
                self.module(which, dtype),
                values,
                tuple(args),
                user_file=target.case.file or None,
            )
            outs = {p: t.detach().to("cpu", torch.float64) for p, t in time_hints.float_leaves(out)}
            if forward_only:  # a rerun on other inputs: its outputs alone (the loss may not take their shape)
                return Side(outs, {})
            loss = target.loss_of(out)
            wanted = list(values.values()) + [leaves[n] for n in target.input_names]
            grads = torch.autograd.grad(loss, wanted, allow_unused=True)
        keys = [case_name(n) for n in names] + list(target.input_names)
        grad = {
            k: (torch.zeros(w.shape, dtype=torch.float64) if g is None else g.detach().to("cpu", torch.float64))
            for k, w, g in zip(keys, wanted, grads)
        }
        return Side(outs, grad)

    def rerun(self, which: str, params: dict, inputs: dict, forward_only: bool = False) -> Side:
        """One implementation in float64 with some parameters (case names) or inputs (paths) replaced."""
        return self.run(which, torch.float64, inputs=inputs, params=params, forward_only=forward_only)


@dataclass
class Measured:
    """The runs behind the comparison and each implementation's measured rounding."""

    cand: Side  # as the user runs it
    ref: Side  # the naive module in float64
    rounding: Side  # the allowance: the candidate's and the naive module's own rounding, combined
    how: str  # how the rounding was measured, for the report
    notes: list[str] = field(default_factory=list)


def _measure(runner: Runner) -> Measured:
    """Run both implementations as the module docstring says and measure each one's rounding."""
    dtype = runner.dtype
    cand = runner.run("candidate", None)
    ref = runner.run("reference", torch.float64)
    notes = []
    if dtype != torch.float64:
        naive_round = runner.run("reference", dtype) - ref
        cand_hi = _try(runner, "candidate", torch.float64, notes)
        cand_round = cand - cand_hi if cand_hi is not None else naive_round
        rounding = _combine(cand_round, naive_round, max)
        how = f"each implementation's own rounding in {_dtype_name(dtype)}, measured against itself in float64"
    else:
        ratio = (
            float(torch.finfo(torch.float64).eps / torch.finfo(torch.float32).eps) * tolerances().module_scaled_margin
        )
        naive32, cand32 = (
            _try(runner, "reference", torch.float32, notes),
            _try(runner, "candidate", torch.float32, notes),
        )
        naive_round = (naive32 - ref).scaled(ratio) if naive32 is not None else None
        cand_round = (cand32 - cand).scaled(ratio) if cand32 is not None else None
        if naive_round is None or cand_round is None:
            zero = (cand - cand).scaled(0.0)
            rounding = _combine(cand_round or zero, naive_round or zero, lambda a, b: a + b)
        else:
            rounding = _combine(cand_round, naive_round, lambda a, b: a + b)
        how = (
            "each implementation's rounding measured in float32 against itself in float64, scaled by "
            f"ε64/ε32 and widened {tolerances().module_scaled_margin:g}×"
        )
    return Measured(cand, ref, rounding, how, notes)


def _try(runner: Runner, which: str, dtype: torch.dtype, notes: list[str]) -> Side | None:
    """A run in another dtype, or None with a note where the code cannot run in it (a cast it makes itself)."""
    try:
        return runner.run(which, dtype)
    except (UserCodeError, RuntimeError, TypeError) as exc:
        name = "the candidate" if which == "candidate" else "the naive reference"
        notes.append(
            f"{name} does not run in {_dtype_name(dtype)} ({first_line(exc)[:160]}): "
            "its rounding is not measured and the tolerance rests on the other's"
        )
        return None


def _combine(a: Side, b: Side, how) -> Side:
    """Entrywise ``how(|a|, |b|)`` of two roundings (max for the larger, a sum for both at once)."""
    pick = (lambda x, y: torch.maximum(x.abs(), y.abs())) if how is max else (lambda x, y: x.abs() + y.abs())
    return Side(
        {p: pick(a.outs[p], b.outs[p]) for p in a.outs if p in b.outs},
        {n: pick(a.grads[n], b.grads[n]) for n in a.grads if n in b.grads},
    )


def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


def _entry(name: str, index: tuple[int, ...], gates: tuple[str, ...], rows: int) -> str:
    if gates and index:
        block = rows // len(gates)
        gate, row = divmod(index[0], block)
        return f"{name}[{gates[gate]}-gate][{', '.join(map(str, (row, *index[1:])))}]"
    return f"{name}[{', '.join(map(str, index))}]" if index else name


@dataclass
class Compared:
    """One output or gradient: its error against the float64 naive run and the measured allowance."""

    what: str  # "output" or "gradient"
    key: str  # the output path, or the case's tensor name
    error: float  # ‖cand − ref‖ / ‖ref‖
    allowed: float  # the tolerance, relative to ‖ref‖ likewise
    own: float  # the measured rounding, relative
    diff: torch.Tensor
    ref: torch.Tensor
    cand: torch.Tensor
    rounding: torch.Tensor

    @property
    def ratio(self) -> float:
        return self.error / self.own if self.own > 0 else float("inf")  # allowed = module_factor · own

    @property
    def fails(self) -> bool:
        return self.error > self.allowed

    @property
    def label(self) -> str:
        return f"output {self.key}" if self.what == "output" else f"gradient of {self.key}"


def _compare(what: str, key: str, cand: torch.Tensor, ref: torch.Tensor, rounding: torch.Tensor, eps: float):
    scale = float(ref.norm()) or 1.0
    floor = tolerances().module_floor_ulps * eps
    own = max(float(rounding.norm()) / scale, floor)
    diff = cand - ref
    error = float(diff.norm()) / scale
    return Compared(what, key, error, tolerances().module_factor * own, own, diff, ref, cand, rounding)


def _failure(c: Compared, target, dtype_name: str) -> Finding:
    index = (
        tuple(int(i) for i in np.unravel_index(int(c.diff.abs().argmax()), tuple(c.diff.shape))) if c.diff.dim() else ()
    )
    if c.what == "output":
        where = f"{c.key}{list(index)}"
    else:
        rows = c.cand.shape[0] if c.cand.dim() else 0
        where = _entry(c.key, index, target.gates.get(c.key, ()), rows)
    return Finding(
        f"reference_module_{'forward' if c.what == 'output' else 'gradient'}",
        Verdict.FAIL,
        f"{c.label}: candidate error {c.error:.2g} against the float64 naive reference, {c.ratio:.3g}× the measured "
        f"rounding ({c.own:.2g}; passes up to {tolerances().module_factor:g}×); worst at {where}: candidate "
        f"{float(c.cand[index]):.8g}, naive {float(c.ref[index]):.8g}",
        tensor=c.label,
        location={"index": list(index)},
        numbers={"error": c.error, "naive_error": c.own, "ratio": c.ratio, "dtype": dtype_name},
    )


def _comparisons(target, runner: Runner, m: Measured) -> list[Compared]:
    eps = float(torch.finfo(runner.dtype).eps)
    out = []
    for path, ref in m.ref.outs.items():
        cand = m.cand.outs.get(path)
        if cand is None or cand.shape != ref.shape:
            raise CaseError(
                f"reference module {type(runner.naive).__name__}: its output {path} does not match the model's in shape "
                f"({tuple(ref.shape)} vs {None if cand is None else tuple(cand.shape)})"
            )
        out.append(_compare("output", path, cand, ref, m.rounding.outs.get(path, torch.zeros_like(ref)), eps))
    for key, ref in m.ref.grads.items():
        zero = torch.zeros_like(ref)
        out.append(_compare("gradient", key, m.cand.grads[key], ref, m.rounding.grads.get(key, zero), eps))
    return out


def check_reference_module(target) -> CheckResult | None:
    """Compare the case's model with the user's naive module, with a tolerance measured from how each rounds."""
    naive = target.case.reference_module
    if naive is None:
        return None
    runner = Runner(target, naive, _names(target, naive))
    m = _measure(runner)
    compared = _comparisons(target, runner, m)
    dtype_name = _dtype_name(runner.dtype)
    findings = [_failure(c, target, dtype_name) for c in compared if c.fails]
    findings += time_hints.diagnose(target, runner, m, compared)
    findings += _notes(compared, m, dtype_name)
    return CheckResult(CheckName.REFERENCE_MODULE, worst(f.verdict for f in findings), findings)


def _notes(compared: list[Compared], m: Measured, dtype_name: str) -> list[Finding]:
    findings = []
    forward_ok = not any(c.fails for c in compared if c.what == "output")
    if forward_ok and any(c.fails for c in compared):
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
    coarse = [f"{c.label} ({c.allowed:.1%})" for c in compared if c.allowed > tolerances().module_coarse]
    if coarse:
        findings.append(
            Finding(
                "reference_module_resolution",
                Verdict.NOTE,
                f"in {dtype_name} the implementations' own rounding limits what this comparison resolves: "
                f"relative errors below {', '.join(coarse)} pass unseen; check in float32 (--dtype float32) "
                "to see smaller ones",
            )
        )
    findings += [Finding("reference_module_rounding", Verdict.NOTE, n) for n in m.notes]
    worst_ratio = max((c.ratio for c in compared), default=0.0)
    failing = any(c.fails for c in compared)
    outputs = sum(c.what == "output" for c in compared)
    findings.append(
        Finding(
            "reference_module_ratio" if failing else "reference_module_match",
            Verdict.NOTE,
            f"candidate error {worst_ratio:.2g}× the measured rounding at worst, over {outputs} output(s) and "
            f"{len(compared) - outputs} gradient(s) (passes up to {tolerances().module_factor:g}×; rounding: {m.how})",
            numbers={"worst_ratio": worst_ratio, "factor": tolerances().module_factor, "dtype": dtype_name},
        )
    )
    return findings
