"""Activations and their derivatives, written so that complex-step differentiation works.

Every smooth function here is analytic: it uses only ``tanh`` and arithmetic, never
``abs``, ``maximum`` or a cast to real, so ``f(x + i·h)`` carries ``h·f'(x)`` in its
imaginary part.  ReLU is not analytic at 0; its mask is taken from the real part.

Derivatives are written in terms of the activation's *output* where that is the
textbook form (``tanh' = 1 - h²``, ``σ' = s(1 - s)``): the backward pass then needs
only what the forward pass stored.
"""

from __future__ import annotations

import numpy as np


def sigmoid(a: np.ndarray) -> np.ndarray:
    """σ(a) = 1 / (1 + e^(-a)), computed as ½(1 + tanh(a/2)): no overflow, still analytic."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def dsigmoid_from_output(s: np.ndarray) -> np.ndarray:
    """σ'(a) = s(1 - s) where s = σ(a)."""
    return s * (1.0 - s)


def tanh(a: np.ndarray) -> np.ndarray:
    """tanh(a)."""
    return np.tanh(a)


def dtanh_from_output(h: np.ndarray) -> np.ndarray:
    """tanh'(a) = 1 - h² where h = tanh(a)."""
    return 1.0 - h * h


def relu(a: np.ndarray) -> np.ndarray:
    """relu(a) = a·[a > 0] (the mask uses the real part, so complex inputs pass through)."""
    return a * (a.real > 0)


def drelu_from_output(h: np.ndarray) -> np.ndarray:
    """relu'(a) = [a > 0]; h > 0 exactly when a > 0.  The derivative at 0 is taken as 0."""
    # not h <= 0, as autograd's ReLU backward reads it: an inf or NaN state (an overflowed recurrence) passes the
    # gradient on, where h > 0 would stop a NaN
    mask = ~(h.real <= 0)
    return mask.astype(h.real.dtype) if hasattr(mask, "astype") else mask.to(h.real.dtype)  # NumPy, or torch


#: name -> (activation, derivative written in terms of the activation's output)
ACTIVATIONS = {
    "tanh": (tanh, dtanh_from_output),
    "relu": (relu, drelu_from_output),
    "sigmoid": (sigmoid, dsigmoid_from_output),
}
