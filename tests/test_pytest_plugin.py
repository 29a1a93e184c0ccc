"""The pytest plugin, tested with pytest's own pytester: collection, verdicts, failure text, marker, xdist, gate."""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]

MODELS = """
import numpy as np
import rnncheck

def _quad(scale):
    p = {"w": np.array([1.0, -2.0, 0.5, 3.0])}
    return rnncheck.NumpyCase(p, loss=lambda q: float((q["w"] ** 3).sum()), grad=lambda q: {"w": scale * 3 * q["w"] ** 2})

@rnncheck.case
def good_cubic():
    return _quad(1.0)

@rnncheck.case
def bad_cubic():
    return _quad(2.0)
"""

LSTM_MODEL = """
import torch
import rnncheck

SCALE = {scale}

@rnncheck.case
def small_lstm():
    torch.manual_seed(0)
    model = torch.nn.LSTM(3, 6).double()
    with torch.no_grad():
        model.weight_hh_l0.mul_(SCALE)
    x = torch.randn(8, 2, 3, dtype=torch.float64)
    return rnncheck.TorchCase(model, inputs=(x,))
"""


def _update_baseline_under_xdist(pytester, folder: str):
    """``pytest --rnncheck FOLDER -n 2`` recording into base.json, in a fresh process."""
    return pytester.runpytest_subprocess(
        "--rnncheck",
        folder,
        "-n",
        "2",
        "--rnncheck-baseline",
        "base.json",
        "--rnncheck-update-baseline",
        "-p",
        "no:cacheprovider",
    )


@pytest.fixture
def models(pytester):
    pytester.mkdir("models")
    (pytester.path / "models" / "quad.py").write_text(MODELS)
    return pytester


def test_collects_each_case_as_an_item_named_file_case(models):
    result = models.runpytest("--rnncheck", "models", "--collect-only", "-q", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["models/quad.py::good_cubic", "models/quad.py::bad_cubic"])


def test_pass_and_fail_with_the_rnncheck_table_not_a_traceback(models):
    result = models.runpytest("--rnncheck", "models", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "rnncheck case bad_cubic" in out
    assert "FAIL" in out and "mismatch" in out and "the analytic gradient is 2× the true one" in out
    assert "Traceback" not in out and "rnncheck/runner.py" not in out


def test_k_x_and_junitxml_work_on_the_items(models):
    result = models.runpytest("--rnncheck", "models", "-k", "good", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result = models.runpytest("--rnncheck", "models", "-x", "-p", "no:cacheprovider")
    assert result.ret == 1
    models.runpytest("--rnncheck", "models", "--junitxml=out.xml", "-p", "no:cacheprovider")
    xml = (models.path / "out.xml").read_text()
    assert 'name="bad_cubic"' in xml and "<failure" in xml


def test_fixture_verify_and_assert_ok(pytester):
    pytester.makepyfile(
        test_uses_fixture="""
        import numpy as np
        import rnncheck as rc

        def case(scale):
            return rc.NumpyCase({"w": np.ones(3)}, loss=lambda p: float((p["w"] ** 2).sum()), grad=lambda p: {"w": scale * 2 * p["w"]})

        def test_verify_returns_the_result(rnncheck):
            result = rnncheck.verify(case(1.0))
            assert result.verdict == "pass"

        def test_assert_ok_fails_with_the_table(rnncheck):
            rnncheck.assert_ok(case(-1.0))
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "mismatch" in out and "sign flipped" in out
    assert "Traceback" not in out


def test_marker_sets_options(pytester):
    pytester.makepyfile(
        test_marker="""
        import numpy as np
        import pytest
        import rnncheck as rc

        @pytest.mark.rnncheck(probes=5, seed=7)
        def test_probes(rnncheck):
            case = rc.NumpyCase({"w": np.ones(3)}, loss=lambda p: float((p["w"] ** 2).sum()), grad=lambda p: {"w": 2 * p["w"]})
            result = rnncheck.verify(case)
            gradient = next(c for c in result.checks if c.name == "gradient")
            assert gradient.summary.probes == 5

        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=0, failed=0)
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.rnncheck(nonsense=1)
        def test_bad_option(rnncheck):
            rnncheck.verify(None)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "test_bad.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # one line at collection, before any test runs
    assert "unknown option 'nonsense'" in result.stdout.str() + result.stderr.str()


def test_xdist_gives_the_same_results_as_a_serial_run(models):
    serial = models.runpytest_subprocess("--rnncheck", "models", "-p", "no:cacheprovider")
    serial.assert_outcomes(passed=1, failed=1)
    parallel = models.runpytest_subprocess("--rnncheck", "models", "-n", "2", "-p", "no:cacheprovider")
    parallel.assert_outcomes(passed=1, failed=1)
    assert "bad_cubic" in parallel.stdout.str()


def _write_model(pytester, scale):
    pytester.mkdir("gated") if not (pytester.path / "gated").exists() else None
    (pytester.path / "gated" / "lstm.py").write_text(LSTM_MODEL.format(scale=scale))


def test_gate_in_pytest_passes_unchanged_and_fails_a_changed_model(pytester):
    _write_model(pytester, 1.0)
    write = pytester.runpytest(
        "--rnncheck",
        "gated",
        "--rnncheck-baseline",
        "base.json",
        "--rnncheck-update-baseline",
        "-p",
        "no:cacheprovider",
    )
    write.assert_outcomes(passed=1)
    data = json.loads((pytester.path / "base.json").read_text())
    assert "gated/lstm.py::small_lstm" in data["cases"]
    same = pytester.runpytest("--rnncheck", "gated", "--rnncheck-baseline", "base.json", "-p", "no:cacheprovider")
    same.assert_outcomes(passed=1)
    _write_model(pytester, 1.5)
    moved = pytester.runpytest("--rnncheck", "gated", "--rnncheck-baseline", "base.json", "-p", "no:cacheprovider")
    moved.assert_outcomes(failed=1)
    assert "baseline_drift" in moved.stdout.str() and "log10 gradient norm of weight_hh_l0" in moved.stdout.str()


def test_baseline_update_under_xdist_writes_every_case_into_one_file(pytester):
    pytester.mkdir("many")
    for k in range(4):
        (pytester.path / "many" / f"m{k}.py").write_text(
            "import numpy as np\nimport rnncheck\n\n@rnncheck.case\n"
            f"def quad_{k}():\n"
            f"    p = {{'w': np.ones(3) * {k + 1}}}\n"
            "    return rnncheck.NumpyCase(p, loss=lambda q: float((q['w'] ** 2).sum()), grad=lambda q: {'w': 2 * q['w']})\n"
        )
    write = _update_baseline_under_xdist(pytester, "many")
    write.assert_outcomes(passed=4)
    stored = json.loads((pytester.path / "base.json").read_text())["cases"]
    assert sorted(stored) == [f"many/m{k}.py::quad_{k}" for k in range(4)]
    check = pytester.runpytest_subprocess(
        "--rnncheck", "many", "-n", "2", "--rnncheck-baseline", "base.json", "-p", "no:cacheprovider"
    )
    check.assert_outcomes(passed=4)


def test_timeout_as_a_command_line_option_and_a_marker_option(pytester):
    pytester.mkdir("hung")
    (pytester.path / "hung" / "spin.py").write_text(
        "import numpy as np\nimport rnncheck\n\ndef spin(p):\n    while True:\n        pass\n\n"
        "@rnncheck.case\ndef spins():\n"
        "    return rnncheck.NumpyCase({'w': np.ones(2)}, loss=spin, grad=lambda p: {'w': p['w']})\n"
    )
    result = pytester.runpytest("--rnncheck", "hung", "--rnncheck-timeout", "0.5", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert "ran past --timeout 0.5 s in loss()" in result.stdout.str()
    pytester.makepyfile(
        test_marker_timeout="""
        import numpy as np
        import pytest
        import rnncheck as rc

        def spin(p):
            while True:
                pass

        @pytest.mark.rnncheck(timeout=0.5)
        def test_spins(rnncheck):
            result = rnncheck.verify(rc.NumpyCase({"w": np.ones(2)}, loss=spin, grad=lambda p: {"w": p["w"]}))
            assert result.verdict == "error" and "ran past --timeout 0.5 s" in result.error

        @pytest.mark.rnncheck(probes=0)
        def test_bad_value(rnncheck):
            rnncheck.verify(None)
        """
    )
    result = pytester.runpytest("test_marker_timeout.py", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    assert "probes must be a whole number from 1 to 64" in result.stdout.str()


def test_the_short_summary_names_the_finding_and_a_relative_path(models):
    result = models.runpytest("--rnncheck", "models", "-p", "no:cacheprovider", "-rf")
    line = next(s for s in result.stdout.lines if s.startswith("FAILED "))
    assert line.startswith("FAILED models/quad.py::bad_cubic - hint: ") or line.startswith(
        "FAILED models/quad.py::bad_cubic - mismatch: "
    ), line
    assert str(models.path) not in line and ": fail" not in line


def test_a_marker_keyword_typo_gets_a_did_you_mean(pytester):
    pytester.makepyfile(
        test_typo="""
        import numpy as np
        import pytest
        import rnncheck as rc

        @pytest.mark.rnncheck(probs=5)
        def test_it(rnncheck):
            rnncheck.verify(rc.NumpyCase({"w": np.ones(2)}, lambda p: float(p["w"].sum()), lambda p: {"w": np.ones(2)}))
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown option 'probs'; did you mean 'probes'?" in result.stdout.str() + result.stderr.str()


def test_junit_classname_is_the_same_from_the_command_and_from_pytest(models):
    import xml.etree.ElementTree as ET

    from click.testing import CliRunner

    from rnncheck import main

    models.runpytest("--rnncheck", "models", "-p", "no:cacheprovider", "--junitxml", "pytest.xml")
    CliRunner().invoke(main, ["verify", "models", "--junit-xml", "cli.xml"])

    def classnames(path):
        return {tc.get("name"): tc.get("classname") for tc in ET.parse(models.path / path).iter("testcase")}

    from_pytest, from_cli = classnames("pytest.xml"), classnames("cli.xml")
    assert from_pytest["good_cubic"] == from_cli["good_cubic"] == "models.quad"
    assert from_pytest["bad_cubic"] == from_cli["bad_cubic"]


def test_a_case_that_kills_an_xdist_worker_is_reported_as_pytest_reports_it_and_the_baseline_keeps_the_rest(pytester):
    """Under pytest the isolation is pytest-xdist's: the crash is that test's failure, the other tests run,
    and every case recorded before or after the crash is in the baseline."""
    pytester.mkdir("crashy")
    quad = (
        "import ctypes, os\nimport numpy as np\nimport rnncheck\n\n"
        "def quad(k):\n"
        "    p = {'w': np.ones(3) * k}\n"
        "    return rnncheck.NumpyCase(p, loss=lambda q: float((q['w'] ** 2).sum()), grad=lambda q: {'w': 2 * q['w']})\n"
    )
    body = "".join(f"\n@rnncheck.case\ndef quad_{k}():\n    return quad({k + 1})\n" for k in range(3))
    crash = "\n@rnncheck.case\ndef segfault():\n    ctypes.string_at(0)\n"
    (pytester.path / "crashy" / "m.py").write_text(quad + body + crash + body.replace("quad_", "later_"))
    result = _update_baseline_under_xdist(pytester, "crashy")
    result.assert_outcomes(passed=6, failed=1)
    text = result.stdout.str()
    assert "crashy/m.py::segfault" in text and "crashed" in text
    stored = json.loads((pytester.path / "base.json").read_text())["cases"]
    assert len(stored) == 6 and "crashy/m.py::segfault" not in stored
