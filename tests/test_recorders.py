"""Every way of seeing states yields one Recording, which the flow check reads alone
(internal structure under test)."""

from __future__ import annotations

import numpy as np
import torch
from helpers import EXAMPLES, load_module

import rnncheck
from rnncheck.recorders import NO_STATES, NUMPY_UNSEEN  # the module under test


def _record(case):
    return case.bind(rnncheck.Options()).record_states(np.random.default_rng(0))


def test_fused_layers_are_recorded_by_their_twins_per_layer_and_direction():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True).double()
    got = _record(rnncheck.TorchCase(lstm, inputs=(torch.randn(6, 2, 3, dtype=torch.float64),)))
    names = [layer.name for layer in got.layers]
    assert names == ["rnn/l0", "rnn/l0_reverse", "rnn/l1", "rnn/l1_reverse"]
    assert got.steps == 6 and got.twin.reproduces and got.loss.requires_grad
    assert [layer.reverse for layer in got.layers] == [False, True, False, True]
    assert set(got.layers[0].gates) == {"i", "f", "g", "o"} and got.layers[0].step is not None


def test_a_cell_loop_records_every_state_with_its_step_map():
    torch.manual_seed(0)
    cell = torch.nn.GRUCell(2, 3).double()
    case = rnncheck.CellCase(cell, torch.randn(5, 1, 2, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64))
    got = _record(case)
    (layer,) = got.layers
    assert layer.name == "cell" and len(layer.states) == 5 and set(layer.gates) == {"r", "z", "n"}
    nxt = layer.step(layer.inputs[1], tuple(t.detach() for t in layer.states[0]))
    assert torch.allclose(nxt[0], layer.states[1][0])  # the step map reproduces the recorded state


def test_a_model_that_shows_no_states_says_how_to_show_them():
    got = _record(rnncheck.TorchCase(torch.nn.Linear(3, 2).double(), inputs=(torch.randn(4, 3, dtype=torch.float64),)))
    assert got.not_measured == NO_STATES and not got.layers


def test_a_numpy_case_without_an_architecture_is_unseen_and_with_one_gives_its_adjoints():
    plain = rnncheck.NumpyCase({"w": np.ones(2)}, loss=lambda p: float(p["w"].sum()), grad=lambda p: {"w": np.ones(2)})
    assert _record(plain).not_measured == NUMPY_UNSEEN
    article = load_module(EXAMPLES / "article_rnn.py").article_rnn_corrected()
    got = _record(article)
    (layer,) = got.layers
    assert got.loss is None and layer.step is None  # the reference gave the adjoints: no graph, no step map
    assert layer.given.profile.shape == (got.steps,) and np.all(np.isfinite(layer.given.propagation))
    assert layer.given.propagation[0] > layer.given.propagation[-1]  # lag 0 first: the decay back through time
