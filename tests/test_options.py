"""One declaration per option: the command line, RNNCHECK_*, [tool.rnncheck], pytest options and ini keys,
and the marker all take the same options, with the same validation, in that order of precedence."""

from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner

import rnncheck
from rnncheck import main

pytest_plugins = ["pytester"]

MODEL = """
import numpy as np
import rnncheck

@rnncheck.case
def quad():
    p = {"w": np.array([1.0, -2.0, 0.5])}
    return rnncheck.NumpyCase(p, loss=lambda q: float((q["w"] ** 2).sum()), grad=lambda q: {"w": 2 * q["w"]})
"""


def probes_used(tmp_path, *args, env=None, pyproject=None):
    (tmp_path / "m.py").write_text(MODEL)
    if pyproject is not None:
        (tmp_path / "pyproject.toml").write_text(textwrap.dedent(pyproject))
    result = CliRunner().invoke(
        main, ["verify", str(tmp_path / "m.py"), "--json", str(tmp_path / "r.json"), *args], env=env or {}
    )
    if result.exit_code == 2:
        return result.output
    case = json.loads((tmp_path / "r.json").read_text())["cases"][0]
    return next(c for c in case["checks"] if c["name"] == "gradient")["numbers"]["probes"]


def test_precedence_is_command_line_then_environment_then_config_then_default(tmp_path):
    config = "[tool.rnncheck]\nprobes = 5\n"
    assert probes_used(tmp_path) == 3
    assert probes_used(tmp_path, pyproject=config) == 5
    assert probes_used(tmp_path, env={"RNNCHECK_PROBES": "7"}, pyproject=config) == 7
    assert probes_used(tmp_path, "--probes", "4", env={"RNNCHECK_PROBES": "7"}, pyproject=config) == 4


def test_a_flag_from_the_config_file_and_from_the_environment(tmp_path):
    (tmp_path / "m.py").write_text(MODEL)
    (tmp_path / "pyproject.toml").write_text("[tool.rnncheck]\nno-flow = true\n")
    out = CliRunner().invoke(main, ["verify", str(tmp_path / "m.py")]).output
    assert "flow:" not in out
    (tmp_path / "pyproject.toml").write_text("")
    out = CliRunner().invoke(main, ["verify", str(tmp_path / "m.py")], env={"RNNCHECK_NO_FLOW": "1"}).output
    assert "flow:" not in out
    out = CliRunner().invoke(main, ["verify", str(tmp_path / "m.py")]).output
    assert "flow: not measured" in out


@pytest.mark.parametrize(
    "env, pyproject, message",
    [
        ({"RNNCHECK_PROBES": "0"}, None, "RNNCHECK_PROBES: probes must be a whole number from 1 to 64"),
        ({"RNNCHECK_TIMEOUT": "soon"}, None, "RNNCHECK_TIMEOUT: timeout must be a positive number of seconds"),
        ({}, "[tool.rnncheck]\nprobez = 3\n", "unknown key(s) in [tool.rnncheck]: probez"),
        ({}, "[tool.rnncheck]\ndtype = 'float8'\n", "dtype must be one of float32, float64"),
        ({}, "[tool.rnncheck\n", "cannot be read as TOML"),
    ],
)
def test_bad_values_from_any_source_are_usage_errors_naming_the_source(tmp_path, env, pyproject, message):
    out = probes_used(tmp_path, env=env, pyproject=pyproject)
    assert isinstance(out, str) and message in out, out


def test_the_same_options_in_pytest_options_ini_keys_and_the_marker(pytester, monkeypatch):
    pytester.makeini("[pytest]\nrnncheck_probes = 5\n")
    pytester.makepyfile(
        test_probes="""
        import numpy as np
        import pytest
        import rnncheck as rc

        def case():
            return rc.NumpyCase({"w": np.ones(3)}, loss=lambda p: float((p["w"] ** 2).sum()), grad=lambda p: {"w": 2 * p["w"]})

        def probes(result):
            return next(c for c in result.checks if c.name == "gradient").summary.probes

        def test_from_ini(rnncheck):
            assert probes(rnncheck.verify(case())) == EXPECTED

        @pytest.mark.rnncheck(probes=9)
        def test_marker_wins(rnncheck):
            assert probes(rnncheck.verify(case())) == 9
        """.replace("EXPECTED", "int(__import__('os').environ.get('EXPECT', '5'))")
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
    monkeypatch.setenv("EXPECT", "6")
    pytester.runpytest("-p", "no:cacheprovider", "--rnncheck-probes", "6").assert_outcomes(passed=2)
    bad = pytester.runpytest("-p", "no:cacheprovider", "--rnncheck-probes", "0")
    assert "probes must be a whole number from 1 to 64" in bad.stdout.str() + bad.stderr.str()


def test_every_declared_option_reaches_options_and_validates():
    fields = set(rnncheck.Options.__dataclass_fields__)
    from rnncheck.options import SPECS  # the declaration itself

    assert {s.field for s in SPECS} <= fields
    for bad in ({"threads": 0}, {"seed": True}, {"budget": "5"}):
        with pytest.raises(ValueError):
            rnncheck.Options(**bad)


SLIGHTLY_OFF = """
import numpy as np
import rnncheck

@rnncheck.case
def quad():
    p = {"w": np.array([1.0, -2.0, 0.5])}
    return rnncheck.NumpyCase(
        p, loss=lambda q: float((q["w"] ** 2).sum()), grad=lambda q: {"w": 2 * q["w"] * (1 + 1e-5)}
    )
"""


def test_safety_sets_the_margin_a_probe_needs_to_fail(tmp_path):
    (tmp_path / "m.py").write_text(SLIGHTLY_OFF)
    strict = CliRunner().invoke(main, ["verify", str(tmp_path / "m.py"), "--no-flow"])
    assert strict.exit_code == 1 and "FAIL" in strict.output
    lenient = CliRunner().invoke(main, ["verify", str(tmp_path / "m.py"), "--no-flow", "--safety", "1e6"])
    assert lenient.exit_code == 0 and "FAIL" not in lenient.output
    by_env = CliRunner().invoke(main, ["verify", str(tmp_path / "m.py"), "--no-flow"], env={"RNNCHECK_SAFETY": "1e6"})
    assert by_env.exit_code == 0
    bad = CliRunner().invoke(main, ["verify", str(tmp_path / "m.py"), "--safety", "0"])
    assert bad.exit_code == 2 and "positive" in bad.output


def test_tolerances_are_one_object_that_options_carry():
    tol = rnncheck.Tolerances()
    assert tol.safety == 4.0 and rnncheck.Options().tolerances == tol
    assert rnncheck.Options(safety=8).tolerances.safety == 8
    assert rnncheck.Options(tolerances=tol.replace(useless_bound=0.2)).tolerances.useless_bound == 0.2
    for bad in (lambda: rnncheck.Tolerances(safety=0), lambda: rnncheck.Options(tolerances={"safety": 4})):
        with pytest.raises(ValueError):
            bad()


def test_python_values_and_text_meet_one_parser_per_kind_with_the_declared_range():
    """Options(...), the environment and the command line refuse the same values, from the one declaration."""
    from rnncheck.options import PARSERS, SPECS  # the declaration itself

    assert {s.kind for s in SPECS} <= set(PARSERS)
    ranged = [s for s in SPECS if s.kind == "int" and s.minimum is not None]
    assert {s.field for s in ranged} >= {"seed", "probes", "threads", "horizon"}
    for spec in ranged:
        outside = [spec.minimum - 1] + ([spec.maximum + 1] if spec.maximum is not None else [])
        for value in outside:
            with pytest.raises(ValueError, match=f"{spec.field} must be a whole number"):
                rnncheck.Options(**{spec.field: value})
            by_env = CliRunner().invoke(main, ["verify", "x.py"], env={spec.env: str(value)})
            assert by_env.exit_code == 2 and f"{spec.env}: {spec.key} must be a whole number" in by_env.output
            result = CliRunner().invoke(main, ["verify", spec.cli, str(value), "x.py"])
            assert result.exit_code == 2 and f"{spec.key} must be a whole number" in result.output
        assert rnncheck.Options(**{spec.field: spec.minimum}) is not None  # the bound itself is inside
