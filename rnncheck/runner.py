"""The one library function every front end calls: ``verify(cases, options) -> Report``.

For each case, inside :func:`~rnncheck.usercode.case_guard` (hard timeout, global state
saved and restored): build it (call the user's case function), bind it to its backend
adapter, then run the checks of :data:`~rnncheck.checks.pipeline.CHECKS` in order —
sanity, gradient agreement, the reference comparison and the flow diagnostics — each
isolated from the others.  Nothing here prints.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Iterable
from contextlib import ExitStack

import numpy as np
import torch

from .baseline import fingerprint
from .cases.base import Case
from .checks.pipeline import CHECKS, Context
from .clock import Clock
from .collect import CaseDef
from .errors import BudgetExceeded, CaseError, UserCodeError, first_line, user_frame
from .findings import (
    CaseResult,
    CheckName,
    CheckResult,
    CollectResult,
    Finding,
    IsolationResult,
    Kind,
    Report,
    Verdict,
    worst,
)
from .options import Options
from .threads import apply_policy, blas_count, blas_threads
from .tolerances import using
from .usercode import CaseTimeout, call_user, case_guard, user_seconds
from .version import __version__

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


def _reason(exc: BaseException, during: str | None = None, user_file: str | None = None) -> str:
    """The one-line reason a case or check stopped: the user's error as it is, or rnncheck's own bug, said plainly.

    An exception raised in the user's own file is the user's, named with its line, whichever
    of rnncheck's checks was calling when it happened.
    """
    if isinstance(exc, CaseError):
        return str(exc)
    mine = user_frame(exc, user_file) if user_file else ""
    if mine and user_file and os.path.realpath(user_file) in mine:
        what = f"{during} ran your code, which" if during else "your code"
        return f"{what} raised {type(exc).__name__}: {first_line(exc)}{mine}"
    where = f"{during} stopped on an internal error in rnncheck" if during else "internal error in rnncheck"
    return (
        f"{where}: {type(exc).__name__}: {first_line(exc)} (rerun with --debug for the traceback, and please report it)"
    )


def _traceback(exc: BaseException) -> str:
    """For --debug: the user's own exception's traceback where there is one."""
    original = exc.original if isinstance(exc, UserCodeError) else exc
    return "".join(traceback.format_exception(original))


def _check_error(check, exc: BaseException, debug: bool, user_file: str | None = None) -> CheckResult:
    """A check that raised: its own result, with the one-line reason.

    A check that judges the gradient is then ``error``.  An advisory one (the flow
    diagnostics) is ``warn``: it cannot overturn the verdict of the checks that judged.
    """
    verdict = Verdict.WARN if getattr(check, "advisory", False) else Verdict.ERROR
    reason = _reason(exc, check.stage, user_file)
    if verdict == Verdict.WARN:
        reason += "; the other checks' verdicts stand"
    result = check.result_type(check.name, verdict, [Finding(Kind(f"{check.name}_error"), verdict, reason)])
    if debug:
        result.traceback = _traceback(exc)
    return result


def _case_verdict(checks: list[CheckResult]) -> Verdict:
    """The case's verdict: a check that found the gradient wrong outranks another check that could not run.

    A case with three failing rows and a reference comparison stopped by a missing map is a
    failure (the setup problem keeps its own error row), not an error the summary would count
    as zero failures.
    """
    verdicts = [c.verdict for c in checks]
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    return worst(verdicts)


def _as_item(item) -> CaseDef | Case | None:
    """A case, a collected case function, or a function that builds a case (``@rnncheck.case`` or not)."""
    if isinstance(item, CaseDef | Case):
        return item
    if callable(item):
        code = getattr(item, "__code__", None)
        name = getattr(item, "__name__", None) or type(item).__name__
        return CaseDef(name, item, code.co_filename if code else "", code.co_firstlineno if code else 0)
    return None


def verify_case(item: CaseDef | Case, options: Options | None = None, progress: Progress | None = None) -> CaseResult:
    """Check one case (a TorchCase, NumpyCase, CellCase …, or a function that returns one).  Never raises for
    problems in the user's code: they become an ``error`` verdict.

    Only an interrupt (Ctrl-C, ``KeyboardInterrupt``) passes through, so that the caller can
    stop the run and still report what finished.
    """
    options = options or Options()
    given, item = item, _as_item(item)
    if item is None:
        return error_result(
            type(given).__name__,
            "",
            f"verify_case takes an rnncheck case (TorchCase, NumpyCase, CellCase …) or a function that returns one, "
            f"got {type(given).__name__}",
        )
    name = item.name if isinstance(item, CaseDef) else (item.name or type(item).__name__)
    clock = Clock(options.budget, (lambda stage: progress(name, stage)) if progress else None)
    result = CaseResult(name, item.file, Verdict.PASS)
    target = None
    ctx = None
    with case_guard(options.timeout) as state, using(options.tolerances), ExitStack() as held:
        try:
            torch.manual_seed(options.seed)
            case, name, file = _build(item)
            result.name, result.file = name, file
            clock.stage = "setup"
            target = case.bind(options)
            began, inside = time.perf_counter(), user_seconds()
            threads = apply_policy(target, options.threads)
            if user_seconds() > inside:  # the policy timed calls of the model: -v shows what they cost
                result.policy_seconds = (time.perf_counter() - began, user_seconds() - inside)
                result.policy_served = bool(target.prepaid)
            held.enter_context(blas_threads(blas_count(target)))
            ctx = Context(case, name, options, clock)
            for check in CHECKS:
                if not check.applies(ctx):
                    continue
                clock.stage = check.stage
                began, inside = time.perf_counter(), user_seconds()
                try:
                    outcome = check.run(target, ctx)
                except (BudgetExceeded, CaseTimeout):
                    raise
                except Exception as exc:  # one check's failure is that check's error, never the others'
                    outcome = _check_error(check, exc, options.debug, file)
                if outcome is not None:
                    outcome.seconds = time.perf_counter() - began  # where the time went (-v)
                    outcome.user_seconds = min(user_seconds() - inside, outcome.seconds)
                    ctx.results.append(outcome)
                    result.checks.append(outcome)
            result.unit_seconds = ctx.call_seconds  # one call of the user's gradient: a forward and a backward
            if ctx.diagnostics is not None:
                result.diagnostics = ctx.diagnostics
            gradient = ctx.result(CheckName.GRADIENT)
            if gradient is not None:
                gradient.threads = threads
                if result.policy_seconds is not None:  # the JSON's numbers.threads_seconds: what deciding took
                    gradient.numbers["threads_seconds"], gradient.numbers["threads_user_seconds"] = (
                        result.policy_seconds
                    )
            result.verdict = _case_verdict(result.checks)
            errors = [f.message for c in result.checks for f in c.findings if f.verdict == Verdict.ERROR]
            if errors and result.verdict == Verdict.ERROR:  # a failing case's setup problem stays its own row
                result.error = errors[0]
            if options.fingerprint and result.verdict != Verdict.ERROR:
                result.fingerprint = fingerprint(result, ctx.grad)
        except CaseTimeout as exc:
            _fail(result, exc.message(clock.stage), exc, options.debug)
        except Exception as exc:  # the user's error (CaseError) or a bug in rnncheck itself: keep going
            _fail(result, _reason(exc), exc, options.debug)
        finally:
            if target is not None:
                try:
                    target.close()
                except Exception:  # noqa: S110 - closing must never hide the case's result
                    pass
    if state.changed:
        result.checks.append(
            IsolationResult(
                CheckName.ISOLATION,
                Verdict.PASS,
                [
                    Finding(
                        "changed_globals",
                        Verdict.NOTE,
                        f"the case changed {', '.join(state.changed)}; rnncheck put it back before the next case",
                    )
                ],
            )
        )
    result.seconds = clock.elapsed
    return result


def _fail(result: CaseResult, message: str, exc: BaseException, debug: bool) -> None:
    """The case stopped: verdict ``error`` with its reason; the checks that finished keep their results."""
    result.verdict = Verdict.ERROR
    result.error = message
    if debug:
        result.traceback = _traceback(exc)


def verify(
    cases: Iterable[CaseDef | Case] | CaseDef | Case,
    options: Options | None = None,
    progress: Progress | None = None,
) -> Report:
    """Check every case and return the :class:`~rnncheck.findings.Report`."""
    options = options or Options()
    if isinstance(cases, CaseDef | Case | str) or callable(cases) or not isinstance(cases, Iterable):
        cases = [cases]  # one case; what is no case at all becomes an error result that says so
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
    return CaseResult(name, file, Verdict.ERROR, [CollectResult(CheckName.COLLECT, Verdict.ERROR)], error=message)
