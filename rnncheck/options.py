"""The options of a check, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Options:
    """How rnncheck checks a case.  The command line, the pytest marker and the API all fill this."""

    seed: int = 0
    """Seed of the probe directions, the default loss and the jitter."""
    device: str = "cpu"
    """Where torch cases run: ``cpu``, ``cuda``, ``cuda:1`` …"""
    budget: float | None = None
    """Seconds one case may take; the probes are planned to fit.  None: no limit."""
    full: bool = False
    """Check every entry with its own finite difference instead of random probes."""
    probes: int = 3
    """Random probe directions over the parameters (each covers every tensor and gate block)."""
    dtype: str | None = None
    """Run torch cases in this dtype (``float32``/``float64``) instead of the model's own."""
    gradient: bool = True
    """Check the gradient (``rnncheck diagnose`` turns this off)."""
    reference: bool = True
    """Compare with the NumPy reference where the case names one, and every nn.RNN/LSTM/GRU inside."""
    diagnostics: bool = True
    """Measure gradient flow through time for recurrent cases."""
    jacobian: bool = False
    """Power-iterate ‖∂h_T/∂h_k‖ at every lag 1, 2, 4, … (costs more; default: lag T-1 only)."""
    lyapunov: bool = False
    """Also estimate the leading Lyapunov exponents (costs more)."""
    fingerprint: bool = False
    """Record what the regression gate compares (the gate turns this on)."""
    debug: bool = False
    """Keep tracebacks of errors."""
