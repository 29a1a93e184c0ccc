"""The options of a check, in one place."""

from __future__ import annotations

import math
from dataclasses import dataclass

#: the seeds numpy and torch both accept
MAX_SEED = 2**32 - 1
DTYPES = ("float32", "float64")


@dataclass
class Options:
    """How rnncheck checks a case.  The command line, the pytest marker and the API all fill this."""

    seed: int = 0
    """Seed of the probe directions, the default loss and the jitter."""
    device: str = "cpu"
    """Where torch cases run: ``cpu``, ``cuda``, ``cuda:1`` …"""
    budget: float | None = None
    """Seconds one case may take, a soft limit: the probes are planned to fit.  None (or inf): no limit."""
    threads: int | None = None
    """torch intra-op threads while a case runs.  None: rnncheck's policy (see :mod:`rnncheck.threads`)."""
    timeout: float | None = None
    """Seconds one case may run, a hard limit: past it the case is stopped and reported as an error.  None: none."""
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

    def __post_init__(self) -> None:
        """Refuse what could only fail later, with the reason (a ``ValueError``)."""
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be a whole number from 0 to {MAX_SEED}, got {self.seed!r}")
        for key in ("budget", "timeout"):
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or value <= 0:
                raise ValueError(f"{key} must be a positive number of seconds (or None for no limit), got {value!r}")
            if math.isinf(value):
                setattr(self, key, None)  # inf: no limit
        if isinstance(self.probes, bool) or not isinstance(self.probes, int) or not 1 <= self.probes <= 64:
            raise ValueError(f"probes must be a whole number from 1 to 64, got {self.probes!r}")
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise ValueError(
                f"threads must be a whole number of at least 1 (or None for the policy), got {self.threads!r}"
            )
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(
                f"dtype must be one of {', '.join(DTYPES)} (or None for the model's own), got {self.dtype!r}"
            )
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a name such as 'cpu' or 'cuda:0', got {self.device!r}")
