"""Small helpers shared by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: the repository's root, its examples, and the test model files
ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MODELS = ROOT / "tests" / "models"


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b| (b is the trusted side)."""
    a, b = np.asarray(a), np.asarray(b)
    scale = max(float(np.abs(b).max()), 1e-300) if b.size else 1.0
    return float(np.abs(a - b).max()) / scale if b.size else 0.0


def load_module(path: Path):
    """Import one file as a module of its own (an example, a model file), without touching sys.path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
