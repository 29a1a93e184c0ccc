"""Everything rnncheck loads, loaded before any test.

pytester's in-process runs restore ``sys.modules`` after each run: a C extension (numpy's,
torch's) cannot be loaded twice in one process, and a submodule of rnncheck loaded inside
one run and dropped after it would come back as a second copy (a second case registry)
in the next.  rnncheck loads its own submodules on first use, so they are all loaded here.
"""

import numpy  # noqa: F401
import torch  # noqa: F401

import rnncheck
import rnncheck.cli  # noqa: F401
import rnncheck.pytest_plugin  # noqa: F401

for _name in rnncheck.__all__:
    getattr(rnncheck, _name)
