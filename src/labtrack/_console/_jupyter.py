"""Printing in a Jupyter kernel: clean text for text/plain, colour only as HTML.

rich prints to a notebook by publishing a display with its terminal rendering as
`text/plain`, escape codes included: a saved notebook, `nbconvert --to script` or any front
end that shows text/plain then shows `\\x1b[1m`. labtrack prints instead:

* a line (a finished section, a loop's line, the indicators): plain text on sys.stdout, a
  notebook's ordinary stream output, so it is also copied into the run's console.log;
* anything else (a table): one display with the plain rendering as `text/plain` and rich's
  coloured rendering as `text/html` (escaped by rich); its plain text is copied into
  console.log too when the run captures the console.
"""

from __future__ import annotations

import io
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

# No colours of its own: the notebook's theme (light or dark) decides the text colour.
_PRE = ('<pre style="white-space:pre;overflow-x:auto;line-height:normal;'
        "font-family:Menlo,'DejaVu Sans Mono',consolas,'Courier New',monospace\">{code}</pre>")


def render(console: Console, renderable: RenderableType, soft_wrap: bool = False) -> tuple[str, str]:
    """`renderable` as (plain text, HTML), at the width of `console`.

    Args:
        console: the console whose width the rendering takes.
        renderable: a rich renderable (text, a table, a panel).
        soft_wrap: print long lines whole rather than folding them.

    Returns:
        The text without escape codes, and an HTML `<pre>` block with inline styles.
    """
    from rich.console import Console

    recorder = Console(file=io.StringIO(), width=console.width, record=True, force_jupyter=False,
                       force_terminal=True, color_system="truecolor", soft_wrap=soft_wrap)
    recorder.print(renderable, soft_wrap=soft_wrap, highlight=False)
    plain = recorder.export_text(styles=False, clear=False)
    html = recorder.export_html(inline_styles=True, code_format=_PRE)
    return plain, html


def show(console: Console, renderable: RenderableType, soft_wrap: bool = False) -> None:
    """Print `renderable` in a notebook: see the module's docstring.

    Args:
        console: rich's console in the kernel (for its width).
        renderable: what to print.
        soft_wrap: print long lines whole.
    """
    from rich.text import Text

    out = sys.stdout
    if isinstance(renderable, Text):
        if out is not None:
            out.write(renderable.plain + "\n")
            out.flush()
        return
    plain, html = render(console, renderable, soft_wrap)
    from IPython.display import display

    if out is not None:
        out.flush()  # what was printed before comes first in the cell's output
    display({"text/plain": plain.rstrip("\n"), "text/html": html}, raw=True)  # type: ignore[no-untyped-call]
    copy = getattr(out, "labtrack_copy", None)  # the run's console capture (_capture._Tee)
    if callable(copy):
        copy(plain)
