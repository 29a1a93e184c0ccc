"""Overhead of the gradient-flow diagnostics, as a multiple of one forward+backward.

``nn.LSTM(256, 256)``, T=100, B=32, float32, on the CPU: the profile, structure and gate
diagnostics (what ``rnncheck verify`` runs by default) against one forward+backward of
the same model, interleaved in one process; and the opt-in extras (``--jacobian``,
``--lyapunov``) separately.

    python benchmarks/bench_flow.py [--hidden 256] [--steps 100] [--batch 32] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import best_of, machine  # noqa: E402

import rnncheck  # noqa: E402
from rnncheck import Options  # noqa: E402
from rnncheck.checks.flow import check_flow  # noqa: E402


def run(H: int, T: int, B: int, device: str = "cpu", repeats: int = 5) -> dict:
    torch.manual_seed(0)
    model = torch.nn.LSTM(H, H).to(device)
    x = torch.randn(T, B, H, device=device)
    w = torch.randn(T, B, H, device=device)
    params = list(model.parameters())
    case = rnncheck.TorchCase(model, inputs=(x,), loss=lambda out: (out[0] * w).sum())
    target = case.bind(Options(device=device))
    target.gradient()  # as verify does: the model's own output is kept for the twin check
    rng = np.random.default_rng(0)

    def fb():
        out, _ = model(x)
        return torch.autograd.grad((out * w).sum(), params)

    fns = {
        "fwd+bwd": fb,
        "flow (default)": lambda: check_flow(case, target, Options(device=device), rng),
    }
    t = best_of(fns, repeats=repeats)
    extra = best_of(
        {
            "flow + --jacobian": lambda: check_flow(case, target, Options(device=device, jacobian=True), rng),
            "flow + --lyapunov": lambda: check_flow(case, target, Options(device=device, lyapunov=True), rng),
            "fwd+bwd": fb,
        },
        repeats=1,
    )
    return {
        "config": {"hidden": H, "steps": T, "batch": B, "device": device},
        "seconds": {
            **t,
            "flow + --jacobian": extra["flow + --jacobian"],
            "flow + --lyapunov": extra["flow + --lyapunov"],
        },
        "ratio": t["flow (default)"] / t["fwd+bwd"],
        "ratio_jacobian": extra["flow + --jacobian"] / extra["fwd+bwd"],
        "ratio_lyapunov": extra["flow + --lyapunov"] / extra["fwd+bwd"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json")
    args = ap.parse_args()
    r = run(args.hidden, args.steps, args.batch, args.device)
    print(f"machine: {machine()}")
    c = r["config"]
    print(f"LSTM({c['hidden']}, {c['hidden']}), T={c['steps']}, B={c['batch']}, float32, {c['device']}")
    print(f"  fwd+bwd                {r['seconds']['fwd+bwd'] * 1e3:8.1f} ms")
    print(
        f"  flow diagnostics       {r['seconds']['flow (default)'] * 1e3:8.1f} ms   ratio {r['ratio']:.2f}  (target <= 3)"
    )
    print(
        f"  + --jacobian (opt-in)  {r['seconds']['flow + --jacobian'] * 1e3:8.1f} ms   ratio {r['ratio_jacobian']:.1f}"
    )
    print(
        f"  + --lyapunov (opt-in)  {r['seconds']['flow + --lyapunov'] * 1e3:8.1f} ms   ratio {r['ratio_lyapunov']:.1f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"benchmark": "flow", "machine": machine(), **r}, indent=2))


if __name__ == "__main__":
    main()
