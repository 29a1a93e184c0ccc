"""``python -m rnncheck``: the same as the ``rnncheck`` command."""

from .cli import main

main()
