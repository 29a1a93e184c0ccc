"""What one model file does to the process cannot reach another file's cases (the real command, in a subprocess)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

RNNCHECK = [sys.executable, "-m", "rnncheck"]

QUAD = """
import numpy as np
import rnncheck


def quad(scale=1.0):
    return rnncheck.NumpyCase({"w": np.ones(2)}, lambda p: float(p["w"].sum()), lambda p: {"w": scale * np.ones(2)})
"""


def _files(tmp_path, **files):
    for name, text in files.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))


def _verdict(out: str, case: str) -> str | None:
    """The verdict word of the line that reports ``file.py::case``."""
    return next(
        (line.split()[0] for line in out.splitlines() if f"/{case} " in line or line.endswith(f"/{case}")), None
    )


def _run(tmp_path, *args):
    proc = subprocess.run(
        [*RNNCHECK, "verify", str(tmp_path), "-q", "--no-flow", *args], capture_output=True, timeout=300
    )
    return proc.returncode, proc.stdout.decode()


def test_changed_torch_attributes_and_dropped_rnncheck_modules_do_not_leak_into_the_next_file(tmp_path):
    _files(
        tmp_path,
        a_evil=QUAD
        + """
import sys
import torch

torch.tanh = torch.relu
for name in [k for k in sys.modules if k.startswith("rnncheck")]:
    del sys.modules[name]


@rnncheck.case
def evil():
    return quad()
""",
        b_victim=QUAD
        + """
import torch


@rnncheck.case
def still_fails():
    return quad(2.0)


@rnncheck.case
def sees_the_real_tanh():
    assert torch.tanh is not torch.relu, "torch.tanh leaked from another file"
    return quad()
""",
    )
    code, out = _run(tmp_path)
    assert code == 1
    assert _verdict(out, "a_evil.py::evil") == "PASS" and _verdict(out, "b_victim.py::still_fails") == "FAIL"
    assert _verdict(out, "b_victim.py::sees_the_real_tanh") == "PASS"


def test_a_fork_in_user_code_prints_nothing_twice(tmp_path):
    _files(
        tmp_path,
        forking=QUAD
        + """
import os


def loss(p):
    os.fork()
    return float(p["w"].sum())


@rnncheck.case
def forks():
    return rnncheck.NumpyCase({"w": np.ones(2)}, loss, lambda p: {"w": np.ones(2)})
""",
    )
    code, out = _run(tmp_path)
    assert code == 0 and out.count("forking.py::forks") == 1 and out.count("1 passed") == 1


def test_only_files_whose_syntax_marks_cases_are_imported(tmp_path):
    _files(
        tmp_path,
        mentions="""
# str.casefold is not @casefold, and this file marks no case
def case_insensitive(f):
    return f


@case_insensitive
def helper():
    raise SystemExit("imported although it marks no case")
helper()
""",
        aliased=QUAD.replace("import rnncheck", "import rnncheck as rc").replace("rnncheck.NumpyCase", "rc.NumpyCase")
        + """

@rc.case
def aliased_case():
    return quad()
""",
    )
    proc = subprocess.run([*RNNCHECK, "verify", str(tmp_path), "--collect-only"], capture_output=True, timeout=300)
    out = proc.stdout.decode()
    assert proc.returncode == 0 and "aliased.py::aliased_case" in out and "mentions.py" not in out


def test_a_file_that_marks_cases_but_yields_none_is_that_files_error(tmp_path):
    _files(
        tmp_path,
        breaks=QUAD
        + """
rnncheck.case = lambda f: f  # replaces the decorator: nothing registers


@rnncheck.case
def lost():
    return quad()
""",
        fine=QUAD
        + """

@rnncheck.case
def kept():
    return quad()
""",
    )
    code, out = _run(tmp_path)
    assert code == 1 and _verdict(out, "fine.py::kept") == "PASS"
    assert "marks cases (line" in out and "but none was collected" in out
