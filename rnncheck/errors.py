"""The errors rnncheck raises on purpose, each carrying a one-line message for the user."""

from __future__ import annotations

import traceback


class CaseError(Exception):
    """The case cannot be checked as given (verdict ``error``).  The message names the fix."""


class UserCodeError(CaseError):
    """The user's own code raised.  Keeps the original exception for ``--debug``."""

    def __init__(self, what: str, exc: BaseException, user_file: str | None = None) -> None:
        self.what = what
        self.original = exc
        where = _user_frame(exc, user_file)
        super().__init__(f"{what} raised {type(exc).__name__}: {_first_line(exc)}{where}")


class BudgetExceeded(CaseError):
    """The case ran past its time budget."""


class UsageError(Exception):
    """Bad command-line use (exit code 2)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else "(no message)"


def _user_frame(exc: BaseException, user_file: str | None) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if user_file:
        mine = [f for f in frames if f.filename == user_file]
        if mine:
            return f" (at {mine[-1].filename}:{mine[-1].lineno})"
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def call_user(what: str, fn, *args, user_file: str | None = None, **kwargs):
    """Call the user's ``fn``; any exception becomes a :class:`UserCodeError` naming ``what``."""
    try:
        return fn(*args, **kwargs)
    except CaseError:
        raise
    except Exception as exc:  # the user's code may raise anything
        raise UserCodeError(what, exc, user_file) from exc
