"""The new doors into user code (a FunctionCase's function, a StepCase's step, rnncheck.record) contain what the
code does: a raise, an exit, a hang, prints and changed globals are that case's, and the other cases still run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

RNNCHECK = [sys.executable, "-m", "rnncheck"]

MODEL = """
import sys
import time

import torch

import rnncheck


def loop(a, b, h0):
    h, hs = h0, []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        hs.append(h)
    return torch.stack(hs, dim=1)


def inputs():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 9, 3, generator=g, dtype=torch.float64) * 0.5 + 0.4
    b = torch.rand(2, 9, 3, generator=g, dtype=torch.float64)
    h0 = torch.rand(2, 3, generator=g, dtype=torch.float64)
    return tuple(t.requires_grad_() for t in (a, b, h0))


def raises(a, b, h0):
    raise ValueError("scan exploded")  # RAISE-LINE


def exits(a, b, h0):
    sys.exit(3)


def hangs(a, b, h0):
    while True:
        pass


def prints_and_meddles(a, b, h0):
    print("NOISE FROM THE SCAN")
    torch.set_default_dtype(torch.float64)
    return loop(a, b, h0)


class Steps(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3).double()

    def forward(self, x, h0):
        hs, h = [], h0
        for t in range(x.shape[1]):
            h, _ = self.step(x[:, t], h)
            hs.append(h)
        return torch.stack(hs, dim=1)

    def step(self, x_t, h):
        raise RuntimeError("no step today")  # STEP-LINE


@rnncheck.case
def fn_raises():
    return rnncheck.FunctionCase(raises, inputs=inputs(), reference=loop)


@rnncheck.case
def fn_exits():
    return rnncheck.FunctionCase(exits, inputs=inputs(), reference=loop)


@rnncheck.case
def fn_hangs():
    return rnncheck.FunctionCase(hangs, inputs=inputs(), reference=loop)


@rnncheck.case
def fn_prints_and_meddles():
    return rnncheck.FunctionCase(prints_and_meddles, inputs=inputs(), reference=loop)


@rnncheck.case
def step_raises():
    return rnncheck.StepCase(Steps(), inputs=torch.randn(2, 5, 3, dtype=torch.float64), state0=torch.zeros(2, 3, dtype=torch.float64))


@rnncheck.case
def record_given_junk():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3).double()

        def forward(self, x):
            rnncheck.record([1, 2], name="junk", time_dim=1)
            return self.lin(x)

    return rnncheck.TorchCase(Odd(), inputs=(torch.randn(4, 3, dtype=torch.float64),))


@rnncheck.case
def fine():
    return rnncheck.FunctionCase(loop, inputs=inputs(), reference=loop)
"""


def _line(marker: str) -> int:
    return next(i for i, line in enumerate(textwrap.dedent(MODEL).splitlines(), 1) if marker in line)


def test_what_scan_code_does_stays_that_cases(tmp_path):
    model = tmp_path / "scans.py"
    model.write_text(textwrap.dedent(MODEL))
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [*RNNCHECK, "verify", str(model), "--json", str(out), "--timeout", "5"], capture_output=True, timeout=300
    )
    assert proc.returncode == 1
    cases = {c["name"]: c for c in json.loads(out.read_text())["cases"]}
    assert cases["fine"]["verdict"] == "pass"  # the last case still ran
    assert cases["fn_raises"]["verdict"] == "error"
    assert (
        "ValueError: scan exploded" in cases["fn_raises"]["error"]
        and f"{model}:{_line('RAISE-LINE')}" in cases["fn_raises"]["error"]
    )
    assert cases["fn_exits"]["verdict"] == "error" and "exit" in cases["fn_exits"]["error"]
    assert cases["fn_hangs"]["verdict"] == "error" and "--timeout" in cases["fn_hangs"]["error"]
    meddles = cases["fn_prints_and_meddles"]
    assert meddles["verdict"] == "pass"
    assert any("default dtype" in f["message"] for f in meddles["findings"])  # put back, and said
    assert b"NOISE FROM THE SCAN" in proc.stdout + proc.stderr
    step = cases["step_raises"]
    assert (
        step["verdict"] == "error"
        and "no step today" in step["error"]
        and f"{model}:{_line('STEP-LINE')}" in step["error"]
    )
    junk = cases["record_given_junk"]
    assert junk["verdict"] == "warn" and any("not a floating-point tensor" in f["message"] for f in junk["findings"])
