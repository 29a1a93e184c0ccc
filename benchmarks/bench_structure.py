"""The flow diagnostics' spectral structure: σ_max and spectral radius of a layer's gate blocks.

For an ``nn.LSTM(H, H)``-sized W_hh (four H×H blocks), side by side in one process,
alternating: the full computation (an SVD per block for σ_max, eight squarings for
Gelfand's ‖W^256‖_F^(1/256)) against what ``rnncheck.flowmath.spectral_blocks`` does
(the top eigenvalue of WᵀW below ``LANCZOS_FROM`` rows, Lanczos on WᵀW from there; four squarings then products
with random vectors for the radius).  Also the accuracy of both against an eigensolve
and an SVD.

    python benchmarks/bench_structure.py [--sizes 256 512 1024] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import machine  # noqa: E402

from rnncheck import flowmath  # noqa: E402


def full(Ws):
    """σ_max by SVD and ‖W^256‖_F^(1/256) by eight squarings, in float64: the computation being replaced."""
    Ws = Ws.detach().to(torch.float64)
    sigma = torch.linalg.matrix_norm(Ws, ord=2)
    M, log_scale, power = Ws.clone(), torch.zeros(Ws.shape[0], dtype=torch.float64, device=Ws.device), 1
    while power < flowmath.GELFAND_POWER:
        n = torch.linalg.matrix_norm(M).clamp_min(1e-300)
        M = M / n[:, None, None]
        log_scale = 2 * (log_scale + n.log())
        M = M @ M
        power *= 2
    radius = ((log_scale + torch.linalg.matrix_norm(M).clamp_min(1e-300).log()) / power).exp()
    return sigma.cpu(), radius.cpu()


def current(Ws):
    out = flowmath.spectral_blocks(Ws)
    return torch.tensor([o[0] for o in out], dtype=torch.float64), torch.tensor(
        [o[1] for o in out], dtype=torch.float64
    )


def measure(H: int, rounds: int, device: str) -> dict:
    torch.manual_seed(0)
    Ws = (torch.randn(4, H, H) * 1.1 / H**0.5).to(device)  # spectral radius ~1.1, as a trained W_hh may have
    times = {"full": [], "rnncheck": []}
    results = {}
    for _ in range(rounds):
        for name, fn in (("full", full), ("rnncheck", current)):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            results[name] = fn(Ws)
            times[name].append(time.perf_counter() - t0)
    W64 = Ws.double().cpu()
    sigma_true = torch.linalg.matrix_norm(W64, ord=2)
    radius_true = torch.linalg.eigvals(W64).abs().amax(dim=-1)
    row = {"H": H, "seconds": {k: min(v) for k, v in times.items()}}
    for name, (s, r) in results.items():
        row[f"{name}_sigma_rel_err"] = float(((s - sigma_true) / sigma_true).abs().max())
        row[f"{name}_radius_rel_err"] = float(((r - radius_true) / radius_true).abs().max())
    row["speedup"] = row["seconds"]["full"] / row["seconds"]["rnncheck"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = []
    print(f"machine: {machine()}")
    for H in args.sizes:
        row = measure(H, args.rounds, args.device)
        rows.append(row)
        s = row["seconds"]
        print(
            f"H={H}: full {s['full'] * 1e3:.0f} ms, rnncheck {s['rnncheck'] * 1e3:.0f} ms ({row['speedup']:.1f}x); "
            f"σ_max rel err {row['full_sigma_rel_err']:.1e} / {row['rnncheck_sigma_rel_err']:.1e}; "
            f"radius rel err {row['full_radius_rel_err']:.1e} / {row['rnncheck_radius_rel_err']:.1e}",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "device": args.device, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
