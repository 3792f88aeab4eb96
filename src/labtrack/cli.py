"""The `labtrack` command: a thin shell over the library.

Each area registers its commands from its own module in `labtrack._cli`. A LabtrackError
becomes a one-line message and exit status 1; no traceback for a user's mistake.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from . import __version__
from .errors import LabtrackError


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LabtrackError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="labtrack")
def main() -> None:
    """labtrack: local-first experiment tracking.

    Runs are plain directories under a root (./labtrack or LABTRACK_ROOT).
    """


def _register() -> None:
    from ._cli import remote, runs, tools, transfer, ui

    for module in (runs, tools, transfer, ui, remote):
        module.register(main)


_register()
