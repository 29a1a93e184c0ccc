"""The StrEnum rnncheck's vocabulary is built on behaves alike on Python 3.10 and 3.11+ (internal structure
under test: the 3.10 class is exercised here on any Python)."""

from __future__ import annotations

import enum
import json

import pytest

from rnncheck.strenum import CompatStrEnum


@pytest.mark.parametrize("base", [CompatStrEnum, getattr(enum, "StrEnum", CompatStrEnum)])
def test_members_read_write_and_compare_as_their_values(base):
    Colour = base("Colour", {"RED": "red", "DARK_BLUE": "dark_blue"})
    assert Colour.RED == "red" and Colour("dark_blue") is Colour.DARK_BLUE
    assert str(Colour.RED) == "red" and f"{Colour.RED}_error" == "red_error" and f"{Colour.RED:>5}" == "  red"
    assert json.dumps({"c": Colour.DARK_BLUE}) == '{"c": "dark_blue"}'
    assert "red" in {Colour.RED} and sorted([Colour.RED, "blue"]) == ["blue", "red"]
    with pytest.raises(ValueError, match="is not a valid Colour"):
        Colour("green")
