"""What isolation costs: the whole command's wall time, in-process against worker processes.

    python benchmarks/bench_isolation.py [--rounds 3] [--busy 1] [--json FILE]

Runs, each the real command in a subprocess (start-up, collection, checks and reports included):

- one case (a small ``nn.RNN``);
- 50 cases in 5 files of 10 (a worker per file, rnncheck's unit of isolation);
- the same 50 cases in 50 files of 1 (what a worker per case would cost);

each ``--in-process``, with one worker (``-n 1``, the default) and with two (``-n 2``), on a quiet
machine and beside ``--busy`` processes that spin a core each.  Modes alternate within a round;
each keeps its best round.  Ratios are to the in-process run of the same row, measured in the
same round.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _timing import machine  # noqa: E402

CASE = """
@rnncheck.case
def rnn_{k}():
    torch.manual_seed({k})
    model = torch.nn.RNN(4, 8, batch_first=True).double()
    return rnncheck.TorchCase(model, inputs=torch.randn(2, 6, 4, dtype=torch.float64))
"""
HEADER = "import torch\nimport rnncheck\n"
MODES = {"in-process": ["--in-process"], "1 worker": ["-n", "1"], "2 workers": ["-n", "2"]}
SPIN = "while True:\n    pass\n"


def layout(root: Path, files: int, per_file: int) -> Path:
    folder = root / f"{files}x{per_file}"
    folder.mkdir()
    k = 0
    for f in range(files):
        body = HEADER
        for _ in range(per_file):
            body += CASE.format(k=k)
            k += 1
        (folder / f"models_{f:02d}.py").write_text(body)
    return folder


def wall(folder: Path, mode: list[str]) -> float:
    began = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "rnncheck", "verify", str(folder), "-q", *mode],
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"rnncheck failed on {folder}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return took


def measure(rows: dict[str, Path], rounds: int) -> dict:
    best = {row: {mode: float("inf") for mode in MODES} for row in rows}
    for _ in range(rounds):
        for row, folder in rows.items():
            for mode, flags in MODES.items():
                best[row][mode] = min(best[row][mode], wall(folder, flags))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--busy", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = {
            "1 case": layout(root, 1, 1),
            "50 cases, 5 files of 10": layout(root, 5, 10),
            "50 cases, 50 files of 1": layout(root, 50, 1),
        }
        results = {"machine": machine(), "cpus": os.cpu_count()}
        results["quiet"] = measure(rows, args.rounds)
        spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.busy)]
        try:
            results[f"beside {args.busy} busy"] = measure(rows, args.rounds)
        finally:
            for s in spinners:
                s.kill()
    print(results["machine"])
    for setting in [k for k in results if k.startswith(("quiet", "beside"))]:
        print(f"\n{setting}: wall seconds of the whole command (ratio to in-process)")
        print(f"{'run':28s} " + " ".join(f"{m:>18s}" for m in MODES))
        for row, times in results[setting].items():
            base = times["in-process"]
            cells = [f"{times[m]:7.2f} s ({times[m] / base:4.2f}×)" for m in MODES]
            print(f"{row:28s} " + " ".join(f"{c:>18s}" for c in cells))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
