"""rnncheck: are my RNN's gradients right, and do they vanish or explode through time?

The model-file API::

    import rnncheck

    @rnncheck.case
    def my_lstm():
        return rnncheck.TorchCase(model, inputs=(x,))

and the library entry point ``rnncheck.verify(cases, options) -> Report``.
"""

from __future__ import annotations

import importlib

# the model-file decorator and record() load no torch, and are bound here once: a model file that drops
# rnncheck's modules from sys.modules cannot make a later file register its cases into a second copy
from .collect import case  # noqa: E402
from .recording import record  # noqa: E402
from .version import __version__

#: the public names, each imported from its module on first use: ``import rnncheck`` (and the command's
#: --help and --version) does not import torch until a name that needs it is used
_LAZY = {
    "CaseError": ".errors",
    "UsageError": ".errors",
    "RnncheckFailure": ".errors",
    "CaseResult": ".findings",
    "CheckResult": ".findings",
    "Finding": ".findings",
    "Report": ".findings",
    "Verdict": ".findings",
    "CheckName": ".findings",
    "Kind": ".findings",
    "Options": ".options",
    "Tolerances": ".tolerances",
    "CellCase": ".cases.cell_case",
    "NumpyCase": ".cases.numpy_case",
    "TorchCase": ".cases.torch_case",
    "FunctionCase": ".cases.scan_case",
    "StepCase": ".cases.scan_case",
    "verify": ".runner",
    "verify_case": ".runner",
    "CaseTimeout": ".usercode",
    "main": ".cli",
}

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
    "CheckName",
    "Kind",
    "__version__",
    "case",
    "main",
    "record",
    "verify",
    "verify_case",
]


def __getattr__(name: str):
    """Every public name, imported from its module on first use (``rnncheck.main`` is the click command)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rnncheck' has no attribute {name!r}")

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted({*__all__, "case", "record"})
