"""CLI commands of this area; `register(group)` adds them to the `labtrack` group."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add this module's commands to `group`."""
