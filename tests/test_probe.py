"""One probe's numbers: its error and bound relative to the size of what it sums, never to less than the
loss's own gradient scale (internal structure under test)."""

from __future__ import annotations

from rnncheck.probe import Probe, Status  # the module under test


def test_errors_are_relative_to_the_terms_the_directional_derivative_sums():
    p = Probe(analytic=1.0, numeric=1.1, bound=0.01, scale=10.0, status=Status.FAIL)
    assert abs(p.mismatch - 0.1) < 1e-15
    assert abs(p.rel_error - 0.01) < 1e-15 and abs(p.rel_bound - 0.001) < 1e-15


def test_a_direction_along_which_the_gradient_vanishes_is_measured_against_the_losss_own_scale():
    p = Probe(analytic=1e-9, numeric=0.0, bound=1e-12, scale=0.0, status="fail", floor=1.0)
    assert p.status is Status.FAIL and p.rel_error == 1e-9  # not 1e-9 / 1e-308
