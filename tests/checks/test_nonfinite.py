"""Non-finite values are shown in the terminal and named for their cause, not all called "exploding"."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers import MODELS

from rnncheck import main

MODEL_FILE = MODELS / "nonfinite_models.py"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("nonfinite") / "r.json"
    result = CliRunner().invoke(main, ["verify", str(MODEL_FILE), "--json", str(out)], catch_exceptions=False)
    cases = {c["name"]: c for c in json.loads(out.read_text())["cases"]}
    return cases, result.output


def block(output: str, name: str) -> str:
    """The terminal lines of one case."""
    lines = output.splitlines()
    start = next(i for i, l in enumerate(lines) if l.endswith(f"::{name}") or f"::{name} " in l)
    end = next((i for i in range(start + 1, len(lines)) if lines[i][:5] in ("PASS ", "FAIL ", "ERROR", "WARN ")), None)
    return "\n".join(lines[start:end])


def test_a_nan_in_the_inputs_is_named_with_its_entry_and_is_not_exploding(run):
    cases, output = run
    case = cases["nan_in_input"]
    assert case["diagnostics"]["gradient_flow"] == "nonfinite"
    assert case["diagnostics"]["nonfinite_cause"] == "input"
    text = block(output, "nan_in_input")
    assert "input[0][6, 1, 2] = nan" in text and "at step 6" in text and "flow: nonfinite" in text


def test_overflow_grown_by_the_recurrence_is_exploding(run):
    cases, output = run
    case = cases["overflow"]
    assert case["diagnostics"]["gradient_flow"] == "exploding"
    assert case["diagnostics"]["nonfinite_cause"] == "overflow"
    assert "grew it past torch.float32's range" in block(output, "overflow")


def test_a_nan_made_by_an_operation_names_the_operation(run):
    cases, output = run
    case = cases["log_of_negative"]
    assert case["diagnostics"]["gradient_flow"] == "nonfinite"
    assert case["diagnostics"]["nonfinite_cause"] == "operation"
    assert "(log)" in block(output, "log_of_negative")


def test_a_nan_in_one_gradient_entry_is_localized_to_that_entry(run):
    cases, _ = run
    case = cases["nan_gradient_entry"]
    assert case["verdict"] == "fail"
    mismatch = next(f for f in case["findings"] if f["kind"] == "mismatch")
    assert mismatch["message"].startswith("w[3]:")
    nonfinite = next(f for f in case["findings"] if f["kind"] == "nonfinite_gradient")
    assert nonfinite["location"] == {"index": [3]}
