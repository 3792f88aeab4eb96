"""Writing from the browser and logged tables, in Chromium against a real `labtrack ui` over
runs of its own (the shared fixture root stays as it is): a run's comment, tags and notes
edited on its page and seen again after a reload and on disk; a logged table sorted,
filtered, paged and downloaded."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import Server, _clean_env, start_server, stop_server

SCRIPT = """
import sys
import labtrack
root = sys.argv[1]
other = labtrack.init("notes", name="second", root=root, tags=["rnn"], capture_git=False, capture_console=False)
other.log({"loss": 2.0})
other.finish()
run = labtrack.init("notes", name="editable", root=root, comment="first try", tags=["cnn"],
                    capture_git=False, capture_console=False)
for i in range(30):
    run.log({"loss": 1 / (i + 1)})
# 120 rows: 3 pages of 50; a column of numbers whose text order is not their order
run.log_table("preds", [{"id": i, "label": ["cat", "dog", "bird"][i % 3], "score": round((i * 37 % 101) / 10, 1),
                         "note": "has, comma" if i == 7 else ""} for i in range(120)])
run.finish()
print(run.id)
"""


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[tuple[Server, str, Path]]:
    root = tmp_path / "runs"
    p = subprocess.run([sys.executable, "-c", SCRIPT, str(root)], cwd=tmp_path, env=_clean_env(),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    run_id = p.stdout.strip().splitlines()[-1]
    srv = start_server(root, tmp_path / "ui.log")
    yield srv, run_id, next(root.glob(f"*/{run_id}"))
    stop_server(srv)


def test_comment_tags_and_notes_are_edited_on_the_run_page_and_kept(
        page: Any, own_server: tuple[Server, str, Path], shot: Any) -> None:
    srv, run_id, run_dir = own_server
    page.goto(f"{srv.url}/#/run/{run_id}")
    expect(page.get_by_test_id("run-comment")).to_have_text("first try")
    page.get_by_test_id("edit-meta").click()
    page.get_by_test_id("comment-input").fill("stride fix\nlr halved")
    page.get_by_test_id("tags-input").fill("cnn, best , sweep-3, best")
    expect(page.locator(".tags-preview .tag")).to_have_count(3)
    shot(page, "write-meta-form")
    page.get_by_test_id("save-meta").click()
    expect(page.get_by_test_id("run-comment")).to_have_text("stride fix\nlr halved")
    expect(page.locator(".run-title .tag")).to_have_text(["cnn", "best", "sweep-3"])

    # A bad tag: the server's message, nothing saved, the form still open.
    page.get_by_test_id("edit-meta").click()
    page.get_by_test_id("tags-input").fill("ok, " + "x" * 101)
    page.get_by_test_id("save-meta").click()
    expect(page.get_by_test_id("edit-error")).to_contain_text("1 to 100 characters")
    page.get_by_role("button", name="cancel").click()

    page.get_by_test_id("edit-notes").click()
    page.get_by_test_id("notes-input").fill("# Why this run\n\n* lr **0.05** after the stride fix\n"
                                             "* see [the paper](https://example.org)\n")
    expect(page.get_by_test_id("notes-preview").locator("h1")).to_have_text("Why this run")
    shot(page, "write-notes-editor")
    page.get_by_test_id("save-notes").click()
    expect(page.get_by_test_id("notes").locator("strong")).to_have_text("0.05")

    page.reload()
    expect(page.get_by_test_id("run-comment")).to_have_text("stride fix\nlr halved")
    expect(page.locator(".run-title .tag")).to_have_text(["cnn", "best", "sweep-3"])
    expect(page.get_by_test_id("notes").locator("h1")).to_have_text("Why this run")
    expect(page.get_by_test_id("notes").locator("a")).to_have_attribute("href", "https://example.org")
    shot(page, "write-after-reload")
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["comment"] == "stride fix\nlr halved" and meta["tags"] == ["cnn", "best", "sweep-3"]
    assert (run_dir / "notes.md").read_text().startswith("# Why this run\n")
    # The runs table shows the new tags.
    page.goto(f"{srv.url}/#/")
    expect(page.get_by_text("sweep-3").first).to_be_visible()


def _column(page: Any, j: int) -> list[str]:
    return page.locator(f"[data-testid=logged-table] tbody tr td:nth-child({j})").all_inner_texts()


def test_a_logged_table_sorts_filters_pages_and_downloads(
        page: Any, own_server: tuple[Server, str, Path], shot: Any, tmp_path: Path) -> None:
    srv, run_id, run_dir = own_server
    scores = [round((i * 37 % 101) / 10, 1) for i in range(120)]
    page.goto(f"{srv.url}/#/run/{run_id}?tab=tables")
    table = page.get_by_test_id("logged-table")
    expect(page.get_by_test_id("table-count")).to_have_text("rows 1–50 of 120")
    expect(table.locator("tbody tr")).to_have_count(50)
    assert _column(page, 1)[:3] == ["0", "1", "2"]  # as logged

    table.locator("th", has_text="score").click()
    expect(table.locator("th", has_text="score")).to_have_text("score ▲")
    got = [float(x) for x in _column(page, 3)]
    assert got == sorted(scores)[:50]
    table.locator("th", has_text="score").click()
    expect(table.locator("th", has_text="score")).to_have_text("score ▼")
    assert [float(x) for x in _column(page, 3)] == sorted(scores, reverse=True)[:50]
    # Numbers sort by value, not as text ("10" after "9").
    table.locator("th", has_text="id").click()
    assert _column(page, 1)[:3] == ["0", "1", "2"] and _column(page, 1)[9:12] == ["9", "10", "11"]

    page.get_by_test_id("table-next").click()
    page.get_by_test_id("table-next").click()
    expect(page.get_by_test_id("table-count")).to_have_text("rows 101–120 of 120")
    expect(table.locator("tbody tr")).to_have_count(20)
    assert _column(page, 1)[0] == "100"

    page.get_by_test_id("table-filter").fill("dog")
    expect(page.get_by_test_id("table-count")).to_have_text("rows 1–40 of 40 (filtered from 120)")
    expect(page.get_by_test_id("table-pager")).to_have_count(0)
    assert set(_column(page, 2)) == {"dog"}
    shot(page, "table-filtered")
    page.get_by_test_id("table-filter").fill("comma")
    expect(table.locator("tbody tr")).to_have_count(1)
    assert _column(page, 4) == ["has, comma"]
    page.get_by_test_id("table-filter").fill("")
    table.locator("th", has_text="score").click()
    shot(page, "table-sorted")

    with page.expect_download() as info:
        page.get_by_test_id("table-download").click()
    dl = info.value
    assert dl.suggested_filename == "preds.csv"
    saved = tmp_path / "downloaded.csv"
    dl.save_as(saved)
    assert saved.read_bytes() == (run_dir / "tables" / "preds.csv").read_bytes()


LOSS_CANVAS = '.chart[data-metric="train/loss"] canvas'


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_dashboard_follows_the_system_colour_scheme_charts_included(
        browser: Any, server: Server, fixture_root: Any, shot: Any, scheme: str) -> None:
    from .helpers import COUNT_COLOURS_JS, wait_until

    context = browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1,
                                  color_scheme=scheme)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url + "/#/")
        bg = page.evaluate("getComputedStyle(document.body).backgroundColor || getComputedStyle(document.documentElement).backgroundColor")
        root_bg = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
        dark_bg = "rgb(17, 20, 25)"
        assert (root_bg == dark_bg) == (scheme == "dark"), (root_bg, bg)
        # grid lines and axis labels of the chart in the scheme's colours (theme.ts)
        grid, axis = ("#2b313c", "#b4bccb") if scheme == "dark" else ("#eeeeee", "#555555")
        other_grid = "#eeeeee" if scheme == "dark" else "#2b313c"

        def painted() -> Any:
            r = page.evaluate(COUNT_COLOURS_JS, [LOSS_CANVAS, [grid, axis, other_grid]])
            return r if r and r["counts"][0] > 200 and r["counts"][1] > 30 else None

        r = wait_until(painted, 20, f"the train/loss chart has no {scheme} grid and axis labels")
        assert r["counts"][2] < r["counts"][0] / 10, r
        # text of the page is readable: the foreground differs from the panel by far
        fg = page.evaluate("getComputedStyle(document.querySelector('.chart')).color")
        assert fg == ("rgb(217, 222, 232)" if scheme == "dark" else "rgb(29, 35, 48)"), fg
        page.wait_for_timeout(300)
        shot(page, f"dashboard-{scheme}")
        page.goto(server.url + f"/#/run/{fixture_root.ids['baseline']}?tab=charts")
        page.wait_for_selector(LOSS_CANVAS)
        page.wait_for_timeout(800)
        shot(page, f"run-charts-{scheme}")
        page.goto(server.url + f"/#/run/{fixture_root.ids['baseline']}")
        page.wait_for_selector("[data-testid=provenance]")
        shot(page, f"run-overview-{scheme}")
        assert not errors, errors
    finally:
        context.close()


def test_on_a_token_server_saving_asks_for_a_write_token(
        page: Any, tmp_path: Path, shot: Any) -> None:
    import re

    root = tmp_path / "runs"
    p = subprocess.run([sys.executable, "-c", SCRIPT, str(root)], cwd=tmp_path, env=_clean_env(),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    run_id = p.stdout.strip().splitlines()[-1]
    tokens = tmp_path / "tokens.json"

    def create(name: str, scope: str) -> str:
        out = subprocess.run([sys.executable, "-c", "from labtrack.cli import main; main()", "token", "create",
                              name, f"--{scope}", "--tokens", str(tokens)], cwd=tmp_path, env=_clean_env(),
                             capture_output=True, text=True, timeout=60)
        m = re.search(r"lt_[A-Za-z0-9_-]+", out.stdout)
        assert m, out.stdout + out.stderr
        return m.group(0)

    read, write = create("viewer", "read"), create("writer", "write")
    srv = start_server(root, tmp_path / "serve.log", ["serve", "--root", str(root), "--tokens", str(tokens),
                                                      "--host", "127.0.0.1", "--port", "0"])
    try:
        page.goto(srv.url + "/login")
        page.fill("input[name=token]", read)
        page.click("input[type=submit]")
        expect(page.get_by_text("editable")).to_be_visible()
        page.goto(f"{srv.url}/#/run/{run_id}")
        page.get_by_test_id("edit-meta").click()
        page.get_by_test_id("comment-input").fill("edited behind a token")
        page.get_by_test_id("save-meta").click()
        expect(page.get_by_test_id("edit-error")).to_contain_text("'write' scope")
        page.get_by_test_id("write-token").fill(read)  # a read token is not enough
        page.get_by_test_id("save-meta").click()
        expect(page.get_by_test_id("edit-error")).to_contain_text("lacks the 'write' scope")
        page.get_by_test_id("write-token").fill(write)
        shot(page, "write-token-asked")
        page.get_by_test_id("save-meta").click()
        expect(page.get_by_test_id("run-comment")).to_have_text("edited behind a token")
        # The tab keeps the token: the next save needs no asking.
        page.get_by_test_id("edit-notes").click()
        page.get_by_test_id("notes-input").fill("saved with the kept token")
        page.get_by_test_id("save-notes").click()
        expect(page.get_by_test_id("notes")).to_contain_text("saved with the kept token")
        page.reload()
        expect(page.get_by_test_id("run-comment")).to_have_text("edited behind a token")
        run_dir = next(root.glob(f"*/{run_id}"))
        assert json.loads((run_dir / "run.json").read_text())["comment"] == "edited behind a token"
        assert (run_dir / "notes.md").read_text() == "saved with the kept token"
    finally:
        stop_server(srv)


def test_ticked_runs_are_tagged_from_the_table(page: Any, own_server: tuple[Server, str, Path], shot: Any) -> None:
    srv, run_id, run_dir = own_server
    page.goto(f"{srv.url}/#/")
    rows = page.locator(".grid-row", has_text="notes")
    expect(rows).to_have_count(2)
    for name in ("editable", "second"):
        page.locator(".grid-row", has_text=name).locator("input[type=checkbox]").check()
    page.get_by_test_id("tag-ticked").click()
    page.get_by_test_id("tag-ticked-input").fill("reviewed")
    page.get_by_test_id("tag-ticked-add").click()
    expect(page.get_by_test_id("tag-ticked-note")).to_have_text("tagged 2 runs")
    expect(page.locator(".grid-row", has_text="second").locator(".tag")).to_have_text(["rnn", "reviewed"])
    expect(page.locator(".grid-row", has_text="editable").locator(".tag")).to_have_text(["cnn", "reviewed"])
    shot(page, "table-tag-ticked")
    page.reload()
    expect(page.locator(".grid-row", has_text="second").locator(".tag")).to_have_text(["rnn", "reviewed"])
    page.get_by_test_id("tag-ticked").click()
    page.get_by_test_id("tag-ticked-input").fill("reviewed")
    page.get_by_test_id("tag-ticked-remove").click()
    expect(page.get_by_test_id("tag-ticked-note")).to_have_text("removed from 2 runs")
    expect(page.locator(".grid-row", has_text="editable").locator(".tag")).to_have_text(["cnn"])
    assert json.loads((run_dir / "run.json").read_text())["tags"] == ["cnn"]
