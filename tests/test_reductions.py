"""Reductions over large arrays agree with NumPy's, non-finite values included (internal structure under test)."""

from __future__ import annotations

import numpy as np

from rnncheck.reductions import all_finite, equal, max_abs, max_abs_diff  # the module under test


def test_the_reductions_agree_with_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 70)), rng.normal(size=(300, 70))
    assert max_abs(a) == np.abs(a).max()
    assert max_abs_diff(a, b) == np.abs(a - b).max()
    assert all_finite(a)


def test_a_single_nan_or_inf_is_seen():
    a = np.zeros(10_000)
    a[7777] = np.nan
    assert not all_finite(a)
    a[7777] = -np.inf
    assert not all_finite(a) and max_abs(a) == np.inf


def test_equal_needs_one_shape_and_the_same_entries_and_nan_equals_nothing():
    a = np.arange(6.0).reshape(2, 3)
    assert equal(a, a.copy())
    assert not equal(a, a.reshape(3, 2))
    b = a.copy()
    b[1, 2] += 1e-12
    assert not equal(a, b)
    c = a.copy()
    c[0, 0] = np.nan
    assert not equal(c, c.copy())
