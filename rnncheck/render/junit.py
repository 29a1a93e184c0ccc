"""JUnit XML: one testcase per case, for CI systems that read it."""

from __future__ import annotations

import io
import re
from xml.etree import ElementTree as ET

from ..findings import Report, Verdict
from ..ids import case_id
from .terminal import make_console, render_case

#: characters XML 1.0 cannot hold, even escaped: C0 controls but tab/newline/CR, lone surrogates, U+FFFE/U+FFFF
_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """``text`` with every character XML cannot hold written as a visible escape (``\\x00``, ``\\udc80``)."""
    return _INVALID.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}", text
    )


def _text(case) -> str:
    buf = io.StringIO()
    render_case(make_console(buf), case)
    return xml_safe(buf.getvalue())


def to_junit(report: Report, verdict_of=lambda c: c.verdict) -> str:
    suite = ET.Element(
        "testsuite",
        name="rnncheck",
        tests=str(len(report.cases)),
        failures=str(sum(verdict_of(c) == Verdict.FAIL for c in report.cases)),
        errors=str(sum(verdict_of(c) == Verdict.ERROR for c in report.cases)),
        skipped="0",
        time=f"{sum(c.seconds for c in report.cases):.3f}",
    )
    if report.meta.get("interrupted"):  # a partial report says so, as pytest's does
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="interrupted", value="true")
    for case in report.cases:
        tc = ET.SubElement(
            suite,
            "testcase",
            classname=xml_safe(junit_classname(case)),
            name=xml_safe(case.name),
            time=f"{case.seconds:.3f}",
        )
        verdict = verdict_of(case)
        text = _text(case)
        if verdict == Verdict.FAIL:
            first = next((f.message for f in case.findings if f.verdict == Verdict.FAIL), "gradient check failed")
            el = ET.SubElement(tc, "failure", message=xml_safe(first[:500]), type="rnncheck.fail")
            el.text = text
        elif verdict == Verdict.ERROR:
            el = ET.SubElement(tc, "error", message=xml_safe((case.error or "error")[:500]), type="rnncheck.error")
            el.text = text
        else:
            out = ET.SubElement(tc, "system-out")
            out.text = text
    buf = io.BytesIO()
    root = ET.Element("testsuites")
    root.append(suite)
    ET.ElementTree(root).write(buf, encoding="utf-8", xml_declaration=True)
    return buf.getvalue().decode()


def junit_classname(case) -> str:
    """``models.quad`` for ``models/quad.py``, as pytest's junitxml names a test's file: one case keeps one
    history on a CI dashboard whether the command or ``pytest --rnncheck`` ran it."""

    if not case.file:
        return "rnncheck"
    path = case_id(case).rsplit("::", 1)[0]
    return path.removesuffix(".py").replace("\\", "/").strip("/").replace("/", ".")
