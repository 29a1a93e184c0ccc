"""The conventions pytest users have in their fingers, in `rnncheck verify` and `rnncheck diagnose`."""

from __future__ import annotations

import json
import shlex
import textwrap

import pytest
from click.testing import CliRunner

import rnncheck
from rnncheck import main

pytest_plugins = ["pytester"]

MODELS = """
from pathlib import Path
import numpy as np
import torch
import rnncheck

BUILT = Path(__file__).with_name("built.txt")

def quad(scale):
    p = {"w": np.array([1.0, -2.0, 0.5])}
    return rnncheck.NumpyCase(p, loss=lambda q: float((q["w"] ** 2).sum()), grad=lambda q: {"w": scale * 2 * q["w"]})

@rnncheck.case
def a_good():
    BUILT.write_text("built")
    return quad(1.0)

@rnncheck.case
def b_bad():
    return quad(0.5)

@rnncheck.case
def c_good_too():
    return quad(1.0)
"""


def write(tmp_path, body=MODELS, name="models.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def run(*args, command="verify"):
    result = CliRunner().invoke(main, [command, *map(str, args)], catch_exceptions=False)
    return result.exit_code, result.output


def test_collect_only_lists_the_ids_and_builds_nothing(tmp_path):
    f = write(tmp_path)
    code, out = run(f, "--collect-only")
    assert code == 0
    assert out.splitlines()[:3] == [f"{f}::a_good", f"{f}::b_bad", f"{f}::c_good_too"]
    assert "3 case(s) collected" in out
    assert not (tmp_path / "built.txt").exists()


def test_a_listed_id_runs_that_case_alone(tmp_path):
    f = write(tmp_path)
    code, out = run(f"{f}::b_bad")
    assert code == 1 and "b_bad" in out and "a_good" not in out and "0 passed, 0 warned, 1 failed" in out
    code, out = run(f"{f}::nope")
    assert code == 2 and "no case named nope" in out


def test_exitfirst_stops_after_the_first_failure_and_still_writes_the_report(tmp_path):
    f = write(tmp_path)
    code, out = run(f, "-x", "--json", tmp_path / "r.json")
    assert code == 1
    assert [c["name"] for c in json.loads((tmp_path / "r.json").read_text())["cases"]] == ["a_good", "b_bad"]
    assert "stopped after the first failing case (-x): 1 case(s) not run" in out


def test_quiet_gives_one_line_per_case_and_verbose_every_probe(tmp_path):
    f = write(tmp_path)
    code, out = run(f, "-q", "--no-flow")
    lines = [l for l in out.splitlines() if l.strip()]
    assert len(lines) == 4 and lines[-1].startswith("2 passed, 0 warned, 1 failed")
    code, out = run(f, "-v", "--no-flow", "-k", "bad")
    probes = [l for l in out.splitlines() if l.strip().startswith("probe ")]
    assert len(probes) == 3 and all("truncation" in p and "rounding" in p for p in probes)


def test_every_failing_case_ends_with_the_command_that_reruns_it(tmp_path, monkeypatch):
    f = write(tmp_path)
    code, out = run(f, "--seed", "4", "--probes", "5")
    line = next(l for l in out.splitlines() if "rerun:" in l)
    command = shlex.split(line.split("rerun:", 1)[1])
    assert command == ["rnncheck", "verify", f"{f}::b_bad", "--seed", "4", "--probes", "5"]
    code, again = run(*command[2:])
    assert code == 1 and "b_bad" in again and "a_good" not in again
    assert sum("rerun:" in l for l in out.splitlines()) == 1  # the passing cases get none


def test_no_color_gives_plain_text(tmp_path):
    f = write(tmp_path)
    result = CliRunner().invoke(main, ["verify", f, "--no-color"], color=True)
    assert "\x1b[" not in result.output


def test_a_legend_says_what_the_columns_mean(tmp_path):
    code, out = run(write(tmp_path), "--no-flow")
    assert "columns: rel err = " in out and "catches = " in out


FLOW = """
import torch
import rnncheck

def rnn(scale):
    torch.manual_seed(0)
    m = torch.nn.RNN(3, 16, nonlinearity="relu").double()
    with torch.no_grad():
        m.weight_hh_l0.copy_(torch.eye(16, dtype=torch.float64) * scale)
        m.bias_hh_l0.fill_(0.5)
    x = 0.01 * torch.randn(80, 2, 3, dtype=torch.float64)
    return rnncheck.TorchCase(m, inputs=(x,), loss=lambda out: out[0][-1].sum())

@rnncheck.case
def exploding():
    return rnn(1.1)

@rnncheck.case
def vanishing():
    return rnn(0.3)
"""


def test_diagnose_leads_with_the_flow_verdict_and_fail_on_makes_it_a_failure(tmp_path):
    f = write(tmp_path, FLOW)
    code, out = run(f, command="diagnose")
    assert code == 0
    assert any(l.startswith("EXPLODING") and "::exploding" in l for l in out.splitlines())
    assert any(l.startswith("VANISHING") and "::vanishing" in l for l in out.splitlines())
    code, out = run(f, "--fail-on", "exploding", command="diagnose")
    assert code == 1 and "--fail-on exploding makes a failure" in out
    code, out = run(f, "--fail-on", "nonfinite", command="diagnose")
    assert code == 0
    code, out = run(f, "--fail-on", "exploding,sideways", command="diagnose")
    assert code == 2 and "sideways" in out
    code, out = run(f, "--fail-on", "vanishing", "--no-reference")
    assert code == 1 and "gradient flow is vanishing" in out


def test_fail_on_in_the_marker(pytester):
    pytester.makepyfile(
        test_marker_fail_on=FLOW.replace("@rnncheck.case\n", "")
        + """

import pytest

@pytest.mark.rnncheck(fail_on=("exploding",))
def test_does_not_explode(rnncheck):
    rnncheck.assert_ok(exploding())
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "gradient flow is exploding" in out
    assert "FAIL  " in out and "::test_does_not_explode" in out


def test_the_fixture_names_a_failing_case_after_its_test(pytester):
    pytester.makepyfile(
        test_named="""
        import numpy as np
        import rnncheck as rc

        def test_my_backward(rnncheck):
            case = rc.NumpyCase({"w": np.ones(3)}, loss=lambda p: float((p["w"] ** 2).sum()), grad=lambda p: {"w": p["w"]})
            rnncheck.assert_ok(case)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    header = next(l for l in result.stdout.lines if "FAIL  " in l)
    assert header.split("(")[0].rstrip().endswith("test_named.py::test_my_backward"), header


@pytest.mark.parametrize(
    "gates, message",
    [
        ("'lstm'", "gates= takes a dict of tensor name -> gate names"),
        ("{'nope': ('i', 'f', 'g', 'o')}", "gates= names 'nope', which is not a checked tensor"),
        ("{'W': ('i', 'f', 'g')}", "gates['W'] has 3 gates but W has shape (8, 2)"),
        ("{'W': 3}", "gates['W'] must be a tuple of gate names"),
    ],
)
def test_gates_are_validated_with_their_format(tmp_path, gates, message):
    f = write(
        tmp_path,
        f"""
        import numpy as np
        import rnncheck

        @rnncheck.case
        def gated():
            p = {{"W": np.ones((8, 2))}}
            return rnncheck.NumpyCase(p, loss=lambda q: float((q["W"] ** 2).sum()), grad=lambda q: {{"W": 2 * q["W"]}}, gates={gates})
        """,
    )
    code, out = run(f)
    assert code == 1 and message in out and "Traceback" not in out


def test_a_stacked_weight_without_gates_gets_a_note_suggesting_them(tmp_path):
    f = write(
        tmp_path,
        """
        import numpy as np
        import rnncheck

        @rnncheck.case
        def lstm_like():
            rng = np.random.default_rng(0)
            p = {"weight_hh": rng.normal(size=(32, 8)), "bias": rng.normal(size=32)}
            return rnncheck.NumpyCase(p, loss=lambda q: float((q["weight_hh"] ** 2).sum() + q["bias"].sum()),
                                      grad=lambda q: {"weight_hh": 2 * q["weight_hh"], "bias": np.ones(32)})
        """,
    )
    code, out = run(f, "--no-flow")
    assert "weight_hh has 4×8 rows" in out and "gates={'weight_hh': ('i', 'f', 'g', 'o'), 'bias':" in out
    # with gates= given, a wrong gradient in one gate is named by its gate
    assert rnncheck.NumpyCase  # the public name the note points to


def test_the_flow_verdict_is_explained_in_plain_words(tmp_path):
    f = write(
        tmp_path,
        """
        import torch
        import rnncheck

        @rnncheck.case
        def default_gru():
            torch.manual_seed(0)
            return rnncheck.TorchCase(torch.nn.GRU(8, 32), inputs=(torch.randn(20, 4, 8),))
        """,
    )
    code, out = run(f, command="diagnose")
    line = next(l for l in out.splitlines() if "In plain words" in l)
    assert (
        "shrinks 0.6× per step back: a step 10 back gets 0.006 of the last step's weight, a step 19 back 6e-05" in line
    )
    assert "matters only if the task needs longer memory" in line and "what usually changes it" in line
    f = write(tmp_path, FLOW, name="flow.py")
    code, out = run(f, "-k", "exploding", command="diagnose")
    assert "grows 1.1× per step back" in out and "gradient clipping" in out
