"""10,000 runs: the table pages from the server and keeps only the visible rows in the page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import Server, start_server, stop_server
from .many_runs import write_many_runs

N = 10_000


@pytest.fixture(scope="module")
def many_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("many")
    write_many_runs(base / "runs", N)
    srv = start_server(base / "runs", base / "labtrack-ui.log")
    yield srv
    stop_server(srv)


# Generous waits for the server's answers: on this shared machine a sorted page of 10,000 runs
# takes seconds (see benchmarks/ for the API's own numbers); what is tested here is the table.
SLOW = 30_000


def test_ten_thousand_runs_scroll_with_few_dom_rows(page: Any, many_server: Server, shot: Any) -> None:
    page.set_default_timeout(SLOW)
    page.goto(many_server.url + "/")
    expect(page.get_by_test_id("runs-total")).to_have_text(f"{N} runs", timeout=SLOW)
    rows = page.locator(".grid-row")
    expect(rows.first).to_contain_text("trial-09999", timeout=SLOW)  # newest first
    shot(page, "runs-10000")
    assert rows.count() < 100
    body = page.locator(".grid-body")
    # Jump to the end: the rows there are fetched (one page) and drawn; the rest stay out.
    body.evaluate("el => { el.scrollTop = el.scrollHeight; }")
    last = page.locator(".grid-row", has_text="trial-00000")
    expect(last).to_be_visible(timeout=SLOW)
    assert rows.count() < 100
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url) if "/api/v1/runs?" in r.url else None)
    # The middle, then sorting by name on the server: the first row is the smallest name.
    body.evaluate("el => { el.scrollTop = el.scrollHeight / 2; }")
    expect(page.locator(".grid-row", has_text="trial-05000")).to_have_count(1, timeout=SLOW)
    page.locator(".th", has_text="name").click()
    page.locator(".th", has_text="name").click()
    body.evaluate("el => { el.scrollTop = 0; }")
    expect(rows.first).to_contain_text("trial-00000", timeout=SLOW)
    assert all("limit=100" in u for u in requested), requested
    # Select a run found by the filter; the selection is in the URL.
    page.get_by_test_id("filter").fill("trial-04242")
    expect(page.get_by_test_id("runs-total")).to_have_text("1 run", timeout=SLOW)
    page.get_by_role("checkbox", name="select trial-04242").check()
    run_id = rows.first.get_attribute("data-run")
    expect(page).to_have_url(re.compile(rf"[#&?]sel={run_id}(&|$)"))
