"""The thread policy beside busy processes: quiet machine against two busy neighbours.

    python benchmarks/bench_threads.py [--busy 2] [--rounds 3] [--json FILE]

Two groups of cases: small torch models (``--no-flow``), and NumPy cases with the
reference comparison and flow diagnostics on (where NumPy's BLAS does the work).  For each
setting (rnncheck's policy, and torch's default of one thread per core, forced with
``--threads``) the same cases are checked on a quiet machine and beside ``--busy``
processes that spin a core each.  The number compared is what the report shows:
the sum of the cases' own seconds.  Quiet and busy rounds alternate; each setting keeps
its best round.  Targets: busy/quiet ≤ 2× with the policy (moonshot 1.2×).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SMALL_MODELS = [ROOT / "examples" / "custom_lstm_function.py", ROOT / "examples" / "lstm_module.py"]
NUMPY_MODELS = [ROOT / "examples" / "article_rnn.py", ROOT / "examples" / "course_layers.py"]
GROUPS = {"small torch models": (SMALL_MODELS, ["--no-flow"]), "NumPy cases with the reference": (NUMPY_MODELS, [])}
SPIN = "while True:\n    pass\n"


def check_seconds(threads: int | None, files, extra) -> float:
    """The cases' own seconds for one run of ``files`` (a fresh interpreter, as a user's run)."""
    args = [sys.executable, "-m", "rnncheck", "verify", *map(str, files), "--json", "-", *extra]
    if threads:
        args += ["--threads", str(threads)]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT).stdout
    return sum(c["seconds"] for c in json.loads(out)["cases"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--busy", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    settings = {"rnncheck policy": None, f"torch default ({cores} threads)": cores}
    keys = [(g, s) for g in GROUPS for s in settings]
    best = {(k, load): float("inf") for k in keys for load in ("quiet", "busy")}
    for _ in range(args.rounds):
        for load in ("quiet", "busy"):
            spinners = [
                subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.busy if load == "busy" else 0)
            ]
            try:
                for group, setting in keys:
                    files, extra = GROUPS[group]
                    seconds = check_seconds(settings[setting], files, extra)
                    best[((group, setting), load)] = min(best[((group, setting), load)], seconds)
            finally:
                for p in spinners:
                    p.kill()
                    p.wait()
    rows = []
    print(f"{cores} cores, {args.busy} busy processes")
    print(f"{'cases':<32} {'setting':<28} {'quiet s':>8} {'busy s':>8} {'busy/quiet':>10}")
    for group, setting in keys:
        q, b = best[((group, setting), "quiet")], best[((group, setting), "busy")]
        rows.append({"cases": group, "setting": setting, "quiet_s": q, "busy_s": b, "ratio": b / q})
        print(f"{group:<32} {setting:<28} {q:8.3f} {b:8.3f} {b / q:9.2f}×")
    for group in GROUPS:
        policy, default = (r for r in rows if r["cases"] == group)
        print(f"{group}: policy, quiet, against torch default, quiet: {policy['quiet_s'] / default['quiet_s']:.2f}×")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"cores": cores, "busy": args.busy, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
