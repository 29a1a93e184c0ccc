"""rnncheck.record: nothing happens outside a check; inside one, every state is kept by name, and a
wrong call is a problem said in words (internal structure under test)."""

from __future__ import annotations

import torch

from rnncheck.recording import record, recording  # the module under test


def test_outside_a_check_record_returns_its_argument():
    h = torch.ones(2)
    assert record(h, name="ssm") is h


def test_inside_a_check_steps_and_stacks_are_kept_by_name():
    h = torch.zeros(2, 3)
    with recording() as recorder:
        for _ in range(4):
            h = record(h + 1, name="loop")
        record(torch.ones(2, 5, 3), name="scan", time_dim=1, decay=0.9)
        record(torch.ones(2, 5, 3), name="scan", time_dim=1)  # a second layer of the same module
    assert len(recorder.records["loop"].steps) == 4
    assert recorder.records["scan"].decay.shape == (2, 5, 3) and "scan#2" in recorder.records
    assert not recorder.problems


def test_a_wrong_call_is_a_problem_in_words_not_an_error():
    with recording() as recorder:
        record([1, 2], name="a")
        record(torch.ones(2, 3), name="b", time_dim=5)
        record(torch.ones(2, 3), name="c", time_dim=1, decay=torch.ones(4))
        record(torch.ones(3), name="d")
        record(torch.ones(2, 3), name="d", time_dim=0)
    text = " | ".join(recorder.problems)
    assert "was given list, not a floating-point tensor" in text
    assert "time_dim=5): the state has shape (2, 3)" in text
    assert "decay of shape (4,) does not broadcast" in text
    assert len(recorder.problems) == 3  # a per-step name later recorded stacked is a second record, not a problem
