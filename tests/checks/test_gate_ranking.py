"""A wrong gate derivative is named by its gate: blocks ranked by their own error, one index convention."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers import EXAMPLES, MODELS, load_module

from rnncheck import main

EXPECTED_GATE = load_module(MODELS / "gate_bugs.py").EXPECTED_GATE


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gates")
    out = folder / "r.json"
    result = CliRunner().invoke(
        main, ["verify", str(MODELS / "gate_bugs.py"), "--no-flow", "--no-reference", "--json", str(out), "--no-color"]
    )
    return result.output, {c["name"]: c for c in json.loads(out.read_text())["cases"]}


@pytest.mark.parametrize("name", sorted(EXPECTED_GATE))
def test_the_wrong_gate_is_named_first_with_the_others_errors(run, name):
    _, cases = run
    gate = EXPECTED_GATE[name]
    mismatches = [f for f in cases[name]["findings"] if f["kind"] == "mismatch"]
    assert len(mismatches) == 3  # W_ih, W_hh, b: one line each
    for f in mismatches:
        assert f["location"]["gate"] == gate, f["message"]
        assert f"ranked by their own error: {gate} " in f["message"]
        assert f"the {gate} gate's gradient is wrong" in f["message"]


def test_one_index_convention_in_the_table_the_finding_and_the_json(run):
    output, cases = run
    for f in (f for c in cases.values() for f in c["findings"] if f["kind"] == "mismatch"):
        loc = f["location"]
        entry = loc["entry"]
        assert entry.startswith(f"{f['tensor']}[{loc['gate']}-gate][")
        assert f["message"].startswith(entry + ":")
        assert entry in output  # the table's worst entry prints the same text, gate included
        rows = len(loc["index"]) and loc["index"][0] - loc["gate_index"][0]
        assert rows >= 0 and loc["index"][1:] == loc["gate_index"][1:]


def test_an_error_upstream_of_the_gates_is_not_pinned_on_one_gate(tmp_path):
    out = tmp_path / "r.json"
    CliRunner().invoke(
        main,
        ["verify", f"{EXAMPLES / 'custom_lstm_function.py'}::custom_lstm_no_forget", "--no-flow", "--json", str(out)],
    )
    (case,) = json.loads(out.read_text())["cases"]
    messages = [f["message"] for f in case["findings"] if f["kind"] == "mismatch"]
    assert messages and all("no one gate accounting for it" in m for m in messages), messages


@pytest.mark.parametrize("name", sorted(EXPECTED_GATE))
def test_the_gate_named_is_the_wrong_one_at_every_seed(name):
    import rnncheck

    models = load_module(MODELS / "gate_bugs.py")
    for seed in range(10):  # the blocks' own errors come from random probes: the ranking must not depend on them
        result = rnncheck.verify_case(
            models._case(name), rnncheck.Options(seed=seed, diagnostics=False, reference=False)
        )
        mismatches = [f for f in result.findings if f.kind == "mismatch"]
        assert mismatches and all(f.location["gate"] == EXPECTED_GATE[name] for f in mismatches), seed
        assert all(f"the {EXPECTED_GATE[name]} gate's gradient is wrong" in f.message for f in mismatches), seed
