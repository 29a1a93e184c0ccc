"""Every python block in README.md runs: model files through `rnncheck verify`, pytest snippets through pytester."""

from __future__ import annotations

import re
import subprocess
import sys

from click.testing import CliRunner
from helpers import ROOT

from rnncheck import main

pytest_plugins = ["pytester"]

README = ROOT / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_python_blocks_of_each_kind():
    blocks = python_blocks()
    assert any("@rnncheck.case" in b for b in blocks)  # model files
    assert any("def test_" in b for b in blocks)  # pytest snippets
    assert any("@rnncheck.case" not in b and "def test_" not in b for b in blocks)  # scripts (the notebook cell)


def test_every_script_in_the_readme_runs(tmp_path):
    scripts = [b for b in python_blocks() if "@rnncheck.case" not in b and "def test_" not in b]
    for k, block in enumerate(scripts):
        path = tmp_path / f"readme_script_{k}.py"
        path.write_text(block)
        proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr


def test_every_model_file_in_the_readme_passes_rnncheck_verify(tmp_path):
    blocks = [b for b in python_blocks() if "@rnncheck.case" in b]
    assert blocks
    for k, block in enumerate(blocks):
        path = tmp_path / f"readme_model_{k}.py"
        path.write_text(block)
        result = CliRunner().invoke(main, ["verify", str(path)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert " 0 failed, 0 errors" in result.output


def test_every_pytest_snippet_in_the_readme_passes(pytester):
    blocks = [b for b in python_blocks() if "def test_" in b and "@rnncheck.case" not in b]
    assert blocks
    for k, block in enumerate(blocks):
        pytester.makepyfile(**{f"test_readme_{k}": block})
    result = pytester.runpytest("-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 2 and not outcomes.get("failed") and not outcomes.get("errors"), (
        result.stdout.str()
    )


def test_every_name_the_readme_shows_from_rnncheck_is_exported():
    import rnncheck

    names = set(re.findall(r"\brnncheck\.([A-Za-z_]\w*)", README.read_text()))
    import rnncheck.reference  # noqa: F401

    import rnncheck.convert  # noqa: F401 - a submodule the README names

    fixture_methods = {"assert_ok"}  # `rnncheck.assert_ok(...)` in the pytest snippet is the fixture's
    missing = [n for n in sorted(names - fixture_methods) if not hasattr(rnncheck, n)]
    assert not missing, f"README shows rnncheck.{missing} but the package lacks them"
