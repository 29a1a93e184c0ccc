"""Low precision: detection and false alarms on custom-Function mutants in float32, float16 and bfloat16.

The model is ``examples/custom_rnn_vs_naive.py``'s fused RNN layer (one autograd Function
with a hand-written backward through time) with one planted bug each:

- ``dW_hh x1.05``, ``db x1.05``: a 5% error in one tensor's gradient;
- ``dropped dh_next``: the recurrent term left out (truncated to one step);
- ``dW_ih sign``: one tensor's gradient negated;
- ``dW_hh transposed``;
- ``no tanh'``: the activation's derivative left out.

Checkers, each over ``--seeds`` seeds:

- ``rnncheck``: the default check (gradient probes, numerical side in float64); a case is
  flagged when its verdict is ``fail`` (an ``unchecked`` warn is not a detection);
- ``rnncheck + naive``: the same with ``reference=`` the naive twin (tolerance measured by
  running the twin in the case's dtype);
- ``fixed atol``: what kernel authors do today: each gradient against the naive twin's in
  float64 with ``torch.allclose(rtol=0, atol=…)`` from the usual per-dtype table
  (1e-5 float32, 4e-3 float16, 2e-2 bfloat16);
- ``gradcheck``: refuses anything but float64 (reported as n/a).

    python benchmarks/bench_low_precision.py [--seeds 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
import custom_rnn_vs_naive as ex  # noqa: E402

from rnncheck import Options, TorchCase, verify_case  # noqa: E402

ATOL = {torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 2e-2}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def mutate(grads, bug, W_hh):
    dx, dW_ih, dW_hh, db, none = grads
    if bug == "dW_hh x1.05":
        dW_hh = dW_hh * 1.05
    elif bug == "db x1.05":
        db = db * 1.05
    elif bug == "dW_ih sign":
        dW_ih = -dW_ih
    elif bug == "dW_hh transposed":
        dW_hh = dW_hh.T.contiguous()
    return dx, dW_ih, dW_hh, db, none


class Mutant(ex.FusedTanhRNNFn):
    bug: str | None = None

    @staticmethod
    def backward(ctx, d_out):
        bug = Mutant.bug
        x, W_ih, W_hh, out = ctx.saved_tensors
        if bug not in ("dropped dh_next", "no tanh'"):
            return mutate(ex.FusedTanhRNNFn.backward(ctx, d_out), bug, W_hh)
        T = x.shape[0]
        dW_ih, dW_hh, db = torch.zeros_like(W_ih), torch.zeros_like(W_hh), torch.zeros_like(W_hh[0])
        dx = torch.zeros_like(x)
        dh = torch.zeros_like(out[0])
        for t in range(T - 1, -1, -1):
            dh = dh + d_out[t]
            da = dh if bug == "no tanh'" else dh * (1 - out[t] ** 2)
            h_prev = out[t - 1] if t else torch.zeros_like(out[0])
            dW_ih += da.T @ x[t]
            dW_hh += da.T @ h_prev
            db += da.sum(0)
            dx[t] = da @ W_ih
            dh = torch.zeros_like(dh) if bug == "dropped dh_next" else da @ W_hh
        return dx, dW_ih, dW_hh, db, None


class MutantRNN(ex.FusedTanhRNN):
    def forward(self, x):
        return Mutant.apply(x, self.weight_ih, self.weight_hh, self.bias, False)


BUGS = [None, "dW_hh x1.05", "db x1.05", "dropped dh_next", "dW_ih sign", "dW_hh transposed", "no tanh'"]


def make(dtype, seed):
    torch.manual_seed(seed)
    model = MutantRNN(5, 12)
    with torch.no_grad():
        model.weight_hh.mul_(2.0)  # a recurrence that carries: the recurrent term matters
    return model.to(dtype), torch.randn(15, 3, 5).to(dtype)


def fixed_atol(model, x, dtype) -> bool:
    """Flagged: some gradient differs from the float64 naive twin's by more than the table's atol."""
    naive = ex.NaiveRNN(5, 12).double()
    with torch.no_grad():
        for n, p in naive.named_parameters():
            p.copy_(getattr(model, n).double())
    w = torch.randn(15, 3, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model.zero_grad()
    (model(x).double() * w).sum().backward()
    (naive(x.double()) * w).sum().backward()
    return any(
        not torch.allclose(getattr(model, n).grad.double(), p.grad, rtol=0, atol=ATOL[dtype])
        for n, p in naive.named_parameters()
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    checkers = ("rnncheck", "rnncheck + naive", "fixed atol")
    table = {}
    for dname, dtype in DTYPES.items():
        counts = {c: {"detected": 0, "mutants": 0, "false_alarms": 0, "correct": 0, "missed": {}} for c in checkers}
        for bug in BUGS:
            Mutant.bug = bug
            for seed in range(args.seeds):
                model, x = make(dtype, seed)
                flagged = {
                    "rnncheck": verify_case(
                        TorchCase(model, inputs=(x,)), Options(seed=seed, diagnostics=False)
                    ).verdict
                    == "fail",
                    "rnncheck + naive": verify_case(
                        TorchCase(model, inputs=(x,), reference=ex.NaiveRNN(5, 12)),
                        Options(seed=seed, diagnostics=False),
                    ).verdict
                    == "fail",
                    "fixed atol": fixed_atol(model, x, dtype),
                }
                for c, hit in flagged.items():
                    if bug is None:
                        counts[c]["correct"] += 1
                        counts[c]["false_alarms"] += hit
                    else:
                        counts[c]["mutants"] += 1
                        counts[c]["detected"] += hit
                        if not hit:
                            counts[c]["missed"][bug] = counts[c]["missed"].get(bug, 0) + 1
        table[dname] = counts
    print(
        f"fused RNN custom Function, {len(BUGS) - 1} mutants x {args.seeds} seeds per dtype; gradcheck: n/a below float64"
    )
    print(f"{'dtype':<10}" + "".join(f"{c:>28}" for c in checkers))
    for dname, counts in table.items():
        cells = [
            f"{counts[c]['detected']}/{counts[c]['mutants']} det, {counts[c]['false_alarms']}/{counts[c]['correct']} fa"
            for c in checkers
        ]
        print(f"{dname:<10}" + "".join(f"{cell:>28}" for cell in cells))
        for c in checkers:
            if counts[c]["missed"]:
                print(f"{'':<10}{c} missed: {counts[c]['missed']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"seeds": args.seeds, "table": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
