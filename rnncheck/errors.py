"""The errors rnncheck raises on purpose, each carrying a one-line message for the user."""

from __future__ import annotations

import traceback


class CaseError(Exception):
    """The case cannot be checked as given (verdict ``error``).  The message names the fix."""


class UserCodeError(CaseError):
    """The user's own code raised.  Keeps the original exception for ``--debug``."""

    def __init__(self, what: str, exc: BaseException, user_file: str | None = None, message: str | None = None) -> None:
        self.what = what
        self.original = exc
        if message is None:
            message = f"{what} raised {type(exc).__name__}: {_first_line(exc)}{user_frame(exc, user_file)}"
        super().__init__(message)


class BudgetExceeded(CaseError):
    """The case ran past its time budget."""


class UsageError(Exception):
    """Bad command-line use (exit code 2)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else "(no message)"


def user_frame(exc: BaseException, user_file: str | None) -> str:
    """`` (at file:line)`` for the deepest frame in the user's file (else the deepest frame), or ``""``."""
    frames = traceback.extract_tb(exc.__traceback__)
    if user_file:
        mine = [f for f in frames if f.filename == user_file]
        if mine:
            return f" (at {mine[-1].filename}:{mine[-1].lineno})"
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
