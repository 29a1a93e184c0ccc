"""A case's time budget."""

from __future__ import annotations

import time

from .errors import BudgetExceeded


class Clock:
    """Measures a case's time and stops it, between evaluations, when it passes its budget."""

    def __init__(self, budget: float | None, on_tick=None) -> None:
        self.start = time.perf_counter()
        self.budget = budget
        self.on_tick = on_tick
        self.stage = "setup"

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @property
    def remaining(self) -> float | None:
        return None if self.budget is None else self.budget - self.elapsed

    def tick(self) -> None:
        if self.on_tick is not None:
            self.on_tick(self.stage)
        if self.budget is not None and self.elapsed > self.budget:
            raise BudgetExceeded(
                f"ran past its budget of {self.budget:g} s during {self.stage} "
                f"({self.elapsed:.1f} s so far): raise --budget or make the case smaller"
            )
