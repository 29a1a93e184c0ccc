"""The numerical side says what a model's own casts cost: partial casts named, a float64 refusal quoted."""

from __future__ import annotations

import json
import textwrap

from click.testing import CliRunner

from rnncheck import main

MODELS = """
import torch
import rnncheck


class MambaLike(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.A_log = torch.nn.Parameter(torch.randn(4).double())
        self.proj = torch.nn.Linear(3, 4).double()

    def forward(self, x):
        A = -torch.exp(self.A_log.float())  # the cast
        u = self.proj(x)
        h, hs = torch.zeros_like(u[0]), []
        for u_t in u:
            h = torch.exp(A).double() * h + u_t
            hs.append(h)
        return torch.stack(hs)


class Float32Only(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 4)

    def forward(self, x):
        return self.lin(x) @ torch.ones(4, 2)  # a float32 constant


@rnncheck.case
def partial_cast():
    torch.manual_seed(0)
    return rnncheck.TorchCase(MambaLike(), inputs=(torch.randn(6, 2, 3, dtype=torch.float64),))


@rnncheck.case
def clean():
    torch.manual_seed(0)
    return rnncheck.TorchCase(torch.nn.GRU(3, 4).double(), inputs=(torch.randn(6, 2, 3, dtype=torch.float64),))


@rnncheck.case
def no_float64():
    torch.manual_seed(0)
    return rnncheck.TorchCase(Float32Only(), inputs=(torch.randn(6, 2, 3),))
"""


def _line(marker: str) -> int:
    return next(i for i, line in enumerate(textwrap.dedent(MODELS).splitlines(), 1) if marker in line)


def _notes(tmp_path):
    path = tmp_path / "cast_models.py"
    path.write_text(textwrap.dedent(MODELS))
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["verify", str(path), "--no-flow", "--json", str(out)])
    assert result.exit_code == 0, result.output
    notes = {}
    for case in json.loads(out.read_text())["cases"]:
        gradient = next(c for c in case["checks"] if c["name"] == "gradient")
        notes[case["name"]] = " | ".join(gradient["numbers"]["notes"])
    return notes, path


def test_a_partial_cast_in_a_float64_model_is_named_with_its_tensor_and_line(tmp_path):
    notes, path = _notes(tmp_path)
    assert f"casts down inside its forward (A_log to float32 at {path}:{_line('# the cast')})" in notes["partial_cast"]
    assert "casts down" not in notes["clean"]


def test_a_model_that_cannot_run_in_float64_quotes_the_error_and_the_line(tmp_path):
    notes, path = _notes(tmp_path)
    assert "the model does not run in float64: the model's forward raised RuntimeError:" in notes["no_float64"]
    assert f"(at {path}:{_line('# a float32 constant')})" in notes["no_float64"]
