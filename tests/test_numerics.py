"""Finite differences, complex step and the error model, on functions with known derivatives."""

from __future__ import annotations

import math

import numpy as np

from rnncheck.numerics import (
    central_difference,
    complex_step,
    default_step,
    evaluation_noise,
    kink_scaling,
    machine_eps,
    richardson,
)
from rnncheck.tolerances import DEFAULT


def test_complex_step_is_exact_to_roundoff():
    f = lambda s: np.exp(np.sin(0.3 + s)) * np.tanh(0.7 + 2 * s)  # noqa: E731
    exact = np.exp(np.sin(0.3)) * (np.cos(0.3) * np.tanh(0.7) + 2 * (1 - np.tanh(0.7) ** 2))
    assert abs(complex_step(f) - exact) <= 1e-15 * abs(exact)


def test_central_difference_error_is_second_order():
    f = lambda s: math.sin(1.0 + s)  # noqa: E731
    e1 = abs(central_difference(f, 1e-2) - math.cos(1.0))
    e2 = abs(central_difference(f, 5e-3) - math.cos(1.0))
    assert 3.5 < e1 / e2 < 4.5


def test_richardson_error_estimate_bounds_the_true_error_on_smooth_functions():
    for x0 in np.linspace(-2, 2, 9):
        f = lambda s, x0=x0: math.exp(x0 + s) * math.cos(3 * (x0 + s))  # noqa: E731
        exact = math.exp(x0) * (math.cos(3 * x0) - 3 * math.sin(3 * x0))
        h = default_step(machine_eps(np.float64))
        d = richardson(f, h, f(0.0), evaluation_noise(f(0.0), machine_eps(np.float64)))
        assert abs(d.value - exact) <= DEFAULT.safety * d.error
        assert d.error <= 1e-8 * max(1.0, abs(exact))


def test_richardson_in_float32_carries_a_larger_honest_bound():
    f32 = lambda s: float(np.float32(np.tanh(np.float32(0.4) + np.float32(s)) ** 3))  # noqa: E731
    exact = 3 * np.tanh(0.4) ** 2 * (1 - np.tanh(0.4) ** 2)
    eps = machine_eps(np.float32)
    d = richardson(f32, default_step(eps), f32(0.0), evaluation_noise(f32(0.0), eps))
    assert abs(d.value - exact) <= DEFAULT.safety * d.error
    assert 1e-7 < d.error < 1e-2


def test_fourth_difference_shows_a_kink_at_the_point_and_shrinks_linearly():
    f = lambda s: 2.0 * max(s, 0.0) + 0.5 * s  # slope jumps by 2 at 0  # noqa: E731
    a = richardson(f, 1e-3, f(0.0), 1e-16)
    b = richardson(f, 1e-3 / 8, f(0.0), 1e-16)
    assert abs(a.fourth_difference + 2 * 2.0 * 1e-3) < 1e-12
    assert kink_scaling(a.fourth_difference, b.fourth_difference) == "kink"


def test_kink_scaling_tells_smooth_and_noise_apart():
    assert kink_scaling(1.0, 1.0 / 4096) == "smooth"
    assert kink_scaling(1e-12, 1.1e-12) == "noise"


def test_extended_richardson_bounds_its_own_fourth_order_error():
    f = lambda s: math.exp(0.3 + s) * math.cos(2 * (0.3 + s))  # noqa: E731
    exact = math.exp(0.3) * (math.cos(0.6) - 2 * math.sin(0.6))
    plain = richardson(f, 1e-2, f(0.0), 1e-16)
    ext = richardson(f, 1e-2, f(0.0), 1e-16, extended=True)
    assert abs(ext.value - exact) <= DEFAULT.safety * ext.error
    assert ext.truncation < plain.truncation / 100
    assert ext.evaluations == 6


def test_quantized_eps_names_the_grid_the_values_lie_on():
    from rnncheck.numerics import quantized_eps

    rng = np.random.default_rng(0)
    x = rng.normal(size=6)
    assert quantized_eps(x) is None  # float64 values
    assert quantized_eps(x.astype(np.float32).astype(np.float64)) == 2.0**-23
    assert quantized_eps(x.astype(np.float16).astype(np.float64)) == 2.0**-10
    bf16 = (x.astype(np.float32).view(np.uint32) & 0xFFFF0000).view(np.float32).astype(np.float64)
    assert quantized_eps(bf16) == 2.0**-7
    assert quantized_eps([1.0, 0.0]) is None  # too few values to say
