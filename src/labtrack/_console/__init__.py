"""The console: timed sections, loops with ETA, indicators' status line, tables, spinner,
delayed interrupt (docs/console.md).

Nothing here imports rich at `import labtrack` time; it is imported when something is shown.
"""

from __future__ import annotations

from ._blocks import loop, progress, section, spinner
from ._interrupt import delayed_interrupt
from .tables import print_step, table

__all__ = ["delayed_interrupt", "loop", "print_step", "progress", "section", "spinner", "table"]
