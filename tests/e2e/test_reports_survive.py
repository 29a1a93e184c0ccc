"""Every report written, whatever happens to the terminal or the process (the real command, in a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

RNNCHECK = [sys.executable, "-m", "rnncheck"]

QUICK = """
import numpy as np
import rnncheck


def quad(scale=1.0):
    return rnncheck.NumpyCase({"w": np.ones(3)}, lambda p: float((p["w"] ** 2).sum()), lambda p: {"w": scale * 2 * p["w"]})


@rnncheck.case
def quick():
    return quad()
"""


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_sigterm_is_handled_as_ctrl_c_with_a_partial_report(tmp_path):
    model = _write(
        tmp_path,
        "m.py",
        QUICK + "\n\n@rnncheck.case\ndef slow():\n    import time\n    time.sleep(60)\n    return quad()\n",
    )
    out = tmp_path / "r.json"
    proc = subprocess.Popen(
        [*RNNCHECK, "verify", str(model), "--json", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.time() + 60
    while time.time() < deadline:  # until the first case is reported
        line = proc.stdout.readline().decode()
        if "quick" in line:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 2
    report = json.loads(out.read_text())
    assert report["meta"]["interrupted"] is True and [c["name"] for c in report["cases"]] == ["quick"]


def test_a_closed_pipe_on_stdout_loses_no_report_and_keeps_the_exit_code(tmp_path):
    model = _write(tmp_path, "m.py", QUICK + "\n\n@rnncheck.case\ndef also_quick():\n    return quad()\n")
    out = tmp_path / "r.json"
    proc = subprocess.Popen(
        [*RNNCHECK, "verify", str(model), "--json", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.readline()
    proc.stdout.close()  # `| head -1`
    proc.wait(timeout=120)
    assert proc.returncode == 0, proc.stderr.read().decode()[-500:]
    assert [c["verdict"] for c in json.loads(out.read_text())["cases"]] == ["pass", "pass"]
    assert b"Traceback" not in proc.stderr.read()


def test_an_ascii_only_stdout_gets_ascii_stand_ins(tmp_path):
    model = _write(tmp_path, "m.py", QUICK)
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    proc = subprocess.run([*RNNCHECK, "verify", str(model)], capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-500:]
    text = proc.stdout.decode("ascii")
    assert "||g - g_true||" in text and "1 passed" in text


@pytest.mark.parametrize("name", ["x\nPASS  forged.py::all_good", "\x1b[32mgreen\x1b[0m[/bold][red]"])
def test_a_hostile_case_name_cannot_forge_a_line(tmp_path, name):
    model = _write(tmp_path, "m.py", QUICK + f"\n\nrnncheck.case(name={name!r})(lambda: quad(2.0))\n")
    proc = subprocess.run([*RNNCHECK, "verify", str(model), "--no-flow"], capture_output=True, timeout=120)
    lines = proc.stdout.decode().splitlines()
    assert not any(line.startswith("PASS  forged.py") for line in lines)
    assert "\x1b" not in proc.stdout.decode() and proc.returncode == 1
    assert any(line.startswith("FAIL  ") and "m.py::" in line for line in lines)


def test_a_figure_that_cannot_be_drawn_costs_that_figure_alone_and_same_names_do_not_collide(tmp_path):
    pytest.importorskip("matplotlib")
    source = """
    import torch
    import rnncheck


    def rnn():
        torch.manual_seed(0)
        return rnncheck.TorchCase(torch.nn.RNN(2, 3).double(), inputs=(torch.randn(5, 1, 2, dtype=torch.float64),))


    rnncheck.case(name="$\\\\frac$")(rnn)  # matplotlib's mathtext cannot parse it
    rnncheck.case(name="plain")(rnn)
    """
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _write(tmp_path / "a", "m.py", source)
    _write(tmp_path / "b", "m.py", source)
    out, junit, plots = tmp_path / "r.json", tmp_path / "j.xml", tmp_path / "plots"
    proc = subprocess.run(
        [*RNNCHECK, "verify", "a", "b", "--json", str(out), "--junit-xml", str(junit), "--plot", str(plots)],
        capture_output=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert json.loads(out.read_text())["summary"]["pass"] == 4 and junit.exists()
    assert b"Traceback" not in proc.stdout + proc.stderr and b"could not draw 2 figure(s)" in proc.stdout
    profiles = sorted(p.name for p in plots.glob("*plain-profile.png"))
    assert profiles == ["a_m-plain-profile.png", "b_m-plain-profile.png"]


UNPRINTABLE = """
import torch


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no message for you")


@rnncheck.case
def in_case_function():
    raise Unprintable()


@rnncheck.case
def in_loss():
    def loss(out):
        raise Unprintable()

    return rnncheck.TorchCase(torch.nn.Linear(2, 1).double(), inputs=(torch.ones(3, 2, dtype=torch.float64),), loss=loss)
"""


@pytest.mark.parametrize("mode", [[], ["--in-process"]])
def test_an_exception_whose_message_raises_is_the_users_error_and_the_run_goes_on(tmp_path, mode):
    model = _write(tmp_path, "m.py", QUICK + UNPRINTABLE)
    broken = _write(
        tmp_path,
        "broken_import.py",
        "class E(Exception):\n    def __str__(self):\n        raise ValueError\n\nraise E()\n",
    )
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [*RNNCHECK, "verify", str(model), str(broken), "--json", str(out), *mode], capture_output=True, timeout=300
    )
    text = proc.stdout.decode()
    assert proc.returncode == 1, text + proc.stderr.decode()
    assert "Traceback" not in text + proc.stderr.decode() and "internal error" not in text, text
    cases = {c["name"]: c for c in json.loads(out.read_text())["cases"]}
    assert cases["quick"]["verdict"] == "pass"
    for name in ("in_case_function", "in_loss"):
        assert cases[name]["verdict"] == "error"
        assert (
            "raised Unprintable: (its message could not be read: its __str__ raised RuntimeError)"
            in cases[name]["error"]
        ), cases[name]["error"]
    assert "import failed: E: (its message could not be read: its __str__ raised ValueError)" in text
