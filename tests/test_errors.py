"""One-line reasons from any exception, even one whose message cannot be read (internal structure under test)."""

from __future__ import annotations

from rnncheck.errors import first_line, safe_str  # the module under test


class Unreadable(Exception):
    def __str__(self):
        raise RuntimeError("no")


def test_a_message_that_raises_is_named_not_raised():
    assert safe_str(Unreadable()) == "(its message could not be read: its __str__ raised RuntimeError)"
    assert first_line(Unreadable()).startswith("(its message could not be read")


def test_the_first_line_of_a_long_message_and_a_placeholder_for_none():
    assert first_line(ValueError("  shape mismatch\nin layer 2\n")) == "shape mismatch"
    assert first_line(ValueError()) == "(no message)"
