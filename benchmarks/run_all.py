"""Run every benchmark in one go; each prints its table and writes JSON under benchmarks/results/.

    python benchmarks/run_all.py [--quick]

``--quick`` uses fewer seeds and sizes (a smoke run, not the published numbers).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    runs = [
        ("bench_reference.py", []),
        (
            "bench_cost.py",
            ["--sizes", "32", "256"] if args.quick else ["--sizes", "32", "256", "1024", "--limit", "120"],
        ),
        ("bench_detection.py", []),
        ("bench_mutation.py", ["--seeds", "2" if args.quick else "10"]),
        ("bench_flow.py", []),
        ("bench_structure.py", ["--sizes", "256", "512"] if args.quick else []),
        ("bench_threads.py", ["--rounds", "1" if args.quick else "3"]),
        ("bench_isolation.py", ["--rounds", "1" if args.quick else "2"]),
    ]
    failed = 0
    for script, extra in runs:
        name = script.removeprefix("bench_").removesuffix(".py")
        print(f"\n=== {script} {' '.join(extra)}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / script), *extra, "--json", str(out / f"{name}.json")])
        failed += rc != 0
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
