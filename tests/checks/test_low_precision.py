"""bfloat16 and float16 models get real verdicts: correct ones never fail, gross errors fail, and where
the dtype hides an error the report says so (`unchecked`, with the power it had)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import EXAMPLES, load_module

import rnncheck
from rnncheck import main


class GRUCellLoop(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = torch.nn.GRUCell(3, 6)

    def forward(self, x):
        h = x.new_zeros(x.shape[1], 6)
        outs = []
        for x_t in x:
            h = self.cell(x_t, h)
            outs.append(h)
        return torch.stack(outs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_correct_low_precision_gru_cell_loop_never_fails(dtype, seed):
    torch.manual_seed(seed)
    case = rnncheck.TorchCase(GRUCellLoop().to(dtype), inputs=(torch.randn(8, 2, 3).to(dtype),))
    result = rnncheck.verify_case(case, rnncheck.Options(seed=seed, diagnostics=False))
    gradient = next(c for c in result.checks if c.name == "gradient")
    assert result.verdict in ("pass", "warn"), [f.message for f in result.findings]
    assert gradient.summary.numeric_dtype == "float64"  # the numerical side runs in float64, and says so
    assert gradient.summary.model_dtype == str(dtype).replace("torch.", "")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_dtype_option_runs_a_float32_model_in_low_precision(tmp_path, dtype):
    out = tmp_path / "r.json"
    result = CliRunner().invoke(
        main,
        ["verify", str(EXAMPLES / "custom_lstm_function.py"), "--dtype", dtype, "--no-flow", "--json", str(out)],
        catch_exceptions=False,
    )
    verdicts = {c["name"]: c["verdict"] for c in json.loads(out.read_text())["cases"]}
    assert verdicts["custom_lstm"] in ("pass", "warn"), result.output
    assert verdicts["custom_lstm_no_forget"] == "fail"  # a grossly wrong derivative fails even in bfloat16
    gradient = next(c for c in json.loads(out.read_text())["cases"][0]["checks"] if c["name"] == "gradient")
    assert gradient["numbers"]["model_dtype"] == dtype


def _fused_rnn_with_dw_hh_off_by(factor: float, entry=None):
    """The example's fused RNN Function, its dW_hh (or one ``entry`` of it) multiplied by ``factor``."""
    ex = load_module(EXAMPLES / "custom_rnn_vs_naive.py")

    class OffFn(ex.FusedTanhRNNFn):
        @staticmethod
        def backward(ctx, d_out):
            dx, dW_ih, dW_hh, db, none = ex.FusedTanhRNNFn.backward(ctx, d_out)
            if entry is None:
                return dx, dW_ih, dW_hh * factor, db, none
            dW_hh = dW_hh.clone()
            dW_hh[entry] *= factor
            return dx, dW_ih, dW_hh, db, none

    class Off(ex.FusedTanhRNN):
        def forward(self, x):
            return OffFn.apply(x, self.weight_ih, self.weight_hh, self.bias, False)

    return Off


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_five_percent_error_in_one_low_precision_tensor_fails(dtype, seed):
    torch.manual_seed(seed)
    model = _fused_rnn_with_dw_hh_off_by(1.05)(5, 12)
    with torch.no_grad():
        model.weight_hh.mul_(2.0)  # a recurrence that carries
    case = rnncheck.TorchCase(model.to(dtype), inputs=(torch.randn(15, 3, 5).to(dtype),))
    result = rnncheck.verify_case(case, rnncheck.Options(seed=seed, diagnostics=False))
    gradient = next(c for c in result.checks if c.name == "gradient")
    assert result.verdict == "fail", [f.message for f in result.findings]
    assert [r.name for r in gradient.tensors if r.verdict == "fail"] == ["weight_hh"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("seed", [0, 1])
def test_full_mode_never_fails_a_correct_layer_below_float64(dtype, kind, seed):
    # one entry's measured rounding is a single draw: alone it once made half these runs fail
    torch.manual_seed(seed)
    layer = getattr(torch.nn, kind)(4, 6).to(dtype)
    case = rnncheck.TorchCase(layer, inputs=(torch.randn(8, 3, 4).to(dtype),))
    result = rnncheck.verify_case(case, rnncheck.Options(seed=seed, full=True, diagnostics=False, reference=False))
    assert result.verdict in ("pass", "warn"), [f.message for f in result.findings]
    gradient = next(c for c in result.checks if c.name == "gradient")
    assert all(r.detection is not None and 0 < r.detection < 1 for r in gradient.tensors)


@pytest.mark.parametrize("dtype, factor", [(torch.float32, 1.001), (torch.float16, 1.2)])
@pytest.mark.parametrize("seed", [1, 2])
def test_full_mode_finds_one_entry_off_below_float64(dtype, factor, seed):
    torch.manual_seed(seed)
    model = _fused_rnn_with_dw_hh_off_by(factor, entry=(3, 5))(5, 12)
    with torch.no_grad():
        model.weight_hh.mul_(2.0)
    case = rnncheck.TorchCase(model.to(dtype), inputs=(torch.randn(15, 3, 5).to(dtype),))
    result = rnncheck.verify_case(case, rnncheck.Options(seed=seed, full=True, diagnostics=False, reference=False))
    [bad] = [f for f in result.findings if f.kind == "mismatch"]
    assert result.verdict == "fail" and bad.tensor == "weight_hh" and bad.location["index"] == [3, 5]


DROPOUT_MODEL = """
import torch, rnncheck

class Stack(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(4, 6, num_layers=2, dropout=0.3)  # left in training mode

    def forward(self, x):
        return self.lstm(x)[0]

@rnncheck.case
def dropout_on():
    torch.manual_seed(0)
    return rnncheck.TorchCase(Stack().to(torch.{dtype}), inputs=(torch.randn(6, 3, 4).to(torch.{dtype}),))
"""


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_dropout_left_on_in_low_precision_is_named_not_left_unresolved(tmp_path, dtype):
    # the sanity checks' repeat test allows 256 ulps of the model's dtype: in float16 that is 25% of the loss
    import jsonschema

    model_file = tmp_path / "m.py"
    model_file.write_text(DROPOUT_MODEL.format(dtype=dtype))
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["verify", str(model_file), "--json", str(out)], catch_exceptions=False)
    assert result.exit_code != 0 and "disable dropout (model.eval())" in result.output, result.output
    assert "None probe directions" not in result.output
    report = json.loads(out.read_text())
    [case] = report["cases"]
    assert case["verdict"] == "error"
    assert any(f["kind"] == "nondeterministic_loss" for f in case["findings"])
    schema = json.loads((Path(rnncheck.__file__).parent / "schemas" / "report.schema.json").read_text())
    jsonschema.validate(report, schema)


OWN_ZEROS = """
import torch, rnncheck

class Loop(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = torch.nn.GRUCell(3, 4)

    def forward(self, x):
        h = torch.zeros(x.shape[1], 4)  # float32 whatever the input's dtype
        for x_t in x:
            h = self.cell(x_t, h)
        return h

class Follows(Loop):
    def forward(self, x):
        h = x.new_zeros(x.shape[1], 4)
        for x_t in x:
            h = self.cell(x_t, h)
        return h

@rnncheck.case
def own_zeros():
    torch.manual_seed(0)
    return rnncheck.TorchCase(Loop(), inputs=(torch.randn(5, 2, 3),))

@rnncheck.case
def follows():
    torch.manual_seed(0)
    return rnncheck.TorchCase(Follows(), inputs=(torch.randn(5, 2, 3),))
"""


def test_dtype_option_names_a_tensor_the_code_makes_in_its_own_dtype(tmp_path):
    model_file = tmp_path / "m.py"
    model_file.write_text(OWN_ZEROS)
    out = tmp_path / "r.json"
    result = CliRunner().invoke(
        main,
        ["verify", str(model_file), "--dtype", "bfloat16", "--no-flow", "--json", str(out)],
        catch_exceptions=False,
    )
    cases = {c["name"]: c for c in json.loads(out.read_text())["cases"]}
    assert cases["own_zeros"]["verdict"] == "error"
    assert "with --dtype bfloat16" in cases["own_zeros"]["error"] and "x.new_zeros" in cases["own_zeros"]["error"]
    assert cases["follows"]["verdict"] in ("pass", "warn"), result.output
