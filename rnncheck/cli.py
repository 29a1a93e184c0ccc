"""The ``rnncheck`` command."""

from __future__ import annotations

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rnncheck")
def main() -> None:
    """Check the gradients of recurrent networks, and how they flow through time."""
