"""Probe directions, directly: scaled per block, weighted so each block moves g·v alike, signs that are fair.

Internal structure under test, so this imports the module itself.
"""

import numpy as np

import rnncheck
from rnncheck.cases.base import Block
from rnncheck.directions import block_indices, block_scales, probe_direction, signs


def _setup():
    rng = np.random.default_rng(0)
    theta = {"W": rng.normal(size=(6, 4)) * 10.0, "b": rng.normal(size=6) * 0.01}
    grad = {"W": rng.normal(size=(6, 4)), "b": rng.normal(size=6) * 1e-3}
    blocks = [Block("W", "i", 0, 3), Block("W", "f", 3, 6), Block("b", "")]
    return theta, grad, blocks


def test_signs_are_plus_or_minus_the_size_and_fair():
    s = signs(np.random.default_rng(1), 100_000, 0.5)
    assert set(np.unique(s)) == {-0.5, 0.5}
    assert abs(s.mean()) < 0.01  # 100k fair signs: the mean's standard deviation is 0.0016


def test_each_block_is_scaled_by_its_own_parameter_size_with_a_floor_of_a_tenth_of_the_global_rms():
    theta, _, blocks = _setup()
    scales = block_scales(theta, blocks)
    rms_w0 = np.sqrt((theta["W"][:3] ** 2).mean())
    assert np.isclose(scales[blocks[0]], rms_w0)
    global_rms = np.sqrt(sum((v**2).sum() for v in theta.values()) / 30)
    assert np.isclose(scales[blocks[2]], 0.1 * global_rms)  # b is tiny: the floor holds


def test_weighting_lifts_a_small_blocks_share_of_g_dot_v_up_to_the_amplification_limit():
    theta, grad, blocks = _setup()
    w = probe_direction(theta, grad, blocks, np.random.default_rng(2))
    u = probe_direction(theta, grad, blocks, np.random.default_rng(2), weighted=False)
    weighted = [np.abs(grad[b.tensor][b.rows] * w[b.tensor][b.rows]).sum() for b in blocks]
    raw = [np.abs(grad[b.tensor][b.rows] * u[b.tensor][b.rows]).sum() for b in blocks]
    assert raw[2] / raw[0] < 1e-3  # unweighted, b would hardly move the probe
    gain = (weighted[2] / weighted[0]) / (raw[2] / raw[0])
    limit = rnncheck.Tolerances().max_amplification
    assert 0.5 * limit <= gain <= 1.01 * limit  # lifted as far as the limit allows, and no further
    assert 0.5 <= weighted[1] / weighted[0] <= 2  # two gate blocks of one weight: alike already


def test_aligned_directions_follow_the_gradients_signs():
    theta, grad, blocks = _setup()
    v = probe_direction(theta, grad, blocks, np.random.default_rng(3), aligned=True)
    for name in grad:
        assert np.all(np.sign(v[name]) == np.sign(grad[name]))


def test_a_direction_over_some_blocks_is_zero_elsewhere_and_block_indices_are_row_major():
    theta, grad, blocks = _setup()
    v = probe_direction(theta, grad, blocks[1:2], np.random.default_rng(4))
    assert np.all(v["W"][:3] == 0) and np.all(v["W"][3:] != 0) and "b" not in v
    assert list(block_indices(theta, blocks[1])) == list(range(12, 24))
