"""Property-based tests of the pure numerics: on functions whose derivatives are known exactly, the
estimates are right within their own stated error bounds, over many random functions and points."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rnncheck.collect import keyword_matcher
from rnncheck.numerics import complex_step, default_step, evaluation_noise, kink_scaling, machine_eps, richardson
from rnncheck.tolerances import DEFAULT

coefficient = st.floats(min_value=-3, max_value=3, allow_nan=False, allow_infinity=False).filter(
    lambda v: v == 0 or abs(v) > 1e-6  # complex step (h = 1e-30) needs coefficients far from underflow
)
point = st.floats(min_value=-1.5, max_value=1.5, allow_nan=False, allow_infinity=False)


def smooth(a, b, c, x0):
    """phi(s) = a·sin(x0+s) + b·exp((x0+s)/2) + c·tanh(x0+s), and its exact derivative at s=0."""

    def phi(s):
        x = x0 + s
        return a * np.sin(x) + b * np.exp(x / 2) + c * np.tanh(x)

    exact = a * math.cos(x0) + b * math.exp(x0 / 2) / 2 + c * (1 - math.tanh(x0) ** 2)
    return phi, exact


@settings(max_examples=200, deadline=None, derandomize=True)
@given(coefficient, coefficient, coefficient, point)
def test_richardson_is_within_its_own_bound_times_the_safety_factor(a, b, c, x0):
    phi, exact = smooth(a, b, c, x0)
    eps = machine_eps(np.float64)
    phi0 = float(phi(0.0))
    scale = abs(a) + abs(b) + abs(c) + 1e-300
    # the rounding of one evaluation is that of its terms, not of their (possibly cancelling) sum:
    # rnncheck measures it from the probes; here the terms' size is known
    terms = abs(a) + abs(b) * math.exp(x0 / 2) + abs(c)
    d = richardson(lambda s: float(phi(s)), default_step(eps), phi0, evaluation_noise(max(terms, abs(phi0)), eps))
    assert abs(d.value - exact) <= DEFAULT.safety * d.error + 64 * eps * scale


@settings(max_examples=200, deadline=None, derandomize=True)
@given(coefficient, coefficient, coefficient, point)
def test_complex_step_is_exact_to_roundoff_on_analytic_functions(a, b, c, x0):
    phi, exact = smooth(a, b, c, x0)
    scale = abs(a) + abs(b) + abs(c)
    assert abs(complex_step(phi) - exact) <= 16 * machine_eps(np.float64) * max(scale, 1e-300)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.floats(min_value=0.1, max_value=5), point, st.floats(min_value=3e-3, max_value=1e-2))
def test_a_slope_jump_is_classified_as_a_kink_and_a_smooth_function_is_not(jump, x0, h):
    """Δ⁴ of |s|·jump at the kink scales with the step; of a smooth function (exp, whose fourth
    derivative never vanishes, at steps where Δ⁴ stays above rounding) far faster."""

    def fourth(f, step):
        return f(2 * step) - 4 * f(step) + 6 * f(0.0) - 4 * f(-step) + f(-2 * step)

    kink = lambda s: jump * abs(s) + 0.3 * s  # noqa: E731
    assert kink_scaling(fourth(kink, h), fourth(kink, h / 8)) == "kink"
    smooth_f = lambda s: math.exp(x0 + s)  # noqa: E731
    assert kink_scaling(fourth(smooth_f, h), fourth(smooth_f, h / 8)) in ("smooth", "noise")


words = st.text(alphabet="abcdefgh_", min_size=1, max_size=6)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(words, words, st.text(alphabet="abcdefgh_0123", min_size=1, max_size=12))
def test_k_expressions_follow_boolean_logic_over_substrings(a, b, name):
    has = lambda w: w.lower() in name.lower()  # noqa: E731
    assert keyword_matcher(a)(name) == has(a)
    assert keyword_matcher(f"{a} and not {b}")(name) == (has(a) and not has(b))
    assert keyword_matcher(f"not ({a} or {b})")(name) == (not (has(a) or has(b)))
    assert keyword_matcher(f"({a} or {b}) and {a}")(name) == has(a)
