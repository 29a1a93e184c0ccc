"""``StrEnum`` on every Python rnncheck supports: the standard one from 3.11, the same behaviour on 3.10."""

from __future__ import annotations

import enum


class CompatStrEnum(str, enum.Enum):
    """An enum whose members are their values as strings: ``str()``, f-strings and JSON give the value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


StrEnum = getattr(enum, "StrEnum", CompatStrEnum)
