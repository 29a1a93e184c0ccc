"""The JSON report: a stable, documented shape (see README, "The JSON report").

Top level: ``format`` (the report's version), ``meta``, ``summary`` (the four verdict
counts) and ``cases`` (each with ``name``, ``file``, ``id``, ``verdict``, ``seconds``,
``error``, ``checks``, ``findings`` and ``diagnostics.gradient_flow``).  Non-finite
numbers are written as null.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from ..findings import CaseResult, Report

FORMAT_VERSION = 1


def _clean(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if hasattr(x, "to_json"):
        return _clean(x.to_json())
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return _clean(dataclasses.asdict(x))
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        return _clean(x.item())
    return x


def case_dict(case: CaseResult) -> dict[str, Any]:
    return _clean(
        {
            "name": case.name,
            "file": case.file,
            "id": f"{case.file}::{case.name}",
            "verdict": case.verdict,
            "seconds": round(case.seconds, 4),
            "error": case.error,
            "checks": [
                {
                    "name": c.name,
                    "verdict": c.verdict,
                    "evaluations": c.evaluations,
                    "numbers": c.report_numbers(),
                    "findings": c.findings,
                    "tensors": c.tensors,
                }
                for c in case.checks
            ],
            "findings": case.findings,
            "diagnostics": case.diagnostics,
        }
    )


def report_dict(report: Report) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "meta": _clean(report.meta),
        "summary": report.summary,
        "cases": [case_dict(c) for c in report.cases],
    }


def dumps(report: Report) -> str:
    return json.dumps(report_dict(report), indent=2, sort_keys=False)
