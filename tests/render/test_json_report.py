"""The JSON report: each check's numbers written by its type, in the documented shape, with non-finite
numbers as null (internal structure under test; the schema test holds the shape on real runs)."""

from __future__ import annotations

import json
import math

from rnncheck.findings import (
    CaseResult,
    CheckName,
    CheckResult,
    EntrywiseSummary,
    FlowResult,
    GradientResult,
    ProbeRecord,
    ProbeSummary,
    Report,
    Verdict,
)
from rnncheck.render.json_report import dumps  # the module under test


def _checks(*checks):
    report = Report([CaseResult("c", "m.py", Verdict.PASS, list(checks))])
    return json.loads(dumps(report))["cases"][0]["checks"]


def test_the_gradient_summary_is_written_as_the_numbers_it_always_was():
    summary = ProbeSummary(3, 1, "float64", "float32", 1e-9, 1e-7, [ProbeRecord(None, "pass", 1.0, 1.0, 0, 1e-8, 6)])
    gradient = GradientResult(CheckName.GRADIENT, Verdict.PASS, summary=summary, notes=[], seconds=0.5)
    (numbers,) = [c["numbers"] for c in _checks(gradient)]
    assert numbers["probes"] == 3 and numbers["entry_probes"] == 1 and numbers["notes"] == []
    assert numbers["probe_details"][0]["status"] == "pass" and "step" not in numbers["probe_details"][0]
    assert numbers["seconds"] == 0.5 and "measured_eps" not in numbers and "threads" not in numbers
    full = GradientResult(CheckName.GRADIENT, Verdict.PASS, summary=EntrywiseSummary(math.inf))
    assert _checks(full)[0]["numbers"] == {"mode": "full", "worst_rel_error": None}  # inf: null


def test_a_flow_result_names_its_verdict_only_where_one_was_sought_and_a_traceback_where_kept():
    measured = FlowResult(CheckName.FLOW, Verdict.PASS, gradient_flow=None, measured=True)
    silent = FlowResult(CheckName.FLOW, Verdict.PASS)
    broken = CheckResult(CheckName.SANITY, Verdict.ERROR, traceback="Traceback ...")
    numbers = [c["numbers"] for c in _checks(measured, silent, broken)]
    assert numbers == [{"gradient_flow": None}, {}, {"traceback": "Traceback ..."}]
