"""The JUnit file: a testcase per case, a failure with its deciding finding, an error with its reason,
and text an XML parser accepts whatever the user's names hold (internal structure under test)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from rnncheck.findings import CaseResult, CheckName, CheckResult, Finding, Report, Verdict
from rnncheck.render.junit import to_junit  # the module under test


def test_failures_and_errors_are_counted_and_said():
    wrong = Finding("mismatch", Verdict.FAIL, "W_hh[f-gate][0, 1]: analytic 1, numeric 2")
    cases = [
        CaseResult("ok", "m.py", Verdict.PASS),
        CaseResult("bad\x00name", "m.py", Verdict.FAIL, [CheckResult(CheckName.GRADIENT, Verdict.FAIL, [wrong])]),
        CaseResult("broken", "m.py", Verdict.ERROR, error="case function broken() raised KeyError: 'x'"),
    ]
    suite = ET.fromstring(to_junit(Report(cases))).find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    failure = suite.find("testcase/failure")
    assert "W_hh[f-gate][0, 1]" in failure.get("message")
    assert "KeyError" in suite.find("testcase/error").get("message")
