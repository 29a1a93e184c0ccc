"""Detection and false alarms on the mutation suite, per checker, dtype and seed.

The models are the mutation suite's (``tests/mutation_models.py``): correct RNN, LSTM and
GRU backward passes and every mutant, each over ``--seeds`` seeds, in three settings:

- ``float64``: parameters and code in float64;
- ``float32``: float32 parameters (the code computes in whatever it is given);
- ``float32-only``: the loss casts everything to float32 itself.

Checkers: rnncheck's default probes; ``torch.autograd.gradcheck`` fast and slow mode
(the NumPy loss and gradient wrapped in an autograd Function; default tolerances); the
textbook loop (central difference per entry, step 1e-5 in float64 and 1e-3 otherwise,
flagged when the largest relative error exceeds 1e-5).  Detection = share of (mutant,
seed) pairs flagged; false alarms = share of (correct model, seed) pairs flagged.

    python benchmarks/bench_mutation.py [--seeds 10] [--checkers rnncheck ...] [--settings float32-only ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).parent))
from _timing import machine  # noqa: E402
from mutation_models import CORRECT, MUTANTS, case_for  # noqa: E402

from rnncheck import Options, verify_case  # noqa: E402

SETTINGS = {"float64": (np.float64, False), "float32": (np.float32, False), "float32-only": (np.float32, True)}
CHECKERS = ("rnncheck", "gradcheck fast", "gradcheck slow", "textbook loop")


def _torch_fn(case):
    names = list(case.params)

    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *tensors):
            ctx.save_for_backward(*tensors)
            arrays = {n: t.detach().numpy().copy() for n, t in zip(names, tensors)}
            return torch.tensor(float(case.loss_fn(arrays)), dtype=tensors[0].dtype)

        @staticmethod
        def backward(ctx, gout):
            arrays = {n: t.detach().numpy().copy() for n, t in zip(names, ctx.saved_tensors)}
            g = case.grad_fn(arrays)
            g = g[1] if isinstance(g, tuple) else g
            return tuple(
                gout * torch.as_tensor(np.asarray(g[n]), dtype=t.dtype) for n, t in zip(names, ctx.saved_tensors)
            )

    return Fn.apply, names


def flagged(checker: str, case, dtype) -> bool:
    if checker == "rnncheck":
        return verify_case(case, Options(diagnostics=False, reference=False)).verdict in ("fail", "error")
    fn, names = _torch_fn(case)
    tensors = tuple(torch.as_tensor(np.asarray(case.params[n]).copy()).requires_grad_(True) for n in names)
    if checker.startswith("gradcheck"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return not torch.autograd.gradcheck(
                    fn, tensors, fast_mode=checker.endswith("fast"), raise_exception=False
                )
            except Exception:  # gradcheck raises on some mutants (e.g. a non-reentrant backward)
                return True
    step = 1e-5 if dtype == np.float64 else 1e-3
    grads = torch.autograd.grad(fn(*tensors), tensors)
    worst = 0.0
    with torch.no_grad():
        for k, (t, g) in enumerate(zip(tensors, grads)):
            flat = t.detach().clone().view(-1)
            for i in range(flat.numel()):
                args = [x.detach().clone() for x in tensors]
                args[k].view(-1)[i] += step
                up = fn(*args).item()
                args[k].view(-1)[i] -= 2 * step
                down = fn(*args).item()
                num = (up - down) / (2 * step)
                a = g.view(-1)[i].item()
                worst = max(worst, abs(num - a) / max(abs(num), abs(a), 1e-12))
    return worst > 1e-5


def run(seeds: int, checkers=CHECKERS, settings=tuple(SETTINGS)) -> dict:
    out = {c: {} for c in checkers}
    for setting in settings:
        dtype, only32 = SETTINGS[setting]
        for checker in checkers:
            hits = total = alarms = correct = 0
            missed = []
            for seed in range(seeds):
                for name, (cell, bug, over) in MUTANTS.items():
                    total += 1
                    if flagged(
                        checker, case_for(cell, bug, seed=seed, dtype=dtype, float32_only=only32, **over), dtype
                    ):
                        hits += 1
                    else:
                        missed.append(f"{name}@{seed}")
                for cell in CORRECT:
                    correct += 1
                    alarms += flagged(checker, case_for(cell, seed=seed, dtype=dtype, float32_only=only32), dtype)
            out[checker][setting] = {
                "detected": hits,
                "mutants": total,
                "false_alarms": alarms,
                "correct": correct,
                "missed": missed[:20],
            }
            print(f"  {setting:<13} {checker:<15} detected {hits}/{total}, false alarms {alarms}/{correct}", flush=True)
    return out


def table(res: dict) -> str:
    settings = [s for s in SETTINGS if any(s in rows for rows in res.values())]
    lines = [f"{'checker':<16}" + "".join(f"{s + ' detect':>20}{s + ' false':>20}" for s in settings)]
    for checker, rows in res.items():
        cells = []
        for s in settings:
            r = rows[s]
            cells.append(
                f"{100 * r['detected'] / r['mutants']:>19.1f}%{100 * r['false_alarms'] / r['correct']:>19.1f}%"
            )
        lines.append(f"{checker:<16}" + "".join(cells))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--checkers", nargs="+", choices=CHECKERS, default=list(CHECKERS))
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    ap.add_argument("--json")
    args = ap.parse_args()
    res = run(args.seeds, tuple(args.checkers), tuple(args.settings))
    print(f"machine: {machine()}")
    print(f"{len(MUTANTS)} mutants and {len(CORRECT)} correct models, {args.seeds} seeds each")
    print(table(res))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"benchmark": "mutation", "machine": machine(), "seeds": args.seeds, "results": res}, indent=2)
        )


if __name__ == "__main__":
    main()
