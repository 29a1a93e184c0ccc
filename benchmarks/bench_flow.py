"""Overhead of the gradient-flow diagnostics, as a multiple of one forward+backward.

``nn.LSTM(256, 256)``, T=100, B=32, float32, on the CPU: the profile, structure and gate
diagnostics (what ``rnncheck verify`` runs by default) against one forward+backward of
the same model, interleaved in one process; and the opt-in extras (``--jacobian``,
``--lyapunov``) separately.

A second family: minGRU (``examples/linear_scans.py``) computed as a log-space parallel scan
whose forward shows its states with ``rnncheck.record(h, time_dim=1, decay=a)``, the flow
then exact from the decay, against one forward+backward of the same model.

    python benchmarks/bench_flow.py [--hidden 256] [--steps 100] [--batch 32] [--batches] [--threads N] [--repeats N] [--json FILE]

``--threads N`` fixes torch's threads for the unit and the check alike.  ``verify`` runs a
model under 50,000 parameters (an LSTM(64) has 33,280) on one thread (rnncheck's thread
policy), so ``--threads 1`` is how a check of such a model runs; torch's default here is
one thread per core.  NumPy's BLAS is held to torch's thread count, as ``verify`` holds it
while a case runs (the hand-worked backward's time loop runs in NumPy on the CPU).
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
from rnncheck.threads import blas_threads  # noqa: E402


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
            "flow + --spectral": lambda: check_flow(case, target, Options(device=device, spectral=True), rng),
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
            "flow + --spectral": extra["flow + --spectral"],
        },
        "ratio": t["flow (default)"] / t["fwd+bwd"],
        "ratio_jacobian": extra["flow + --jacobian"] / extra["fwd+bwd"],
        "ratio_lyapunov": extra["flow + --lyapunov"] / extra["fwd+bwd"],
        "ratio_spectral": extra["flow + --spectral"] / extra["fwd+bwd"],
    }


def run_scan(H: int, T: int, B: int, repeats: int = 5) -> dict:
    """minGRU with recorded states and decay: the flow check against one forward+backward."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    import linear_scans as L

    torch.manual_seed(0)
    model = L.MinGRU(H, H)
    x, h0, w = torch.randn(B, T, H), torch.full((B, H), 0.5), torch.randn(B, T, H)
    case = rnncheck.TorchCase(model, inputs=(x, h0), loss=lambda out: (out * w).sum())
    target = case.bind(Options())
    target.gradient()
    params = list(model.parameters())
    rng = np.random.default_rng(0)
    t = best_of(
        {
            "fwd+bwd": lambda: torch.autograd.grad((model(x, h0) * w).sum(), params),
            "flow (default)": lambda: check_flow(case, target, Options(), rng),
        },
        repeats=repeats,
    )
    return {"config": {"hidden": H, "steps": T, "batch": B}, "seconds": t, "ratio": t["flow (default)"] / t["fwd+bwd"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json")
    ap.add_argument("--threads", type=int, help="torch's intra-op threads for the unit and the check alike")
    ap.add_argument(
        "--repeats", type=int, default=5, help="interleaved rounds, the best of each kept (more steady a small model)"
    )
    ap.add_argument(
        "--batches",
        action="store_true",
        help="also T=50 at B = 1, 8, 16 and 64: fixed costs weigh most at small batches",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with blas_threads(torch.get_num_threads()):  # as verify holds NumPy's BLAS while a case runs
        measured(args)


def measured(args) -> None:
    r = run(args.hidden, args.steps, args.batch, args.device, args.repeats)
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
    print(
        f"  + --spectral (opt-in)  {r['seconds']['flow + --spectral'] * 1e3:8.1f} ms   ratio {r['ratio_spectral']:.1f}"
    )
    small = [run(args.hidden, 50, b, args.device, args.repeats) for b in (1, 8, 16, 64)] if args.batches else []
    for sr in small:
        c = sr["config"]
        print(
            f"LSTM({c['hidden']}), T={c['steps']}, B={c['batch']}: fwd+bwd {sr['seconds']['fwd+bwd'] * 1e3:.1f} ms, "
            f"flow {sr['seconds']['flow (default)'] * 1e3:.1f} ms, ratio {sr['ratio']:.2f}  (target <= 3); "
            f"with --spectral {sr['ratio_spectral']:.2f}"
        )
    scans = [run_scan(args.hidden, 2 * args.steps, b) for b in sorted({8, args.batch})]
    for sr in scans:
        c = sr["config"]
        print(
            f"minGRU({c['hidden']}) with record(decay=), T={c['steps']}, B={c['batch']}: fwd+bwd "
            f"{sr['seconds']['fwd+bwd'] * 1e3:.1f} ms, flow {sr['seconds']['flow (default)'] * 1e3:.1f} ms, "
            f"ratio {sr['ratio']:.2f}  (target <= 3)"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"benchmark": "flow", "machine": machine(), **r, "small_batches": small, "scans": scans}, indent=2
            )
        )


if __name__ == "__main__":
    main()
