"""Small helpers shared by the tests."""

from __future__ import annotations

import numpy as np


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b| (b is the trusted side)."""
    a, b = np.asarray(a), np.asarray(b)
    scale = max(float(np.abs(b).max()), 1e-300) if b.size else 1.0
    return float(np.abs(a - b).max()) / scale if b.size else 0.0
