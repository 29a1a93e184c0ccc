"""Power in float32-only code: a 1% error confined to one tensor, caught or not, over seeds.

The mutation suite's correct RNN (tanh, relu), LSTM and GRU backward passes, whose loss
casts to float32 itself; one tensor's gradient is multiplied by 1.01 (every entry: the
error is 1% of that tensor's gradient, normwise).  Each (cell, tensor) over ``--seeds``
seeds, with the parameters given in float64 and in float32, and the correct models over
the same seeds for the false alarms.  Counted: fail, warn (the report names what it
could not check) and pass (missed).

    python benchmarks/bench_float32_only.py [--seeds 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).parent))
from _timing import machine  # noqa: E402
from mutation_models import CORRECT, case_for  # noqa: E402

from rnncheck import Options, verify_case  # noqa: E402

TENSORS = ("W_ih", "W_hh", "b_ih", "b_hh")
GIVEN = {"float64": np.float64, "float32": np.float32}


def planted(cell, tensor, seed, dtype, factor=1.01):
    case = case_for(cell, seed=seed, dtype=dtype, float32_only=True)
    right = case.grad_fn
    case.grad_fn = lambda p: {n: g * factor if n == tensor else g for n, g in right(p).items()}
    return case


def verdicts(make, seeds) -> dict:
    return dict(Counter(verify_case(make(s), Options(seed=s, diagnostics=False)).verdict for s in range(seeds)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = []
    for given, dtype in GIVEN.items():
        for cell in CORRECT:
            rows.append(
                (
                    given,
                    cell,
                    "correct",
                    verdicts(lambda s: case_for(cell, seed=s, dtype=dtype, float32_only=True), args.seeds),
                )
            )
            for tensor in TENSORS:
                rows.append(
                    (given, cell, f"1% in {tensor}", verdicts(lambda s: planted(cell, tensor, s, dtype), args.seeds))
                )
            print(*rows[-5:], sep="\n", flush=True)
    print(f"machine: {machine()}")
    for given in GIVEN:
        caught = sum(r[3].get("fail", 0) for r in rows if r[0] == given and r[2] != "correct")
        total = sum(sum(r[3].values()) for r in rows if r[0] == given and r[2] != "correct")
        alarms = sum(r[3].get("fail", 0) + r[3].get("error", 0) for r in rows if r[0] == given and r[2] == "correct")
        correct = sum(sum(r[3].values()) for r in rows if r[0] == given and r[2] == "correct")
        print(f"given {given}: 1% errors caught {caught}/{total}, false alarms {alarms}/{correct}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "benchmark": "float32_only",
                    "machine": machine(),
                    "seeds": args.seeds,
                    "rows": [{"given": g, "cell": c, "case": k, "verdicts": v} for g, c, k, v in rows],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
