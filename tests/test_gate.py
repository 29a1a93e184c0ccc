"""The gradient-regression gate: unchanged passes, a changed model fails with a readable diff,
a case missing from the baseline fails, a NaN never passes, tolerances come from the file."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rnncheck import main
from rnncheck.baseline import DEFAULT_TOLERANCES, Baseline, compare

MODEL = """
import torch
import rnncheck

SCALE = {scale}
BIAS = {bias}

@rnncheck.case
def gated_gru():
    torch.manual_seed(0)
    model = torch.nn.GRU(3, 6).double()
    with torch.no_grad():
        model.weight_hh_l0.mul_(SCALE)
        model.bias_hh_l0.add_(BIAS)
    x = torch.randn(10, 2, 3, dtype=torch.float64)
    return rnncheck.TorchCase(model, inputs=(x,))

@rnncheck.case
def other():
    torch.manual_seed(1)
    return rnncheck.TorchCase(torch.nn.Linear(3, 2).double(), inputs=(torch.randn(4, 3, dtype=torch.float64),))
"""


def write(path, scale=1.0, bias=0.0):
    path.write_text(MODEL.format(scale=scale, bias=bias))


def run(*args):
    r = CliRunner().invoke(main, ["verify", *args])
    return r.exit_code, r.output


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "models.py")
    code, out = run("models.py", "--baseline", "base.json", "--update-baseline", "--baseline-repeats", "2")
    assert code == 0, out
    return tmp_path


def test_written_baseline_is_diff_friendly_json_with_versions(workdir):
    text = (workdir / "base.json").read_text()
    data = json.loads(text)
    assert list(data) == sorted(data)  # sorted keys
    assert {"rnncheck", "torch", "numpy", "seed", "device", "dtype", "tolerances", "cases", "format"} <= set(data)
    assert set(data["cases"]) == {"models.py::gated_gru", "models.py::other"}
    assert data["cases"]["models.py::gated_gru"]["repeats"] == 2
    assert data["tolerances"] == DEFAULT_TOLERANCES
    assert "NaN" not in text and "Infinity" not in text


def test_unchanged_model_passes_the_gate(workdir):
    code, out = run("models.py", "--baseline", "base.json")
    assert code == 0 and "gate: 2 of 2 cases match base.json" in out


def test_changed_model_fails_with_what_moved_by_how_much_and_the_tolerance(workdir):
    write(workdir / "models.py", scale=1.3)
    code, out = run("models.py", "--baseline", "base.json")
    assert code == 1
    lines = [line for line in out.splitlines() if "baseline_drift" in line]
    assert any(
        "log10 gradient norm of weight_hh_l0" in line and "tolerance ±" in line and "->" in line for line in lines
    )
    assert "gate: 1 of 2 cases match" in out


def test_horizon_tolerance_is_one_sided():
    stored = {
        "verdict": "pass",
        "checks": {},
        "gradient_flow": "healthy",
        "grad_log10_norm": {},
        "sketch": {},
        "flow": {"l0": {"log10_profile": [0.0], "rho": 0.9, "horizon": 10.0}},
    }
    longer = json.loads(json.dumps(stored))
    longer["flow"]["l0"]["horizon"] = 30.0
    shorter = json.loads(json.dumps(stored))
    shorter["flow"]["l0"]["horizon"] = 7.0
    tol = dict(DEFAULT_TOLERANCES, rho_rel=10.0)
    assert not [d for d in compare(stored, longer, tol) if d.quantity == "memory horizon"]
    assert [d for d in compare(stored, shorter, tol) if d.quantity == "memory horizon"]


def test_case_missing_from_the_baseline_fails_unless_updating(workdir):
    data = json.loads((workdir / "base.json").read_text())
    del data["cases"]["models.py::other"]
    (workdir / "base.json").write_text(json.dumps(data))
    code, out = run("models.py", "--baseline", "base.json")
    assert code == 1 and "models.py::other is not in the baseline: run with --update-baseline" in out
    code, _ = run("models.py", "--baseline", "base.json", "--update-baseline")
    assert code == 0
    assert "models.py::other" in json.loads((workdir / "base.json").read_text())["cases"]


def test_a_nan_never_passes(workdir):
    write(workdir / "models.py", bias=float("nan"))
    (workdir / "models.py").write_text((workdir / "models.py").read_text().replace("BIAS = nan", "BIAS = float('nan')"))
    code, out = run("models.py", "--baseline", "base.json")
    assert code == 1
    assert "gate: 1 of 2 cases match" in out


def test_tolerances_come_from_the_file(workdir):
    write(workdir / "models.py", scale=1.002)
    code, _ = run("models.py", "--baseline", "base.json")
    assert code == 1  # the defaults see a 0.2% change of W_hh
    data = json.loads((workdir / "base.json").read_text())
    data["tolerances"].update(grad_log10_norm=0.01, sketch=0.01, profile_log10=0.01)
    (workdir / "base.json").write_text(json.dumps(data))
    code, out = run("models.py", "--baseline", "base.json")
    assert code == 0, out


def test_other_torch_version_warns_but_compares(workdir):
    data = json.loads((workdir / "base.json").read_text())
    data["torch"] = "0.0.1"
    (workdir / "base.json").write_text(json.dumps(data))
    code, out = run("models.py", "--baseline", "base.json")
    assert code == 0 and "written with torch 0.0.1" in out


def test_spread_from_repeats_widens_the_tolerance():
    base = {
        "verdict": "pass",
        "checks": {},
        "gradient_flow": None,
        "grad_log10_norm": {"w": 1.0},
        "sketch": {"w": [0.5]},
        "flow": {},
        "spread": {"grad_log10_norm": {"w": 0.01}, "sketch": {"w": 0.0}},
    }
    now = dict(base, grad_log10_norm={"w": 1.03})
    assert not compare(base, now, DEFAULT_TOLERANCES)  # 0.03 < 4 × 0.01
    now = dict(base, grad_log10_norm={"w": 1.05})
    assert compare(base, now, DEFAULT_TOLERANCES)


def test_junit_xml_has_one_testcase_per_case(workdir):
    code, _ = run("models.py", "--baseline", "base.json", "--junit-xml", "r.xml")
    xml = (workdir / "r.xml").read_text()
    assert xml.count("<testcase") == 2 and 'name="gated_gru"' in xml and "<failure" not in xml


def test_missing_baseline_file_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "models.py")
    code, out = run("models.py", "--baseline", "nope.json")
    assert code == 2 and "no such baseline file" in out


def test_round_trip_of_the_file():
    # a whole record: one stripped to {"verdict": "pass"} is refused on load (tests/test_baseline.py)
    record = {"verdict": "pass", "checks": {"gradient": "pass"}, "gradient_flow": None, "grad_log10_norm": {"w": 0.5}}
    record.update(sketch={"w": [0.1, -0.2]}, flow={})
    b = Baseline(meta={"torch": "x"}, cases={"a::b": record})
    again = Baseline.load(_write(b))
    assert again.cases == b.cases and again.meta["torch"] == "x"


def _write(b):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "b.json"
    b.save(path)
    return path


def test_a_moved_case_is_moved_a_new_one_new_and_each_prints_the_command_that_accepts_it(workdir):
    data = json.loads((workdir / "base.json").read_text())
    del data["cases"]["models.py::other"]
    (workdir / "base.json").write_text(json.dumps(data))
    write(workdir / "models.py", scale=1.3)
    code, out = run("models.py", "--baseline", "base.json", "--no-color")
    assert code == 1
    heads = {
        line.split("::")[1].split()[0]: line for line in out.splitlines() if line.startswith(("PASS", "FAIL", "ERROR"))
    }
    assert heads["gated_gru"].endswith("gate: MOVED") and heads["other"].endswith("gate: NEW")
    accepts = [line.strip() for line in out.splitlines() if line.strip().startswith("accept:")]
    assert "accept: rnncheck verify models.py::gated_gru --seed 0 --baseline base.json --update-baseline" in accepts
    assert "gate: 0 of 2 cases match base.json (1 moved, 1 new)" in out
    # the printed command accepts the change: the gate then matches
    command = accepts[0].removeprefix("accept: rnncheck ").split()
    assert run(*command[1:])[0] == 0 and run("models.py::gated_gru", "--baseline", "base.json")[0] == 0
