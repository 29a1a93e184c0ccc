"""Parallel scans against their sequential loop: false alarms on correct scans, and planted errors caught.

The scans are ``examples/linear_scans.py``'s: a log-space scan (minGRU's), a Blelloch scan
with a hand-written backward (mamba.py's pscan style) and a chunked scan (Mamba-2's SSD
style), each checked by ``rnncheck.FunctionCase(scan, reference=sequential_scan)``.

- **Correct scans**: every seed × length (lengths that are not powers of two) × dtype;
  a false alarm is any verdict of the comparison but ``pass``.  The largest ratio of error
  to measured rounding is reported beside it, so that the margin shows.
- **Planted errors**: one output step multiplied by (1 + δ): δ = 1e-6 in float64 and
  1e-3 in float32; a detection is a ``fail`` of the comparison.
- **The floor it replaces**: the same correct scans judged as before this comparison measured
  each implementation's rounding (the naive loop's own float64 error, zero, floored at
  4 units of rounding), counted as false alarms.

    python benchmarks/bench_scans.py [--seeds 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import linear_scans as L  # noqa: E402

import rnncheck  # noqa: E402

SCANS = {"log-space": L.log_space_scan, "blelloch": L.blelloch_scan, "chunked": L.chunked_scan}
DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}
LENGTHS = (7, 37, 100)
PLANTED = {"float64": 1e-6, "float32": 1e-3}
OPTIONS = rnncheck.Options(diagnostics=False, gradient=False)


def planted(scan, step: int, delta: float):
    def wrong(a, b, h0):
        h = scan(a, b, h0)
        scale = torch.ones(h.shape[1], dtype=h.dtype)
        scale[step] += delta
        return h * scale.view(1, -1, 1)

    return wrong


def comparison(scan, seed: int, T: int, dtype):
    inputs = L.scan_inputs(seed, T=T, dtype=dtype)
    result = rnncheck.verify_case(rnncheck.FunctionCase(scan, inputs=inputs, reference=L.sequential_scan), OPTIONS)
    check = next(c for c in result.checks if c.name == "reference_module")
    summary = next(f for f in check.findings if f.kind in ("reference_module_match", "reference_module_ratio"))
    return check, summary.numbers["worst_ratio"]


def floor_verdict(scan, seed: int, T: int, dtype) -> bool:
    """Whether the old floor (4 units of rounding, the naive loop's own float64 error being zero) fails it."""
    a, b, h0 = (t.detach() for t in L.scan_inputs(seed, T=T, dtype=dtype))
    if dtype != torch.float64:
        return False  # the old rule measured the naive loop in the candidate's dtype there
    with torch.enable_grad():
        worst = 0.0
        cand_in = [t.clone().requires_grad_() for t in (a, b, h0)]
        ref_in = [t.clone().requires_grad_() for t in (a, b, h0)]
        w = torch.randn(a.shape, generator=torch.Generator().manual_seed(seed), dtype=a.dtype)
        hc, hr = scan(*cand_in), L.sequential_scan(*ref_in)
        gc = torch.autograd.grad((hc * w).sum(), cand_in)
        gr = torch.autograd.grad((hr * w).sum(), ref_in)
        for x, y in [(hc, hr), *zip(gc, gr)]:
            worst = max(worst, float((x - y).norm() / y.norm()))
    return worst > 3 * 4 * torch.finfo(torch.float64).eps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    print(f"{'scan':10} {'dtype':9} {'runs':>5} {'false alarms':>12} {'max ratio':>9} {'old floor alarms':>16}")
    for sname, scan in SCANS.items():
        for dname, dtype in DTYPES.items():
            alarms, ratios, old, runs = 0, [], 0, 0
            for seed in range(args.seeds):
                for T in LENGTHS:
                    check, ratio = comparison(scan, seed, T, dtype)
                    alarms += check.verdict != "pass"
                    ratios.append(ratio)
                    old += floor_verdict(scan, seed, T, dtype)
                    runs += 1
            rows.append(
                {
                    "scan": sname,
                    "dtype": dname,
                    "runs": runs,
                    "false_alarms": alarms,
                    "max_ratio": max(ratios),
                    "old": old,
                }
            )
            print(f"{sname:10} {dname:9} {runs:5d} {alarms:12d} {max(ratios):9.2f} {old:16d}", flush=True)
    print(f"\n{'scan':10} {'dtype':9} {'delta':>7} {'runs':>5} {'caught':>6}")
    for sname, scan in SCANS.items():
        for dname, delta in PLANTED.items():
            caught = runs = 0
            for seed in range(args.seeds):
                for T in LENGTHS:
                    check, _ = comparison(planted(scan, (seed * 7) % T, delta), seed, T, DTYPES[dname])
                    caught += check.verdict == "fail"
                    runs += 1
            rows.append({"scan": sname, "dtype": dname, "planted": delta, "runs": runs, "caught": caught})
            print(f"{sname:10} {dname:9} {delta:7.0e} {runs:5d} {caught:6d}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=1))


if __name__ == "__main__":
    main()
