"""Calls into user code: what they raise or exit with becomes the user's error, naming the call, and the
supervisor is told which call is running (internal structure under test)."""

from __future__ import annotations

import sys

import pytest

from rnncheck import usercode  # the module under test
from rnncheck.errors import CaseError, UserCodeError


def test_an_exception_or_an_exit_becomes_the_users_error_naming_the_call():
    def bad():
        raise KeyError("w_hh")

    with pytest.raises(UserCodeError, match="loss\\(\\) raised KeyError") as info:
        usercode.call_user("loss()", bad)
    assert isinstance(info.value.original, KeyError)
    with pytest.raises(UserCodeError, match="exit"):
        usercode.call_user("the model's forward", sys.exit, 3)


def test_rnnchecks_own_case_errors_pass_through_unchanged():
    def refuse():
        raise CaseError("the loss is not a scalar")

    with pytest.raises(CaseError) as info:
        usercode.call_user("loss()", refuse)
    assert type(info.value) is CaseError


def test_the_supervisor_is_told_the_running_call_and_when_it_returns(monkeypatch):
    told = []
    monkeypatch.setattr(usercode, "activity", told.append)

    def inner():
        return usercode.call_user("loss()", lambda: 2.0)

    assert usercode.call_user("the model's forward", inner) == 2.0
    assert told == ["the model's forward", "loss()", "the model's forward", None]
