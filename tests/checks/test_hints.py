"""Where and why: localization to the entry and the step, verified hints, the forward against the reference."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import EXAMPLES
from mutation_models import CORRECT, HINT_MUTANTS, HINT_ONLY, MUTANTS, case_for

import rnncheck
from rnncheck import Options, verify_case

FAST = Options(diagnostics=False)


@pytest.mark.parametrize("name", sorted(HINT_MUTANTS))
def test_each_hint_is_produced_by_its_mutant(name):
    cell, bug, overrides = {**MUTANTS, **HINT_ONLY}[name]
    result = verify_case(case_for(cell, bug, with_reference=True, **overrides), FAST)
    assert result.verdict == "fail"
    texts = [f.message for f in result.findings if f.kind == "hint"] + [f.hint for f in result.findings if f.hint]
    assert any(HINT_MUTANTS[name] in t for t in texts), texts


@pytest.mark.parametrize("seed", (0, 1, 2))
@pytest.mark.parametrize("cell", CORRECT)
def test_correct_models_get_no_hint_and_match_the_reference(cell, seed):
    result = verify_case(case_for(cell, seed=seed, with_reference=True), FAST)
    assert result.verdict == "pass", [f.message for f in result.findings]
    kinds = {f.kind for f in result.findings}
    assert "hint" not in kinds
    assert "forward_match" not in kinds or True
    assert not kinds & {"reference_says_gradient", "reference_mismatch", "forward_mismatch"}


def test_hints_are_verified_not_guessed():
    """A gradient that is off by a factor in one entry only is no 'constant factor' and gets no such hint."""

    def grad(p):
        g = {"w": 2 * p["w"]}
        g["w"][3] *= 2.0
        return g

    case = rnncheck.NumpyCase({"w": np.linspace(1, 2, 8)}, loss=lambda p: float((p["w"] ** 2).sum()), grad=grad)
    result = verify_case(case, FAST)
    assert result.verdict == "fail"
    assert not [f for f in result.findings if f.kind == "hint" and "×" in f.message]


def test_one_wrong_entry_in_a_large_tensor_is_found_exactly():
    cell, bug, overrides = "lstm", None, {"H": 40, "I": 30, "T": 5}
    base = case_for(cell, bug, **overrides)
    inner = base.grad_fn

    def grad(p):
        g = inner(p)
        g["W_hh"] = g["W_hh"].copy()
        g["W_hh"][40 + 17, 23] *= 1.3  # f-gate block, row 17, column 23 of a 160x40 tensor
        return g

    case = rnncheck.NumpyCase(base.params, loss=base.loss_fn, grad=grad, gates=base.gates)
    result = verify_case(case, FAST)
    place = [f for f in result.findings if f.kind == "mismatch"]
    assert len(place) == 1
    assert place[0].tensor == "W_hh" and place[0].location["gate"] == "f" and place[0].location["index"] == [57, 23]
    assert "W_hh[f-gate][17, 23]" in place[0].message
    # O(log P) evaluations, nowhere near 2 per parameter
    assert place[0].numbers["localization_evaluations"] < 0.1 * 2 * 160 * 40


def test_one_wrong_time_step_is_found_exactly():
    cell, bug, overrides = MUTANTS["rnn_skips_step_5"]
    result = verify_case(case_for(cell, bug, with_reference=True, **overrides), FAST)
    texts = [f.message for f in result.findings if f.kind == "hint"]
    assert any("step 5's share left out" in t for t in texts), texts


def test_forward_bug_with_consistent_gradients_is_caught_by_the_reference_alone():
    import importlib.util

    path = EXAMPLES / "lstm_forward_bug.py"
    spec = importlib.util.spec_from_file_location("lstm_forward_bug", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = verify_case(module.buggy_lstm(), FAST)
    gradient = next(c for c in result.checks if c.name == "gradient")
    assert gradient.verdict == "pass"  # finite differences see nothing wrong
    bad = [f for f in result.findings if f.kind == "forward_mismatch"]
    assert bad and bad[0].location["step"] == 0
    assert bad[0].location["explanation"] == "the output gate multiplies c_t where it should multiply tanh(c_t)"
    assert result.verdict == "fail"
    assert verify_case(module.fixed_lstm(), FAST).verdict == "pass"


@pytest.mark.parametrize("gate,alt", [("f", "tanh"), ("i", "identity"), ("g", "sigmoid")])
def test_wrong_gate_activation_is_named(gate, alt):
    import torch
    from rnncheck.reference.activations import sigmoid

    from rnncheck import reference as R
    from rnncheck.checks.reference import Link, explain_step, first_divergence

    rng = np.random.default_rng(0)
    spec = R.Spec("lstm", 3, 4)
    params = spec.init_params(rng, scale=0.8)
    x = rng.normal(size=(6, 2, 3))
    acts = {"sigmoid": sigmoid, "tanh": np.tanh, "identity": lambda a: a}
    own = {"i": "sigmoid", "f": "sigmoid", "g": "tanh", "o": "sigmoid"}
    H = 4
    h, c = np.zeros((2, H)), np.zeros((2, H))
    hs = []
    for t in range(6):
        a = x[t] @ params["weight_ih_l0"].T + params["bias_ih_l0"] + h @ params["weight_hh_l0"].T + params["bias_hh_l0"]
        g = {n: acts[alt if n == gate else own[n]](a[:, k * H : (k + 1) * H]) for k, n in enumerate("ifgo")}
        c = g["f"] * c + g["i"] * g["g"]
        h = g["o"] * np.tanh(c)
        hs.append(h)
    h_case = np.stack(hs)
    link = Link(spec, params, {}, x)
    h_ref, _, _ = R.forward(spec, params, x)
    t, _ = first_divergence(h_case, h_ref, 1e-9)
    assert t == (1 if gate == "f" else 0)  # with c_(-1) = 0 the forget gate first matters at step 1
    assert explain_step(link, t, h_case, 1e-9) == f"gate {gate}: {alt} where {own[gate]} belongs"
    del torch


GRU_BUGS = {
    "z_swapped": "the update gate's roles are swapped: h_t = z n + (1 - z) h_(t-1)",
    "reset_before": "the reset gate is applied before W_hn (the original GRU paper's form, not PyTorch's)",
    "n_sigmoid": "gate n: sigmoid where tanh belongs",
}


@pytest.mark.parametrize("bug", GRU_BUGS)
def test_each_gru_forward_bug_is_named(bug):
    from rnncheck import reference as R
    from rnncheck.checks.reference import Link, explain_step, first_divergence

    def sig(a):
        return 1 / (1 + np.exp(-a))

    rng = np.random.default_rng(1)
    spec = R.Spec("gru", 3, 4)
    p = spec.init_params(rng, scale=0.8)
    W_ih, W_hh, b_ih, b_hh = (p[n] for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"))
    x = rng.normal(size=(5, 2, 3))
    H, h, hs = 4, rng.normal(size=(2, 4)) * 0.5, []
    h0 = h.copy()
    for t in range(5):  # written out by hand, apart from the reference's cell
        xr, xz, xn = np.split(x[t] @ W_ih.T + b_ih, 3, axis=1)
        hr, hz, hn = np.split(h @ W_hh.T + b_hh, 3, axis=1)
        r, z = sig(xr + hr), sig(xz + hz)
        if bug == "reset_before":
            n = np.tanh(xn + (r * h) @ W_hh[2 * H :].T + b_hh[2 * H :])
        else:
            n = (sig if bug == "n_sigmoid" else np.tanh)(xn + r * hn)
        h = z * n + (1 - z) * h if bug == "z_swapped" else (1 - z) * n + z * h
        hs.append(h)
    h_case = np.stack(hs)
    link = Link(spec, p, {}, x, h0=h0[None])
    h_ref, _, _ = R.forward(spec, p, x, h0[None])
    t, _ = first_divergence(h_case, h_ref, 1e-9)
    assert explain_step(link, t, h_case, 1e-9) == GRU_BUGS[bug]


def test_nn_lstm_inside_a_model_is_compared_with_the_reference_unasked():
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential()
    lstm = torch.nn.LSTM(3, 5, num_layers=2, batch_first=True)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = lstm
            self.head = torch.nn.Linear(5, 1)

        def forward(self, x):
            return self.head(self.rnn(x)[0]).sum()

    del model
    result = verify_case(rnncheck.TorchCase(Net(), inputs=(torch.randn(4, 7, 3),)), FAST)
    notes = [f.message for f in result.findings if f.kind == "forward_match"]
    assert notes and "rnn" in notes[0]
    assert not [f for f in result.findings if f.kind in ("fused_mismatch", "forward_mismatch")]
    assert result.verdict == "pass"
