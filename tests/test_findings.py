"""Results are typed: verdicts are an enum that reads and writes as the plain strings of the JSON report."""

import json

import pytest

import rnncheck


def test_a_verdict_is_its_own_string():
    f = rnncheck.Finding("mismatch", "fail", "w: off")
    assert f.verdict is rnncheck.Verdict.FAIL
    assert f.verdict == "fail" and f"{f.verdict}" == "fail"
    assert json.loads(json.dumps({"verdict": f.verdict})) == {"verdict": "fail"}


@pytest.mark.parametrize(
    "make",
    [
        lambda: rnncheck.Finding("mismatch", "failed", "typo in the verdict"),
        lambda: rnncheck.CheckResult("gradient", "ok"),
        lambda: rnncheck.CaseResult("c", "f.py", "PASS"),
    ],
)
def test_a_verdict_outside_the_vocabulary_is_refused(make):
    with pytest.raises(ValueError, match="is not a valid Verdict"):
        make()


def test_a_check_name_outside_the_vocabulary_is_refused_and_a_name_reads_as_its_string():
    with pytest.raises(ValueError, match="is not a valid CheckName"):
        rnncheck.CheckResult("gradiant", "pass")
    result = rnncheck.CheckResult("flow", "pass")
    assert result.name is rnncheck.CheckName.FLOW and result.name == "flow" and f"{result.name}_error" == "flow_error"


def test_a_finding_kind_outside_the_vocabulary_is_refused():
    with pytest.raises(ValueError, match="is not a valid Kind"):
        rnncheck.Finding("missmatch", "fail", "typo in the kind")
    assert rnncheck.Finding("mismatch", "fail", "w: off").kind is rnncheck.Kind.MISMATCH


def test_every_kind_the_package_writes_is_in_the_vocabulary():
    """Statically, so that a finding on a path no test reaches cannot raise when it is made: every literal
    kind handed to Finding(...), and every check's "<name>_error", is a Kind."""
    import ast
    from pathlib import Path

    literals, dynamic = set(), []
    for path in Path(rnncheck.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Finding":
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant):
                    literals.add(first.value)
                elif first is not None and not (
                    isinstance(first, ast.Attribute) and ast.unparse(first).startswith("Kind.")
                ):
                    dynamic.append(f"{path.name}:{node.lineno}")
    assert literals and literals <= set(rnncheck.Kind), sorted(literals - set(rnncheck.Kind))
    pipeline = {"sanity", "gradient", "reference", "reference_module", "flow"}  # the checks runner._check_error names
    assert {f"{name}_error" for name in pipeline} <= set(rnncheck.Kind)
    assert len(dynamic) <= 4, dynamic  # runner's f"{check.name}_error", the worker's kind, reference_module's two


def test_a_report_counts_each_verdict():
    cases = [rnncheck.CaseResult(str(i), "f.py", v) for i, v in enumerate(["pass", "warn", "fail", "fail"])]
    report = rnncheck.Report(cases)
    assert report.summary == {"pass": 1, "warn": 1, "fail": 2, "error": 0}
    assert not report.ok
    assert rnncheck.Report(cases[:2]).ok


def test_the_plugins_failure_is_exported_with_its_result():
    result = rnncheck.CaseResult("c", "f.py", "fail")
    failure = rnncheck.RnncheckFailure(result)
    assert failure.result is result and "c: fail" in str(failure)
