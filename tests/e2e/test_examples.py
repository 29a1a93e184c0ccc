"""Every example gives the verdict its file declares, through the real command."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import EXAMPLES

from rnncheck import main


def _expected(attribute):
    out = {}
    for f in sorted(EXAMPLES.glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"expected_{f.stem}", f)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name, verdict in getattr(module, attribute, {}).items():
            out[(f.name, name)] = verdict
    return out


EXPECTED = _expected("EXPECTED")
EXPECTED_FLOW = _expected("EXPECTED_FLOW")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "examples.json"
    result = CliRunner().invoke(main, ["verify", str(EXAMPLES), "--json", str(path)])
    assert result.exit_code in (0, 1), result.output
    return json.loads(path.read_text())


def test_every_example_declares_its_expected_verdicts():
    files = {f for f, _ in EXPECTED}
    assert files == {f.name for f in EXAMPLES.glob("*.py")}


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=lambda k: f"{k[0]}::{k[1]}")
def test_example_verdict(report, key):
    file, name = key
    case = next(c for c in report["cases"] if Path(c["file"]).name == file and c["name"] == name)
    assert case["verdict"] == EXPECTED[key], case["error"] or [f["message"] for f in case["findings"]]


@pytest.mark.parametrize("key", sorted(EXPECTED_FLOW), ids=lambda k: f"{k[0]}::{k[1]}")
def test_example_flow_verdict(report, key):
    file, name = key
    case = next(c for c in report["cases"] if Path(c["file"]).name == file and c["name"] == name)
    assert case["diagnostics"]["gradient_flow"] == EXPECTED_FLOW[key]


def test_three_flow_examples_show_three_verdicts():
    assert sorted(EXPECTED_FLOW.values()) == ["exploding", "healthy", "vanishing"]
