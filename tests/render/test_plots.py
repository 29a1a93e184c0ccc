"""--plot's figures: named so that same-named cases in different folders never overwrite each other, and
drawn from the typed flow results (internal structure under test)."""

from __future__ import annotations

import pytest

from rnncheck.findings import CaseResult, Verdict
from rnncheck.flowresults import Gates, GateStats, Histogram, LayerFlow
from rnncheck.render.plots import _stem, plot_case  # the module under test


def test_figure_names_carry_the_folder_of_a_file_outside_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    assert _stem(CaseResult("lstm", str(tmp_path / "a" / "m.py"), Verdict.PASS)) == "a_m-lstm"
    assert _stem(CaseResult("lstm", str(tmp_path / "m.py"), Verdict.PASS)) == "m-lstm"
    assert _stem(CaseResult("scripted", "", Verdict.PASS)) == "scripted"


def test_a_measured_case_gets_its_profile_and_gate_figures(tmp_path):
    pytest.importorskip("matplotlib")
    case = CaseResult("lstm", "", Verdict.PASS)
    layer = LayerFlow("lstm/l0", "lstm", 4, profile=[1.0, 0.5, 0.25, 0.125], propagation=[1.0, 0.5, 0.25, 0.125])
    layer.gates = Gates({"f": GateStats(0.9, Histogram([0.0, 0.5, 1.0], [1, 9]), 0.8, below=0.0, above=0.8)})
    case.diagnostics.layers.append(layer)
    written = plot_case(case, tmp_path)
    assert any(p.name.endswith("-gates.png") for p in written) and all(p.exists() for p in written)
