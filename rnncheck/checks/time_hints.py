"""Which time bug it is, when a recurrence and its reference disagree.

Two implementations of one recurrence (a parallel scan and a sequential loop, a module's
parallel and step forms) disagree in a few recurring ways.  Each is a hypothesis about the
candidate, checked before it is said, the way the gradient hints are:

- where the disagreement starts, and whether it then grows or stays (measured, not guessed);
- the outputs shifted by one step either way (the initial state emitted as output 0 and
  the last step dropped, or the first step dropped);
- the outputs reversed in time (a reverse layer whose outputs were never flipped back);
- state not carried across a chunk boundary (the reference, restarted at every multiple of
  the first differing step, reproduces the candidate);
- an input applied one step early or late (a decay or gate used at the wrong step, a
  segment-sum mask off by one diagonal): the reference run with that input shifted
  reproduces the candidate;
- with a matching forward, a custom backward whose reverse scan is off by one step (the
  gradient of a sequence input shifted by one step) or reversed.

Every hypothesis is accepted only when the transformed comparison agrees within the
measured tolerance and the disagreement shrinks at least tenfold.  One line per verified
hypothesis, naming every tensor it explains.
"""

from __future__ import annotations

import torch

from ..findings import Finding, Verdict
from ..nested import leaves, replace
from ..tolerances import current as tolerances


def float_leaves(out):
    """``(path, tensor)`` for every floating tensor in a model's (nested) output."""
    return ((p, t) for p, t in leaves(out, "out") if t.is_floating_point())


def replace_inputs(target, leaves: dict, cast):
    """The case's inputs with ``leaves`` (by path) put in and every other floating tensor cast."""
    return replace(target.inputs, "input", leaves, cast)


def _along(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``t`` with its time axis first."""
    return t.movedim(dim, 0)


def _close(x: torch.Tensor, y: torch.Tensor, tol: float) -> bool:
    scale = float(y.norm())
    return float((x - y).norm()) <= tol * max(scale, 1e-300)


def _rel(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((x - y).norm()) / max(float(y.norm()), 1e-300)


class _Sequences:
    """The case's tensors that run along time (sequence inputs) and those shaped like one step (states)."""

    def __init__(self, target, time_dim: int, T: int, step_shape: tuple[int, ...]) -> None:
        self.time_dim = time_dim
        values = {**{n: target.saved[n] for n in target.param_names}, **target.saved_inputs}
        self.sequences: dict[str, torch.Tensor] = {}
        self.states: dict[str, torch.Tensor] = {}
        for name, t in values.items():
            if not t.is_floating_point() or t.dim() == 0:
                continue
            t64 = t.detach().to("cpu", torch.float64)
            if t.dim() > time_dim and t.shape[time_dim] == T:
                self.sequences[name] = t64
            elif tuple(t.shape) == tuple(step_shape):
                self.states[name] = t64
        self.params = set(target.param_names)
        self.labels = dict(target.case.input_labels or {})

    def label(self, name: str) -> str:
        """How the user calls a tensor: an argument's or a form's own name where the case knows it."""
        return self.labels.get(name, name)

    def split(self, replaced: dict[str, torch.Tensor]) -> tuple[dict, dict]:
        """``(params, inputs)`` of a rerun: replacements by the case's names, parameters apart from input paths."""
        params = {n: v for n, v in replaced.items() if n in self.params}
        inputs = {n: v for n, v in replaced.items() if n not in self.params}
        return params, inputs


def diagnose(target, runner, measured, compared) -> list[Finding]:
    """Time-aware hints for a failing comparison: one Finding per verified hypothesis."""
    failing = [c for c in compared if c.fails]
    if not failing:
        return []
    time_dim = target.case.time_dim
    outputs = [c for c in failing if c.what == "output" and c.ref.dim() > time_dim and c.ref.shape[time_dim] >= 3]
    if outputs:
        return _forward_hints(target, runner, outputs[0], time_dim)
    if any(c.what == "output" for c in failing):
        return []
    return _backward_hints(target, runner, failing, time_dim, compared)


def _step_errors(c, time_dim: int) -> tuple[list[float], list[float]]:
    """Per step: the error ‖C_t − R_t‖ and what the measured rounding allows there."""
    diff, ref, rnd = (_along(t, time_dim) for t in (c.diff, c.ref, c.rounding))
    T = diff.shape[0]
    err = [float(diff[t].norm()) for t in range(T)]
    own = [float(rnd[t].norm()) for t in range(T)]
    typical = sorted(own)[T // 2]
    allowed = [tolerances().module_factor * max(own[t], typical, c.own * float(ref[t].norm())) for t in range(T)]
    return err, allowed


def _divergence(c, time_dim: int, what: str, backward: bool = False) -> Finding | None:
    """The first step where the two differ, and whether the difference grows, stays or is confined there."""
    err, allowed = _step_errors(c, time_dim)
    T = len(err)
    order = range(T - 1, -1, -1) if backward else range(T)
    bad = [t for t in order if err[t] > allowed[t]]
    if not bad:
        return None
    t0 = bad[0]
    later = [t for t in order if (t > t0 if not backward else t < t0)]
    last = later[-1] if later else t0
    if not [t for t in later if t in bad]:
        course = f"only step {t0} differs; the others agree" if len(bad) == 1 else f"{len(bad)} steps differ"
    elif err[last] > 10 * err[t0]:
        course = f"from there the difference grows, ×{err[last] / err[t0]:.3g} by step {last}"
    elif err[last] < err[t0] / 10:
        course = f"from there the difference decays, ×{err[last] / err[t0]:.2g} by step {last}"
    else:
        course = f"from there it stays about the same size through step {last} ({len(bad)} of {T} steps differ)"
    visit = " (the backward pass visits the steps last to first)" if backward else ""
    return Finding(
        "time_divergence",
        Verdict.NOTE,
        f"{what} first differ at step {t0} of {T}{visit}; {course}",
        tensor=c.label,
        location={"step": t0, "steps": T},
        numbers={"first_step": t0, "steps": T, "error_first": err[t0], "error_last": err[last]},
    )


def _hint(message: str, c, **location) -> Finding:
    """A verified hypothesis: said as a hint, as the gradient check's verified hints are."""
    return Finding("hint", Verdict.NOTE, message, tensor=c.label, location={"time": True, **location})


def _verified(candidate: torch.Tensor, expected: torch.Tensor, c, before: float) -> bool:
    """A hypothesis holds: the candidate matches the transformed reference within the tolerance, ≥10× closer."""
    tol = 2 * c.allowed
    after = _rel(candidate, expected)
    return after <= tol and after * 10 <= before


def _forward_hints(target, runner, c, time_dim: int) -> list[Finding]:
    C, R = _along(c.cand, time_dim), _along(c.ref, time_dim)
    T = C.shape[0]
    before = c.error
    findings = [f for f in [_divergence(c, time_dim, "the outputs")] if f]
    seqs = _Sequences(target, time_dim, T, tuple(C.shape[1:]))
    if _verified(C, R.flip(0), c, before):
        findings.append(
            _hint(
                f"{c.label} is the reference reversed in time: a reverse scan's outputs were never flipped back "
                "into time order (verified: the flipped reference matches)",
                c,
            )
        )
        return findings
    if _verified(C[1:], R[:-1], c, _rel(C[1:], R[1:])):
        first = _first_output(C[0], seqs)
        findings.append(
            _hint(
                f"{c.label} lags one step: output t is the reference's output t−1"
                + (
                    f", output 0 is {first}, and the last step is dropped"
                    if first
                    else ", and the last step is dropped"
                )
                + " (verified on every step)",
                c,
                shift=-1,
            )
        )
        return findings
    if _verified(C[:-1], R[1:], c, _rel(C[:-1], R[:-1])):
        findings.append(
            _hint(
                f"{c.label} leads one step: output t is the reference's output t+1 (the first step is dropped, "
                "the scan starts one step late; verified on every step)",
                c,
                shift=1,
            )
        )
        return findings
    if findings and findings[0].numbers.get("first_step") == 0:
        findings += _initial_state(runner, seqs, c, time_dim)
    if len(findings) == 1:
        findings += _shifted_inputs(runner, seqs, c, C, time_dim)
    if len(findings) == 1:
        findings += _chunks(runner, seqs, c, C, findings[0], time_dim)
    return findings


def _initial_state(runner, seqs: _Sequences, c, time_dim: int) -> list[Finding]:
    """Outputs that differ from step 0: does the candidate treat the initial state differently?

    Both are rerun from a zero initial state: when they then agree, the initial state is the
    culprit; when the candidate from the given state equals the reference from zero, it is ignored.
    """
    for name, state in seqs.states.items():
        zero = {name: torch.zeros_like(state)}
        cand0, ref0 = _forward_of(runner, seqs, zero, "candidate"), _forward_of(runner, seqs, zero)
        if cand0 is None or ref0 is None or c.key not in cand0 or c.key not in ref0:
            continue
        if _verified(cand0[c.key], ref0[c.key], c, c.error):
            ignored = _verified(c.cand, ref0[c.key], c, c.error)
            how = (
                f"the candidate ignores the initial state {seqs.label(name)}: from {seqs.label(name)} it gives what the reference gives "
                "from zero"
                if ignored
                else f"the candidate starts from another initial state than {seqs.label(name)} (a transformed {seqs.label(name)}, or "
                f"{seqs.label(name)} applied at the wrong step)"
            )
            return [
                _hint(
                    f"{c.label} differs from step 0 and agrees when {seqs.label(name)} is zero: {how} (verified by rerunning "
                    f"both from a zero {seqs.label(name)})",
                    c,
                    input=name,
                    step=0,
                )
            ]
    return []


def _first_output(first: torch.Tensor, seqs: _Sequences) -> str | None:
    """What output 0 is, where it is something recognisable: an initial state passed in, or zero."""
    for name, state in seqs.states.items():
        if first.shape == state.shape and _rel(first, state) <= 1e-6:
            return f"the initial state {seqs.label(name)} itself"
    if float(first.abs().max()) == 0.0:
        return "zero (a zero initial state emitted as an output)"
    return None


def _rerun(runner, seqs: _Sequences, replaced: dict, which: str = "reference", forward_only: bool = False):
    """The reference (or the candidate) in float64 with some tensors replaced; None where that call fails."""
    params, inputs = seqs.split(replaced)
    try:
        return runner.rerun(which, params, inputs, forward_only)
    except Exception:  # a rerun on transformed inputs may not be a valid call of the user's code
        return None


def _forward_of(runner, seqs: _Sequences, replaced: dict, which: str = "reference") -> dict | None:
    side = _rerun(runner, seqs, replaced, which, forward_only=True)
    return None if side is None else side.outs


def _shifted_inputs(runner, seqs: _Sequences, c, C, time_dim: int) -> list[Finding]:
    """An input applied one step early or late: the reference, run with it shifted, reproduces the candidate."""
    for name, shift, moved in _shifts(seqs, time_dim):
        outs = _forward_of(runner, seqs, {name: moved})
        if outs is None or c.key not in outs:
            continue
        Rs = _along(outs[c.key], time_dim)
        # an early shift leaves the last step to the fill; a late one may carry the fill forward
        span = slice(0, -1) if shift == 1 else slice(0, None)
        if not _verified(C[span], Rs[span], c, _rel(C[span], _along(c.ref, time_dim)[span])):
            continue
        label = seqs.label(name)
        when = f"early: step t uses {label}[t+1]" if shift == 1 else f"late: step t uses {label}[t−1]"
        return [
            _hint(
                f"{label} is applied one step {when} (for a decay or a gate: applied at the wrong step, a "
                f"segment-sum mask off by one diagonal); verified: the reference run with {label} shifted "
                f"reproduces {c.label}",
                c,
                input=name,
                shift=shift,
            )
        ]
    return []


def _shifts(seqs: _Sequences, time_dim: int):
    """``(name, shift, moved)``: each sequence input one step early (+1) or late (−1), every fill tried."""
    for name, X in seqs.sequences.items():
        Xt = _along(X, time_dim)
        for shift in (1, -1):
            for fill in _fills(Xt, shift):
                moved = torch.cat([Xt[1:], fill]) if shift == 1 else torch.cat([fill, Xt[:-1]])
                yield name, shift, moved.movedim(0, time_dim)


def _fills(Xt: torch.Tensor, shift: int) -> list[torch.Tensor]:
    """What a shifted input may take at the step it leaves empty: its edge value repeated, zero or one."""
    edge = Xt[-1:] if shift == 1 else Xt[:1]
    return [edge, torch.zeros_like(edge), torch.ones_like(edge)]


def _chunks(runner, seqs: _Sequences, c, C, divergence: Finding, time_dim: int) -> list[Finding]:
    """State not carried across a chunk boundary: the reference restarted every L steps reproduces the candidate."""
    L, T = divergence.numbers["first_step"], divergence.numbers["steps"]
    if L < 2 or L >= T or -(-T // L) > 16:
        return []
    restarts = [(n, s, how) for n, s in seqs.states.items() for how in ("initial", "zero")] or [(None, None, "model")]
    for name, state, how in restarts:
        pieces = []
        for start in range(0, T, L):
            replaced = {
                n: _along(X, time_dim)[start : start + L].movedim(0, time_dim) for n, X in seqs.sequences.items()
            }
            if name is not None and how == "zero":
                replaced[name] = torch.zeros_like(state)
            outs = _forward_of(runner, seqs, replaced)
            if outs is None or c.key not in outs:
                pieces = []
                break
            pieces.append(_along(outs[c.key], time_dim))
        if pieces and _verified(C, torch.cat(pieces), c, c.error):
            start_from = {
                "initial": f"the initial state {seqs.label(name)}",
                "zero": "a zero state",
                "model": "the initial state",
            }
            return [
                _hint(
                    f"state is not carried across chunk boundaries: every {L} steps the candidate starts again from "
                    f"{start_from[how]} (verified: the reference restarted every {L} steps reproduces {c.label})",
                    c,
                    chunk=L,
                )
            ]
    return []


def _backward_hints(target, runner, failing, time_dim: int, compared) -> list[Finding]:
    """The forward agrees and a gradient does not: a reverse scan off by one step, or reversed."""
    findings, shifted, reversed_ = [], {}, []
    for c in failing:
        if c.ref.dim() <= time_dim or c.ref.shape[time_dim] < 3:
            continue
        G, Gr = _along(c.cand, time_dim), _along(c.ref, time_dim)
        divergence = _divergence(c, time_dim, f"{c.label} and the reference's", backward=True)
        if divergence is not None and not findings:
            findings.append(divergence)
        if _verified(G, Gr.flip(0), c, c.error):
            reversed_.append(c)
            continue
        for shift in (1, -1):
            a, b = (G[:-1], Gr[1:]) if shift == 1 else (G[1:], Gr[:-1])
            inner = (G[:-1], Gr[:-1]) if shift == 1 else (G[1:], Gr[1:])
            if _verified(a, b, c, _rel(*inner)):
                shifted.setdefault(shift, []).append(c)
                break
    explained = {c.key for cs in shifted.values() for c in cs} | {c.key for c in reversed_}
    rest = [c for c in failing if c.key not in explained and c.ref.dim() > time_dim and c.ref.shape[time_dim] >= 3]
    if rest:
        findings += _backward_shifted_inputs(target, runner, rest, time_dim)
    for shift, cs in shifted.items():
        names = ", ".join(c.key for c in cs)
        index = "t+1" if shift == 1 else "t−1"
        findings.append(
            _hint(
                f"the gradient of {names} at step t is the reference's at step {index}: the backward's reverse scan "
                f"is shifted by one step (verified on every step)",
                cs[0],
                shift=shift,
                tensors=[c.key for c in cs],
            )
        )
    if reversed_:
        names = ", ".join(c.key for c in reversed_)
        findings.append(
            _hint(
                f"the gradient of {names} is the reference's reversed in time: the backward's scan runs the wrong way "
                "or its result is never flipped back (verified)",
                reversed_[0],
            )
        )
    return findings


def _backward_shifted_inputs(target, runner, failing, time_dim: int) -> list[Finding]:
    """A backward that applies an input at the wrong step (a reverse scan missing its one-step shift):
    the reference's gradient, with that input shifted, reproduces the candidate's for some tensors."""
    T = failing[0].ref.shape[time_dim]
    step_shape = tuple(s for i, s in enumerate(failing[0].ref.shape) if i != time_dim)
    seqs = _Sequences(target, time_dim, T, step_shape)
    for name, shift, moved in _shifts(seqs, time_dim):
        side = _rerun(runner, seqs, {name: moved})
        if side is None:
            continue
        span = slice(1, -1)  # the boundary steps depend on the fill
        matched = [
            c
            for c in failing
            if c.key in side.grads
            and _verified(
                _along(c.cand, time_dim)[span],
                _along(side.grads[c.key], time_dim)[span],
                c,
                _rel(_along(c.cand, time_dim)[span], _along(c.ref, time_dim)[span]),
            )
        ]
        if not matched:
            continue
        label = seqs.label(name)
        names = ", ".join(c.key for c in matched)
        when = f"early (step t uses {label}[t+1])" if shift == 1 else f"late (step t uses {label}[t−1])"
        return [
            _hint(
                f"the backward applies {label} one step {when}: the gradient of {names} equals the reference's "
                f"with {label} shifted (a reverse scan that misses, or doubles, its one-step shift, as "
                "λ_t = g_t + a_(t+1) λ_(t+1) needs a_(t+1)); verified",
                matched[0],
                input=name,
                shift=shift,
                tensors=[c.key for c in matched],
            )
        ]
    return []
