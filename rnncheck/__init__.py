"""rnncheck: are my RNN's gradients right, and do they vanish or explode through time?"""

from __future__ import annotations

__version__ = "0.1.0"
