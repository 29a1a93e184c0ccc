"""rnncheck: are my RNN's gradients right, and do they vanish or explode through time?

The model-file API::

    import rnncheck

    @rnncheck.case
    def my_lstm():
        return rnncheck.TorchCase(model, inputs=(x,))

and the library entry point ``rnncheck.verify(cases, options) -> Report``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .cases.cell_case import CellCase
from .cases.numpy_case import NumpyCase
from .cases.scan_case import FunctionCase, StepCase
from .cases.torch_case import TorchCase
from .collect import case
from .errors import CaseError, RnncheckFailure, UsageError
from .findings import CaseResult, CheckResult, Finding, Report, Verdict
from .options import Options
from .recording import record
from .runner import verify, verify_case
from .tolerances import Tolerances
from .usercode import CaseTimeout

__all__ = [
    "CaseError",
    "CaseResult",
    "CaseTimeout",
    "CellCase",
    "CheckResult",
    "Finding",
    "FunctionCase",
    "NumpyCase",
    "Options",
    "Report",
    "RnncheckFailure",
    "StepCase",
    "Tolerances",
    "TorchCase",
    "UsageError",
    "Verdict",
    "__version__",
    "case",
    "main",
    "record",
    "verify",
    "verify_case",
]


def __getattr__(name: str):
    """``rnncheck.main``: the ``rnncheck`` command as a click object (for ``CliRunner``), imported on first use."""
    if name == "main":
        from .cli import main

        return main
    raise AttributeError(f"module 'rnncheck' has no attribute {name!r}")
