"""A case linked to the NumPy reference: its arrays under the reference's names, and the head's gradient
with a measured error (internal structure under test)."""

from __future__ import annotations

import numpy as np
import pytest

from rnncheck import reference as R
from rnncheck.errors import CaseError
from rnncheck.reference_link import head_gradient, map_parameters  # the module under test


def test_the_case_arrays_take_the_reference_names_and_a_missing_bias_is_zero_and_named():
    spec = R.Spec(R.Mode.RNN_TANH, 2, 3)
    shapes = spec.param_shapes()
    theta = {"W": np.ones(shapes["weight_ih_l0"]), "U": np.ones(shapes["weight_hh_l0"]), "b": np.ones(3)}
    params, names, missing = map_parameters(spec, theta, {"weight_ih_l0": "W", "weight_hh_l0": "U", "bias_ih_l0": "b"})
    assert names == {"weight_ih_l0": "W", "weight_hh_l0": "U", "bias_ih_l0": "b"}
    assert missing == ["bias_hh_l0"] and not params["bias_hh_l0"].any()
    with pytest.raises(CaseError, match="reference_map: 'b' has shape"):
        map_parameters(spec, {**theta, "b": np.ones(4)}, {"bias_ih_l0": "b"})


def test_the_head_gradient_is_right_and_its_error_estimate_is_small_for_a_smooth_head():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(4, 2, 3))
    w = rng.normal(size=3)

    def head(states, params):
        return float(np.sum(np.tanh(states @ w) ** 2))

    g, err = head_gradient(head, h.copy(), {})
    t = np.tanh(h @ w)
    exact = (2 * t * (1 - t**2))[..., None] * w
    assert np.abs(g - exact).max() < 1e-9 and err < 1e-8
