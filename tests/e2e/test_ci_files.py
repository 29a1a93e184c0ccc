"""The ready-to-copy CI workflow is valid YAML naming real steps; the committed baseline loads."""

from __future__ import annotations

import yaml
from helpers import ROOT

from rnncheck.baseline import Baseline


def test_workflow_is_valid_yaml_with_real_steps():
    wf = yaml.safe_load((ROOT / "ci" / "github-actions.yml").read_text())
    steps = wf["jobs"]["gradients"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert any(u.startswith("actions/checkout@") for u in uses)
    assert any(u.startswith("actions/setup-python@") for u in uses)
    # not `pip install rnncheck`, which finds nothing on PyPI: from the repository, as the README installs it
    assert "pip install rnncheck\n" not in runs + "\n" and '"rnncheck @ ${RNNCHECK_FROM}"' in runs
    assert wf["env"]["RNNCHECK_FROM"].startswith("git+https://")
    assert "rnncheck verify" in runs and "--baseline" in runs
    assert all("name" in s for s in steps)


def test_committed_baseline_covers_examples_and_reference_models():
    b = Baseline.load(ROOT / "ci" / "baseline.json")
    ids = set(b.cases)
    assert "examples/article_rnn.py::article_rnn" in ids
    assert "ci/reference_models.py::reference_lstm" in ids
    assert b.meta["torch"] and b.meta["numpy"] and b.meta["rnncheck"]
