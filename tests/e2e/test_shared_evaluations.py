"""What a check costs the user's model: evaluations one check has made serve the others.

The model below counts its own forward passes at the check point, with and without
autograd, as a user could; the counts show what each check asks of it.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnncheck


class Counting(nn.Module):
    """An nn.LSTM and a linear head that count the forward passes made at the parameters they started from."""

    def __init__(self, dtype) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lstm = nn.LSTM(6, 12).to(dtype)
        self.head = nn.Linear(12, 3).to(dtype)
        self.start = {n: p.detach().clone() for n, p in self.named_parameters()}
        self.at_start = {True: 0, False: 0}  # grad mode -> calls at the starting point

    def forward(self, x):
        here = {n: p for n, p in self.named_parameters()}
        if all(torch.equal(here[n].detach().to(s.dtype), s) for n, s in self.start.items()):
            self.at_start[torch.is_grad_enabled()] += 1
        out, _ = self.lstm(x)
        return self.head(out)


def _check(model, **options):
    torch.manual_seed(1)
    x = torch.randn(15, 4, 6, dtype=next(model.parameters()).dtype)
    return rnncheck.verify_case(rnncheck.TorchCase(model, inputs=(x,)), rnncheck.Options(**options))


def test_a_float64_model_is_run_at_the_check_point_only_by_the_sanity_checks_two_gradients():
    model = Counting(torch.float64)
    result = _check(model, diagnostics=False)
    assert [c.name for c in result.checks] == ["sanity", "gradient", "reference"]
    assert result.verdict == rnncheck.Verdict.PASS
    # the probes start from the loss the sanity checks computed, and the reference comparison
    # takes the layer's inputs and upstream gradients from the first gradient call
    assert model.at_start == {True: 2, False: 0}


def test_the_upstream_gradients_caught_on_the_gradient_call_still_expose_a_wrong_layer_backward():
    # the layer's own backward off by 5% (a hook on its weight): the reference runs the layer on a
    # sub-batch with the upstream gradient the gradient call caught; a zero or stale one would hide it
    model = Counting(torch.float64)
    model.lstm.weight_hh_l0.register_hook(lambda g: g * 1.05)
    result = _check(model, diagnostics=False)
    assert model.at_start == {True: 2, False: 0}
    [bad] = [f for c in result.checks if c.name == "reference" for f in c.findings if f.kind == "fused_mismatch"]
    assert bad.tensor == "lstm.weight_hh_l0" and "rel err 0.05" in bad.message


@pytest.mark.parametrize("reference", [True, False])
def test_without_fused_layers_to_compare_or_with_the_reference_off_nothing_is_caught(reference):
    model = Counting(torch.float64)
    result = _check(model, diagnostics=False, reference=reference)
    assert model.at_start[True] == 2 and model.at_start[False] == 0
    assert ("reference" in [c.name for c in result.checks]) == reference


def test_a_float32_models_float64_copy_is_evaluated_at_the_check_point_once():
    model = Counting(torch.float32)
    result = _check(model, diagnostics=False, reference=False)
    assert result.verdict == rnncheck.Verdict.PASS
    # the user's float32 model: the sanity checks' two gradients (the numerical side runs a float64 copy)
    assert model.at_start == {True: 2, False: 0}


class Encoder(nn.Module):
    """A frozen nn.LSTM under a trainable nn.GRU, or the other way round: fine-tuning one layer."""

    def __init__(self, frozen: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lstm = nn.LSTM(4, 6).double()
        self.gru = nn.GRU(6, 5).double()
        for p in getattr(self, frozen).parameters():
            p.requires_grad_(False)

    def forward(self, x):
        out, _ = self.lstm(x)
        out, _ = self.gru(out)
        return out


@pytest.mark.parametrize("frozen, trainable", [("lstm", "gru"), ("gru", "lstm")])
def test_a_frozen_layer_is_compared_on_its_forward_pass_and_the_trainable_one_in_full(frozen, trainable):
    x = torch.randn(7, 3, 4, dtype=torch.float64)
    result = rnncheck.verify_case(rnncheck.TorchCase(Encoder(frozen), inputs=(x,)), rnncheck.Options())
    assert result.verdict == rnncheck.Verdict.PASS, result.error
    [reference] = [c for c in result.checks if c.name == "reference"]
    messages = [f.message for f in reference.findings]
    assert sum("the forward pass matches" in m for m in messages) == 2
    assert any(m.startswith(f"{frozen}: its weights are frozen") for m in messages)
    # the trainable layer's own backward is still compared: a 5% error planted in it is found
    model = Encoder(frozen)
    getattr(model, trainable).weight_hh_l0.register_hook(lambda g: g * 1.05)
    result = rnncheck.verify_case(rnncheck.TorchCase(model, inputs=(x,)), rnncheck.Options())
    [bad] = [f for c in result.checks if c.name == "reference" for f in c.findings if f.kind == "fused_mismatch"]
    assert bad.tensor == f"{trainable}.weight_hh_l0"
