"""The NumPy reference LSTM against torch's CPU autograd, forward+backward, float64.

Batch 32, 100 steps, input and hidden size 256, loss = Σ w ⊙ output.  Both run in this
process, interleaved; the ratio reference/torch is what counts (≤ 1.0 is the target).

    python benchmarks/bench_reference.py [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import best_of, machine  # noqa: E402

from rnncheck import reference as R  # noqa: E402
from rnncheck.convert import from_torch  # noqa: E402


def run(T: int = 100, B: int = 32, size: int = 256, repeats: int = 5) -> dict:
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(size, size).double()
    x = torch.randn(T, B, size, dtype=torch.float64)
    w = torch.randn(T, B, size, dtype=torch.float64)
    spec, params = from_torch(lstm)
    x_np, w_np = x.numpy(), w.numpy()
    params_t = list(lstm.parameters())

    def torch_fb():
        out, _ = lstm(x)
        return torch.autograd.grad((out * w).sum(), params_t)

    def reference_fb():
        _, _, cache = R.forward(spec, params, x_np)
        return R.backward(cache, w_np)

    t = best_of({"torch": torch_fb, "reference": reference_fb}, repeats=repeats)
    return {
        "benchmark": "reference",
        "config": {"T": T, "B": B, "input": size, "hidden": size, "dtype": "float64"},
        "machine": machine(),
        "torch_seconds": t["torch"],
        "reference_seconds": t["reference"],
        "ratio": t["reference"] / t["torch"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the result here")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    r = run(repeats=args.repeats)
    print(f"machine: {r['machine']}")
    print(f"LSTM fwd+bwd float64, T=100 B=32 I=H=256 (best of {args.repeats})")
    print(f"  torch autograd  {r['torch_seconds'] * 1e3:8.1f} ms")
    print(f"  rnncheck ref    {r['reference_seconds'] * 1e3:8.1f} ms")
    print(f"  ratio ref/torch {r['ratio']:8.2f}  (target <= 1.00)")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
