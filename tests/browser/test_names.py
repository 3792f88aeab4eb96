"""Names the file system needs escaped (spaces, %, unicode, '/', a leading '.') show on the
run page: the browser uses the names and paths the API sends and escapes nothing itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import expect

import labtrack

from .conftest import Server, start_server, stop_server
from .helpers import wait_until

NAMES = ["val acc 50%", "größe/λ", ".hidden/loss", "a/b c", "100%/.dot ü"]


def _sel(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)  # a CSS attribute value in double quotes


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    base = tmp_path_factory.mktemp("names")
    root = base / "runs"
    with labtrack.Run(experiment="odd names", name="odd", root=root, capture_git=False,
                      capture_console=False, _environ={}) as run:
        for step in range(20):
            run.log({n: float(step % 7) + i for i, n in enumerate(NAMES)}, step=step)
        for i, n in enumerate(NAMES):
            run.log_text(n, f"text of {n}", step=0)
            run.log_histogram(n, np.random.default_rng(i).normal(0, 1, 500), step=0)
            run.log_table(n, [{"column": f"cell of {n}"}])
            run.log_markdown(n, f"# doc of {n}")
            img = np.zeros((24, 32, 3), dtype=np.uint8)
            img[..., i % 3] = 200
            run.log_image(n, img, step=0)
        rid = run.id
    srv = start_server(root, base / "labtrack-ui.log")
    yield srv, rid
    stop_server(srv)


def test_odd_names_show_chart_text_table_markdown_image(page: Any, odd: tuple[Server, str], shot: Any) -> None:
    srv, rid = odd
    bad_requests: list[str] = []
    page.on("response", lambda r: bad_requests.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(srv.url + f"/#/run/{rid}?tab=charts")
    expect(page.get_by_test_id("run-page")).to_be_visible()
    for n in NAMES:
        chart = page.locator(f".chart[data-metric={_sel(n)}]")
        expect(chart).to_have_attribute("data-runs", "1")
        wait_until(lambda: int(chart.get_attribute("data-points") or 0) == 20, 15, f"chart {n!r} has not its 20 points")
    shot(page, "run-odd-names-charts", full_page=True)

    page.get_by_test_id("tab-text").click()
    for n in NAMES:
        expect(page.locator(f".media-card[data-name={_sel(n)}]")).to_contain_text(f"text of {n}")
    page.get_by_test_id("tab-tables").click()
    for n in NAMES:
        expect(page.locator(f".media-card[data-name={_sel(n)}] .data-table")).to_contain_text(f"cell of {n}")
    page.get_by_test_id("tab-markdown").click()
    for n in NAMES:
        expect(page.locator(f".media-card[data-name={_sel(n)}] .markdown h1")).to_have_text(f"doc of {n}")
    page.get_by_test_id("tab-histograms").click()
    expect(page.get_by_test_id("histogram")).to_have_count(len(NAMES))
    for n in NAMES:
        expect(page.locator(f"[data-testid=histogram][data-name={_sel(n)}] .hist-heat")).to_be_visible()
    page.get_by_test_id("tab-images").click()
    for n in NAMES:
        img = page.locator(f"[data-testid=image-series][data-name={_sel(n)}] img")
        wait_until(lambda: img.evaluate("i => i.complete && i.naturalWidth") == 32, 15, f"image {n!r} did not load")
    shot(page, "run-odd-names-images", full_page=True)
    assert not bad_requests, bad_requests
