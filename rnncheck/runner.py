"""The one library function every front end calls: ``verify(cases, options) -> Report``.

For each case: build it (call the user's case function), bind it to its backend
adapter, then run the checks in order — sanity, gradient agreement, and the
diagnostics — and collect their findings.  Nothing here prints.
"""

from __future__ import annotations

import time
import traceback
import zlib
from collections.abc import Callable, Iterable

import numpy as np
import torch

from . import __version__
from .baseline import fingerprint
from .cases.base import Case
from .checks.flow import check_flow
from .checks.gradient import check_gradient
from .checks.reference import check_reference
from .checks.sanity import check_sanity
from .clock import Clock
from .collect import CaseDef
from .errors import CaseError, UserCodeError, call_user
from .findings import CaseResult, CheckResult, Report, worst
from .options import Options

Progress = Callable[[str, str], None]  # (case name, stage)


def _build(item: CaseDef | Case) -> tuple[Case, str, str]:
    if isinstance(item, Case):
        return item, item.name or type(item).__name__, item.file or ""
    built = call_user(f"case function {item.name}()", item.func, user_file=item.file)
    if not isinstance(built, Case):
        raise CaseError(
            f"case function {item.name}() returned {type(built).__name__}: return an rnncheck.TorchCase, NumpyCase or CellCase"
        )
    built.name, built.file = item.name, item.file
    return built, item.name, item.file


def verify_case(item: CaseDef | Case, options: Options | None = None, progress: Progress | None = None) -> CaseResult:
    """Check one case.  Never raises for problems in the user's code: they become an ``error`` verdict."""
    options = options or Options()
    name = item.name if isinstance(item, CaseDef) else (item.name or type(item).__name__)
    file = item.file
    clock = Clock(options.budget, (lambda stage: progress(name, stage)) if progress else None)
    result = CaseResult(name, file, "pass")
    target = None
    try:
        torch.manual_seed(options.seed)
        case, name, file = _build(item)
        result.name, result.file = name, file
        clock.stage = "setup"
        target = case.bind(options)
        rng = np.random.default_rng([options.seed, zlib.crc32(name.encode())])
        clock.stage = "the sanity checks"
        sanity, _, grad = check_sanity(target)
        result.checks.append(sanity)
        if sanity.verdict == "error":
            result.error = next(f.message for f in sanity.findings if f.verdict == "error")
        else:
            if options.gradient:
                gradient = check_gradient(target, grad, options, rng, clock)
                gradient.numbers["notes"] = list(target.notes)
                result.checks.append(gradient)
            if options.reference:
                clock.stage = "the reference comparison"
                rows = result.checks[-1].tensors if options.gradient else []
                check = check_reference(target, grad, rows, options)
                if check is not None:
                    result.checks.append(check)
        # the flow diagnostics run on a non-finite loss too: that is when locating it matters
        nonfinite = any(f.kind == "nonfinite_loss" for f in sanity.findings)
        if options.diagnostics and (sanity.verdict != "error" or nonfinite):
            clock.stage = "the gradient-flow diagnostics"
            # its own stream: what the gradient check draws must not move the flow numbers
            flow_rng = np.random.default_rng([options.seed, zlib.crc32(name.encode()), 1])
            flow, result.diagnostics = check_flow(case, target, options, flow_rng)
            if flow is not None:
                result.checks.append(flow)
        result.verdict = worst(c.verdict for c in result.checks)
        if options.fingerprint:
            result.fingerprint = fingerprint(result, grad)
    except CaseError as exc:
        result.verdict = "error"
        result.error = str(exc)
        if options.debug:
            original = exc.original if isinstance(exc, UserCodeError) else exc
            result.traceback = "".join(traceback.format_exception(original))
    except Exception as exc:  # a bug in rnncheck itself: say so plainly, keep going
        result.verdict = "error"
        result.error = f"internal error in rnncheck: {type(exc).__name__}: {exc} (rerun with --debug for the traceback, and please report it)"
        if options.debug:
            result.traceback = traceback.format_exc()
    finally:
        if target is not None:
            target.close()
    result.seconds = clock.elapsed
    return result


def verify(
    cases: Iterable[CaseDef | Case] | CaseDef | Case,
    options: Options | None = None,
    progress: Progress | None = None,
) -> Report:
    """Check every case and return the :class:`~rnncheck.findings.Report`."""
    options = options or Options()
    if isinstance(cases, CaseDef | Case):
        cases = [cases]
    started = time.time()
    results = [verify_case(c, options, progress) for c in cases]
    return Report(results, meta=run_meta(options, started))


def run_meta(options: Options, started: float) -> dict:
    return {
        "rnncheck": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "seed": options.seed,
        "device": options.device,
        "mode": "full" if options.full else "probes",
        "probes": options.probes,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    }


def error_result(name: str, file: str, message: str) -> CaseResult:
    """A result for something that never became a case (a file that failed to import)."""
    return CaseResult(name, file, "error", [CheckResult("collect", "error")], error=message)
