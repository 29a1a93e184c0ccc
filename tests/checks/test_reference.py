"""The reference comparison's time hints: the missing transpose in the recursion, one line per hypothesis."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers import MODELS

from rnncheck import main


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    path = tmp_path_factory.mktemp("bptt") / "r.json"
    CliRunner().invoke(main, ["verify", str(MODELS / "numpy_bptt_bugs.py"), "--no-flow", "--json", str(path)])
    return {c["name"]: c for c in json.loads(path.read_text())["cases"]}


def test_the_correct_hand_written_bptt_passes_with_no_hint(cases):
    case = cases["correct_bptt"]
    assert case["verdict"] == "pass" and not [f for f in case["findings"] if f["kind"] == "hint"]


def test_the_missing_transpose_in_the_recursion_is_named_once_and_verified(cases):
    case = cases["missing_transpose"]
    assert case["verdict"] == "fail"
    hints = [f for f in case["findings"] if f["kind"] == "hint"]
    assert len(hints) == 1, [h["message"] for h in hints]
    assert "dh_prev = W_hh @ da instead of W_hh.T @ da" in hints[0]["message"]
    assert hints[0]["numbers"]["tensors"] == ["W_xh", "W_hh", "b_h"] and hints[0]["numbers"]["rel_diff"] < 1e-9


def test_the_transposed_gradient_hint_no_longer_claims_the_recursion_bug(cases):
    messages = " ".join(f["message"] for c in cases.values() for f in c["findings"])
    assert "the analytic gradient is the transpose" not in messages


def test_a_two_layer_lstm_with_dropout_in_training_mode_is_not_failed_for_its_masks():
    import torch

    import rnncheck

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 5, num_layers=2, dropout=0.3).double()  # training mode: masks between the layers
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    result = rnncheck.verify_case(
        rnncheck.TorchCase(lstm, inputs=(x,), loss=lambda out: out[0].pow(2).sum(), reseed=True)
    )
    verdicts = {c.name: c.verdict for c in result.checks}
    assert result.verdict == "pass" and verdicts["reference"] == "pass", [f.message for f in result.findings]
    notes = " ".join(f.message for f in result.findings)
    assert (
        "compared with its inter-layer dropout (0.3) off" in notes
        and "flow is measured with the inter-layer dropout" in notes
    )
    assert lstm.dropout == 0.3 and lstm.training  # put back as it was


def test_with_a_wrong_head_both_cases_say_the_same_thing_and_only_what_was_checked(cases):
    correct, buggy = cases["correct_bptt_wrong_head"], cases["missing_transpose_wrong_head"]
    assert correct["verdict"] == "warn" and buggy["verdict"] == "fail"
    for case in (correct, buggy):
        kinds = {f["kind"] for f in case["findings"]}
        assert "reference_says_gradient" not in kinds  # no claim that the reference and the differences agree
        assert all(
            "check reference_map and head" in f["message"]
            for f in case["findings"]
            if f["kind"] == "reference_mismatch"
        )
        assert not [f for f in case["findings"] if f["kind"] == "hint" and "BPTT" in f["message"]]


def test_the_agreement_of_the_reference_and_the_differences_is_verified_before_it_is_said(cases):
    said = [f for f in cases["missing_transpose"]["findings"] if f["kind"] == "reference_says_gradient"]
    assert said and all("verified: the reference's gradient passes fresh probes" in f["message"] for f in said)
