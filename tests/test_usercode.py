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


def test_a_cases_changes_to_library_namespaces_are_named_and_put_back_whatever_the_objects_are():
    import math

    import numpy as np
    import torch

    tanh, e, pi = torch.tanh, math.e, math.pi
    state = usercode.GlobalState.save()
    try:
        torch.tanh = torch.relu  # a function swapped
        math.e = np.array([1.0, 2.0])  # an object whose == with the old one is an array, not a bool
        math.pi = 3.0  # a float
        torch.rnncheck_test_flag = True  # a new name: nothing to put back
    finally:
        changed = state.restore()
    assert torch.tanh is tanh and math.e is e and math.pi is pi
    assert len(changed) == 1 and all(name in changed[0] for name in ("torch.tanh", "math.e", "math.pi")), changed
    del torch.rnncheck_test_flag
    assert usercode.GlobalState.save().restore() == []  # nothing changed: nothing named
