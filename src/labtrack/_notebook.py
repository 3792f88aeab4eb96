"""Jupyter: is this process a notebook kernel, which notebook is it, which cells did it run.

A run started in a notebook has no script to point at: `sys.argv[0]` is the kernel's
launcher. What it records instead is the notebook's path (when the kernel was told it) and
the cells the kernel executed, in execution order, as `source/notebook.py`.

Nothing here imports IPython: a kernel has already loaded it, and a plain script must not pay
for it. All functions are cheap (a few attribute reads and one list copy).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Where a Jupyter front end leaves the notebook's path for the kernel, in the order tried:
#: the user namespace's `__session__` (ipykernel >= 6.21, from the server's JPY_SESSION_NAME)
#: and `__vsc_ipynb_file__` (VS Code), then the JPY_SESSION_NAME environment variable.
_NAMESPACE_KEYS = ("__session__", "__vsc_ipynb_file__")
_ENV_KEY = "JPY_SESSION_NAME"


def kernel_shell() -> Any | None:
    """The IPython shell of the Jupyter kernel this code runs in, or None.

    A kernel's shell is IPython's `ZMQInteractiveShell` (or a subclass: Colab's); terminal
    IPython and plain Python give None.

    Returns:
        The shell object, or None outside a Jupyter kernel.
    """
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    if get is None:
        return None
    try:
        shell = get()
    except Exception:  # a half-torn-down IPython at interpreter exit must not break a run
        return None
    if shell is None:
        return None
    if any(c.__name__ == "ZMQInteractiveShell" for c in type(shell).__mro__):
        return shell
    return None


def in_kernel() -> bool:
    """True inside a Jupyter kernel (a notebook, JupyterLab, VS Code, Colab, nbclient)."""
    return kernel_shell() is not None


def notebook_path(shell: Any, environ: Mapping[str, str] | None = None,
                  cwd: str | None = None) -> str | None:
    """The notebook's path as the front end told the kernel, made absolute when it can be.

    Args:
        shell: the kernel's shell (:func:`kernel_shell`).
        environ: the environment (default: os.environ).
        cwd: the folder a relative path is taken from (default: the current one).

    Returns:
        The path; None when the kernel was not told (nbclient, `jupyter console`, older
        servers): then a run records its cells but not where they came from.
    """
    env = os.environ if environ is None else environ
    ns = getattr(shell, "user_ns", None) or {}
    candidates = [ns.get(k) for k in _NAMESPACE_KEYS] + [env.get(_ENV_KEY)]
    for value in candidates:
        if isinstance(value, str) and value.strip():
            path = Path(value)
            if not path.is_absolute():
                # Jupyter Server gives the path relative to its root, which is usually the
                # kernel's starting folder; keep the text as given when that guess fails.
                guess = Path(cwd or os.getcwd()) / path
                return str(guess) if guess.exists() else value
            return value
    return None


def executed_cells(shell: Any) -> list[str]:
    """The source of every cell the kernel executed, in order, as typed (magics unexpanded).

    Returns:
        One string per execution (a cell run twice appears twice); [] when the shell keeps
        no history.
    """
    history = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None)
    if not isinstance(history, list):
        history = getattr(shell, "user_ns", {}).get("In")
    if not isinstance(history, list):
        return []
    # Entry 0 is IPython's empty placeholder, so execution counts line up with indices.
    return [c if isinstance(c, str) else str(c) for c in history[1:]]


@dataclass(frozen=True)
class Notebook:
    """What a run records about the notebook it was started from."""

    path: str | None
    cells: list[str]


def current(environ: Mapping[str, str] | None = None) -> Notebook | None:
    """The notebook this process is a kernel of, or None outside a Jupyter kernel."""
    shell = kernel_shell()
    if shell is None:
        return None
    return Notebook(notebook_path(shell, environ), executed_cells(shell))


def cells_source(nb: Notebook) -> str:
    """The executed cells as one Python file in the "percent" cell format (`# %% In[n]`),
    which editors (VS Code, PyCharm, Spyder) and jupytext open as cells again."""
    where = nb.path or "an unnamed notebook (the kernel was not told its path)"
    lines = [f"# Cells executed by the Jupyter kernel of {where}, in execution order.", ""]
    for i, cell in enumerate(nb.cells, 1):
        lines.append(f"# %% In[{i}]")
        lines.append(cell.rstrip("\n"))
        lines.append("")
    return "\n".join(lines)
