"""Sanity's advice fits the model: dropout left on, and randomness drawn in eval mode, are told apart."""

from __future__ import annotations

import textwrap

from click.testing import CliRunner

from rnncheck import main

MODELS = """
import torch
import torch.nn.functional as F
import rnncheck


class EvalDropout(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRU(3, 4).double()

    def forward(self, x):
        h = self.rnn(x)[0]
        return F.dropout(h, 0.3, training=True)  # ignores self.training


class Noise(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRU(3, 4).double()

    def forward(self, x):
        h = self.rnn(x)[0]
        return h + 0.1 * torch.randn_like(h)


def x():
    return torch.randn(5, 2, 3, dtype=torch.float64)


@rnncheck.case
def eval_dropout():
    return rnncheck.TorchCase(EvalDropout().eval(), inputs=(x(),))


@rnncheck.case
def eval_noise():
    return rnncheck.TorchCase(Noise().eval(), inputs=(x(),))


@rnncheck.case
def train_dropout():
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5)).double()
    return rnncheck.TorchCase(m, inputs=(x(),))
"""


def _line(marker: str) -> int:
    return next(i for i, line in enumerate(textwrap.dedent(MODELS).splitlines(), 1) if marker in line)


def _errors(tmp_path):
    path = tmp_path / "random_models.py"
    path.write_text(textwrap.dedent(MODELS))
    result = CliRunner().invoke(main, ["verify", str(path), "-q", "--no-color"])
    assert result.exit_code == 1
    lines = {}
    for line in result.output.splitlines():
        if line.startswith("ERROR"):
            name = line.split("::")[1].split()[0]
            lines[name] = line
    return lines, path


def test_randomness_in_eval_mode_is_a_finding_with_the_op_and_the_line(tmp_path):
    lines, path = _errors(tmp_path)
    assert "no module is in training mode" in lines["eval_dropout"]
    assert (
        f"dropout at {path}:{_line('# ignores self.training')}" in lines["eval_dropout"]
        and "model.eval() cannot fix it" in lines["eval_dropout"]
    )
    assert f"randn_like at {path}:{_line('randn_like')}" in lines["eval_noise"]


def test_dropout_in_training_mode_is_told_to_call_eval(tmp_path):
    lines, _ = _errors(tmp_path)
    assert "training mode" in lines["train_dropout"] and "dropout in 1 (Dropout)" in lines["train_dropout"]
    assert (
        "disable dropout (model.eval())" in lines["train_dropout"]
        and "no module is in training mode" not in lines["train_dropout"]
    )


def test_reseed_checks_a_model_with_its_dropout_on_and_still_catches_a_bug():
    import torch

    import rnncheck

    class Dropped(torch.nn.Module):
        def __init__(self, factor=1.0):
            super().__init__()
            self.rnn = torch.nn.GRU(3, 4).double()
            self.drop = torch.nn.Dropout(0.3)
            self.factor = factor

        def forward(self, x):
            h = self.drop(self.rnn(x)[0])
            return Scale.apply(h, self.factor)

    class Scale(torch.autograd.Function):  # identity forward; the backward scales by factor
        @staticmethod
        def forward(ctx, h, factor):
            ctx.factor = factor
            return h.clone()

        @staticmethod
        def backward(ctx, g):
            return g * ctx.factor, None

    x = torch.randn(6, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    plain = rnncheck.verify_case(rnncheck.TorchCase(Dropped(), inputs=(x,)), rnncheck.Options(diagnostics=False))
    assert plain.verdict == "error" and "reseed=True" in plain.error
    torch.manual_seed(0)
    good = rnncheck.verify_case(rnncheck.TorchCase(Dropped(), inputs=(x,), reseed=True))
    assert good.verdict in ("pass", "warn") and not any(c.verdict in ("fail", "error") for c in good.checks), [
        f.message for f in good.findings
    ]
    torch.manual_seed(0)
    bad = rnncheck.verify_case(
        rnncheck.TorchCase(Dropped(1.05), inputs=(x,), reseed=True), rnncheck.Options(diagnostics=False)
    )
    assert bad.verdict == "fail"


def test_gradients_that_differ_because_the_model_draws_random_numbers_are_named_randomness_not_state(tmp_path):
    """Two losses that agree and two gradients that differ: a model that draws random numbers (a permutation here,
    dropout masks in float16) is nondeterministic, with the op and the line; a backward whose second answer is an
    exact multiple of its first keeps state, as before.  Over seeds, with and without the thread policy's calls."""
    import json

    from helpers import MODELS

    path = MODELS / "random_or_stateful.py"
    for seed in ("0", "1", "2"):
        for extra in ([], ["--threads", "1"]):
            out = tmp_path / "r.json"
            args = ["verify", str(path), "--seed", seed, "--json", str(out), "--no-flow", *extra]
            CliRunner().invoke(main, args, catch_exceptions=False)
            cases = {c["name"]: c for c in json.loads(out.read_text())["cases"]}
            shuffled = cases["shuffled"]
            kinds = [f["kind"] for f in shuffled["findings"]]
            assert shuffled["verdict"] == "error" and kinds == ["nondeterministic_loss"], (seed, extra, kinds)
            message = shuffled["findings"][0]["message"]
            assert "two gradient calls at the same parameters gave gradients of w" in message, message
            assert "randperm at " in message and "random_or_stateful.py:" in message, message
            stateful = cases["stateful"]
            assert stateful["verdict"] == "fail", (seed, extra)
            assert [f["kind"] for f in stateful["findings"]].count("stateful_gradient") == 1, stateful["findings"]
