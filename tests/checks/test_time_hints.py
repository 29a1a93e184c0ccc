"""Parallel scans against their sequential loop: a measured tolerance, and the time bug named.

Every hint here is planted in a scan of the project's own (tests/models/scan_bugs.py) and
shown true; the correct scans (examples/linear_scans.py) show none.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from helpers import EXAMPLES, MODELS, load_module

import rnncheck
from rnncheck import main

L = load_module(EXAMPLES / "linear_scans.py")
BUGS = load_module(MODELS / "scan_bugs.py")
SCANS = {"log-space": L.log_space_scan, "blelloch": L.blelloch_scan, "chunked": L.chunked_scan}
OPTIONS = rnncheck.Options(diagnostics=False, gradient=False)


def _comparison(scan, seed=0, T=37, dtype=torch.float64):
    case = rnncheck.FunctionCase(scan, inputs=L.scan_inputs(seed, T=T, dtype=dtype), reference=L.sequential_scan)
    result = rnncheck.verify_case(case, OPTIONS)
    return next(c for c in result.checks if c.name == "reference_module")


@pytest.fixture(scope="module")
def bug_report(tmp_path_factory):
    path = tmp_path_factory.mktemp("scans") / "r.json"
    result = CliRunner().invoke(main, ["verify", str(MODELS / "scan_bugs.py"), "--no-flow", "--json", str(path)])
    assert result.exit_code == 1, result.output
    return {c["name"]: c for c in json.loads(path.read_text())["cases"]}


def _hints(case: dict) -> list[str]:
    return [f["message"] for f in case["findings"] if f["kind"] == "hint"]


@pytest.mark.parametrize("name", sorted(BUGS.EXPECTED))
def test_each_planted_time_bug_fails_with_its_verified_hint(bug_report, name):
    case = bug_report[name]
    assert case["verdict"] == "fail"
    hints = _hints(case)
    assert len(hints) == 1, hints  # one line per verified hypothesis, not one per tensor
    assert BUGS.EXPECTED[name] in hints[0], hints


def test_the_step_forms_transformed_state_is_pinned_to_step_0_and_the_initial_state(bug_report):
    case = bug_report["mingru_transformed_state"]
    divergence = next(f for f in case["findings"] if f["kind"] == "time_divergence")
    assert divergence["location"]["step"] == 0
    assert "agrees when state0 is zero" in _hints(case)[0]


def test_the_first_differing_step_and_its_course_are_measured(bug_report):
    chunk = next(f for f in bug_report["state_not_carried"]["findings"] if f["kind"] == "time_divergence")
    assert chunk["location"]["step"] == 8 and "stays about the same size" in chunk["message"]
    back = next(f for f in bug_report["reverse_scan_missing_shift"]["findings"] if f["kind"] == "time_divergence")
    assert "visits the steps last to first" in back["message"]


def test_no_hint_and_no_failure_on_the_correct_scans(tmp_path):
    path = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["verify", str(EXAMPLES / "linear_scans.py"), "--json", str(path)])
    assert result.exit_code == 0, result.output
    for case in json.loads(path.read_text())["cases"]:
        assert case["verdict"] == "pass" and not _hints(case), case["name"]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("scan", sorted(SCANS))
def test_correct_scans_never_fail_against_the_loop_over_seeds_and_lengths(scan, dtype):
    for seed in range(20):
        for T in (7, 37, 100):  # none a power of two
            check = _comparison(SCANS[scan], seed, T, dtype)
            assert check.verdict == "pass", (seed, T, [f.message for f in check.findings if f.verdict == "fail"])


def _one_step_off(scan, step, delta):
    def wrong(a, b, h0):
        h = scan(a, b, h0)
        scale = torch.ones(h.shape[1], dtype=h.dtype)
        scale[step] += delta
        return h * scale.view(1, -1, 1)

    return wrong


@pytest.mark.parametrize("dtype,delta", [(torch.float64, 1e-6), (torch.float32, 1e-3)], ids=["float64", "float32"])
@pytest.mark.parametrize("scan", sorted(SCANS))
def test_an_error_in_one_output_step_is_caught(scan, dtype, delta):
    for seed in range(20):
        T = (7, 37, 100)[seed % 3]
        check = _comparison(_one_step_off(SCANS[scan], (seed * 7) % T, delta), seed, T, dtype)
        assert check.verdict == "fail", (seed, T)
        failing = [f for f in check.findings if f.kind == "reference_module_forward"]
        assert failing, [f.message for f in check.findings]


def test_the_float64_tolerance_is_measured_not_a_floor():
    check = _comparison(L.log_space_scan, seed=5)
    summary = next(f for f in check.findings if f.kind == "reference_module_match")
    assert "measured in float32 against itself in float64" in summary.message
    assert check.verdict == "pass"


def test_a_candidate_that_cannot_run_in_float32_is_said_so_and_still_checked():
    def float64_only(a, b, h0):
        if a.dtype != torch.float64:
            raise TypeError("this kernel takes float64 only")
        return L.sequential_scan(a, b, h0)

    check = _comparison(float64_only)
    notes = [f.message for f in check.findings if f.kind == "reference_module_rounding"]
    assert check.verdict == "pass" and notes and "does not run in float32" in notes[0]
    wrong = _comparison(_one_step_off(float64_only, 3, 1e-6))
    assert wrong.verdict == "fail"
