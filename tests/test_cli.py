"""The command line: exit codes, one-line messages for bad input, JSON, -k, plain output."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from click.testing import CliRunner

from rnncheck import main

GOOD = """
import numpy as np
import rnncheck

def _quad(scale):
    p = {"w": np.array([1.0, -2.0, 0.5])}
    return rnncheck.NumpyCase(p, loss=lambda q: float((q["w"] ** 2).sum()), grad=lambda q: {"w": scale * 2 * q["w"]})

@rnncheck.case
def good_quadratic():
    return _quad(1.0)

@rnncheck.case
def bad_quadratic():
    return _quad(0.5)
"""


def write(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def run(*args):
    result = CliRunner().invoke(main, ["verify", *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_exit_code_1_when_a_case_fails_and_0_when_all_pass(tmp_path):
    f = write(tmp_path, "models.py", GOOD)
    code, out = run(f)
    assert code == 1
    assert "PASS" in out and "FAIL" in out and "1 passed, 0 warned, 1 failed, 0 errors" in out
    code, out = run(f, "-k", "good")
    assert code == 0 and "bad_quadratic" not in out


def test_keyword_expression_selects_like_pytest(tmp_path):
    f = write(tmp_path, "models.py", GOOD)
    code, out = run(f, "-k", "quadratic and not bad")
    assert code == 0 and "good_quadratic" in out and "bad_quadratic" not in out
    code, out = run(f, "-k", "(good or bad) and not quad")
    assert code == 5 and "collected, none selected" in out
    code, out = run(f, "-k", "good and (")
    assert code == 2 and "-k" in out


def test_missing_file_is_a_usage_error(tmp_path):
    code, out = run(str(tmp_path / "nope.py"))
    assert code == 2
    assert out.strip().splitlines() == [f"rnncheck: error: {tmp_path / 'nope.py'}: no such file or folder"]


def test_file_without_cases_is_a_usage_error_when_alone(tmp_path):
    f = write(tmp_path, "empty.py", "x = 1\n")
    code, out = run(f)
    assert code == 2 and "no cases found" in out


def test_syntax_error_in_one_file_does_not_stop_the_others(tmp_path):
    good = write(tmp_path, "a_models.py", GOOD)
    broken = write(tmp_path, "b_broken.py", "def oops(:\n")
    code, out = run(good, broken, "-k", "good")
    assert code == 1
    assert "good_quadratic" in out
    line = next(l for l in out.splitlines() if "syntax error" in l)
    assert "line 1" in line and "Traceback" not in out


def test_import_error_is_one_line(tmp_path):
    f = write(tmp_path, "imp.py", "import no_such_module_here\n")
    code, out = run(f)
    assert code == 1
    assert "import failed: ModuleNotFoundError" in out and "Traceback" not in out


BAD_CASES = """
import numpy as np
import torch
import rnncheck

P = {"w": np.array([1.0, 2.0])}

@rnncheck.case
def raises():
    raise ValueError("the data file is missing")

@rnncheck.case
def returns_wrong_type():
    return 42

@rnncheck.case
def vector_loss():
    return rnncheck.NumpyCase(P, loss=lambda p: p["w"] * 2, grad=lambda p: {"w": p["w"]})

@rnncheck.case
def nan_loss():
    return rnncheck.NumpyCase(P, loss=lambda p: float("nan"), grad=lambda p: {"w": p["w"]})

@rnncheck.case
def dropout_loss():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5))
    return rnncheck.TorchCase(model, inputs=(torch.randn(3, 4),))

@rnncheck.case
def missing_key():
    return rnncheck.NumpyCase({"w": np.ones(2), "b": np.ones(2)}, loss=lambda p: float(p["w"].sum() + p["b"].sum()),
                              grad=lambda p: {"w": np.ones(2)})

@rnncheck.case
def extra_key():
    return rnncheck.NumpyCase(P, loss=lambda p: float(p["w"].sum()), grad=lambda p: {"w": np.ones(2), "v": np.ones(2)})

@rnncheck.case
def wrong_shape():
    return rnncheck.NumpyCase(P, loss=lambda p: float(p["w"].sum()), grad=lambda p: {"w": np.ones(3)})

@rnncheck.case
def integer_params():
    return rnncheck.NumpyCase({"w": np.array([1, 2])}, loss=lambda p: float(p["w"].sum()), grad=lambda p: {"w": np.ones(2)})

@rnncheck.case
def grad_raises():
    return rnncheck.NumpyCase(P, loss=lambda p: float(p["w"].sum()), grad=lambda p: 1 / 0)

@rnncheck.case
def fine():
    return rnncheck.NumpyCase(P, loss=lambda p: float((p["w"] ** 2).sum()), grad=lambda p: {"w": 2 * p["w"]})
"""

EXPECTED_MESSAGES = {
    "raises": "case function raises() raised ValueError: the data file is missing",
    "returns_wrong_type": "returned int: return an rnncheck.TorchCase, NumpyCase or CellCase",
    "vector_loss": "not a scalar",
    "nan_loss": "the loss is nan",
    "dropout_loss": "nondeterministic",
    "missing_key": "missing ['b']",
    "extra_key": "unexpected ['v']",
    "wrong_shape": "has shape (3,) but params['w'] has (2,)",
    "integer_params": "has dtype int64",
    "grad_raises": "grad() raised ZeroDivisionError",
}


def test_every_bad_case_gets_its_own_one_line_error_and_the_rest_still_run(tmp_path):
    f = write(tmp_path, "bad.py", BAD_CASES)
    code, out = run(f, "--json", str(tmp_path / "r.json"))
    assert code == 1
    assert "Traceback" not in out
    report = json.loads((tmp_path / "r.json").read_text())
    by_name = {c["name"]: c for c in report["cases"]}
    assert by_name["fine"]["verdict"] == "pass"
    for name, expected in EXPECTED_MESSAGES.items():
        case = by_name[name]
        assert case["verdict"] == "error", name
        assert expected in case["error"], (name, case["error"])
        assert "\n" not in case["error"]
        assert any(expected in line for line in out.splitlines()), name
    assert report["summary"] == {"pass": 1, "warn": 0, "fail": 0, "error": len(EXPECTED_MESSAGES)}


def test_debug_shows_the_users_traceback(tmp_path):
    f = write(tmp_path, "bad.py", BAD_CASES)
    code, out = run(f, "-k", "raises and not grad", "--debug")
    assert code == 1 and "Traceback" in out and "the data file is missing" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_device_cuda_without_gpu_is_a_usage_error(tmp_path):
    f = write(tmp_path, "models.py", GOOD)
    code, out = run(f, "--device", "cuda")
    assert code == 2
    assert "no CUDA device is available" in out and len(out.strip().splitlines()) == 1


def test_a_case_past_its_budget_is_an_error_that_names_the_budget(tmp_path):
    f = write(
        tmp_path,
        "slow.py",
        """
        import time
        import numpy as np
        import rnncheck

        def slow_loss(p):
            time.sleep(0.05)
            return float((p["w"] ** 2).sum())

        @rnncheck.case
        def slow():
            return rnncheck.NumpyCase({"w": np.ones(3)}, loss=slow_loss, grad=lambda p: {"w": 2 * p["w"]})
        """,
    )
    code, out = run(f, "--budget", "0.1")
    assert code == 1
    assert "ran past its budget of 0.1 s" in out and "raise --budget" in out


def test_json_to_stdout_has_the_documented_shape(tmp_path):
    f = write(tmp_path, "models.py", GOOD)
    result = CliRunner().invoke(main, ["verify", f, "--json", "-"])
    start = result.stdout.index("{")
    report = json.loads(result.stdout[start:])
    assert set(report) >= {"cases", "summary", "meta", "format"}
    case = report["cases"][0]
    assert set(case) >= {"name", "file", "verdict", "checks", "seconds", "diagnostics"}
    assert case["diagnostics"]["gradient_flow"] is None
    assert report["summary"] == {"pass": 1, "warn": 0, "fail": 1, "error": 0}


def test_help_teaches_the_exit_codes_and_options():
    result = CliRunner().invoke(main, ["verify", "--help"])
    assert result.exit_code == 0
    for word in ("--budget", "--full", "-k", "--json", "Exit codes", "rnncheck verify examples/article_rnn.py"):
        assert word in result.output


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and "rnncheck, version" in result.output


def test_plain_output_when_not_a_terminal(tmp_path):
    f = write(tmp_path, "models.py", GOOD)
    _, out = run(f)
    assert "\x1b[" not in out  # no colour codes


def test_help_and_version_answer_without_importing_torch():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from rnncheck.cli import main\n"
        "for args in (['--version'], ['--help'], ['verify', '--help'], ['diagnose', '--help']):\n"
        "    try:\n"
        "        main.main(args, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO TORCH')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.strip().endswith("NO TORCH") and "Usage:" in out


def test_k_matching_nothing_exits_5_saying_how_many_were_collected(tmp_path):
    model = tmp_path / "m.py"
    model.write_text(
        "import numpy as np\nimport rnncheck\n\n\n@rnncheck.case\ndef quad():\n"
        "    return rnncheck.NumpyCase({'w': np.ones(2)}, lambda p: float((p['w'] ** 2).sum()), lambda p: {'w': 2 * p['w']})\n"
    )
    result = CliRunner().invoke(main, ["verify", str(model), "-k", "lstm"])
    assert result.exit_code == 5
    assert "1 case(s) collected, none selected: no case name matches -k 'lstm'" in result.output


def test_spectral_prints_each_blocks_numbers_and_pascanus_bound_only_on_request(tmp_path):
    f = write(
        tmp_path,
        "rnn_half.py",
        """
        import torch
        import rnncheck

        @rnncheck.case
        def half():
            model = torch.nn.RNN(2, 4).double()
            with torch.no_grad():
                model.weight_hh_l0.copy_(0.5 * torch.eye(4))
            return rnncheck.TorchCase(model, inputs=(torch.randn(6, 1, 2, dtype=torch.float64),))
        """,
    )
    plain = CliRunner().invoke(main, ["diagnose", str(f)])
    asked = CliRunner().invoke(main, ["diagnose", str(f), "--spectral"])
    assert plain.exit_code == asked.exit_code == 0, asked.output
    assert "spectral:" not in plain.output
    assert "sigma_max 0.5, radius 0.5; sigma_max*gamma 0.5: vanishing guaranteed (Pascanu et al.)" in asked.output
