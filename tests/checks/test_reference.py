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
