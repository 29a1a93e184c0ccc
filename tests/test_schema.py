"""The JSON report and the baseline file match their committed schemas, on real runs."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from click.testing import CliRunner
from helpers import ROOT

import rnncheck
from rnncheck import main

SCHEMAS = Path(rnncheck.__file__).parent / "schemas"


def schema(name):
    return json.loads((SCHEMAS / name).read_text())


def test_real_reports_match_the_report_schema(tmp_path):
    models = ROOT / "tests" / "models"
    for paths in ([ROOT / "examples"], [models / "ordinary_models.py", models / "nonfinite_models.py"]):
        out = tmp_path / "r.json"
        CliRunner().invoke(main, ["verify", *map(str, paths), "--json", str(out)], catch_exceptions=False)
        jsonschema.validate(json.loads(out.read_text()), schema("report.schema.json"))
    CliRunner().invoke(main, ["diagnose", str(ROOT / "examples"), "--json", str(out)], catch_exceptions=False)
    jsonschema.validate(json.loads(out.read_text()), schema("report.schema.json"))


def test_the_committed_baseline_and_a_fresh_one_match_the_baseline_schema(tmp_path):
    jsonschema.validate(json.loads((ROOT / "ci" / "baseline.json").read_text()), schema("baseline.schema.json"))
    out = tmp_path / "b.json"
    CliRunner().invoke(
        main,
        ["verify", str(ROOT / "examples" / "lstm_module.py"), "--baseline", str(out), "--update-baseline"],
        catch_exceptions=False,
    )
    jsonschema.validate(json.loads(out.read_text()), schema("baseline.schema.json"))


def test_the_schema_fails_a_report_with_a_renamed_field():
    report = {"format": 1, "meta": {}, "summary": {}, "cases": []}
    try:
        jsonschema.validate(report, schema("report.schema.json"))
    except jsonschema.ValidationError as exc:
        assert "required" in str(exc)
    else:
        raise AssertionError("a report without meta's fields must not validate")
