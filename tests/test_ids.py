"""Case ids travel: relative to the nearest pyproject.toml above the paths (internal structure under test)."""

from __future__ import annotations

from rnncheck.findings import CaseResult, Verdict
from rnncheck.ids import case_id, id_root  # the module under test


def test_the_root_is_the_folder_of_the_nearest_pyproject(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "models" / "deep").mkdir(parents=True)
    model = tmp_path / "models" / "deep" / "m.py"
    model.write_text("")
    assert id_root([str(model)]) == tmp_path.resolve()


def test_without_a_pyproject_the_root_is_the_common_folder(tmp_path):
    a, b = tmp_path / "x" / "a.py", tmp_path / "x" / "y" / "b.py"
    b.parent.mkdir(parents=True)
    a.write_text("")
    b.write_text("")
    root = id_root([str(a), str(b)])
    assert root == (tmp_path / "x").resolve() or (root / "pyproject.toml").is_file()


def test_an_id_is_the_relative_path_and_the_case_name(tmp_path):
    result = CaseResult("lstm", str(tmp_path / "models" / "m.py"), Verdict.PASS)
    assert case_id(result, tmp_path) == "models/m.py::lstm"
    assert case_id(CaseResult("scripted", "", Verdict.PASS)) == "::scripted"
