"""The arithmetic of gradient flow on problems with known answers: decay fits, verdict rules, spectra,
power iteration, sparklines."""

from __future__ import annotations

import math

import numpy as np
import torch

from rnncheck import flowmath as fm


def test_fit_decay_recovers_an_exact_geometric_profile():
    d = fm.fit_decay(0.7 ** np.arange(30))
    assert abs(d.rho - 0.7) < 1e-12 and abs(d.horizon - (-1 / math.log(0.7))) < 1e-9
    assert d.lag_1e3 == 20  # 0.7^20 = 8e-4 < 1e-3 <= 0.7^19
    assert fm.fit_decay(1.3 ** np.arange(30)).horizon == math.inf


def test_flow_verdict_rules_and_nan_is_never_healthy():
    assert fm.flow_verdict([1e-5], False) == "vanishing"
    assert fm.flow_verdict([1e5], False) == "exploding"
    assert fm.flow_verdict([0.5], False) == "healthy"
    assert fm.flow_verdict([0.5], True) == "exploding"
    assert fm.flow_verdict([None], False) is None


def test_spectral_radius_by_gelfand_matches_eigenvalues_for_a_normal_matrix():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(200, 200)))
    W = q @ np.diag(np.linspace(0.1, 0.95, 200)) @ q.T
    sigma, radius, how = fm.spectral(W)
    assert "Gelfand" in how and abs(sigma - 0.95) < 1e-9
    assert abs(radius - 0.95) <= 0.95 * (200 ** (1 / 512) - 1)  # the documented bound for a normal matrix


def test_power_iteration_finds_the_largest_singular_value():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(6, 6))
    s = fm.power_iteration(lambda v: A @ v, lambda u: A.T @ u, rng.normal(size=6), iters=60)
    assert abs(s - np.linalg.norm(A, 2)) < 1e-8


def test_sparkline_marks_zeros_blank_and_nan_loud():
    line = fm.sparkline(np.array([0.0, 1.0, -np.inf, np.nan, 2.0]))
    assert line[2] == " " and line[3] == "!" and line[0] == fm.SPARK[0] and line[-1] == fm.SPARK[-1]


def test_lanczos_sigma_max_matches_the_svd_on_hard_spectra():
    rng = np.random.default_rng(3)
    n = 300
    u = rng.normal(size=(n, 1))
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    blocks = np.stack(
        [
            rng.normal(size=(n, n)) / n**0.5,  # a random block: its top singular values crowd together
            u @ u.T,  # rank one: the Krylov space is spent after one step
            0.7 * np.eye(n),  # every singular value equal
            q @ np.diag(np.linspace(0.1, 0.95, n)) @ q.T,  # a gap of 0.3% at the top
        ]
    )
    exact = np.linalg.norm(blocks, ord=2, axis=(1, 2))
    got64 = fm.sigma_max_lanczos(torch.from_numpy(blocks)).numpy()
    got32 = fm.sigma_max_lanczos(torch.from_numpy(blocks).float()).numpy()  # float32 weights, exact in float64
    assert np.all(np.abs(got64 - exact) <= 1e-9 * exact)
    exact32 = np.linalg.norm(blocks.astype(np.float32).astype(np.float64), ord=2, axis=(1, 2))
    assert np.all(np.abs(got32 - exact32) <= 1e-9 * exact32)
    assert (
        fm.sigma_max_lanczos(torch.from_numpy(blocks[:1]), max_steps=3) is None
    )  # not settled: the caller's eigensolve decides
    big = rng.normal(size=(1, fm.LANCZOS_FROM, fm.LANCZOS_FROM)) / fm.LANCZOS_FROM**0.5  # spectral_blocks' Lanczos path
    ((sigma, _, _),) = fm.spectral_blocks(torch.from_numpy(big).float())
    exact = np.linalg.norm(big[0].astype(np.float32).astype(np.float64), ord=2)
    assert abs(sigma - exact) <= 1e-9 * exact


def test_sigma_max_of_small_blocks_matches_the_svd_on_hard_spectra_and_extreme_scales():
    rng = np.random.default_rng(5)
    n = 200  # below LANCZOS_FROM: the eigensolve of WᵀW
    u = rng.normal(size=(n, 1))
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    blocks = np.stack(
        [
            rng.normal(size=(n, n)) / n**0.5,
            u @ u.T,  # rank one: every other eigenvalue of WᵀW is 0, some computed slightly negative
            0.7 * np.eye(n),
            q @ np.diag(np.linspace(1e-9, 0.95, n)) @ q.T,  # condition number 1e9: squared, 1e18
            np.zeros((n, n)),
        ]
    )
    for size in (1.0, 1e-200, 1e200):  # WᵀW alone would underflow or overflow float64
        exact = np.linalg.norm(blocks * size, ord=2, axis=(1, 2))
        got = np.array([s for s, _, _ in fm.spectral_blocks(torch.from_numpy(blocks * size))])
        assert np.all(np.abs(got - exact) <= 1e-13 * np.maximum(exact, 1e-300)), (size, got, exact)
    assert got[-1] == 0.0


def test_gelfand_radius_within_its_documented_bound_and_zero_for_nilpotent():
    rng = np.random.default_rng(4)
    n = 300
    W = torch.from_numpy(np.stack([rng.normal(size=(n, n)) / n**0.5 * s for s in (0.5, 1.0, 3.0)]))
    exact = torch.linalg.eigvals(W).abs().amax(dim=-1)
    got = fm.gelfand_radius(W.float()).double()
    assert torch.all((got - exact).abs() <= 0.03 * exact)
    nilpotent = torch.triu(torch.randn(1, 200, 200), diagonal=1)  # W^200 = 0
    assert float(fm.gelfand_radius(nilpotent)[0]) == 0.0
    assert float(fm.gelfand_radius(torch.zeros(1, 200, 200))[0]) == 0.0
    for size in (1e-30, 1e30):  # far from 1 in float32: squares of the entries would under- or overflow
        radius = float(fm.gelfand_radius(size * torch.eye(200).unsqueeze(0))[0])
        assert abs(radius - size) <= 0.03 * size
