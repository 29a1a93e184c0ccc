"""The baseline keeps what it promises: validated on load, a failed write is a failed run, links and modes
kept, and a recorded failure keeps failing."""

from __future__ import annotations

import json
import os
import stat

import pytest
from click.testing import CliRunner

from rnncheck import main

MODEL = """
import numpy as np
import rnncheck


def _case(scale):
    return rnncheck.NumpyCase({"w": np.array([1.0, -2.0, 0.5])}, lambda p: float((p["w"] ** 3).sum()),
                              lambda p: {"w": scale * 3 * p["w"] ** 2})


@rnncheck.case
def good():
    return _case(1.0)
"""

BAD = (
    MODEL
    + """

@rnncheck.case
def bad():
    return _case(2.0)
"""
)


def run(*args):
    result = CliRunner().invoke(main, ["verify", *args])
    return result.exit_code, result.output


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(MODEL)
    code, out = run("m.py", "--baseline", "b.json", "--update-baseline", "--baseline-repeats", "1")
    assert code == 0, out
    return tmp_path


@pytest.mark.parametrize(
    "mutate,field",
    [
        (lambda r: {"verdict": "pass"}, "has no 'checks'"),
        (lambda r: {**r, "sketch": {"w": 5}}, ".sketch.w is 5, not array"),
        (lambda r: {**r, "spread": "x"}, '.spread is "x", not object'),
        (lambda r: {**r, "tolerances": "x"}, '.tolerances is "x", not object'),
    ],
    ids=["stripped", "sketch", "spread", "tolerances"],
)
def test_a_baseline_that_breaks_its_schema_is_a_usage_error_naming_the_file_and_field(recorded, mutate, field):
    data = json.loads((recorded / "b.json").read_text())
    data["cases"]["m.py::good"] = mutate(data["cases"]["m.py::good"])
    (recorded / "b.json").write_text(json.dumps(data))
    code, out = run("m.py", "--baseline", "b.json")
    assert code == 2 and "b.json" in out and field in out and "PASS" not in out  # before any case runs


def test_a_failed_write_is_a_failed_run_and_claims_no_write(recorded):
    code, out = run("m.py", "--baseline", "m.py/b.json", "--update-baseline")  # under a file: no folder can be made
    assert code != 0 and "could not write" in out and "wrote" not in out


def test_an_update_through_a_symlink_updates_the_target_and_keeps_the_link_and_its_mode(recorded):
    os.chmod(recorded / "b.json", 0o644)
    os.symlink("b.json", recorded / "link.json")
    code, _ = run("m.py", "--baseline", "link.json", "--update-baseline", "--baseline-repeats", "1")
    assert code == 0
    assert (recorded / "link.json").is_symlink() and os.readlink(recorded / "link.json") == "b.json"
    assert stat.S_IMODE((recorded / "b.json").stat().st_mode) == 0o644


def test_an_update_with_no_case_to_record_says_so(recorded):
    (recorded / "broken.py").write_text(MODEL.replace("def good():", "def good():\n    raise ValueError('broken')"))
    code, out = run("broken.py", "--baseline", "new.json", "--update-baseline")
    assert "wrote 0" not in out and "no case to record: new.json was not written" in out
    assert not (recorded / "new.json").exists()


def test_a_failing_case_is_not_recorded_unless_accepted_and_an_unaccepted_failure_fails_the_gate(recorded):
    (recorded / "m.py").write_text(BAD)
    code, out = run("m.py", "--baseline", "b.json", "--update-baseline", "--baseline-repeats", "1")
    assert (
        code == 1 and "not recorded, since they fail their own checks: m.py::bad" in out and "--accept-failures" in out
    )
    assert "m.py::bad" not in json.loads((recorded / "b.json").read_text())["cases"]
    # a record of the failing case written some other way (by hand, by an older rnncheck) does not let it pass
    data = json.loads((recorded / "b.json").read_text())
    code, _ = run(
        "m.py", "--baseline", "other.json", "--update-baseline", "--accept-failures", "--baseline-repeats", "1"
    )
    bad = json.loads((recorded / "other.json").read_text())["cases"]["m.py::bad"]
    assert code == 0 and bad["accepted_failure"] is True
    data["cases"]["m.py::bad"] = {k: v for k, v in bad.items() if k != "accepted_failure"}
    (recorded / "b.json").write_text(json.dumps(data))
    code, out = run("m.py", "--baseline", "b.json")
    assert code == 1 and "gate: FAILING" in out and "(1 failing)" in out
    # accepted deliberately, the failure passes the gate while it stays as it is
    code, out = run("m.py", "--baseline", "other.json")
    assert code == 0 and "gate: 2 of 2 cases match" in out
