"""The terminal report at 80 columns keeps every number whole, and each row shows its own tensor's numbers."""

from __future__ import annotations

import io
import re

import torch
from rich.console import Console

import rnncheck


class Deep(torch.nn.Module):
    def __init__(self):
        super().__init__()
        block = torch.nn.LSTM(3, 4, bidirectional=True).double()
        self.encoder_stack = torch.nn.ModuleDict({"bidirectional_recurrent_block": block})

    def forward(self, x):
        return self.encoder_stack["bidirectional_recurrent_block"](x)[0]


def _result():
    torch.manual_seed(0)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    return rnncheck.verify_case(rnncheck.TorchCase(Deep(), inputs=(x,)), rnncheck.Options(diagnostics=False))


def _rendered(result, width):
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    console.plain = False
    console.print(result)  # a CaseResult renders itself: what a terminal of this width shows
    return console.file.getvalue()


def test_at_80_columns_the_numbers_stay_whole_and_long_names_shorten():
    result = _result()
    text = _rendered(result, 80)
    rows = [line for line in text.splitlines() if re.search(r">= \d", line)]
    assert len(rows) == 8
    for line, row in zip(rows, next(c for c in result.checks if c.name == "gradient").tensors):
        assert len(line) <= 80
        assert f"{row.norm:.3g}" in line and f">= {row.detection:.1e}" in line  # whole, not cut
        assert line.strip().startswith("…") and row.name.endswith(line.split()[0].lstrip("…"))


def test_each_passing_row_shows_its_own_numbers():
    gradient = next(c for c in _result().checks if c.name == "gradient")
    errors = {(r.error, r.tolerance) for r in gradient.tensors}
    assert len(errors) > 1  # not the case's worst repeated in every row
    assert all(r.error <= r.tolerance for r in gradient.tensors)


def test_verbose_output_says_where_the_time_went_in_units_of_one_forward_and_backward():
    from click.testing import CliRunner
    from helpers import EXAMPLES

    from rnncheck import main

    out = CliRunner().invoke(main, ["verify", str(EXAMPLES / "lstm_module.py"), "-v", "--no-color"]).output
    line = next(s for s in out.splitlines() if s.strip().startswith("time: "))
    for check in ("sanity", "gradient", "reference", "flow"):
        assert re.search(rf"{check} \d+\.\d+ s = \d+\.\d units", line), line
    assert "one forward+backward" in line
    total, inside = re.search(
        r"of the (\d+\.\d+) s, (\d+\.\d+) s = \d+\.\d units inside calls into your code", line
    ).groups()
    assert 0 < float(inside) <= float(total), line


def test_the_time_inside_the_users_code_is_told_apart_from_rnnchecks_own(tmp_path):
    """A loss that sleeps 20 ms a call: every one of the gradient check's evaluations is inside the user's code,
    and the JSON and -v say so; what is left is rnncheck's own work."""
    import json

    from click.testing import CliRunner

    from rnncheck import main

    model = tmp_path / "slow_loss.py"
    model.write_text(
        "import time\nimport numpy as np\nimport rnncheck\n\n\n"
        "def loss(p):\n    time.sleep(0.02)\n    return float(np.sum(p['w'] ** 2))\n\n\n"
        "def grad(p):\n    return {'w': 2 * p['w']}\n\n\n"
        "@rnncheck.case\ndef quad():\n"
        "    return rnncheck.NumpyCase(loss=loss, grad=grad, params={'w': np.array([1.0, -2.0, 0.5])})\n"
    )
    report = tmp_path / "r.json"
    out = (
        CliRunner().invoke(main, ["verify", str(model), "-v", "--no-color", "--no-flow", "--json", str(report)]).output
    )
    checks = {c["name"]: c for c in json.loads(report.read_text())["cases"][0]["checks"]}
    gradient = checks["gradient"]
    numbers = gradient["numbers"]
    assert gradient["evaluations"] >= 5
    assert numbers["user_seconds"] >= 0.02 * gradient["evaluations"]  # each evaluation is one sleeping loss call
    assert numbers["user_seconds"] <= numbers["seconds"]
    assert all(c["numbers"]["user_seconds"] <= c["numbers"]["seconds"] for c in checks.values())
    line = next(s for s in out.splitlines() if s.strip().startswith("time: "))
    inside = float(re.search(r"(\d+\.\d+) s = \d+\.\d units inside calls into your code", line).group(1))
    assert inside >= 0.02 * gradient["evaluations"], line


def test_the_unit_of_the_time_shares_is_a_gradient_call_not_the_sanity_checks_mean(tmp_path):
    """The first gradient call pays for warming up (here 0.4 s of it): the unit is the fastest call, not the sanity
    checks' time per call, which would count that warm-up and the checks' own work."""
    from click.testing import CliRunner

    from rnncheck import main

    model = tmp_path / "slow_first.py"
    model.write_text(
        "import time\nimport numpy as np\nimport rnncheck\n\ncalls = []\n\n\n"
        "def loss(p):\n    return float(np.sum(p['w'] ** 2))\n\n\n"
        "def grad(p):\n    if not calls:\n        time.sleep(0.4)\n    calls.append(1)\n"
        "    return {'w': 2 * p['w']}\n\n\n"
        "@rnncheck.case\ndef quad():\n"
        "    return rnncheck.NumpyCase(loss=loss, grad=grad, params={'w': np.array([1.0, -2.0, 0.5])})\n"
    )
    out = CliRunner().invoke(main, ["verify", str(model), "-v", "--no-color", "--no-flow"]).output
    line = next(s for s in out.splitlines() if s.strip().startswith("time: "))
    unit_ms = float(re.search(r"timed\) (\d+\.\d+) ms", line).group(1))
    sanity_s = float(re.search(r"sanity (\d+\.\d+) s", line).group(1))
    assert sanity_s >= 0.4 and unit_ms < 100, line


def test_the_thread_policys_own_time_is_shown_where_it_timed_calls(tmp_path, monkeypatch):
    """The policy's timed gradient calls are the sanity checks' own: -v and the JSON show what they took, so that
    the sanity check's small share does not hide them; with --threads nothing is timed and nothing is shown."""
    import json
    import os

    import pytest
    from click.testing import CliRunner
    from helpers import EXAMPLES

    from rnncheck import main

    for var in ("PYTEST_XDIST_WORKER_COUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)  # the cores are this run's own, as in a user's
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: the policy decides without timing anything")
    said = {}
    for extra in ([], ["--threads", "1"]):
        report = tmp_path / f"r{len(extra)}.json"
        args = ["verify", str(EXAMPLES / "lstm_module.py"), "-v", "--no-color", "--json", str(report), *extra]
        out = CliRunner().invoke(main, args).output
        line = next(s for s in out.splitlines() if s.strip().startswith("time: "))
        gradient = next(c for c in json.loads(report.read_text())["cases"][0]["checks"] if c["name"] == "gradient")
        said[bool(extra)] = (line, gradient["numbers"])
    line, numbers = said[False]
    assert re.search(r"thread policy \(its calls serve the sanity checks\) \d+\.\d+ s = \d+\.\d units", line), line
    assert 0 < numbers["threads_user_seconds"] <= numbers["threads_seconds"]
    line, numbers = said[True]
    assert "thread policy" not in line and "threads_seconds" not in numbers


def test_the_thread_policys_calls_are_not_said_to_serve_the_sanity_checks_when_one_failed(tmp_path, monkeypatch):
    """A loss that raises fails the policy's first timed call: nothing of it is the sanity checks', and -v must not
    say so (the sanity checks call again, and name the error)."""
    import os

    import pytest
    from click.testing import CliRunner

    from rnncheck import main

    for var in ("PYTEST_XDIST_WORKER_COUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: the policy decides without timing anything")
    model = tmp_path / "broken.py"
    model.write_text(
        "import torch\nimport rnncheck\n\n\ndef _broken(out):\n    raise ValueError('the loss is broken')\n\n\n"
        "@rnncheck.case\ndef broken():\n    torch.manual_seed(0)\n"
        "    return rnncheck.TorchCase(torch.nn.LSTM(128, 128), inputs=(torch.randn(5, 2, 128),), loss=_broken)\n"
    )
    out = CliRunner().invoke(main, ["verify", str(model), "-v", "--no-color"]).output
    line = next(s for s in out.splitlines() if s.strip().startswith("time: "))
    assert re.search(r"thread policy \d+\.\d+ s", line) and "serve the sanity checks" not in line, line
    assert "loss() raised ValueError: the loss is broken" in out
