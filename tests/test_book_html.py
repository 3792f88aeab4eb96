"""The HTML tables Jupyter shows for a Book, a run list and a run (pure, plus a real root),
and the notebook helpers that need no kernel."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import labtrack
from labtrack import _notebook
from labtrack._book import html


def record(i: int, **extra: object) -> dict[str, object]:
    return {"id": f"20261203-1200{i:02d}-aaaaaa", "experiment": "mnist", "name": f"r{i}",
            "status": "finished", "tags": ["cnn"], "started": "2026-12-03T12:00:00.5+00:00",
            "duration": 75.0, "params": {"lr": 0.1 * i, "bs": 64}, "metrics": {"acc": 0.5 + i / 100},
            **extra}


def test_every_text_from_a_run_is_escaped() -> None:
    out = html.run_list([record(1, name="<script>alert(1)</script>", tags=['"><img src=x>'],
                                params={"<k>": "<v>"}, metrics={"a&b": 1.0})])
    assert "<script>" not in out and "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "<img" not in out and "&quot;&gt;&lt;img src=x&gt;" in out
    assert "<th>&lt;k&gt;</th>" in out and "<td>&lt;v&gt;</td>" in out and "<th>a&amp;b</th>" in out


def test_a_run_list_is_capped_and_says_how_much_more_there_is() -> None:
    records = [record(i, params={f"p{j}": j * i for j in range(10)},
                      metrics={f"m{j}": float(j) for j in range(9)}) for i in range(60)]
    out = html.run_list(records, total=75)
    assert out.count("<tr>") == 1 + html.MAX_RUNS  # the header and 50 runs
    assert "... 25 more runs" in out and "... 4 more params" in out and "... 3 more metrics" in out
    # the columns a reader wants first
    head = out[out.index("<thead>"):out.index("</thead>")]
    assert head.index("<th>id</th>") < head.index("<th>status</th>") < head.index("<th>duration</th>")
    assert "<td>1m 15s</td>" in out and "<td>2026-12-03 12:00:00</td>" in out


def test_params_that_differ_between_runs_come_first() -> None:
    records = [record(i, params={"a_same": 1, "b_same": 2, "c_same": 3, "d_same": 4, "e_same": 5,
                                 "f_same": 6, "z_lr": i}) for i in range(3)]
    out = html.run_list(records)
    assert "<th>z_lr</th>" in out  # varying, so shown although it sorts last
    assert "... 1 more params" in out


def test_an_empty_list_says_so() -> None:
    assert "no runs" in html.run_list([])


def test_formatting() -> None:
    assert html.fmt_duration(0.0812) == "0.081 s"
    assert html.fmt_duration(42.5) == "42.5 s"
    assert html.fmt_duration(3 * 3600 + 180) == "3h 03m"
    assert html.fmt_duration(None) == ""
    assert html.fmt_value(0.123456789) == "0.123457"
    assert html.fmt_value("x" * 200).endswith("…") and len(html.fmt_value("x" * 200)) == 80
    assert html.fmt_value(None) == "" and html.fmt_value(True) == "True"


def test_a_run_view_shows_metadata_params_metrics_and_series(tmp_path: Path) -> None:
    run = labtrack.Run("exp", name="<b>bold</b>", root=tmp_path, config={"opt": {"lr": 0.01}},
                       capture_git=False, capture_console=False)
    for step in range(3):
        run.log({"train/loss": 1.0 / (step + 1), "acc": step / 10}, step=step)
    run.finish()
    book = labtrack.open(tmp_path)
    view_html = book[run.id]._repr_html_()
    assert "&lt;b&gt;bold&lt;/b&gt;" in view_html and "<b>bold</b>" not in view_html
    assert "<b>opt.lr</b>" in view_html and "<td>0.01</td>" in view_html
    assert "<th>last</th>" in view_html and "<td>train/loss</td>" in view_html
    assert "series (2)" in view_html and "acc, train/loss" in view_html
    list_html = book.runs()._repr_html_()
    assert "<td>exp</td>" in list_html and "<th>train/loss</th>" in list_html
    book_html = book._repr_html_()
    assert "1 run in 1 experiment" in book_html and run.id in book_html
    book.close()


class ZMQInteractiveShell:  # what a kernel's shell is called (ipykernel)
    def __init__(self, ns: dict[str, object], raw: list[str]) -> None:
        self.user_ns = ns
        self.history_manager = SimpleNamespace(input_hist_raw=raw)


def test_the_notebook_path_comes_from_the_namespace_or_the_environment(tmp_path: Path) -> None:
    shell = ZMQInteractiveShell({"__session__": str(tmp_path / "a.ipynb")}, [""])
    assert _notebook.notebook_path(shell, {}) == str(tmp_path / "a.ipynb")
    shell = ZMQInteractiveShell({"__vsc_ipynb_file__": "/w/b.ipynb"}, [""])
    assert _notebook.notebook_path(shell, {}) == "/w/b.ipynb"
    (tmp_path / "c.ipynb").write_text("{}")
    shell = ZMQInteractiveShell({}, [""])
    assert _notebook.notebook_path(shell, {"JPY_SESSION_NAME": "c.ipynb"}, cwd=str(tmp_path)) == str(
        tmp_path / "c.ipynb")  # relative to the kernel's folder, where it exists
    assert _notebook.notebook_path(shell, {"JPY_SESSION_NAME": "gone/d.ipynb"}, cwd=str(tmp_path)) == "gone/d.ipynb"
    assert _notebook.notebook_path(shell, {}) is None


def test_the_cells_are_written_in_the_percent_format() -> None:
    shell = ZMQInteractiveShell({}, ["", "import x\n", "%time y = 1", "x.go()"])
    cells = _notebook.executed_cells(shell)
    assert cells == ["import x\n", "%time y = 1", "x.go()"]
    text = _notebook.cells_source(_notebook.Notebook("/w/n.ipynb", cells))
    assert text.splitlines()[0].endswith("/w/n.ipynb, in execution order.")
    assert "# %% In[1]\nimport x\n\n# %% In[2]\n%time y = 1\n\n# %% In[3]\nx.go()\n" in text


def test_outside_a_kernel_nothing_is_a_notebook() -> None:
    assert _notebook.kernel_shell() is None and _notebook.current() is None
