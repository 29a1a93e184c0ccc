"""No user code takes the run down: cases run in worker processes (the real command, in a subprocess).

Each test plants what only a separate process can contain (an ``os._exit``, a segfault, a
SIGKILL, a thread that never ends, code that defeats the in-process alarm, a file that breaks
torch or ``sys.modules`` for everyone after it) and checks that the run reports that case as
``error`` with its cause, checks every other case, writes its reports and exits 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from xml.etree import ElementTree as ET

import pytest

RNNCHECK = [sys.executable, "-m", "rnncheck"]

HEADER = """
import ctypes, os, signal, sys, threading, time
import numpy as np
import torch
import rnncheck


def quad(scale=1.0):
    return rnncheck.NumpyCase({"w": np.ones(3)}, lambda p: float((p["w"] ** 2).sum()), lambda p: {"w": scale * 2 * p["w"]})


def rnn():
    torch.manual_seed(0)
    model = torch.nn.RNN(3, 4, batch_first=True).double()
    return rnncheck.TorchCase(model, inputs=torch.randn(2, 5, 3, dtype=torch.float64))
"""


def write(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(HEADER + textwrap.dedent(body))
    return path


def run(tmp_path, *args, timeout=180):
    """The command in a subprocess: (exit code, output, JSON report, JUnit testcases)."""
    report, junit = tmp_path / "r.json", tmp_path / "r.xml"
    proc = subprocess.run(
        [*RNNCHECK, "verify", *map(str, args), "--json", str(report), "--junit-xml", str(junit)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    cases = json.loads(report.read_text())["cases"] if report.exists() else None
    tests = [t.get("name") for t in ET.parse(junit).getroot().iter("testcase")] if junit.exists() else None
    return proc.returncode, out, cases, tests


def by_name(cases):
    return {c["name"]: c for c in cases}


def test_os_exit_after_a_failing_case_is_that_cases_error_and_the_reports_are_written(tmp_path):
    model = write(
        tmp_path,
        "m.py",
        """
        @rnncheck.case
        def wrong():
            return quad(scale=1.5)

        @rnncheck.case
        def exits():
            os._exit(0)

        @rnncheck.case
        def after():
            return quad()
        """,
    )
    code, out, cases, tests = run(tmp_path, model)
    assert code == 1, out
    assert [c["name"] for c in cases] == ["wrong", "exits", "after"] and tests == ["wrong", "exits", "after"]
    got = by_name(cases)
    assert got["wrong"]["verdict"] == "fail" and got["after"]["verdict"] == "pass"
    assert got["exits"]["verdict"] == "error"
    assert "the worker died: it exited with status 0" in got["exits"]["error"]
    assert "case function exits()" in got["exits"]["error"]


def test_a_segfault_names_the_signal_and_the_call_and_the_rest_are_checked(tmp_path):
    model = write(
        tmp_path,
        "m.py",
        """
        def crash(p):
            ctypes.string_at(0)  # reads address 0: SIGSEGV

        @rnncheck.case
        def segfault():
            return rnncheck.NumpyCase({"w": np.ones(3)}, crash, lambda p: {"w": 2 * p["w"]})

        @rnncheck.case
        def after():
            return rnn()
        """,
    )
    other = write(tmp_path, "other.py", "@rnncheck.case\ndef elsewhere():\n    return quad()\n")
    code, out, cases, _ = run(tmp_path, model, other)
    assert code == 1, out
    got = by_name(cases)
    assert got["segfault"]["verdict"] == "error"
    assert "signal 11 (SIGSEGV) while running loss() of segfault" in got["segfault"]["error"]
    assert "other cases ran in a fresh worker" in got["segfault"]["error"]
    assert got["after"]["verdict"] == "pass" and got["elsewhere"]["verdict"] == "pass"


def test_a_killed_worker_says_what_sends_sigkill(tmp_path):
    model = write(
        tmp_path,
        "m.py",
        """
        @rnncheck.case
        def killed():
            os.kill(os.getpid(), signal.SIGKILL)

        @rnncheck.case
        def after():
            return quad()
        """,
    )
    code, out, cases, _ = run(tmp_path, model)
    assert code == 1
    error = by_name(cases)["killed"]["error"]
    assert "signal 9 (SIGKILL" in error and "out-of-memory killer" in error
    assert by_name(cases)["after"]["verdict"] == "pass"


def test_a_thread_left_running_does_not_keep_the_run_from_exiting(tmp_path):
    model = write(
        tmp_path,
        "m.py",
        """
        @rnncheck.case
        def leaves_a_thread():
            threading.Thread(target=lambda: time.sleep(10_000), name="forever").start()
            return quad()

        @rnncheck.case
        def after():
            return quad()
        """,
    )
    code, out, cases, _ = run(tmp_path, model, timeout=120)  # a hang here raises TimeoutExpired
    assert code == 0, out
    notes = [f["message"] for c in by_name(cases)["leaves_a_thread"]["checks"] for f in c["findings"]]
    assert any("left 1 thread(s) running (forever)" in n for n in notes)


DEFEATS = {
    "a bare except around a loop": """
        while True:
            try:
                while True:
                    pass
            except:  # noqa: E722
                pass
        """,
    "signal.alarm(0)": """
        signal.setitimer(signal.ITIMER_REAL, 0)
        while True:
            pass
        """,
    "SIGALRM ignored": """
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        while True:
            pass
        """,
    "SIGALRM blocked around a C call": """
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
        time.sleep(60)
        """,
}


@pytest.mark.parametrize("how", list(DEFEATS))
def test_code_that_defeats_the_alarm_is_stopped_from_outside(tmp_path, how):
    body = textwrap.indent(textwrap.dedent(DEFEATS[how]), "    ")
    model = write(
        tmp_path,
        "m.py",
        f"@rnncheck.case\ndef stubborn():\n{body}\n\n@rnncheck.case\ndef after():\n    return quad()\n",
    )
    began = time.monotonic()
    code, out, cases, _ = run(tmp_path, model, "--timeout", "1")
    assert time.monotonic() - began < 60
    assert code == 1, out
    error = by_name(cases)["stubborn"]["error"]
    assert "ran past --timeout 1 s" in error and "rnncheck stopped its worker" in error
    assert "case function stubborn()" in error
    assert by_name(cases)["after"]["verdict"] == "pass"


def test_a_files_changes_to_torch_and_sys_modules_do_not_reach_another_file(tmp_path):
    breaker = write(
        tmp_path,
        "a_breaker.py",
        """
        torch.tanh = torch.relu
        torch.nn.functional.tanh = torch.relu
        for name in [n for n in sys.modules if n.startswith("rnncheck.")]:
            del sys.modules[name]  # at import, as a careless "reload everything" does

        @rnncheck.case
        def breaks_things():
            for name in [n for n in sys.modules if n.startswith("rnncheck")]:
                del sys.modules[name]
            torch.sigmoid = torch.relu
            return quad()
        """,
    )
    victim = write(
        tmp_path,
        "b_victim.py",
        """
        @rnncheck.case
        def sees_clean_torch():
            assert torch.tanh is not torch.relu and torch.sigmoid is not torch.relu
            return rnn()

        @rnncheck.case
        def still_fails():
            return quad(scale=2.0)
        """,
    )
    code, out, cases, _ = run(tmp_path, breaker, victim)
    assert code == 1, out
    got = by_name(cases)
    assert got["sees_clean_torch"]["verdict"] == "pass", got["sees_clean_torch"]
    assert got["still_fails"]["verdict"] == "fail"


def test_a_segfault_while_importing_is_that_files_error(tmp_path):
    broken = write(tmp_path, "a_broken.py", "ctypes.string_at(0)\n\n@rnncheck.case\ndef never():\n    return quad()\n")
    fine = write(tmp_path, "b_fine.py", "@rnncheck.case\ndef fine():\n    return quad()\n")
    code, out, cases, _ = run(tmp_path, broken, fine)
    assert code == 1, out
    errors = [c for c in cases if c["verdict"] == "error"]
    assert len(errors) == 1 and "the worker died while importing the file: signal 11 (SIGSEGV)" in errors[0]["error"]
    assert by_name(cases)["fine"]["verdict"] == "pass"


def test_parallel_workers_give_the_serial_runs_reports_and_baseline(tmp_path):
    bodies = "".join(
        f"\n@rnncheck.case\ndef c{k}():\n    return quad(scale={1.0 if k % 3 else 1.5})\n" for k in range(6)
    )
    first = write(tmp_path, "first.py", bodies)
    second = write(
        tmp_path, "second.py", bodies.replace("def c", "def d") + "\n@rnncheck.case\ndef r():\n    return rnn()\n"
    )
    serial = run(tmp_path, first, second, "-n", "1")
    (tmp_path / "r.json").rename(tmp_path / "serial.json")
    parallel = run(tmp_path, first, second, "-n", "2")
    assert serial[0] == parallel[0] == 1
    assert [(c["file"], c["name"], c["verdict"]) for c in serial[2]] == [
        (c["file"], c["name"], c["verdict"]) for c in parallel[2]
    ]
    assert serial[3] == parallel[3]
    # a baseline written by two workers at once holds every case, and a serial gate matches it
    passing = write(tmp_path, "passing.py", bodies.replace("1.5", "1.0"))
    base = tmp_path / "base.json"
    code, out, _, _ = run(
        tmp_path, passing, "-n", "2", "--baseline", base, "--update-baseline", "--baseline-repeats", "1"
    )
    assert code == 0, out
    assert len(json.loads(base.read_text())["cases"]) == 6
    code, out, _, _ = run(tmp_path, passing, "--baseline", base)
    assert code == 0 and "gate: 6 of 6 cases match" in out, out


def test_exitfirst_with_workers_stops_and_counts_what_did_not_run(tmp_path):
    model = write(
        tmp_path,
        "m.py",
        "".join(f"\n@rnncheck.case\ndef c{k}():\n    return quad(scale={1.5 if k == 1 else 1.0})\n" for k in range(5)),
    )
    code, out, cases, _ = run(tmp_path, model, "-x")
    assert code == 1
    assert [c["name"] for c in cases] == ["c0", "c1"]
    assert "stopped after the first failing case (-x): 3 case(s) not run" in out


def test_what_user_code_prints_in_a_worker_reaches_the_terminal_and_spares_a_json_on_stdout(tmp_path):
    model = write(
        tmp_path,
        "m.py",
        """
        print("printed at import")

        @rnncheck.case
        def chatty():
            print("printed by the case")
            sys.stderr.write("written to stderr\\n")
            return quad()
        """,
    )
    proc = subprocess.run(
        [*RNNCHECK, "verify", str(model), "--json", "-"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["cases"][0]["verdict"] == "pass"
    assert "printed by the case" in proc.stderr and "written to stderr" in proc.stderr
    assert "printed at import" in proc.stderr


def test_in_process_mode_is_still_there_for_debuggers(tmp_path):
    model = write(
        tmp_path,
        "m.py",
        """
        @rnncheck.case
        def exits():
            sys.exit(3)

        @rnncheck.case
        def after():
            return quad()
        """,
    )
    code, out, cases, _ = run(tmp_path, model, "--in-process")
    assert code == 1, out
    assert "called sys.exit(3)" in by_name(cases)["exits"]["error"]
    assert by_name(cases)["after"]["verdict"] == "pass"


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_worker_count_is_a_usage_error(tmp_path, value):
    model = write(tmp_path, "m.py", "@rnncheck.case\ndef fine():\n    return quad()\n")
    code, out, _, _ = run(tmp_path, model, "-n", value)
    assert code == 2 and "number of workers" in out


def test_workers_do_not_outlive_an_interrupted_run(tmp_path):
    model = write(
        tmp_path,
        "m.py",
        "@rnncheck.case\ndef slow():\n    open('pid', 'w').write(str(os.getpid()))\n    time.sleep(600)\n",
    )
    proc = subprocess.Popen(
        [*RNNCHECK, "verify", str(model)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    pid_file = tmp_path / "pid"
    deadline = time.time() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.time() < deadline
        time.sleep(0.1)
    proc.send_signal(2)  # Ctrl-C
    proc.communicate(timeout=60)
    assert proc.returncode == 2
    worker = int(pid_file.read_text())
    for _ in range(50):
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail("the worker outlived the interrupted run")
