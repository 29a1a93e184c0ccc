"""Reductions over large arrays without NumPy's temporaries.

A large model's gradients hold millions of entries: ``np.abs(a - b).max()`` allocates two
arrays of that size (and pays their page faults) to return one number.  torch reduces
them in place on its threads.  Each function takes NumPy arrays of any shape.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def flat_tensor(a: np.ndarray) -> torch.Tensor:
    """``a`` as a flat torch tensor, sharing its memory where it is contiguous."""
    return torch.from_numpy(np.ascontiguousarray(a).reshape(-1))


def max_abs(a: np.ndarray) -> float:
    """``max |a|`` (0 for an empty array; NaN or inf where ``a`` holds one)."""
    return float(torch.linalg.vector_norm(flat_tensor(a), float("inf"))) if a.size else 0.0


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """``max |a - b|`` for arrays of one shape (0 for empty ones)."""
    return float(torch.dist(flat_tensor(a), flat_tensor(b), float("inf"))) if a.size else 0.0


def equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` and ``b`` have one shape and the same entries (NaN equals nothing): one pass, stopping early."""
    return a.shape == b.shape and torch.equal(flat_tensor(a), flat_tensor(b))


def all_finite(a: np.ndarray) -> bool:
    """Whether every entry is finite: the largest |entry| is NaN or inf exactly when some entry is."""
    return math.isfinite(max_abs(a))
