"""FunctionCase and StepCase: a scan checked as its authors write it, through the real command."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from click.testing import CliRunner
from helpers import EXAMPLES, load_module

import rnncheck
from rnncheck import main

L = load_module(EXAMPLES / "linear_scans.py")


def _run(tmp_path, source: str, *args):
    model = tmp_path / "model.py"
    model.write_text(textwrap.dedent(source))
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["verify", str(model), "--json", str(out), *args])
    return result, {c["name"]: c for c in json.loads(out.read_text())["cases"]}


HEADER = f"""
import sys
import torch
import rnncheck
sys.path.insert(0, {str(EXAMPLES)!r})
import linear_scans as L
"""


def test_a_function_is_checked_on_its_inputs_named_as_its_arguments(tmp_path):
    result, cases = _run(
        tmp_path,
        HEADER
        + """
@rnncheck.case
def scan():
    return rnncheck.FunctionCase(L.blelloch_scan, inputs=L.scan_inputs(), reference=L.sequential_scan)
""",
    )
    assert result.exit_code == 0, result.output
    gradient = next(c for c in cases["scan"]["checks"] if c["name"] == "gradient")
    assert [t["name"] for t in gradient["tensors"]] == ["a", "b", "h0"]


def test_a_wrong_custom_backward_fails_the_gradient_check_and_the_comparison(tmp_path):
    result, cases = _run(
        tmp_path,
        HEADER
        + f"""
sys.path.insert(0, {str(EXAMPLES.parent / "tests" / "models")!r})
import scan_bugs

@rnncheck.case
def wrong():
    return rnncheck.FunctionCase(scan_bugs.reverse_scan_missing_shift, inputs=L.scan_inputs(), reference=L.sequential_scan)
""",
        "--no-flow",
    )
    assert result.exit_code == 1
    verdicts = {c["name"]: c["verdict"] for c in cases["wrong"]["checks"]}
    assert verdicts["gradient"] == "fail" and verdicts["reference_module"] == "fail"


def test_without_requires_grad_every_floating_input_is_checked_and_a_note_says_so(tmp_path):
    result, cases = _run(
        tmp_path,
        HEADER
        + """
@rnncheck.case
def plain():
    a, b, h0 = (t.detach() for t in L.scan_inputs())
    return rnncheck.FunctionCase(L.chunked_scan, inputs=(a, b, h0, 4))
""",
    )
    assert result.exit_code == 0, result.output
    gradient = next(c for c in cases["plain"]["checks"] if c["name"] == "gradient")
    assert [t["name"] for t in gradient["tensors"]] == ["a", "b", "h0"]
    assert any("no input requires grad" in n for n in gradient["numbers"]["notes"])


def test_only_inputs_that_require_grad_are_checked():
    a, b, h0 = L.scan_inputs()
    result = rnncheck.verify_case(rnncheck.FunctionCase(L.log_space_scan, inputs=(a.detach(), b, h0.detach())))
    gradient = next(c for c in result.checks if c.name == "gradient")
    assert [t.name for t in gradient.tensors] == ["b"] and result.verdict == "pass"


def test_a_modules_parallel_form_is_compared_with_its_step_form():
    torch.manual_seed(0)
    model = L.MinGRU(3, 8).double()
    x = torch.randn(2, 11, 3, dtype=torch.float64)
    case = rnncheck.StepCase(model, inputs=x, state0=torch.full((2, 8), 0.5, dtype=torch.float64))
    result = rnncheck.verify_case(case)
    assert result.verdict == "pass"
    check = next(c for c in result.checks if c.name == "reference_module")
    assert check.verdict == "pass"
    assert [layer.name for layer in result.diagnostics.layers] == ["step form"]  # rnncheck's own loop, recorded


def test_a_step_form_that_disagrees_fails():
    class Off(L.MinGRU):
        def step(self, x_t, h):
            h, _ = super().step(x_t, h)
            return h * 1.001, h * 1.001

    torch.manual_seed(0)
    x = torch.randn(2, 11, 3, dtype=torch.float64)
    case = rnncheck.StepCase(Off(3, 8).double(), inputs=x, state0=torch.full((2, 8), 0.5, dtype=torch.float64))
    check = next(c for c in rnncheck.verify_case(case).checks if c.name == "reference_module")
    assert check.verdict == "fail"


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: rnncheck.FunctionCase(3), "needs a function of tensors"),
        (lambda: rnncheck.FunctionCase(L.log_space_scan, inputs=(1, 2, 3)), "no floating-point tensor"),
        (lambda: rnncheck.FunctionCase(L.log_space_scan, inputs=L.scan_inputs(), decay="z"), "decay='z'"),
        (lambda: rnncheck.FunctionCase(L.log_space_scan, inputs=L.scan_inputs(), reference=5), "reference="),
        (
            lambda: rnncheck.StepCase(torch.nn.Linear(2, 2), inputs=torch.zeros(1, 3, 2), state0=torch.zeros(1, 2)),
            "no method 'step'",
        ),
        (lambda: rnncheck.StepCase(L.MinGRU(2, 2), inputs=torch.zeros(1, 3, 2)), "needs state0"),
        (lambda: rnncheck.StepCase(L.MinGRU(2, 2), inputs=torch.zeros(3), state0=torch.zeros(2)), "time axis"),
    ],
)
def test_bad_arguments_are_one_clear_error(build, message):
    with pytest.raises(rnncheck.CaseError) as info:
        build()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_bad_case_in_a_file_is_that_cases_error_and_the_others_run(tmp_path):
    result, cases = _run(
        tmp_path,
        HEADER
        + """
@rnncheck.case
def broken():
    return rnncheck.StepCase(L.MinGRU(3, 4).double(), inputs=torch.zeros(1, 5, 3, dtype=torch.float64), state0=None)

@rnncheck.case
def fine():
    return rnncheck.FunctionCase(L.chunked_scan, inputs=L.scan_inputs(), reference=L.sequential_scan)
""",
        "--no-flow",
    )
    assert result.exit_code == 1
    assert cases["broken"]["verdict"] == "error" and "needs state0" in cases["broken"]["error"]
    assert cases["fine"]["verdict"] == "pass"
