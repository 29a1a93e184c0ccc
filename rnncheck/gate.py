"""The gate session: the same regression gate for the command line and the pytest plugin.

``Gate(path, update=False)`` loads the baseline; ``gate.run(item, options)`` checks one
case and, against the baseline, adds a ``baseline`` check to its result (or, when
updating, runs it ``repeats`` times to measure the spread and records it);
``gate.finish()`` writes the file when updating.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .baseline import Baseline, gate_check, spread
from .findings import (
    BaselineResult,
    CaseResult,
    CheckName,
    Finding,
    Verdict,
    gate_verdict,  # noqa: F401
)
from .ids import case_id, id_root  # noqa: F401 - the gate's ids, also imported from here
from .options import Options
from .runner import verify_case
from .version import __version__

try:
    import fcntl
except ImportError:  # not on Windows: writes there are atomic but not locked
    fcntl = None


@contextmanager
def _locked(path: Path):
    """An exclusive lock beside ``path`` (``path.lock``), so that concurrent writers merge instead of losing cases."""
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a+") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file in the same folder, then rename it over ``path``: no reader sees half a file.

    Through a symlink, the link's target is what is replaced and the link stays; the file keeps
    its mode (a new one gets the usual 0644 less the umask, not mkstemp's 0600).
    """
    path = Path(os.path.realpath(path))
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Gate:
    def __init__(
        self,
        path: str | Path,
        update: bool = False,
        repeats: int = 3,
        root: Path | None = None,
        accept_failures: bool = False,
    ) -> None:
        self.path = Path(path).absolute()
        self.update = update
        self.accept_failures = accept_failures
        self.refused: list[str] = []  # failing cases an update did not record
        self.repeats = max(1, repeats)
        self.root = root
        if self.path.exists():
            self.baseline = Baseline.load(self.path)
        elif update:
            self.baseline = Baseline()
        else:
            raise FileNotFoundError(f"{path}: no such baseline file (write one with --update-baseline)")
        self.meta_now = {"rnncheck": __version__, "torch": torch.__version__, "numpy": np.__version__}
        self.written = 0
        self.recorded: dict[str, dict] = {}

    def run(self, item, options: Options, progress=None) -> CaseResult:

        options = replace(options, fingerprint=True)
        result = verify_case(item, options, progress)
        cid = case_id(result, self.root)
        if result.fingerprint is None:
            result.checks.append(
                BaselineResult(
                    CheckName.BASELINE,
                    Verdict.ERROR,
                    [
                        Finding(
                            "baseline_error",
                            Verdict.ERROR,
                            "the case cannot be compared with a baseline: " + (result.error or "it errored"),
                        )
                    ],
                )
            )
            result.verdict = Verdict.ERROR
            return result
        failing = result.verdict == Verdict.FAIL
        if self.update and failing and not self.accept_failures:
            self.refused.append(cid)
            result.checks.append(
                BaselineResult(
                    CheckName.BASELINE,
                    Verdict.FAIL,
                    [
                        Finding(
                            "baseline_refused",
                            Verdict.FAIL,
                            f"not recorded in {self.path.name}: the case fails its own checks, and a recorded failure "
                            "would pass the gate from then on; fix it, or record it deliberately with --accept-failures",
                        )
                    ],
                )
            )
            return result
        if self.update:
            prints = [result.fingerprint] + [verify_case(item, options).fingerprint for _ in range(self.repeats - 1)]
            prints = [p for p in prints if p is not None]
            record = dict(result.fingerprint)
            record["spread"] = spread(prints) if len(prints) > 1 else {}
            record["repeats"] = len(prints)
            if failing:  # recorded on purpose: the gate lets this failure through while it stays as it is
                record["accepted_failure"] = True
            self.recorded[cid] = record
            self.written += 1
            result.checks.append(
                BaselineResult(
                    CheckName.BASELINE,
                    Verdict.PASS,
                    [Finding("baseline_written", Verdict.NOTE, f"recorded in {self.path} ({len(prints)} runs)")],
                )
            )
            return result
        check = gate_check(cid, self.baseline, result.fingerprint, self.meta_now, settings_of(options))
        stored = self.baseline.cases.get(cid) or {}
        if failing and check.verdict in (Verdict.PASS, Verdict.WARN) and not stored.get("accepted_failure"):
            check.findings.append(
                Finding(
                    "baseline_failing",
                    Verdict.FAIL,
                    "the case fails its own checks, and the baseline did not accept that failure "
                    "(record it with --accept-failures if it is meant, e.g. an example of a bug)",
                )
            )
            check.verdict = Verdict.FAIL
        result.checks.append(check)
        result.gate = check.verdict  # type: ignore[attr-defined]
        return result

    def finish(self, options: Options) -> None:
        """Merge what this run recorded into the file, under a lock, written atomically."""
        if not self.update or not self.recorded:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path):
            current = Baseline.load(self.path) if self.path.exists() and self.path.stat().st_size else Baseline()
            current.cases.update(self.recorded)
            current.meta.update(
                self.meta_now,
                **settings_of(options),
                written=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
            write_atomic(self.path, current.dumps())
        self.baseline = current


def settings_of(options: Options) -> dict:
    """The run settings a baseline is only comparable under."""
    return {"seed": options.seed, "device": options.device, "dtype": options.dtype or "model's own"}
