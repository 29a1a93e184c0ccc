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

from .cases.numpy_case import NumpyCase
from .cases.torch_case import TorchCase
from .collect import case
from .findings import CaseResult, Report
from .options import Options
from .runner import verify, verify_case

__all__ = ["CaseResult", "NumpyCase", "Options", "Report", "TorchCase", "__version__", "case", "verify", "verify_case"]
