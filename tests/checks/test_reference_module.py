"""reference= takes your own naive module: outputs and gradients compared with a tolerance measured by
running the naive module in the candidate's own dtype."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from helpers import EXAMPLES, load_module

import rnncheck
from rnncheck import main

ex = load_module(EXAMPLES / "custom_rnn_vs_naive.py")


class WrongBackward(ex.FusedTanhRNNFn):
    """The right forward; the backward scales dW_hh by ``factor``."""

    factor = 1.05

    @staticmethod
    def backward(ctx, d_out):
        grads = list(ex.FusedTanhRNNFn.backward(ctx, d_out))
        grads[2] = grads[2] * WrongBackward.factor
        return tuple(grads)


class FusedWrongBackward(ex.FusedTanhRNN):
    def forward(self, x):
        return WrongBackward.apply(x, self.weight_ih, self.weight_hh, self.bias, False)


def check(model, dtype, seed=0, **kw):
    torch.manual_seed(seed)
    model = model.to(dtype)
    x = torch.randn(15, 3, 5).to(dtype)
    case = rnncheck.TorchCase(model, inputs=(x,), reference=ex.NaiveRNN(5, 12), **kw)
    return rnncheck.verify_case(case, rnncheck.Options(seed=seed, diagnostics=False))


def module_check(result):
    return next(c for c in result.checks if c.name == "reference_module")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_correct_fused_layer_passes_against_its_naive_twin(dtype, seed):
    torch.manual_seed(seed)
    result = check(ex.FusedTanhRNN(5, 12), dtype, seed)
    assert module_check(result).verdict == "pass", [f.message for f in module_check(result).findings]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_forward_bug_the_finite_differences_cannot_see_fails(dtype):
    torch.manual_seed(0)
    result = check(ex.FusedTanhRNN(5, 12, relu=True), dtype)
    gradient = next(c for c in result.checks if c.name == "gradient")
    assert gradient.verdict in ("pass", "warn")  # self-consistent: the probes see nothing wrong
    kinds = {f.kind for f in module_check(result).findings if f.verdict == "fail"}
    assert "reference_module_forward" in kinds and result.verdict == "fail"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_5_percent_error_in_one_weight_gradient_is_caught_or_said_to_be_below_resolution(dtype, seed):
    torch.manual_seed(seed)
    result = check(FusedWrongBackward(5, 12), dtype, seed)
    findings = module_check(result).findings
    failing = [f for f in findings if f.verdict == "fail"]
    resolution = " ".join(f.message for f in findings if f.kind == "reference_module_resolution")
    if failing:
        assert [f.tensor for f in failing] == ["gradient of weight_hh"], [f.message for f in failing]
        assert "the backward is wrong" in " ".join(f.message for f in findings)
    else:  # honest power: the report says 5% is below what this dtype resolves for that tensor
        assert dtype == torch.bfloat16 and "gradient of weight_hh (" in resolution
        below = float(resolution.split("gradient of weight_hh (")[1].split("%")[0])
        assert below > 5.0
    if dtype != torch.bfloat16:
        assert failing


def test_parameter_names_that_do_not_match_are_one_clear_error_and_reference_map_fixes_them():
    class Renamed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.naive = ex.NaiveRNN(5, 12)

        def forward(self, x):
            return self.naive(x)

    torch.manual_seed(0)
    result = check(ex.FusedTanhRNN(5, 12), torch.float64)
    assert module_check(result).verdict == "pass"
    x = torch.randn(15, 3, 5, dtype=torch.float64)
    fused = ex.FusedTanhRNN(5, 12).double()
    bad = rnncheck.verify_case(rnncheck.TorchCase(fused, inputs=(x,), reference=Renamed()))
    err = next(f.message for c in bad.checks for f in c.findings if f.verdict == "error")
    assert "no parameter for naive.weight_ih" in err and "reference_map" in err
    mapping = {f"naive.{n}": n for n in ("weight_ih", "weight_hh", "bias")}
    good = rnncheck.verify_case(rnncheck.TorchCase(fused, inputs=(x,), reference=Renamed(), reference_map=mapping))
    assert module_check(good).verdict == "pass"


def test_the_example_gives_its_expected_verdicts_through_the_command(tmp_path):
    out = tmp_path / "r.json"
    CliRunner().invoke(main, ["verify", str(EXAMPLES / "custom_rnn_vs_naive.py"), "--json", str(out)])
    verdicts = {c["name"]: c["verdict"] for c in json.loads(out.read_text())["cases"]}
    assert verdicts == ex.EXPECTED
