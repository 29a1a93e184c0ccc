"""Collection: a case is collected only in the file that defines it, as pytest does."""

from __future__ import annotations

import textwrap

from click.testing import CliRunner

from rnncheck import main

SHARED = """
import numpy as np
import rnncheck


def quad_case(scale=1.0):
    return rnncheck.NumpyCase({"w": np.ones(2)}, lambda p: float((p["w"] ** 2).sum()), lambda p: {"w": scale * 2 * p["w"]})


@rnncheck.case
def shared_quad():
    return quad_case()
"""

IMPORTER = """
import rnncheck
from shared_models import quad_case


@rnncheck.case
def own_quad():
    return quad_case()
"""


def test_a_model_file_imported_by_another_is_collected_once(tmp_path):
    (tmp_path / "shared_models.py").write_text(textwrap.dedent(SHARED))
    (tmp_path / "importer.py").write_text(textwrap.dedent(IMPORTER))
    result = CliRunner().invoke(main, ["verify", str(tmp_path), "--collect-only"])
    ids = [line.strip() for line in result.output.splitlines() if "::" in line]
    assert sorted(i.split("/")[-1] for i in ids) == ["importer.py::own_quad", "shared_models.py::shared_quad"]
    assert "2 case(s) collected" in result.output
