"""The forward pass and the gradient against rnncheck's NumPy reference: which side is wrong?

Finite differences cannot see a forward pass that computes the wrong function: an LSTM
whose forward applies the output gate to c_t instead of tanh(c_t) has consistent
gradients.  A case that names the reference architecture it implements (and every
``nn.RNN``/``nn.LSTM``/``nn.GRU`` inside a TorchCase) is therefore run through the
reference on the same weights and inputs:

- **forward**: the hidden states are compared step by step; at the first step that
  differs, single-gate substitutions of the reference step (a tanh for a σ, the output
  gate on c_t, a missing gate …) are tried, and the one that reproduces the case's
  state names the gate;
- **gradient**: the reference's gradient for the same loss is compared with the case's
  analytic gradient, and with the numerical result the three-way answer is which side
  is wrong — the gradient, the forward, or the numerical side;
- **time**: for a single recurrent layer, the reference splits every weight gradient
  into the share of each (loss step τ, parameter-use step s); a wrong gradient that
  equals one of the classic partial sums — truncated BPTT with k steps, the loop
  skipping t = 0, the last step only, h_t where h_{t-1} belongs — is named, with the
  size of the match as evidence.
"""

from __future__ import annotations

import copy

import numpy as np

from .. import reference as R
from ..directions import probe_direction
from ..findings import CheckName, CheckResult, Finding, Kind, Verdict, worst
from ..probe import Prober, Status
from ..reductions import max_abs, max_abs_diff
from ..reference import Mode, gru, lstm
from ..reference.activations import ACTIVATIONS, sigmoid
from ..reference_link import Link
from ..tolerances import current as tolerances

# --- forward --------------------------------------------------------------------------


def first_divergence(h_case: np.ndarray, h_ref: np.ndarray, tol: float) -> tuple[int, int] | None:
    """``(step, unit)`` of the first entry that differs by more than ``tol`` (relative to the scale)."""
    scale = max(float(np.abs(h_ref).max()), 1e-300)
    bad = np.abs(h_case - h_ref) > tol * scale
    if not bad.any():
        return None
    t = int(np.argmax(bad.reshape(bad.shape[0], -1).any(axis=1)))
    unit = int(np.argmax(bad[t].reshape(-1, bad.shape[-1]).any(axis=0)))
    return t, unit


def explain_step(link: Link, t: int, h_case: np.ndarray, tol: float) -> str | None:
    """Which single substitution of the reference's step t reproduces the case's h_t (None: none does)."""
    spec = link.spec
    if spec.num_layers != 1 or spec.bidirectional:
        return None
    p = {k: link.params[v] for k, v in spec.param_names(0, 0).items()}
    _, _, cache = link.forward()
    lc = cache.layer_caches[0][0]
    h_prev = lc.h_prev[t]
    x_t = link.x[t]
    target = h_case[t]
    scale = max(float(np.abs(target).max()), 1e-300)
    candidates = []
    if spec.mode == Mode.LSTM:
        a = x_t @ p["W_ih"].T + p["b_ih"] + h_prev @ p["W_hh"].T + p["b_hh"]
        c_prev = lc.c_prev[t]
        for desc, step in _lstm_variants():
            h_new, _ = step(a, c_prev)
            candidates.append((desc, h_new @ p["W_hr"].T if "W_hr" in p else h_new))
    elif spec.mode == Mode.GRU:
        ax = x_t @ p["W_ih"].T + p["b_ih"]
        for desc, step in _gru_variants():
            candidates.append((desc, step(ax, h_prev, p)))
    else:
        a = x_t @ p["W_ih"].T + p["b_ih"] + h_prev @ p["W_hh"].T + p["b_hh"]
        own = spec.mode.activation
        for name, fn in [*((n, f) for n, (f, _) in ACTIVATIONS.items()), ("identity", _identity)]:
            candidates.append(
                ("the reference" if name == own else f"the activation is {name} where {own} belongs", fn(a))
            )
    matches = [desc for desc, h in candidates if float(np.abs(h - target).max()) <= tol * scale]
    matches = [m for m in matches if m != "the reference"]
    return matches[0] if len(matches) == 1 else None


def _lstm_variants():
    """``(description, step)``: the reference's LSTM cell, then each forward bug as one substitution in it."""

    names = {sigmoid: "sigmoid", np.tanh: "tanh", _identity: "identity"}

    def variant(order=lstm.GATES, **act):
        return lambda a, c: lstm.cell(a, c, {**lstm.ACTS, **act}, order)[:2]

    yield "the reference", variant()
    for gate in lstm.GATES:
        mine = names[lstm.ACTS[gate]]
        for fn, alt in names.items():
            if alt != mine:
                yield f"gate {gate}: {alt} where {mine} belongs", variant(**{gate: fn})
    for gate in ("i", "f", "o"):  # σ(−a) = 1 − σ(a): the sign of the gate's pre-activation flipped
        yield (
            f"gate {gate}: 1 − sigmoid where sigmoid belongs (its pre-activation's sign flipped)",
            variant(**{gate: _flipped}),
        )
    yield "the output gate multiplies c_t where it should multiply tanh(c_t)", variant(c=_identity)
    yield "the output gate is missing (h_t = tanh(c_t))", variant(o=_one)
    yield "the input gate is missing (c_t = f c_(t-1) + g)", variant(i=_one)
    yield "the forget gate is missing (c_t = c_(t-1) + i g)", variant(f=_one)
    for x, y in (("i", "f"), ("i", "o"), ("f", "o"), ("g", "o")):
        order = tuple(y if n == x else x if n == y else n for n in lstm.GATES)
        yield f"gates {x} and {y} are read from each other's rows (gate order)", variant(order)


def _gru_variants():
    """``(description, step)``: the reference's GRU cell, then each forward bug as one substitution in it."""

    def variant(reset=gru.reset_after, **act):
        return lambda ax, h_prev, p: gru.cell(ax, h_prev, p["W_hh"], p["b_hh"], {**gru.ACTS, **act}, reset)[0]

    def reset_before(r, h_prev, h_n, W_hn, b_hn):
        return (r * h_prev) @ W_hn.T + b_hn

    yield "the reference", variant()
    # h_t = (1 - z') n + z' h_(t-1) with z' = 1 - z is z n + (1 - z) h_(t-1)
    yield "the update gate's roles are swapped: h_t = z n + (1 - z) h_(t-1)", variant(z=lambda a: 1 - sigmoid(a))
    yield "the reset gate is applied before W_hn (the original GRU paper's form, not PyTorch's)", variant(reset_before)
    yield "gate n: sigmoid where tanh belongs", variant(n=sigmoid)


def _identity(z):
    return z


def _flipped(z):
    return 1 - sigmoid(z)


def _one(z):
    return z * 0 + 1


# --- gradient and time ----------------------------------------------------------------


def reference_gradient(
    link: Link, d_out: np.ndarray, d_hn=None, d_cn=None
) -> tuple[dict[str, np.ndarray], R.Cache, R.Gradients]:
    """The reference's gradient (case names) for the upstream ∂L/∂output (time-major)."""
    _, _, cache = link.forward()
    g = R.backward(cache, d_out, d_hn, d_cn)
    return {case: g.params[ref] for ref, case in link.names.items()}, cache, g


def time_shares(link: Link, d_out: np.ndarray, d_hn=None, d_cn=None) -> tuple[dict[str, np.ndarray], np.ndarray] | None:
    """``(C, C_swapped)``: C[ref name][τ, s] is the share of a weight's gradient from the loss at
    step τ through the weight's use at step s; ``C_swapped`` is W_hh's with h_s in place of h_(s-1).

    One reference backward per loss step τ; single-layer, one-direction stacks without a
    projection only.
    """
    spec = link.spec
    if spec.num_layers != 1 or spec.bidirectional or spec.proj_size:
        return None
    T = link.x.shape[0]
    h_out, _, cache = link.forward()  # one layer, one direction, time-major: the output is h_t
    lc = cache.layer_caches[0][0]
    names = spec.param_names(0, 0)
    shares = {long: np.zeros((T, T) + link.params[long].shape) for long in names.values()}
    swapped = np.zeros((T, T) + link.params[names["W_hh"]].shape)
    for tau in range(T):
        dout = np.zeros_like(d_out)
        dout[tau] = d_out[tau]
        last = tau == T - 1
        final = (d_hn[0] if last and d_hn is not None else None, d_cn[0] if last and d_cn is not None else None)
        _, _, _, adj = R.backward_layer(spec, dout, final, lc)
        a_x, a_h = adj["a_x"], adj["a_h"]
        for s in range(tau + 1):
            shares[names["W_ih"]][tau, s] = a_x[s].T @ link.x[s]
            shares[names["W_hh"]][tau, s] = a_h[s].T @ lc.h_prev[s]
            shares[names["b_ih"]][tau, s] = a_x[s].sum(0)
            shares[names["b_hh"]][tau, s] = a_h[s].sum(0)
            swapped[tau, s] = a_h[s].T @ h_out[s]
    return shares, swapped


def _untransposed_recursion(link: Link, d_out, d_hn, d_cn) -> dict[str, np.ndarray] | None:
    """The reference's gradients when the backward carries dL/dh back through W_hh, not W_hhᵀ.

    The recursion dh_(t-1) = W_hhᵀ da_t is the only place the reference's backward reads
    W_hh, so the same backward with each square gate block of W_hh transposed in its cache
    is exactly the hand-written bug ``dh_prev = W_hh @ da``.  One layer, one direction,
    no projection.
    """

    spec = link.spec
    if spec.num_layers != 1 or spec.bidirectional or spec.proj_size:
        return None
    _, _, cache = link.forward()
    lc = copy.copy(cache.layer_caches[0][0])
    W = lc.W_hh
    H = W.shape[1]
    if W.shape[0] % H:
        return None
    lc.W_hh = W.reshape(-1, H, H).transpose(0, 2, 1).reshape(W.shape)
    final = (d_hn[0] if d_hn is not None else None, d_cn[0] if d_cn is not None else None)
    grads, _, _, _ = R.backward_layer(spec, d_out, final, lc)
    names = spec.param_names(0, 0)
    return {names[k]: v for k, v in grads.items() if k in names}


def time_hypotheses(shares: dict[str, np.ndarray], swapped: np.ndarray, w_hh: str, T: int):
    """The classic partial sums of the (τ, s) shares: ``(description, {ref name: gradient})`` pairs."""
    tau = np.arange(T)[:, None]
    s = np.arange(T)[None, :]
    causal = s <= tau

    def total(mask, table=shares):
        return {n: np.tensordot(mask.astype(float), v, axes=([0, 1], [0, 1])) for n, v in table.items()}

    out = []
    for k in range(T - 1):
        out.append((f"truncated BPTT with k = {k} step{'s' if k != 1 else ''} back", total(causal & (tau - s <= k))))
    for n0 in range(1, T):
        out.append(
            (f"full BPTT with steps 0..{n0 - 1} left out (a loop bound that starts at {n0})", total(causal & (s >= n0)))
        )
    for s0 in range(T):
        out.append(
            (f"full BPTT with step {s0}'s share left out (one step skipped in the loop)", total(causal & (s != s0)))
        )
    out.append(
        (
            "the loss at the last step alone, through the last step's weights alone (no recurrence)",
            total((tau == T - 1) & (s == T - 1)),
        )
    )
    out.append(("the last step's share alone (the sum over time steps is missing)", total(causal & (s == T - 1))))
    out.append(("step 0's share alone (a value assigned in the loop instead of added)", total(causal & (s == 0))))
    out.append(("full BPTT with h_t used where h_(t-1) belongs", total(causal, {**shares, w_hh: swapped})))
    return out


def check_reference_link(
    link: Link,
    case_grad: dict[str, np.ndarray],
    d_out,
    d_hn,
    d_cn,
    numeric_rows: dict[str, str],
    tol: float,
    h_case: np.ndarray | None,
    confirm=None,
) -> CheckResult:
    """Compare a case with the reference through ``link``; ``numeric_rows`` is each tensor's numerical verdict.

    ``confirm(name, g)``: whether fresh finite-difference probes agree with the case's gradient with
    ``g`` in place of tensor ``name``'s.  A claim that "the reference and the finite differences agree"
    is printed only when it says so; where they do not, the reference is the one not to trust.
    """
    findings = _forward_findings(link, h_case, tol) if h_case is not None else []
    forward_ok = not any(f.kind == Kind.FORWARD_MISMATCH for f in findings)
    if d_out is None:
        return CheckResult(CheckName.REFERENCE, worst(f.verdict for f in findings), findings)
    ref_grad, _, _ = reference_gradient(link, d_out, d_hn, d_cn)
    for name, g_ref in ref_grad.items():
        g_case = case_grad.get(name)
        if g_case is None:
            continue
        err = max_abs_diff(g_case, g_ref) / max(max_abs(g_ref), 1e-300)
        numeric = numeric_rows.get(name, "unknown")
        if err <= tol:
            findings += _numeric_at_fault(name, err) if numeric == Verdict.FAIL else []
        elif forward_ok:  # a wrong forward's own gradient need not match the reference's
            findings.append(_gradient_differs(name, err, tol, numeric, confirm, g_ref))
    wrong = [f.tensor for f in findings if f.kind == Kind.REFERENCE_SAYS_GRADIENT]
    if wrong:
        findings += _time_findings(link, case_grad, d_out, d_hn, d_cn, wrong)
    return CheckResult(CheckName.REFERENCE, worst(f.verdict for f in findings), findings)


def _forward_findings(link: Link, h_case: np.ndarray, tol: float) -> list[Finding]:
    """The case's hidden states against the reference's: the first step that differs, and why, or a match."""
    spec = link.spec
    label = f" ({link.label})" if link.label else ""
    h_ref, _, _ = link.forward()
    where = first_divergence(h_case, h_ref, tol)
    if where is None:
        return [
            Finding(
                "forward_match",
                Verdict.NOTE,
                f"the forward pass matches the {spec.mode} reference{label} at every step (tolerance {tol:.0e})",
            )
        ]
    t, unit = where
    why = explain_step(link, t, h_case, tol)
    return [
        Finding(
            "forward_mismatch",
            Verdict.FAIL,
            f"the forward pass differs from the {spec.mode} reference{label} first at step {t} (unit {unit}): "
            + (why if why else "no single-gate substitution of the reference step reproduces it"),
            location={"step": t, "unit": unit, "explanation": why},
            numbers={"max_abs_diff": float(np.abs(h_case - h_ref).max())},
        )
    ]


def _numeric_at_fault(name: str, err: float) -> list[Finding]:
    return [
        Finding(
            "reference_says_numeric",
            Verdict.WARN,
            f"{name}: the analytic gradient matches the reference (rel err {err:.1e}) while the finite differences "
            "disagree: the numerical side is the one at fault here (a kink, or a loss the step cannot resolve)",
            tensor=name,
        )
    ]


def _gradient_differs(name: str, err: float, tol: float, numeric: str, confirm, g_ref) -> Finding:
    """A tensor whose gradient differs from the reference's, judged with what the finite differences said."""
    if numeric == "unknown":
        return Finding(
            "fused_mismatch",
            Verdict.WARN,
            f"{name}: the layer's own backward differs from the reference (rel err {err:.2g}, tolerance {tol:.0e}) "
            "on the same weights, inputs and upstream gradient",
            tensor=name,
            numbers={"rel_error_vs_reference": err},
        )
    if numeric == "not probed":  # the user's code, with no gradient probes in this run (diagnose)
        return Finding(
            "reference_differs",
            Verdict.NOTE,
            f"{name}: the analytic gradient differs from the reference's (rel err {err:.2g}); this run has no "
            "gradient probes to say which side is wrong: rnncheck verify says",
            tensor=name,
            numbers={"rel_error_vs_reference": err},
        )
    if numeric == Verdict.PASS:
        return Finding(
            "reference_mismatch",
            Verdict.WARN,
            f"{name}: the gradient agrees with the finite differences but not with the reference (rel err {err:.2g}): "
            "the case's loss is not the reference's on these weights — check reference_map and head",
            tensor=name,
        )
    if confirm is None or confirm(name, g_ref):
        return Finding(
            "reference_says_gradient",
            Verdict.FAIL,
            f"{name}: the analytic gradient is wrong — the reference and the finite differences agree on another "
            f"value (rel err against the reference {err:.2g}"
            + ("; verified: the reference's gradient passes fresh probes" if confirm else "")
            + "); the forward pass matches",
            tensor=name,
            numbers={"rel_error_vs_reference": err},
        )
    return Finding(
        "reference_mismatch",
        Verdict.WARN,
        f"{name}: the finite differences disagree with the analytic gradient and with the reference's too "
        f"(rel err between the two {err:.2g}): the gradient is wrong, as the probes say, and the reference's "
        "loss is not the case's on these weights — check reference_map and head (head and hidden take the "
        "states as (T, B, H))",
        tensor=name,
    )


def single_step_span(link: Link, case_grad: dict[str, np.ndarray], wrong: list[str]) -> list[Finding]:
    """A weight gradient whose rows all lie in the span of one step's inputs: only that step contributed.

    Step s's share of dW_ih is ``a_sᵀ x_s`` and of dW_hh ``a_sᵀ h_(s-1)``: its rows lie in the
    span of the batch's x_s (or h_(s-1)).  A wrong gradient that lies in such a span for
    exactly one s, when the true one does not, was built from that step alone.
    """
    spec = link.spec
    if spec.num_layers != 1 or spec.bidirectional:
        return []
    _, _, cache = link.forward()
    lc = cache.layer_caches[0][0]
    names = spec.param_names(0, 0)
    inputs = {names["W_ih"]: link.x, names["W_hh"]: lc.h_prev}
    out = []
    for ref, seq in inputs.items():
        mine = link.names.get(ref)
        if mine not in wrong:
            continue
        G = case_grad[mine]
        norm = float(np.linalg.norm(G))
        if norm == 0:
            continue
        steps = []
        for s_ in range(seq.shape[0]):
            basis = np.linalg.qr(seq[s_].T)[0]  # columns span step s's input vectors
            resid = float(np.linalg.norm(G - (G @ basis) @ basis.T)) / norm
            if resid <= 1e-8:
                steps.append(s_)
        if len(steps) == 1:
            what = "x_t" if ref == names["W_ih"] else "h_(t-1)"
            out.append(
                Finding(
                    "hint",
                    Verdict.NOTE,
                    f"{mine}: every row of the analytic gradient lies along step {steps[0]}'s {what} alone "
                    f"(verified: its residual outside that span is below 1e-8 of its norm, over "
                    f"{seq.shape[0]} steps checked): it was built from step {steps[0]} only — the sum over time steps "
                    "(backpropagation through time) is missing",
                    tensor=mine,
                    location={"step": steps[0]},
                )
            )
    return out


def _time_findings(link: Link, case_grad, d_out, d_hn, d_cn, wrong: list[str]) -> list[Finding]:
    spans = single_step_span(link, case_grad, wrong)
    got = time_shares(link, d_out, d_hn, d_cn)
    if got is None:
        return spans
    shares, swapped = got
    T = link.x.shape[0]
    w_hh = link.spec.param_names(0, 0)["W_hh"]
    hyps = time_hypotheses(shares, swapped, w_hh, T)
    untransposed = _untransposed_recursion(link, d_out, d_hn, d_cn)
    if untransposed is not None:
        hyps.append(
            (
                "full BPTT with W_hh where W_hhᵀ belongs in the recursion (dh_prev = W_hh @ da instead of "
                "W_hh.T @ da: the missing transpose)",
                untransposed,
            )
        )
    out = []
    matched: dict[str, list[tuple[str, float]]] = {}
    inverse = {case: ref for ref, case in link.names.items()}
    for name in wrong:
        ref = inverse.get(name)
        if ref is None:
            continue
        g = case_grad[name]
        scale = max(max_abs(g), 1e-300)
        best = None
        for desc, grads in hyps:
            err = max_abs_diff(grads[ref], g) / scale
            if err <= tolerances().time_match and (best is None or err < best[1]):
                best = (desc, err)
        if best is not None:
            matched.setdefault(best[0], []).append((name, best[1]))
    for desc, hits in matched.items():  # one line per verified hypothesis, naming every tensor it explains
        names = ", ".join(n for n, _ in hits)
        worst_diff = max(d for _, d in hits)
        grads = "gradient equals" if len(hits) == 1 else "gradients equal"
        out.append(
            Finding(
                "hint",
                Verdict.NOTE,
                f"{names}: the analytic {grads} {desc} (verified against the reference's backward over {T} steps: "
                f"max rel diff {worst_diff:.1e})",
                tensor=hits[0][0],
                numbers={"time_hypothesis": desc, "rel_diff": worst_diff, "tensors": [n for n, _ in hits]},
            )
        )
    explained = {n for f in out for n in f.numbers["tensors"]}
    return out + [f for f in spans if f.tensor not in explained]


# --- the check ---------------------------------------------------------------------------


def _confirmer(target, grad, comparison):
    """``confirm(name, g)``: two fresh probes over the case's tensor ``name`` agree with ``g`` in place of its gradient."""

    def confirm(mine: str, g_ref: np.ndarray) -> bool:
        if mine not in grad:
            return False
        g = {**grad, mine: np.asarray(g_ref).reshape(grad[mine].shape)}
        blocks = [b for b in target.blocks if b.tensor == mine]
        rng = np.random.default_rng(0)
        prober = Prober(target, target.theta, g)
        directions = [probe_direction(target.theta, g, blocks, rng) for _ in range(2)]
        return all(p.status == Status.PASS for p in prober.run_many(directions))

    return confirm


def check_reference(target, grad, rows, options) -> CheckResult | None:
    """Every comparison the target can offer, in one CheckResult (None when there is none)."""
    comparisons = target.reference_comparisons(grad, options)
    if not comparisons:
        return None
    numeric = {r.name: r.verdict for r in rows}
    findings: list[Finding] = []
    for c in comparisons:
        result = check_reference_link(
            c.link,
            c.case_grad,
            c.d_out,
            c.d_hn,
            c.d_cn,
            {} if c.fused else (numeric or {n: "not probed" for n in c.case_grad}),
            c.tol,
            c.h_case,
            None if c.fused else _confirmer(target, grad, c),
        )
        findings += result.findings
        if c.note:
            findings.append(Finding("reference_note", Verdict.NOTE, c.note))
    return CheckResult(CheckName.REFERENCE, worst(f.verdict for f in findings), findings)
