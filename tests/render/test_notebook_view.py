"""A Report and a CaseResult render themselves in a notebook (HTML) and in rich, as the terminal does."""

from __future__ import annotations

import io

import numpy as np
from rich.console import Console

import rnncheck


def _case(scale):
    p = {"w": np.array([1.0, -2.0, 0.5])}
    return rnncheck.NumpyCase(p, loss=lambda q: float((q["w"] ** 2).sum()), grad=lambda q: {"w": scale * 2 * q["w"]})


def test_a_report_renders_as_html_with_the_table_findings_and_hints():
    report = rnncheck.verify([_case(1.0), _case(0.5)])
    html = report._repr_html_()
    assert html.lstrip().startswith("<pre") and "color:" in html  # a coloured fragment a notebook embeds
    for text in ("PASS", "FAIL", "rel err", "worst entry", "mismatch", "hint:", "0 warned", "1 failed"):
        assert text in html, text
    assert "CaseResult(" not in html


def test_a_case_result_renders_in_rich_like_the_terminal():
    result = rnncheck.verify_case(_case(0.5))
    buf = io.StringIO()
    Console(file=buf, width=140, force_terminal=False).print(result)
    text = buf.getvalue()
    assert text.startswith("FAIL") and "w[" in text and "analytic" in text
    assert "FAIL" in result._repr_html_()
