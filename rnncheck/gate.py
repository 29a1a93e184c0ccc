"""The gate session: the same regression gate for the command line and the pytest plugin.

``Gate(path, update=False)`` loads the baseline; ``gate.run(item, options)`` checks one
case and, against the baseline, adds a ``baseline`` check to its result (or, when
updating, runs it ``repeats`` times to measure the spread and records it);
``gate.finish()`` writes the file when updating.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .baseline import Baseline, gate_check, spread
from .findings import CaseResult, CheckResult, Finding, worst
from .options import Options
from .runner import verify_case


def case_id(result: CaseResult) -> str:
    """``file::case`` with the file relative to the working directory, so that baselines travel."""
    import os

    if not result.file:
        return f"::{result.name}"
    path = Path(result.file)
    try:
        rel = Path(os.path.relpath(path.resolve(), Path.cwd()))
        path = rel if not rel.as_posix().startswith("..") else path
    except ValueError:  # another drive
        pass
    return f"{path.as_posix()}::{result.name}"


class Gate:
    def __init__(self, path: str | Path, update: bool = False, repeats: int = 3) -> None:
        self.path = Path(path)
        self.update = update
        self.repeats = max(1, repeats)
        if self.path.exists():
            self.baseline = Baseline.load(self.path)
        elif update:
            self.baseline = Baseline()
        else:
            raise FileNotFoundError(f"{self.path}: no such baseline file (write one with --update-baseline)")
        self.meta_now = {"rnncheck": __version__, "torch": torch.__version__, "numpy": np.__version__}
        self.written = 0

    def run(self, item, options: Options, progress=None) -> CaseResult:
        from dataclasses import replace

        options = replace(options, fingerprint=True)
        result = verify_case(item, options, progress)
        cid = case_id(result)
        if result.fingerprint is None:
            result.checks.append(
                CheckResult(
                    "baseline",
                    "error",
                    [
                        Finding(
                            "baseline_error",
                            "error",
                            "the case could not be fingerprinted: " + (result.error or "it errored"),
                        )
                    ],
                )
            )
            result.verdict = "error"
            return result
        if self.update:
            prints = [result.fingerprint] + [verify_case(item, options).fingerprint for _ in range(self.repeats - 1)]
            prints = [p for p in prints if p is not None]
            record = dict(result.fingerprint)
            record["spread"] = spread(prints) if len(prints) > 1 else {}
            record["repeats"] = len(prints)
            self.baseline.cases[cid] = record
            self.written += 1
            result.checks.append(
                CheckResult(
                    "baseline",
                    "pass",
                    [Finding("baseline_written", "note", f"recorded in {self.path} ({len(prints)} runs)")],
                )
            )
            return result
        check = gate_check(cid, self.baseline, result.fingerprint, self.meta_now)
        result.checks.append(check)
        result.gate = check.verdict  # type: ignore[attr-defined]
        return result

    def finish(self, options: Options) -> None:
        if not self.update:
            return
        self.baseline.meta.update(
            self.meta_now,
            seed=options.seed,
            device=options.device,
            dtype=options.dtype or "model's own",
            written=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.baseline.save(self.path)


def gate_verdict(result: CaseResult) -> str:
    """A case passes the gate when its baseline check passes, whatever its own verdict was."""
    checks = [c for c in result.checks if c.name == "baseline"]
    if not checks:
        return result.verdict
    return worst(c.verdict for c in checks)
