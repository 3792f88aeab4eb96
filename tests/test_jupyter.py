"""labtrack in a real Jupyter kernel: a notebook executed by nbclient, as a user would run it.

The kernel is this interpreter (a kernel spec written into tmp_path) with this source tree on
its PYTHONPATH, so the labtrack under test is the one imported in the notebook.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

import labtrack  # noqa: E402

pytestmark = pytest.mark.slow
SRC = Path(labtrack.__file__).resolve().parents[1]
ESC = "\x1b["


def run_notebook(tmp_path: Path, cells: list[str], notebook_name: str | None) -> Any:
    """Execute `cells` in a fresh kernel whose cwd is tmp_path; returns the executed notebook.

    notebook_name: what a Jupyter server would tell the kernel (JPY_SESSION_NAME), or None
    (nbclient's own behaviour: the kernel is not told which notebook it runs).
    """
    specs = tmp_path / "kernels"
    (specs / "labtrack-test").mkdir(parents=True)
    (specs / "labtrack-test" / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "labtrack test", "language": "python"}))
    env = {k: v for k, v in os.environ.items()
           if k not in ("JPY_SESSION_NAME", "LABTRACK_ROOT", "FORCE_COLOR", "NO_COLOR")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])
    if notebook_name is not None:
        env["JPY_SESSION_NAME"] = str(tmp_path / notebook_name)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    km = KernelManager(kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(specs)]),
                       kernel_name="labtrack-test")
    client = nbclient.NotebookClient(nb, km=km, timeout=60,
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        # cleanup_kc: a kernel manager passed in is otherwise left running, its sockets open
        client.execute(env=env, cleanup_kc=True)
    finally:
        atexit.unregister(client._cleanup_kernel)  # done above; at exit it would find no kernel
    return nb


def texts(output: Any) -> list[str]:
    """Every text a front end may show for one output: a stream's text, a display's text/plain."""
    if output.output_type == "stream":
        return [output.text]
    data = output.get("data", {})
    return [v for k, v in data.items() if k == "text/plain"]


def one_run(root: Path) -> Path:
    runs = [p for p in root.glob("*/*") if (p / "run.json").is_file()]
    assert len(runs) == 1, runs
    return runs[0]


CELLS = [
    # 0: init, with a name that is HTML
    "import sys, labtrack\n"
    "run = labtrack.init(root='runs', name='<script>alert(1)</script>', config={'lr': 0.1},"
    " tags=['<b>x</b>'])\n"
    "print('stdout is', type(sys.stdout).__name__)",
    # 1: labtrack's console: a table, a loop with indicators, a section, a step table
    "labtrack.table(['name', 'value'], [['lr', 0.1], ['bs', 64]])\n"
    "for i in labtrack.loop(range(4), print_every=2):\n"
    "    run.store(loss=1.0 / (i + 1))\n"
    "    run.write(i)\n"
    "with labtrack.section('evaluate'):\n"
    "    run.log({'acc': 0.9}, step=3)\n"
    "labtrack.print_step(3, {'acc': 0.9})",
    # 2: a cell executed after init: it must be in the recorded source too
    "after_init = 'cell three ran'\nprint(after_init)",
    # 3
    "labtrack.finish()",
    # 4..6: the analysis side
    "book = labtrack.open('runs')\nbook",
    "book.runs()",
    "book[run.id]",
]


def test_a_notebook_run_prints_clean_text_and_records_its_cells(tmp_path: Path) -> None:
    nb = run_notebook(tmp_path, CELLS, "analysis.ipynb")
    for i, cell in enumerate(nb.cells):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"cell {i}: {errors}"
        for o in cell.outputs:
            for t in texts(o):
                assert ESC not in t, f"cell {i} shows an escape code in {o.output_type}: {t!r}"

    printed = "".join(t for o in nb.cells[1].outputs for t in texts(o))
    assert "│ lr   │" in printed  # the table, box-drawn, in text/plain
    assert "evaluate..." in printed and "loss" in printed  # the section and the indicators
    table_html = [o.data["text/html"] for o in nb.cells[1].outputs
                  if o.output_type == "display_data" and "text/html" in o.data]
    assert table_html and "<span" in table_html[0]  # the colours live in text/html only
    assert "stdout is _Tee" in "".join(o.get("text", "") for o in nb.cells[0].outputs)  # the capture wraps ipykernel's stream

    for i in (4, 5, 6):  # Book, run list, run view: HTML tables with the name escaped
        out = [o for o in nb.cells[i].outputs if o.output_type == "execute_result"]
        assert out, f"cell {i} has no result"
        html = out[0].data["text/html"]
        assert "<table" in html
        assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    runs_html = [o for o in nb.cells[5].outputs if o.output_type == "execute_result"][0].data["text/html"]
    for column in ("id", "experiment", "name", "status", "tags", "start", "duration", "lr", "acc"):
        assert f"<th>{column}</th>" in runs_html
    view_html = [o for o in nb.cells[6].outputs if o.output_type == "execute_result"][0].data["text/html"]
    assert "analysis.ipynb" in view_html and "series (" in view_html

    run_dir = one_run(tmp_path / "runs")
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["experiment"] == "analysis"  # the notebook's name, as a script's would be
    assert meta["command"]["notebook"] == str(tmp_path / "analysis.ipynb")
    assert meta["command"]["script"] is None  # not the kernel's launcher
    source = (run_dir / "source" / "notebook.py").read_text()
    assert "analysis.ipynb" in source.splitlines()[0]
    assert "# %% In[1]\nimport sys, labtrack" in source
    assert "after_init = 'cell three ran'" in source  # executed after init: written at finish
    assert "labtrack.finish()" in source
    assert "book = labtrack.open" not in source  # ran after the run ended
    log = (run_dir / "console.log").read_text()
    assert "cell three ran" in log and "│ lr   │" in log and "evaluate..." in log
    assert ESC not in log


def test_a_kernel_not_told_its_notebook_still_records_the_cells(tmp_path: Path) -> None:
    nb = run_notebook(tmp_path, [
        "import labtrack\nrun = labtrack.init(root='runs')\nrun.log({'x': 1.0})",
        "run.finish()\nrun.id",
    ], None)
    assert all(o.output_type != "error" for c in nb.cells for o in c.outputs)
    run_dir = one_run(tmp_path / "runs")
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["command"]["notebook"] is None and meta["command"]["script"] is None
    assert meta["experiment"] == "default"
    source = (run_dir / "source" / "notebook.py").read_text()
    assert "unnamed notebook" in source.splitlines()[0]
    assert "run.log({'x': 1.0})" in source and "run.finish()" in source
