"""A run never lies: whatever a model file's code does (exit, interrupt, hang, print, change
global state), every other case is checked and reported, and the exit code says so.

Each test writes a small model file that does the bad thing and runs the real command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from click.testing import CliRunner
from helpers import MODELS

import rnncheck
from rnncheck import main

FINE = """
@rnncheck.case
def fine():
    p = {"w": np.array([1.0, -2.0, 0.5])}
    return rnncheck.NumpyCase(p, loss=lambda q: float((q["w"] ** 2).sum()), grad=lambda q: {"w": 2 * q["w"]})
"""

HEADER = "import sys, os, time\nimport numpy as np\nimport torch\nimport rnncheck\n"


def model(tmp_path, body, name="models.py", fine=True):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + (FINE if fine else "") + textwrap.dedent(body))
    return str(path)


def run(*args, command="verify"):
    result = CliRunner().invoke(main, [command, *map(str, args)], catch_exceptions=False)
    return result.exit_code, result.output


def cases_of(path):
    return {c["name"]: c for c in json.loads(Path(path).read_text())["cases"]}


# --- exits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where, body",
    [
        ("case function", "@rnncheck.case\ndef exits():\n    sys.exit(0)\n"),
        (
            "loss()",
            "@rnncheck.case\ndef exits():\n    return rnncheck.NumpyCase({'w': np.ones(2)}, "
            "loss=lambda p: sys.exit(0), grad=lambda p: {'w': np.ones(2)})\n",
        ),
        (
            "grad()",
            "@rnncheck.case\ndef exits():\n    return rnncheck.NumpyCase({'w': np.ones(2)}, "
            "loss=lambda p: float(p['w'].sum()), grad=lambda p: sys.exit(0))\n",
        ),
        (
            "forward",
            "class M(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            "        self.w = torch.nn.Parameter(torch.ones(2))\n    def forward(self, x):\n        sys.exit(0)\n"
            "@rnncheck.case\ndef exits():\n    return rnncheck.TorchCase(M(), inputs=(torch.ones(2),))\n",
        ),
    ],
)
def test_sys_exit_0_in_a_case_is_that_cases_error_and_the_run_exits_1(tmp_path, where, body):
    f = model(tmp_path, body)
    code, out = run(f, "--json", tmp_path / "r.json", "--junit-xml", tmp_path / "r.xml")
    assert code == 1, out
    cases = cases_of(tmp_path / "r.json")
    assert cases["fine"]["verdict"] == "pass"
    assert cases["exits"]["verdict"] == "error"
    assert "called sys.exit(0)" in cases["exits"]["error"] and where.split()[0] in cases["exits"]["error"]
    assert "called sys.exit(0)" in out and "1 passed" in out
    suite = ET.parse(tmp_path / "r.xml").getroot()
    assert len(suite.findall(".//testcase")) == 2 and len(suite.findall(".//error")) == 1


def test_sys_exit_while_importing_a_file_is_that_files_error_not_a_usage_error(tmp_path):
    script = model(
        tmp_path,
        "import argparse\nargparse.ArgumentParser().parse_args(['--no-such-flag'])\n",
        name="script_with_argparse.py",
        fine=False,
    )
    good = model(tmp_path, "", name="good.py")
    code, out = run(script, good)
    assert code == 1, out
    line = next(l for l in out.splitlines() if "script_with_argparse.py" in l and "sys.exit" in l)
    assert "called sys.exit(2)" in line and "if __name__ == '__main__'" in line
    assert "1 passed" in out and "1 errors" in out
    assert "Usage: rnncheck" not in out and "rnncheck: error" not in out  # the file's exit is not rnncheck's


# --- interrupts ------------------------------------------------------------------------------


def test_keyboard_interrupt_stops_the_run_and_writes_a_partial_report_marked_interrupted(tmp_path):
    f = model(
        tmp_path,
        """
        @rnncheck.case
        def a_first():
            p = {"w": np.ones(2)}
            return rnncheck.NumpyCase(p, loss=lambda q: float((q["w"] ** 2).sum()), grad=lambda q: {"w": 2 * q["w"]})

        def stop(p):
            raise KeyboardInterrupt

        @rnncheck.case
        def b_interrupts():
            return rnncheck.NumpyCase({"w": np.ones(2)}, loss=stop, grad=lambda q: {"w": q["w"]})

        @rnncheck.case
        def c_never_runs():
            raise AssertionError("must not be reached")
        """,
        fine=False,
    )
    code, out = run(f, "--json", tmp_path / "r.json", "--junit-xml", tmp_path / "r.xml")
    assert code == 2, out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["meta"]["interrupted"] is True
    assert [c["name"] for c in report["cases"]] == ["a_first"]
    assert "interrupted" in out and "a_first" in out and "c_never_runs" not in out
    xml = ET.parse(tmp_path / "r.xml").getroot()
    assert xml.find(".//testcase").get("name") == "a_first"
    assert xml.find(".//property[@name='interrupted']").get("value") == "true"


SLOW = """
def slow(p):
    time.sleep(60)
    return 0.0

@rnncheck.case
def zz_slow():
    return rnncheck.NumpyCase({"w": np.ones(2)}, loss=slow, grad=lambda q: {"w": q["w"]})
"""


def start_fine_then_slow(tmp_path, *args):
    """`rnncheck verify` in a subprocess on a file whose first case is quick and whose second sleeps a minute."""
    f = model(tmp_path, SLOW)
    return subprocess.Popen(
        [sys.executable, "-m", "rnncheck", "verify", f, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_ctrl_c_from_outside_still_writes_the_report(tmp_path):
    proc = start_fine_then_slow(tmp_path, "--json", tmp_path / "r.json")
    seen = ""
    for line in proc.stdout:  # the first case prints as soon as it finishes
        seen += line
        if "fine" in line:
            break
    time.sleep(1.0)
    proc.send_signal(2)  # SIGINT, as Ctrl-C
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, seen + rest
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["meta"]["interrupted"] is True and [c["name"] for c in report["cases"]] == ["fine"]


# --- hangs -----------------------------------------------------------------------------------


HANGS = """
def spin(p):
    while True:
        pass

@rnncheck.case
def hangs_in_loss():
    return rnncheck.NumpyCase({"w": np.ones(2)}, loss=spin, grad=lambda q: {"w": q["w"]})

def swallow(p):
    while True:
        try:
            time.sleep(0.01)
        except Exception:
            pass

@rnncheck.case
def hangs_and_swallows_exceptions():
    return rnncheck.NumpyCase({"w": np.ones(2)}, loss=lambda q: float(q["w"].sum()), grad=swallow)

@rnncheck.case
def hangs_while_building():
    while True:
        pass
"""


def test_timeout_stops_a_hung_case_names_where_it_hung_and_the_run_goes_on(tmp_path):
    f = model(tmp_path, HANGS)
    code, out = run(f, "--timeout", "0.5", "--json", tmp_path / "r.json")
    assert code == 1, out
    cases = cases_of(tmp_path / "r.json")
    assert cases["fine"]["verdict"] == "pass"
    for name, where in (
        ("hangs_in_loss", "in loss()"),
        ("hangs_and_swallows_exceptions", "in grad()"),
        ("hangs_while_building", "in case function hangs_while_building()"),
    ):
        error = cases[name]["error"]
        assert cases[name]["verdict"] == "error"
        assert "ran past --timeout 0.5 s" in error and where in error, error
        assert "models.py:" in error, error  # the user's own line
        assert cases[name]["seconds"] < 30


def test_timeout_holds_while_a_model_file_is_imported(tmp_path):
    hung = model(tmp_path, "while True:\n    pass\n", name="hangs_on_import.py", fine=False)
    good = model(tmp_path, "", name="good.py")
    code, out = run(hung, good, "--timeout", "0.5")
    assert code == 1 and "importing the file ran past --timeout 0.5 s" in out and "1 passed" in out


def test_diagnose_keeps_to_its_budget(tmp_path):
    f = model(
        tmp_path,
        """
        @rnncheck.case
        def long_lstm():
            torch.manual_seed(0)
            return rnncheck.TorchCase(torch.nn.LSTM(4, 16, num_layers=3), inputs=(torch.randn(40, 2, 4),))
        """,
        fine=False,
    )
    code, out = run(f, "--budget", "1e-9", "--lyapunov", "--json", tmp_path / "r.json", command="diagnose")
    case = cases_of(tmp_path / "r.json")["long_lstm"]
    assert case["verdict"] == "error" and "ran past its budget" in case["error"], case["error"]


def test_diagnose_skips_the_costly_extras_when_the_budget_cannot_hold_them(tmp_path):
    f = model(
        tmp_path,
        """
        @rnncheck.case
        def deep_lstm():
            torch.manual_seed(0)
            return rnncheck.TorchCase(torch.nn.LSTM(4, 16, num_layers=2), inputs=(torch.randn(30, 2, 4),))
        """,
        fine=False,
    )
    code, out = run(f, "--lyapunov", "--json", tmp_path / "r.json", command="diagnose")
    layers = cases_of(tmp_path / "r.json")["deep_lstm"]["diagnostics"]["layers"]
    assert all("not_computed" not in layer["lyapunov"] for layer in layers)


# --- streaming ----------------------------------------------------------------------------


def test_results_stream_as_each_case_finishes_when_stdout_is_a_pipe(tmp_path):
    proc = start_fine_then_slow(tmp_path)
    try:
        line = ""
        while "fine" not in line:
            line = proc.stdout.readline()
            assert line, "the output ended before the first case was shown"
        assert line.startswith("PASS") and proc.poll() is None  # shown while the slow case still runs
    finally:
        proc.kill()
        proc.communicate()


# --- global state ----------------------------------------------------------------------------


STATEFUL = """
import random

@rnncheck.case
def a_changes_everything():
    os.chdir("/")
    torch.set_default_dtype(torch.float64)
    torch.set_grad_enabled(False)
    torch.autograd.set_detect_anomaly(True)
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    p = {"w": np.ones(2)}
    return rnncheck.NumpyCase(p, loss=lambda q: float((q["w"] ** 2).sum()), grad=lambda q: {"w": 2 * q["w"]})

@rnncheck.case
def b_sees_a_clean_world():
    seen = {
        "dtype": str(torch.get_default_dtype()),
        "grad": torch.is_grad_enabled(),
        "anomaly": torch.is_anomaly_enabled(),
        "cwd": os.getcwd(),
    }
    Path(os.environ["RNNCHECK_TEST_SEEN"]).write_text(json.dumps(seen))
    p = {"w": np.ones(2)}
    return rnncheck.NumpyCase(p, loss=lambda q: float((q["w"] ** 2).sum()), grad=lambda q: {"w": 2 * q["w"]})
"""


def test_global_state_is_restored_after_each_case_and_reports_stay_where_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RNNCHECK_TEST_SEEN", str(tmp_path / "seen.json"))
    f = model(tmp_path, "import json\nfrom pathlib import Path\n" + STATEFUL, fine=False)
    import random

    import numpy as np
    import torch

    np.random.seed(7)
    expected_np = np.random.get_state()[1].copy()
    random.seed(7)
    expected_py = random.getstate()
    code, out = run(f, "--json", "r.json", "--junit-xml", "r.xml")
    assert code == 0, out
    assert (tmp_path / "r.json").exists() and (tmp_path / "r.xml").exists()  # not under /
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen == {"dtype": "torch.float32", "grad": True, "anomaly": False, "cwd": str(tmp_path)}
    assert os.getcwd() == str(tmp_path) and torch.get_default_dtype() == torch.float32
    assert (np.random.get_state()[1] == expected_np).all() and random.getstate() == expected_py
    note = cases_of(tmp_path / "r.json")["a_changes_everything"]["findings"]
    assert any("working directory" in f["message"] and "default dtype" in f["message"] for f in note)


# --- each check isolated ---------------------------------------------------------------------


def test_an_exception_inside_one_check_keeps_the_others_results(tmp_path):
    models = MODELS  # numpy_rnn.py: a plain RNN with its hand-written BPTT
    f = model(
        tmp_path,
        f"""
        sys.path.insert(0, {str(models)!r})
        from numpy_rnn import P, X, grad, loss

        def head(h, p):
            raise RuntimeError("head is broken")

        @rnncheck.case
        def broken_head():
            return rnncheck.NumpyCase(P, loss, grad, reference="rnn_tanh", inputs=X, head=head)
        """,
        fine=False,
    )
    code, out = run(f, "--json", tmp_path / "r.json")
    case = cases_of(tmp_path / "r.json")["broken_head"]
    checks = {c["name"]: c for c in case["checks"]}
    assert checks["gradient"]["verdict"] == "pass"  # kept
    assert checks["reference"]["verdict"] == "error"
    assert "head is broken" in checks["reference"]["findings"][0]["message"]
    assert case["verdict"] == "error" and code == 1
    assert "Traceback" not in out and "PASS" not in out.splitlines()[0]


# --- prints ----------------------------------------------------------------------------------


def test_json_to_stdout_stays_valid_json_when_the_model_prints(tmp_path):
    f = model(
        tmp_path,
        """
        print("importing the chatty model")

        def chatty_loss(p):
            print("loss is being computed")
            return float((p["w"] ** 2).sum())

        @rnncheck.case
        def chatty():
            print("building")
            return rnncheck.NumpyCase({"w": np.ones(3)}, loss=chatty_loss, grad=lambda q: {"w": 2 * q["w"]})
        """,
    )
    proc = subprocess.run(
        [sys.executable, "-m", "rnncheck", "verify", f, "--json", "-"], capture_output=True, text=True, timeout=300
    )
    report = json.loads(proc.stdout)  # the whole of stdout, nothing else
    assert {c["name"] for c in report["cases"]} == {"chatty", "fine"}
    assert "loss is being computed" in proc.stderr and proc.returncode == 0


def test_junit_xml_to_stdout(tmp_path):
    f = model(tmp_path, "")
    proc = subprocess.run(
        [sys.executable, "-m", "rnncheck", "verify", f, "--junit-xml", "-"], capture_output=True, text=True, timeout=300
    )
    assert ET.fromstring(proc.stdout).find(".//testcase").get("name") == "fine"
    assert "1 passed" in proc.stderr


def test_control_characters_and_lone_surrogates_are_escaped_in_junit_and_plain_text(tmp_path):
    f = model(
        tmp_path,
        """
        @rnncheck.case
        def nasty_message():
            raise ValueError("bad \\x00 byte \\x1b[31m red \\udc80 half")
        """,
    )
    code, out = run(f, "--junit-xml", tmp_path / "r.xml")
    assert code == 1
    xml = ET.parse(tmp_path / "r.xml").getroot()  # well-formed
    error = xml.find(".//error").get("message")
    assert "\\x00" in error and "\\x1b" in error and "\\udc80" in error
    line = next(l for l in out.splitlines() if "raised ValueError" in l)
    assert "\x1b" not in line and "\x00" not in line and "\\x1b" in line


# --- collection -----------------------------------------------------------------------------


def test_a_folder_run_imports_only_model_files(tmp_path):
    root = tmp_path / "project"
    model(root, "", name="models/good.py")
    boom = "raise SystemExit('this file must never be imported')\n"
    (root / "setup.py").write_text("import rnncheck\n" + boom)
    (root / "conftest.py").write_text("import rnncheck\n" + boom)
    (root / "train.py").write_text(boom)  # no mention of the tool: a training script
    (root / "uses_the_api.py").write_text("import rnncheck\n" + boom)  # imports it, marks no case
    venv = root / "venv" / "lib"
    venv.mkdir(parents=True)
    (root / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    (venv / "rnn_lib.py").write_text("import rnncheck\n" + boom)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "elsewhere.py").write_text("import rnncheck\n" + boom)
    (root / "link_out.py").symlink_to(outside / "elsewhere.py")
    (root / "linked_dir").symlink_to(outside)
    code, out = run(root)
    assert code == 0, out
    assert "must never be imported" not in out and "1 passed, 0 warned, 0 failed, 0 errors" in out


def test_help_says_which_files_a_folder_run_collects():
    code, out = run("--help")
    assert "mark cases (rnncheck.case or @case" in " ".join(out.split()) and "setup.py" in out


def test_same_named_helpers_in_two_folders_do_not_shadow_each_other(tmp_path):
    for folder, value in (("a", 1.0), ("b", 3.0)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "helpers.py").write_text(f"SCALE = {value}\n")
        model(
            tmp_path,
            f"""
            import helpers

            @rnncheck.case
            def uses_helper_{folder}():
                assert helpers.SCALE == {value}, f"got the other folder's helpers: SCALE={{helpers.SCALE}}"
                p = {{"w": np.ones(2)}}
                return rnncheck.NumpyCase(p, loss=lambda q: float((q["w"] ** 2).sum()), grad=lambda q: {{"w": 2 * q["w"]}})
            """,
            name=f"{folder}/model.py",
            fine=False,
        )
    code, out = run(tmp_path / "a" / "model.py", tmp_path / "b" / "model.py")
    assert code == 0, out
    assert "2 passed" in out


def test_a_model_file_inside_a_package_gets_its_relative_imports_and_its_own_package(tmp_path):
    # a/pkg and b/pkg: two packages of one name, each file importing from its own with "from .layers import"
    for folder, value in (("a", 1.0), ("b", 3.0)):
        pkg = tmp_path / folder / "pkg"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "layers.py").write_text(f"SCALE = {value}\n")
        model(
            tmp_path,
            f"""
            from .layers import SCALE
            from pkg import layers

            @rnncheck.case
            def in_package_{folder}():
                assert SCALE == layers.SCALE == {value}, f"got the other package: SCALE={{SCALE}}"
                p = {{"w": np.ones(2)}}
                return rnncheck.NumpyCase(p, loss=lambda q: float((q["w"] ** 2).sum()), grad=lambda q: {{"w": 2 * q["w"]}})
            """,
            name=f"{folder}/pkg/models.py",
            fine=False,
        )
    code, out = run(tmp_path / "a" / "pkg" / "models.py", tmp_path / "b")
    assert code == 0, out
    assert "2 passed" in out


FACTORY = """
def make(scale):
    @rnncheck.case
    def lstm():
        torch.manual_seed(0)
        return rnncheck.TorchCase(torch.nn.LSTM(2, 3).double(), inputs=(scale * torch.randn(4, 1, 2, dtype=torch.float64),))
    return lstm

for s in (0.5, 1.0, 2.0):
    make(s)
"""


def test_cases_from_one_factory_get_unique_ids_and_an_unchanged_file_passes_its_gate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = model(tmp_path, FACTORY, fine=False)
    code, out = run(f, "--baseline", "base.json", "--update-baseline", "--baseline-repeats", "1", "--no-flow")
    assert code == 0, out
    stored = json.loads((tmp_path / "base.json").read_text())["cases"]
    assert sorted(stored) == ["models.py::lstm[0]", "models.py::lstm[1]", "models.py::lstm[2]"]
    code, out = run(f, "--baseline", "base.json", "--no-flow")
    assert code == 0, out


def test_a_symlink_loop_and_a_binary_file_are_per_file_errors(tmp_path):
    root = tmp_path / "models"
    model(root, "", name="good.py")
    (root / "loop.py").symlink_to(root / "loop.py")
    (root / "blob.py").write_bytes(b"@rnncheck.case\x00\x01\x02binary")
    code, out = run(root, "--json", tmp_path / "r.json")
    assert code == 1, out
    errors = {Path(c["file"]).name: c["error"] for c in json.loads((tmp_path / "r.json").read_text())["cases"]}
    assert "symlink loop" in errors["loop.py"] and "binary file" in errors["blob.py"]
    assert "1 passed" in out and "Traceback" not in out


# --- options checked up front ----------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--plot", "{file}/figs"], "is a file, not a folder"),
        (["--json", "{tmp}/missing/r.json"], "does not exist"),
        (["--junit-xml", "{tmp}/missing/r.xml"], "does not exist"),
        (["--json", "{file}"], "--force"),
        (["--budget", "nan"], "positive number"),
        (["--budget", "-1"], "positive number"),
        (["--timeout", "0"], "positive number"),
        (["--seed", "-5"], "--seed"),
        (["--seed", str(10**23)], "--seed"),
        (["--json", "-", "--junit-xml", "-"], "cannot both go to stdout"),
    ],
)
def test_bad_options_are_usage_errors_before_any_case_runs(tmp_path, args, message):
    marker = tmp_path / "ran.txt"
    f = model(tmp_path, f"Path = __import__('pathlib').Path\nPath({str(marker)!r}).write_text('imported')\n")
    args = [a.format(file=f, tmp=tmp_path) for a in args]
    code, out = run(f, *args)
    assert code == 2, out
    assert message in out and "Traceback" not in out
    assert not marker.exists()  # no user code ran
    assert Path(f).read_text().startswith("import")  # never overwritten


def test_budget_inf_means_no_limit_and_force_lets_json_overwrite(tmp_path):
    f = model(tmp_path, "")
    target = tmp_path / "old.py"
    target.write_text("x = 1\n")
    code, out = run(f, "--budget", "inf", "--json", target, "--force")
    assert code == 0, out
    assert json.loads(target.read_text())["summary"]["pass"] == 1


def test_options_validate_themselves_in_the_library_too():
    for bad in ({"probes": 0}, {"budget": -1}, {"seed": -1}, {"timeout": float("nan")}, {"dtype": "float8"}):
        with pytest.raises(ValueError):
            rnncheck.Options(**bad)
    assert rnncheck.Options(budget=float("inf")).budget is None


# --- the gate and its baseline ----------------------------------------------------------------


NAN_LOSS = """
@rnncheck.case
def nan_loss():
    return rnncheck.NumpyCase({"w": np.ones(2)}, loss=lambda p: float("nan"), grad=lambda p: {"w": p["w"]})
"""


def test_an_errored_case_never_matches_a_baseline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = model(tmp_path, NAN_LOSS)
    code, out = run(f, "--baseline", "base.json", "--update-baseline", "--baseline-repeats", "1")
    assert code == 1, out  # an error is not written as if it were a result
    assert list(json.loads((tmp_path / "base.json").read_text())["cases"]) == ["models.py::fine"]
    code, out = run(f, "--baseline", "base.json")
    assert code == 1 and "gate: 1 of 2 cases match" in out


def test_a_stored_nan_never_passes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = model(tmp_path, "")
    run(f, "--baseline", "base.json", "--update-baseline", "--baseline-repeats", "1")
    data = json.loads((tmp_path / "base.json").read_text())
    data["cases"]["models.py::fine"]["grad_log10_norm"]["w"] = None  # how a NaN is stored
    (tmp_path / "base.json").write_text(json.dumps(data))
    code, out = run(f, "--baseline", "base.json")
    assert code == 1 and "log10 gradient norm of w" in out


def test_concurrent_baseline_updates_merge_and_lose_no_case(tmp_path):
    files = []
    for k in range(4):
        files.append(
            model(
                tmp_path,
                f"""
                @rnncheck.case
                def quad_{k}():
                    p = {{"w": np.ones(3) * {k + 1}}}
                    return rnncheck.NumpyCase(p, loss=lambda q: float((q["w"] ** 2).sum()), grad=lambda q: {{"w": 2 * q["w"]}})
                """,
                name=f"m{k}.py",
                fine=False,
            )
        )
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "rnncheck", "verify", f, "--baseline", "base.json", "--update-baseline"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for f in files
    ]
    for p in procs:
        p.communicate(timeout=300)
        assert p.returncode == 0
    stored = json.loads((tmp_path / "base.json").read_text())["cases"]
    assert sorted(stored) == [f"m{k}.py::quad_{k}" for k in range(4)]
    assert not list(tmp_path.glob(".base.json.*.tmp"))  # no temporary file left behind


def test_case_ids_do_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    f = model(project, "", name="models/m.py")
    monkeypatch.chdir(project)
    code, out = run("models/m.py", "--baseline", "base.json", "--update-baseline", "--baseline-repeats", "1")
    assert list(json.loads((project / "base.json").read_text())["cases"]) == ["models/m.py::fine"]
    monkeypatch.chdir(tmp_path)  # elsewhere, with an absolute path
    code, out = run(f, "--baseline", project / "base.json")
    assert code == 0 and "gate: 1 of 1 cases match" in out, out


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "not an object"),
        ('{"format": 1, "cases": []}', "'cases' is not an object"),
        ('{"format": 99, "cases": {}}', "format 99"),
        ('{"cases": {}}', "no 'format'"),
    ],
)
def test_a_bad_baseline_is_a_usage_error_before_any_case_runs(tmp_path, content, message):
    marker = tmp_path / "ran.txt"
    f = model(tmp_path, f"@rnncheck.case\ndef marks():\n    Path({str(marker)!r}).write_text('ran')\n")
    f_text = Path(f).read_text().replace("import rnncheck\n", "import rnncheck\nfrom pathlib import Path\n", 1)
    Path(f).write_text(f_text)
    (tmp_path / "base.json").write_text(content)
    code, out = run(f, "--baseline", tmp_path / "base.json")
    assert code == 2, out
    assert message in out and "base.json" in out and "Traceback" not in out
    assert not marker.exists()


def test_a_baseline_from_another_seed_is_named_as_such(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = model(tmp_path, "")
    run(f, "--baseline", "base.json", "--update-baseline", "--baseline-repeats", "1")
    code, out = run(f, "--baseline", "base.json", "--seed", "3")
    assert code == 1
    assert "recorded under other settings (--seed 0 there, 3 here)" in out and "baseline_drift" not in out


def test_a_stale_rnncheck_folder_beside_a_model_file_does_not_take_over(tmp_path):
    (tmp_path / "rnncheck").mkdir()
    (tmp_path / "rnncheck" / "__init__.py").write_text("stale = True\n")
    f = model(tmp_path, "")
    code, out = run(f)
    assert code == 0 and "1 passed" in out, out


def test_an_import_of_rnncheck_that_finds_another_folder_is_named_as_shadowing(tmp_path):
    (tmp_path / "vendored").mkdir()
    (tmp_path / "vendored" / "__init__.py").write_text("stale = True\n")
    path = tmp_path / "shadowed.py"
    path.write_text(
        "import importlib.util, pathlib\n"
        "spec = importlib.util.spec_from_file_location('rnncheck', pathlib.Path(__file__).parent / 'vendored' / '__init__.py')\n"
        "rnncheck = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(rnncheck)\n\n"
        "@rnncheck.case\ndef never():\n    pass\n"
    )
    code, out = run(path)
    line = next(l for l in out.splitlines() if "shadows the installed rnncheck" in l)
    assert "vendored" in line and "rename or move that folder" in line and code == 1
