"""The errors rnncheck raises on purpose, each carrying a one-line message for the user."""

from __future__ import annotations

import os
import traceback


class CaseError(Exception):
    """The case cannot be checked as given (verdict ``error``).  The message names the fix."""


class UserCodeError(CaseError):
    """The user's own code raised.  Keeps the original exception for ``--debug``."""

    def __init__(self, what: str, exc: BaseException, user_file: str | None = None, message: str | None = None) -> None:
        self.what = what
        self.original = exc
        if message is None:
            message = f"{what} raised {type(exc).__name__}: {first_line(exc)}{user_frame(exc, user_file)}"
        super().__init__(message)


class BudgetExceeded(CaseError):
    """The case ran past its time budget."""


class UsageError(Exception):
    """Bad command-line use (exit code 2)."""

    exit_code = 2


class NoneSelected(UsageError):
    """Cases were collected and ``-k`` selected none: exit code 5, as pytest's "no tests ran"."""

    exit_code = 5


def safe_str(exc: BaseException) -> str:
    """``str(exc)``, or a placeholder where the exception's own ``__str__`` raises (user code may define any)."""
    try:
        return str(exc)
    except Exception as inner:
        return f"(its message could not be read: its __str__ raised {type(inner).__name__})"


def first_line(exc: BaseException) -> str:
    """The first line of :func:`safe_str`, or ``(no message)``."""
    text = safe_str(exc).strip().splitlines()
    return text[0] if text else "(no message)"


def _library(filename: str) -> bool:
    """A frame inside an installed library or rnncheck itself: never the place to point a user at."""
    path = os.path.realpath(filename)
    return any(part in path for part in _LIBRARY_DIRS) or path.startswith(_OWN_DIR)


_LIBRARY_DIRS = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}", f"{os.sep}lib{os.sep}python")
_OWN_DIR = os.path.dirname(os.path.realpath(__file__)) + os.sep


def user_frame(exc: BaseException, user_file: str | None) -> str:
    """`` (at file:line)``: the deepest frame in the user's file, else the deepest frame outside any library, else ``""``."""
    frames = traceback.extract_tb(exc.__traceback__)
    if user_file:
        wanted = os.path.realpath(user_file)
        mine = [f for f in frames if os.path.realpath(f.filename) == wanted]
        if mine:
            return f" (at {mine[-1].filename}:{mine[-1].lineno})"
    theirs = [f for f in frames if not _library(f.filename) and not f.filename.startswith("<")]
    return f" (at {theirs[-1].filename}:{theirs[-1].lineno})" if theirs else ""


class RnncheckFailure(Exception):
    """What a collected model-file case raises in pytest when it fails or errors; ``.result`` is its CaseResult."""

    def __init__(self, result) -> None:
        super().__init__(failure_line(result))
        self.result = result


def failure_line(result) -> str:
    """pytest's short summary line for a case: the first finding that decided it, not the verdict word."""
    decisive = [f for c in result.checks for f in c.findings if f.verdict == result.verdict]
    if result.error and not decisive:
        return result.error.splitlines()[0][:200]
    if not decisive:
        return f"{result.name}: {result.verdict}"
    first = decisive[0]
    return f"{first.kind}: {first.message.splitlines()[0][:200]}"
