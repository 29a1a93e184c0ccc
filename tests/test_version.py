"""The version has one home, which the package and its metadata read (internal structure under test)."""

from __future__ import annotations

import re
from importlib.metadata import version

import rnncheck
from rnncheck.version import __version__  # the module under test


def test_one_version_everywhere():
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", __version__)
    assert rnncheck.__version__ == __version__ == version("rnncheck")
