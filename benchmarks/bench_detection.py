"""Detection power: the smallest single-entry error each checker catches.

A parameter tensor of n entries (n = 10, 100, 1000, 4000) feeds a small recurrent-style
loss, ``L = Σ_t w_t · tanh(A_t p + U tanh(A_(t-1) p))``, through a custom autograd Function
whose backward plants one wrong entry: ``grad[j] *= 1 + δ``.  For each checker, tensor
size and position j (first, middle, last, and one chosen at random) the smallest δ on a
grid that the checker flags is found; the table shows the worst position.

Checkers, all in float64 (gradcheck requires it): rnncheck's default probes,
``torch.autograd.gradcheck`` fast and slow mode with their default tolerances, and the
textbook loop (a central difference per entry, flagged when the largest relative error
exceeds 1e-5).

    python benchmarks/bench_detection.py [--probes 1 2 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import machine  # noqa: E402

import rnncheck  # noqa: E402
from rnncheck import Options, verify_case  # noqa: E402

SIZES = (10, 100, 1000, 4000)
DELTAS = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 0.5, 1.0, 10.0)
T, K = 6, 3


def make(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(T, K, n, generator=g, dtype=torch.float64) / n**0.5
    U = torch.randn(K, K, generator=g, dtype=torch.float64) * 0.5
    w = torch.randn(T, K, generator=g, dtype=torch.float64)
    p0 = torch.randn(n, generator=g, dtype=torch.float64)

    def true_loss(p):
        total, prev = 0.0, torch.zeros(K, dtype=torch.float64)
        for t in range(T):
            a = A[t] @ p + U @ prev
            h = torch.tanh(a)
            total = total + (w[t] * h).sum()
            prev = h
        return total

    return p0, true_loss


def planted(true_loss, j: int, delta: float):
    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, p):
            ctx.save_for_backward(p)
            return true_loss(p).detach()

        @staticmethod
        def backward(ctx, gout):
            (p,) = ctx.saved_tensors
            with torch.enable_grad():
                q = p.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(true_loss(q), q)
            g = g.clone()
            g[j] *= 1 + delta
            return gout * g

    return Fn.apply


class Holder(torch.nn.Module):
    def __init__(self, p0, fn):
        super().__init__()
        self.p = torch.nn.Parameter(p0.clone())
        self.fn = fn

    def forward(self):
        return self.fn(self.p)


def caught(checker: str, n: int, j: int, delta: float) -> bool:
    p0, true_loss = make(n)
    fn = planted(true_loss, j, delta)
    if checker.startswith("rnncheck"):  # "rnncheck", or "rnncheck --probes N"
        probes = {"probes": int(checker.split()[-1])} if "--probes" in checker else {}
        result = verify_case(
            rnncheck.TorchCase(Holder(p0, fn), inputs=(), loss=lambda out: out),
            Options(diagnostics=False, reference=False, **probes),
        )
        return result.verdict == "fail"
    if checker.startswith("gradcheck"):
        p = p0.clone().requires_grad_(True)
        return not torch.autograd.gradcheck(fn, (p,), fast_mode=checker.endswith("fast"), raise_exception=False)
    # the textbook loop
    p = p0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(p), p)
    worst = 0.0
    with torch.no_grad():
        for i in range(n):
            q = p0.clone()
            q[i] += 1e-6
            up = true_loss(q).item()
            q[i] -= 2e-6
            down = true_loss(q).item()
            num = (up - down) / 2e-6
            worst = max(worst, abs(num - g[i].item()) / max(abs(num), abs(g[i].item()), 1e-12))
    return worst > 1e-5


def smallest(checker: str, n: int, j: int) -> float | None:
    for d in DELTAS:
        if caught(checker, n, j, d):
            return d
    return None


def run(checkers=("rnncheck", "gradcheck fast", "gradcheck slow", "textbook loop")) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for checker in checkers:
        out[checker] = {}
        for n in SIZES:
            positions = sorted({0, n // 2, n - 1, int(rng.integers(n))})
            found = [smallest(checker, n, j) for j in positions]
            worst = None if any(f is None for f in found) else max(found)
            out[checker][n] = {"positions": positions, "smallest_delta": found, "worst": worst}
    return out


def table(res: dict) -> str:
    lines = [f"{'checker':<20}" + "".join(f"{'n=' + str(n):>12}" for n in SIZES)]
    for checker, rows in res.items():
        cells = [("missed" if rows[n]["worst"] is None else f"{rows[n]['worst']:.0e}") for n in SIZES]
        lines.append(f"{checker:<20}" + "".join(f"{c:>12}" for c in cells))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json")
    ap.add_argument(
        "--probes",
        type=int,
        nargs="+",
        help="rnncheck alone, with each of these probe counts (the probe count's trade)",
    )
    args = ap.parse_args()
    res = run(tuple(f"rnncheck --probes {k}" for k in args.probes)) if args.probes else run()
    print(f"machine: {machine()}")
    print(
        f"smallest relative error δ of one gradient entry caught at every tested position (grid {DELTAS[0]:g} .. {DELTAS[-1]:g}; 'missed': not even δ = {DELTAS[-1]:g})"
    )
    print(table(res))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"benchmark": "detection", "machine": machine(), "deltas": DELTAS, "results": res}, indent=2)
        )


if __name__ == "__main__":
    main()
