"""Cost of each checker, as a multiple of one forward+backward of the same model, side by side.

The model is ``nn.LSTM(H, H)`` on (T=50, B=16) inputs with a fixed linear loss, in
float32 (what people train).  For every hidden size, in one process:

- ``fwd+bwd``: one forward and backward of the model (the unit);
- ``rnncheck``: the default check (``rnncheck verify``: gradient probes, the reference
  comparison of the nn.LSTM, the gradient-flow diagnostics);
- ``rnncheck probes only``: the gradient check alone (``--no-flow --no-reference``);
- ``rnncheck --full``: every entry on its own;
- ``gradcheck slow`` / ``gradcheck fast``: ``torch.autograd.gradcheck`` on the parameters
  in float64 (it requires float64);
- ``textbook loop``: a central difference per parameter entry in float64.

Methods that would take longer than ``--limit`` seconds are not run: their time is
estimated from a timed sample of their evaluations and printed as skipped.

``--dtype float64`` checks a float64 model instead (the numerical side is then the model
itself); ``--threads N`` fixes torch's threads for the unit and the checks alike (rnncheck
keeps an explicit choice); ``--rnncheck-only`` leaves out gradcheck, the textbook loop
and ``--full``, for a quick side-by-side of two commits (``PYTHONPATH=<other checkout>``, with that
checkout's ``rnncheck/reference`` linked to its own ``reference/``: the installed package maps
``rnncheck.reference`` to the tree it was installed from).

    python benchmarks/bench_cost.py [--sizes 32 256 1024] [--device cpu] [--dtype float32]
                                    [--threads N] [--rnncheck-only] [--repeats 2] [--probes N] [--json FILE]
    python benchmarks/bench_cost.py --grid [--sizes 64 256 1024] [--batches 1 8 16 64] [--json FILE]

``--grid`` measures the cost targets' grid: for float64 and float32 models (``--grid-dtypes``), every H and B,
the default check, the probes alone and gradcheck's fast mode (on a float64 copy), each
against the targets (default ≤ 10× for float64, ≤ 20× for float32; probes no slower than
gradcheck fast).  Each cell also prints the default check's shares by check, how much of it was
spent inside calls of the model against rnncheck's own work, the thread policy's decision, and
the model's first check in the process (the policy's timed calls included), which is what a
``rnncheck verify`` run waits for.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.func import functional_call

sys.path.insert(0, str(Path(__file__).parent))
from _timing import machine  # noqa: E402

import rnncheck  # noqa: E402
from rnncheck import Options, verify_case  # noqa: E402

T, B = 50, 16


def _timed(fn, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


#: options every rnncheck run here is given beside the device (``--probes N``: the probe count's trade)
CHECK_OPTIONS: dict = {}


def _problem(H: int, B: int, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """``(model, x, w, fb)``: ``nn.LSTM(H, H)`` on (T, B, H) inputs with the fixed linear loss Σ out·w, and ``fb``,
    one forward+backward of it (the unit every ratio here is in)."""
    torch.manual_seed(0)
    model = torch.nn.LSTM(H, H).to(device, dtype)
    x = torch.randn(T, B, H, device=device, dtype=dtype)
    w = torch.randn(T, B, H, device=device, dtype=dtype) / (T * B * H) ** 0.5
    params = list(model.parameters())

    def fb():
        out, _ = model(x)
        return torch.autograd.grad((out * w).sum(), params)

    return model, x, w, fb


def measure(
    H: int,
    device: str,
    limit: float,
    dtype: torch.dtype = torch.float32,
    peers: bool = True,
    repeats: int = 2,
    batch: int | None = None,
    fast_only: bool = False,
) -> dict:
    B = batch or globals()["B"]
    model, x, w, fb = _problem(H, B, device, dtype)
    n_params = sum(p.numel() for p in model.parameters())
    fb()
    unit = _timed(fb, repeats=5)
    rows = {"fwd+bwd": unit}
    case = lambda: rnncheck.TorchCase(model, inputs=(x,), loss=lambda out: (out[0] * w).sum())  # noqa: E731
    # the thread policy's one measurement, and warm-up: a model's first check in a process, as a CLI run makes it
    first = _timed(lambda: verify_case(case(), Options(device=device, **CHECK_OPTIONS)))
    shares: dict[str, float] = {}
    verdicts: dict[str, str] = {}

    def default_check():
        t0 = time.perf_counter()
        result = verify_case(case(), Options(device=device, **CHECK_OPTIONS))
        if not shares or time.perf_counter() - t0 < shares["_total"]:
            shares.clear()  # the shares of the fastest run, the one whose time is kept
            shares.update({str(c.name): c.seconds for c in result.checks if c.seconds is not None})
            # of those seconds, the time inside calls of the model (its forwards and backwards, the float64 copy's)
            shares["_model"] = sum(getattr(c, "user_seconds", None) or 0.0 for c in result.checks)
            shares["_total"] = time.perf_counter() - t0
            verdicts["default"] = str(result.verdict)  # the model is correct: anything but a pass is worth a look
            gradient = next((c for c in result.checks if str(c.name) == "gradient"), None)
            verdicts["threads"] = getattr(gradient, "threads", None)  # the thread policy's sentence

    rows["rnncheck"] = _timed(default_check, repeats=repeats)
    rows["rnncheck probes only"] = _timed(
        lambda: verify_case(case(), Options(device=device, diagnostics=False, reference=False, **CHECK_OPTIONS)),
        repeats=repeats,
    )
    rows["fwd+bwd"] = min(unit, _timed(fb, repeats=5))  # the unit again: the machine may have slowed meanwhile
    rows["_shares"] = {k: v for k, v in shares.items() if not k.startswith("_")}
    rows["_model_calls"] = shares.get("_model")
    rows["_verdict"] = verdicts.get("default")
    rows["_threads"] = verdicts.get("threads")
    rows["_first"] = first
    if not peers:
        return {"hidden": H, "params": n_params, "T": T, "B": B, "device": device, "dtype": str(dtype), "seconds": rows}

    # float64 functional loss for the element-wise methods
    model64 = torch.nn.LSTM(H, H).to(device).double()
    model64.load_state_dict(model.state_dict())
    x64, w64 = x.double(), w.double()
    names = [n for n, _ in model64.named_parameters()]

    def loss64(*ps):
        out, _ = functional_call(model64, dict(zip(names, ps)), (x64,))
        return (out * w64).sum()

    leaves = tuple(p.detach().clone().requires_grad_(True) for p in model64.parameters())
    with torch.no_grad():
        one_eval = _timed(lambda: loss64(*leaves), repeats=3)
    elementwise = 2 * n_params * one_eval
    rows["_per_eval"] = one_eval

    def textbook():
        g = torch.autograd.grad(loss64(*leaves), leaves)
        with torch.no_grad():
            for p, gp in zip(leaves, g):
                flat = p.view(-1)
                for j in range(flat.numel()):
                    keep = flat[j].item()
                    flat[j] = keep + 1e-6
                    up = loss64(*leaves).item()
                    flat[j] = keep - 1e-6
                    down = loss64(*leaves).item()
                    flat[j] = keep
                    _ = abs((up - down) / 2e-6 - gp.view(-1)[j].item())

    peers_run = (
        (
            "gradcheck fast",
            lambda: torch.autograd.gradcheck(loss64, leaves, fast_mode=True, raise_exception=False),
            10 * one_eval,
        ),
        (
            "gradcheck slow",
            lambda: torch.autograd.gradcheck(loss64, leaves, fast_mode=False, raise_exception=False),
            elementwise,
        ),
        ("textbook loop", textbook, elementwise),
        (
            "rnncheck --full",
            lambda: verify_case(case(), Options(device=device, full=True, diagnostics=False, reference=False)),
            elementwise,
        ),
    )
    for name, fn, estimate in peers_run[:1] if fast_only else peers_run:
        if estimate > limit:
            rows[name] = {"skipped": True, "estimate_seconds": estimate}
        else:
            rows[name] = _timed(fn)
    return {"hidden": H, "params": n_params, "T": T, "B": B, "device": device, "dtype": str(dtype), "seconds": rows}


def table(results: list[dict]) -> str:
    methods = [
        "rnncheck",
        "rnncheck probes only",
        "rnncheck --full",
        "gradcheck fast",
        "gradcheck slow",
        "textbook loop",
    ]
    lines = [
        f"{'method':<22}"
        + "".join(f"{'H=' + str(r['hidden']) + ' (' + format(r['params'], ',') + ' params)':>36}" for r in results)
    ]
    methods = [m for m in methods if all(m in r["seconds"] for r in results)]
    lines.append(f"{'fwd+bwd (the unit)':<22}" + "".join(f"{r['seconds']['fwd+bwd'] * 1e3:>33.1f} ms" for r in results))
    for m in methods:
        cells = []
        for r in results:
            v, unit = r["seconds"][m], r["seconds"]["fwd+bwd"]
            if isinstance(v, dict):
                cells.append(f"skipped (~{v['estimate_seconds'] / unit:,.0f}x, {v['estimate_seconds'] / 60:,.0f} min)")
            else:
                cells.append(f"{v / unit:,.1f}x ({v:.2f} s)")
        lines.append(f"{m:<22}" + "".join(f"{c:>36}" for c in cells))
    for r in results:  # where the default check's time went
        unit = r["seconds"]["fwd+bwd"]
        parts = ", ".join(f"{check} {seconds / unit:.1f}" for check, seconds in r["seconds"]["_shares"].items())
        lines.append(f"H={r['hidden']}: the default check's shares, in units of one fwd+bwd: {parts}")
    return "\n".join(lines)


def grid(sizes: list[int], batches: list[int], dtypes: list[str], device: str, repeats: int) -> list[dict]:
    """The default check, the probes alone and gradcheck's fast mode over every (dtype, H, B), with the targets."""
    out = []
    # torch's and rnncheck's lazy start-up, paid once before the first cell, as the CLI's fork server pays it
    for dtype in (torch.float64, torch.float32):
        small = torch.nn.LSTM(3, 4).to(dtype)
        verify_case(rnncheck.TorchCase(small, inputs=(torch.randn(5, 2, 3, dtype=dtype),)), Options(threads=1))
    for name in dtypes:
        for H in sizes:
            for b in batches:
                r = measure(H, device, float("inf"), getattr(torch, name), True, repeats, batch=b, fast_only=True)
                s = r["seconds"]
                unit = s["fwd+bwd"]
                row = {
                    "dtype": name,
                    "H": H,
                    "B": b,
                    "unit_ms": unit * 1e3,
                    "default": s["rnncheck"] / unit,
                    "probes": s["rnncheck probes only"] / unit,
                    "gradcheck_fast": s["gradcheck fast"] / unit,
                    "shares": {check: seconds / unit for check, seconds in s["_shares"].items()},
                    "verdict": s["_verdict"],
                    "threads": s["_threads"],
                    "first": s["_first"] / unit,  # the model's first check: the thread policy's timed calls included
                    "model_calls": s["_model_calls"] / unit if s["_model_calls"] else None,
                }
                row["default_target"] = 10.0 if name == "float64" else 20.0
                out.append(row)
                print(
                    f"{name:8} H={H:<5} B={b:<3} unit {row['unit_ms']:8.1f} ms  default {row['default']:6.1f}x "
                    f"(target <= {row['default_target']:g}: {'met' if row['default'] <= row['default_target'] else 'NOT met'})  "
                    f"probes {row['probes']:6.1f}x  gradcheck fast {row['gradcheck_fast']:6.1f}x "
                    f"({'no slower' if row['probes'] <= row['gradcheck_fast'] else 'slower'})  "
                    f"verdict {row['verdict']}\n"
                    f"{'':8} the default check's shares, in units: "
                    + ", ".join(f"{check} {units:.1f}" for check, units in row["shares"].items())
                    + (
                        f"; inside calls of the model {row['model_calls']:.1f}, rnncheck's own work "
                        f"{sum(row['shares'].values()) - row['model_calls']:.1f}"
                        if row["model_calls"]
                        else ""
                    )
                    + f"\n{'':8} threads: {row['threads']}; the model's first check in the process "
                    f"(the policy's timed calls included) {row['first']:.1f}x",
                    flush=True,
                )
    return out


class WrappedLSTM(torch.nn.Module):
    """An LSTM behind a wrapper both sides of ``--numeric-trade`` check, so that its own cost is on both.

    ``refuse64``: it refuses float64, as some user code does, and rnncheck's numerical side then runs in
    float32.  ``plant``: the gradient of ``weight_hh_l0[7, 3]`` is made wrong by that relative amount (0: right).
    """

    def __init__(self, lstm: torch.nn.LSTM, refuse64: bool = True, plant: float = 0.0) -> None:
        super().__init__()
        self.lstm, self.refuse64, self.plant = lstm, refuse64, plant

    def forward(self, x):
        if self.refuse64 and x.dtype == torch.float64:
            raise TypeError("this model runs in float32 only")
        if not self.plant:
            return self.lstm(x)
        weights = dict(self.lstm.named_parameters())
        weights["weight_hh_l0"] = _Planted.apply(weights["weight_hh_l0"], self.plant)
        return functional_call(self.lstm, weights, (x,))


class _Planted(torch.autograd.Function):
    """The identity, whose backward makes one entry of the gradient wrong by a relative ``delta``."""

    @staticmethod
    def forward(ctx, w, delta):
        ctx.delta = delta
        return w.view_as(w)

    @staticmethod
    def backward(ctx, g):
        g = g.clone()
        g[7, 3] *= 1 + ctx.delta
        return g, None


def numeric_trade(sizes: list[int], batches: list[int], repeats: int) -> list[dict]:
    """What a float32 model's float64 numerical side costs and buys: the default check of ``nn.LSTM(H, H)`` in
    float32 as it is (numerical side in float64) and wrapped to refuse float64 (numerical side in float32).

    Cost in units of one forward+backward; power as the report's catches column (the smallest relative error of a
    typical single entry that some probe catches), worst over the four tensors; and a planted relative error of each
    size in :data:`PLANTED` in one entry of ``weight_hh_l0``'s gradient (an identity Function on the weight), caught
    or not.  Both sides check the
    same wrapper module, so that the wrapper's own cost is on both.
    """
    out = []
    for H in sizes:
        for b in batches:
            lstm, x, w, fb = _problem(H, b)
            fb()
            unit = _timed(fb, repeats=5)
            row = {"H": H, "B": b, "unit_ms": unit * 1e3}
            for side, model in (("float64", WrappedLSTM(lstm, refuse64=False)), ("float32", WrappedLSTM(lstm))):
                case = lambda m=model: rnncheck.TorchCase(m, inputs=(x,), loss=lambda o: (o[0] * w).sum())  # noqa: E731
                verify_case(case(), Options())  # warm-up, and the thread policy's measurement
                kept = {}

                def run(case=case, kept=kept):
                    result = verify_case(case(), Options())
                    kept["result"] = result

                seconds = _timed(run, repeats=repeats)
                result = kept["result"]
                gradient = next(c for c in result.checks if str(c.name) == "gradient")
                catches = [r.detection for r in gradient.tensors if r.detection is not None]
                planted = {f"{d:g}": _planted(side == "float32", lstm, x, w, d) for d in PLANTED}
                row[side] = {
                    "units": seconds / unit,
                    "evaluations": gradient.evaluations,
                    "catches_worst": max(catches) if catches else None,
                    "verdict": str(result.verdict),
                    "planted": planted,
                }
                print(
                    f"float32 LSTM H={H:<4} B={b:<3} numerical side {side}: {seconds / unit:5.1f}x one fwd+bwd "
                    f"({gradient.evaluations} evaluations), catches {row[side]['catches_worst']:.1g} (worst tensor), "
                    "an error in one entry of weight_hh_l0's gradient: "
                    + ", ".join(f"{d} {verdict}" for d, verdict in planted.items()),
                    flush=True,
                )
            out.append(row)
    return out


#: the relative errors planted in one entry of weight_hh_l0's gradient by ``--numeric-trade``
PLANTED = (1e-3, 1e-2)


def _planted(refuse64: bool, lstm, x, w, delta: float) -> str:
    """The default check's verdict with one entry of weight_hh_l0's gradient off by a relative ``delta``."""
    model = WrappedLSTM(lstm, refuse64=refuse64, plant=delta)
    result = verify_case(rnncheck.TorchCase(model, inputs=(x,), loss=lambda o: (o[0] * w).sum()), Options())
    return "caught" if result.verdict == "fail" else f"missed ({result.verdict})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 256, 1024])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--limit", type=float, default=120.0, help="skip a method estimated to take longer (seconds)")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--threads", type=int, help="torch threads for the unit and the checks (default: as torch starts)")
    ap.add_argument("--rnncheck-only", action="store_true", help="leave out gradcheck, the textbook loop and --full")
    ap.add_argument("--repeats", type=int, default=2, help="each check is timed this many times, the best kept")
    ap.add_argument("--json")
    ap.add_argument("--grid", action="store_true", help="the targets' grid: B in --batches, H in --sizes, both dtypes")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16, 64])
    ap.add_argument(
        "--grid-dtypes",
        nargs="+",
        default=["float64", "float32"],
        choices=["float64", "float32"],
        help="the grid's model dtypes (default: both)",
    )
    ap.add_argument("--probes", type=int, help="rnncheck's random probe directions (default: its own, 3)")
    ap.add_argument(
        "--numeric-trade",
        action="store_true",
        help="a float32 model's numerical side in float64 (the default) against float32: cost and power",
    )
    args = ap.parse_args()
    if args.probes is not None:
        CHECK_OPTIONS["probes"] = args.probes
    if args.threads is not None:
        if args.threads < 1:
            ap.error(f"--threads {args.threads}: give 1 or more threads")
        torch.set_num_threads(args.threads)
    if args.numeric_trade:
        print(f"machine: {machine()}; LSTM(H, H) in float32, T={T}, a fixed linear loss")
        rows = numeric_trade(args.sizes, args.batches, args.repeats)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        return
    if args.grid:
        print(f"machine: {machine()}; LSTM(H, H), T={T}, a fixed linear loss; ratios to one fwd+bwd in the same run")
        rows = grid(args.sizes, args.batches, args.grid_dtypes, args.device, args.repeats)
        if args.json:
            Path(args.json).write_text(
                json.dumps({"benchmark": "cost grid", "machine": machine(), "rows": rows}, indent=2)
            )
        return
    dtype = getattr(torch, args.dtype)
    results = [measure(H, args.device, args.limit, dtype, not args.rnncheck_only, args.repeats) for H in args.sizes]
    print(f"machine: {machine()}" + (f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""))
    print(
        f"LSTM(H, H), T={T}, B={B}, {args.dtype} model, {torch.get_num_threads()} torch threads; "
        "ratios to one fwd+bwd measured in the same run"
    )
    print(table(results))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"benchmark": "cost", "machine": machine(), "results": results}, indent=2)
        )


if __name__ == "__main__":
    main()
