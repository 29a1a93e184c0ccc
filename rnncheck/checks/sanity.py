"""Sanity: the loss is a finite scalar and repeatable, and the gradient function behaves.

Each problem is its own named finding, never a "mismatch":

- ``nonfinite_loss`` / ``nondeterministic_loss`` (error: the case cannot be checked);
- ``stateful_gradient``: the gradient asked for twice gives two answers (fail);
- ``mutates_arguments``: a call changed the arrays it was given (fail);
- ``nonfinite_gradient``: NaN or Inf in the gradient of a finite loss (fail);
- ``inconsistent_loss``: the gradient function reports a loss that differs from loss() (fail).
"""

from __future__ import annotations

import math
import os
import time
import traceback

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from ..errors import _library
from ..findings import CheckName, CheckResult, Finding, Verdict, worst
from ..reductions import all_finite, equal, max_abs, max_abs_diff
from ..tolerances import current as tolerances


def check_sanity(target) -> tuple[CheckResult, float, dict[str, np.ndarray], float | None]:
    """Run the sanity checks.  Returns the result, the loss, the *first* gradient, and the seconds of the fastest
    of its calls of the gradient (None: none was made).

    The steps: the loss is finite and repeats; the gradient is finite and repeats; the
    gradient function's own loss is the loss; no call changed its arguments.
    """
    start = target.evaluations
    # where the gradient call evaluates the very loss (torch), its value serves the loss checks
    own = target.gradient_computes_loss
    calls: list[float] = []
    l1, g1 = _gradient(calls, target) if own else (target.model_loss(), None)
    stop = _nonfinite_loss(l1)
    if stop is None:
        l2, g2 = _gradient(calls, target) if own else (target.model_loss(), None)
        stop = nondeterminism(l1, l2, target.model_eps, target=target)
    if stop is not None:
        result = CheckResult(CheckName.SANITY, Verdict.ERROR, [stop], evaluations=target.evaluations - start)
        return result, l1, {}, min(calls, default=None)
    gl1 = None  # the gradient function's own loss, where it is a separate call to compare
    if not own:
        gl1, g1 = _timed(calls, target.gradient)
        _, g2 = _timed(calls, target.gradient)
    stateful = _stateful_gradients(g1, g2, target.model_eps)
    random = _random_gradients(stateful, target)
    if random is not None:
        result = CheckResult(CheckName.SANITY, Verdict.ERROR, [random], evaluations=target.evaluations - start)
        return result, l1, {}, min(calls, default=None)
    findings = _nonfinite_gradients(g1) + stateful + _inconsistent_loss(gl1, l1, target.model_eps)
    for note in target.mutations:
        findings.append(
            Finding(
                "mutates_arguments",
                Verdict.FAIL,
                f"{note}: a loss or gradient must not change the arrays it is given (work on a copy)",
            )
        )
    evaluations = target.evaluations - start
    verdict = worst(f.verdict for f in findings)
    result = CheckResult(CheckName.SANITY, verdict, findings, evaluations=evaluations, numbers={"loss": l1})
    return result, l1, g1, min(calls)


def _inconsistent_loss(gl1: float | None, l1: float, eps: float) -> list[Finding]:
    """The gradient function's own loss ``gl1`` (where it is a separate call) against loss()'s ``l1``."""
    if gl1 is None or abs(gl1 - l1) <= tolerances().loss_agreement_ulps * eps * max(abs(l1), abs(gl1)) + 1e-300:
        return []
    return [
        Finding(
            "inconsistent_loss",
            Verdict.FAIL,
            f"the gradient function reports loss {gl1:.10g} but loss() gives {l1:.10g}: they compute different functions",
            numbers={"grad_loss": gl1, "loss": l1},
        )
    ]


def _timed(calls: list[float], call):
    """``call()``, its seconds appended to ``calls``."""
    t0 = time.perf_counter()
    out = call()
    calls.append(time.perf_counter() - t0)
    return out


def _gradient(calls: list[float], target):
    """A gradient call at the check point, its seconds appended to ``calls``: one the thread policy already made
    and timed on the case's thread count (``target.prepaid``) while one is left, else a fresh one."""
    if target.prepaid:
        _, seconds, out = target.prepaid.pop(0)
        target.evaluations += 1  # the policy took its calls off the count: this one is the sanity checks'
        calls.append(seconds)
        return out
    return _timed(calls, target.gradient)


def _nonfinite_loss(l1: float) -> Finding | None:
    if math.isfinite(l1):
        return None
    return Finding(
        "nonfinite_loss",
        Verdict.ERROR,
        f"the loss is {l1} at the given parameters: fix the model or its inputs so the loss is finite",
    )


def _nonfinite_gradients(g1: dict[str, np.ndarray]) -> list[Finding]:
    findings = []
    for name, g in g1.items():
        if all_finite(g):
            continue
        bad = ~np.isfinite(g)
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        findings.append(
            Finding(
                "nonfinite_gradient",
                Verdict.FAIL,
                f"the gradient of {name} has {int(bad.sum())} non-finite entries (first at {list(idx)}) while the loss is finite",
                tensor=name,
                location={"index": list(idx)},
            )
        )
    return findings


def _stateful_gradients(g1: dict[str, np.ndarray], g2: dict[str, np.ndarray], eps: float) -> list[Finding]:
    """Two gradient calls at one point that differ by more than rounding: the backward keeps state."""
    findings = []
    for name in g1:
        a, b = g1[name], g2[name]
        if equal(a, b):
            continue  # the common case, said in one pass that stops at the first difference
        scale = max(max_abs(a), max_abs(b))
        # 1e3 ulps: room for a GPU's atomics, none for a state that doubles or shifts the result
        if not (np.isfinite(scale) and max_abs_diff(a, b) > tolerances().stateful_ulps * eps * scale):
            continue
        ratio = _ratio(a, b)
        extra = f" (the second is {ratio:.4g}× the first)" if ratio is not None else ""
        accumulator = (
            f" (the second returns {ratio:.4g}× the first: an accumulator added to, never reset)" if ratio else ""
        )
        findings.append(
            Finding(
                "stateful_gradient",
                Verdict.FAIL,
                f"the gradient of {name} differs between two calls at the same parameters{extra}: "
                "the backward keeps state between calls (an accumulator not reset?)",
                tensor=name,
                numbers={"ratio": ratio},
                hint="only the first call is right: state is kept between calls" + accumulator,
            )
        )
    return findings


def _random_gradients(stateful: list[Finding], target) -> Finding | None:
    """Gradients that differ between two calls where the model draws random numbers: randomness, not state.

    The loss's repeat test allows a few hundred units in the model's last place, which in
    float16 or bfloat16 lets two dropout masks through; their gradients then differ, and
    calling that a backward that keeps state would name the wrong cause.  A difference that
    is an exact multiple (an accumulator's 2×) stays what it is.
    """
    model = target.model if target is not None else None
    if model is None or not stateful or any(f.numbers.get("ratio") is not None for f in stateful):
        return None
    draws = _random_draws(target)
    if not (_dropouts(model) or draws):
        return None
    advice, numbers = _randomness_advice(target, draws)
    names = ", ".join(f.tensor for f in stateful[:3]) + (" …" if len(stateful) > 3 else "")
    return Finding(
        "nondeterministic_loss",
        Verdict.ERROR,
        f"the loss is nondeterministic: two gradient calls at the same parameters gave gradients of {names} that "
        f"differ by more than rounding, though their losses agreed within the model's precision; {advice}",
        numbers={"tensors": [f.tensor for f in stateful], **numbers},
    )


def _dropouts(model) -> list[str]:
    """The modules in training mode that apply dropout (a dropout layer, or an RNN's inter-layer dropout)."""
    return [
        f"{name or type(m).__name__} ({type(m).__name__})"
        for name, m in model.named_modules()
        if m.training
        and isinstance(m, torch.nn.modules.dropout._DropoutNd | torch.nn.RNNBase)
        and getattr(m, "p", getattr(m, "dropout", 0))
    ]


def nondeterminism(first: float, second: float, eps: float, what: str = "", target=None) -> Finding | None:
    """The ``nondeterministic_loss`` error when two evaluations at one point differ by more than rounding.

    ``eps`` is the unit roundoff of the arithmetic that computed them; ``what`` names what
    was evaluated, where that is not the loss as the user's code computes it.  With the
    ``target``, the advice fits the model: dropout left on in training mode is named as such;
    randomness drawn while no module is in training mode is a bug of its own (a dropout mask
    that ignores ``self.training``), named with the op and the user's line where they can be
    seen.
    """
    if abs(first - second) <= tolerances().repeat_ulps * eps * abs(first):
        return None
    advice, numbers = _randomness_advice(target)
    return Finding(
        "nondeterministic_loss",
        Verdict.ERROR,
        f"the loss is nondeterministic: two evaluations{what} at the same parameters gave {first:.10g} and "
        f"{second:.10g}; {advice}",
        numbers={"first": first, "second": second, **numbers},
    )


def _randomness_advice(target, draws: list[str] | None = None) -> tuple[str, dict]:
    """What draws the random numbers, and what to do about it.  ``draws``: :func:`_random_draws`'s, where the
    caller already watched a forward for them."""
    model = target.model if target is not None else None
    if model is None:
        return "disable dropout (model.eval()) or seed the randomness inside the loss", {}

    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    dropouts = _dropouts(model)
    draws = _random_draws(target) if draws is None else draws
    where = f": {draws[0]}" if draws else ""
    if training:
        which = (
            f"dropout in {', '.join(dropouts[:3])}"
            if dropouts
            else f"modules in training mode ({', '.join(training[:3])})"
        )
        return (
            f"{len(training)} module(s) are in training mode, and {which} draws new random numbers on every "
            f"call{where}; disable dropout (model.eval()) in the case, or pass TorchCase(..., reseed=True) to draw "
            "the same masks on every call and check the model with its dropout on",
            {"training_modules": training[:8], "random_ops": draws},
        )
    return (
        f"no module is in training mode, yet something draws random numbers in eval mode{where or ' (not a torch op: NumPy or random?)'}; "
        "a dropout or noise that ignores self.training is a bug (pass training=self.training), and model.eval() "
        "cannot fix it",
        {"training_modules": [], "random_ops": draws},
    )


#: torch functions that draw random numbers; dropout's only when asked to train
_RANDOM = {
    "rand", "randn", "rand_like", "randn_like", "randint", "randint_like", "randperm", "bernoulli", "bernoulli_",
    "normal", "normal_", "uniform_", "multinomial", "exponential_", "geometric_", "cauchy_", "log_normal_",
    "random_", "poisson", "rrelu", "rrelu_",
}  # fmt: skip
_DROPOUT = {"dropout", "dropout_", "alpha_dropout", "feature_alpha_dropout", "dropout1d", "dropout2d", "dropout3d"}


def _random_draws(target) -> list[str]:
    """The random ops one forward of the model calls, each with the line of the user's code that called it."""

    user_file = target.user_file

    class Watch(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", "")
            trains = kwargs.get("training", kwargs.get("train", args[2] if len(args) > 2 else None))
            if name in _RANDOM or (name in _DROPOUT and trains is True):
                frames = [f for f in traceback.extract_stack()[:-1] if not _library(f.filename)]
                mine = [f for f in frames if user_file and os.path.realpath(f.filename) == os.path.realpath(user_file)]
                at = f" at {mine[-1].filename}:{mine[-1].lineno}" if mine else ""
                entry = f"{name}{at}"
                if entry not in self.seen:
                    self.seen.append(entry)
            return func(*args, **kwargs)

    watch = Watch()
    try:
        with watch:
            target.model_loss()
    except Exception:  # the forward was already run twice; a third that fails says nothing new
        pass
    return watch.seen[:4]


def _ratio(a: np.ndarray, b: np.ndarray) -> float | None:
    """b / a when b is a constant multiple of a, else None."""
    denom = float(np.vdot(a, a))
    if denom == 0:
        return None
    r = float(np.vdot(a, b)) / denom
    return r if np.allclose(b, r * a, rtol=1e-6, atol=1e-12 * np.abs(b).max()) else None
