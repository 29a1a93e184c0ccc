"""Weights rewritten in forward (WeightDrop) or computed on access (weight_norm, spectral_norm,
parametrize) get real verdicts in every check, and a planted bug in each still fails."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers import MODELS, load_module

from rnncheck import main

EXPECTED = load_module(MODELS / "rewritten_weights.py").EXPECTED


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("rewritten") / "r.json"
    CliRunner().invoke(main, ["verify", str(MODELS / "rewritten_weights.py"), "--json", str(path)])
    return {c["name"]: c for c in json.loads(path.read_text())["cases"]}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_case_gets_its_verdict_and_no_check_errors(report, name):
    case = report[name]
    assert case["verdict"] == EXPECTED[name], case["error"] or [f["message"] for f in case["findings"]]
    assert all(c["verdict"] != "error" for c in case["checks"]), [c["name"] for c in case["checks"]]


@pytest.mark.parametrize("name", sorted(n for n, v in EXPECTED.items() if v == "pass"))
def test_the_flow_is_measured_on_the_weights_the_layer_really_used(report, name):
    d = report[name]["diagnostics"]
    assert d["gradient_flow"] in ("healthy", "vanishing", "exploding") and d["layers"]
    assert d["twin"]["reproduces"], d["twin"]
