"""The "system" section: a run with sampled system series, its run page and the dashboard's charts."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import Server, _clean_env, start_server, stop_server
from .helpers import COUNT_COLOURS_JS, wait_until

SCRIPT = r"""
import sys, time, labtrack
run = labtrack.Run("machine", "sampled", root=sys.argv[1], capture_git=False, capture_console=False)
end = time.time() + 2.5
step = 0
while time.time() < end:
    blob = bytearray(2_000_000 * (step % 5 + 1))  # memory that moves, for the rss chart
    sum(i * i for i in range(20000))
    run.log({"train/loss": 1.0 / (step + 1)})
    step += 1
run.finish()
print(run.id)
"""


@pytest.fixture(scope="module")
def system_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    base = tmp_path_factory.mktemp("system-ui")
    root = base / "runs"
    p = subprocess.run([sys.executable, "-c", SCRIPT, str(root)], cwd=base, capture_output=True, text=True,
                       env={**_clean_env(), "LABTRACK_SYSTEM_SECONDS": "0.25"}, timeout=120)
    assert p.returncode == 0, p.stderr
    srv = start_server(root, base / "ui.log")
    yield srv, p.stdout.strip().splitlines()[-1]
    stop_server(srv)


def _drawn(page: Any, metric: str) -> Any:
    sel = f'[data-testid="system-section"] .chart[data-metric="{metric}"] canvas'
    r = page.evaluate(COUNT_COLOURS_JS, [sel, ["#1f77b4"]])
    return r if r and r["counts"][0] > 40 else None


def test_run_page_has_a_system_section_with_drawn_charts(page: Any, system_server: tuple[Server, str],
                                                         shot: Any) -> None:
    server, run_id = system_server
    page.goto(f"{server.url}/#/run/{run_id}?tab=charts")
    section = page.get_by_test_id("system-section")
    expect(section).to_be_visible()
    expect(section.locator("summary")).to_contain_text("system")
    # The run's own metric comes first, outside the section; the machine's inside it.
    own = page.locator('[data-testid="chart-grid"] .chart[data-metric="train/loss"]')
    expect(own).to_have_count(1)
    assert page.locator('[data-testid="chart-grid"] .chart[data-metric^="system/"]').count() == 0
    for metric in ("system/cpu/percent", "system/process/rss_bytes", "system/memory/used_bytes"):
        chart = section.locator(f'.chart[data-metric="{metric}"]')
        expect(chart).to_have_count(1)
        expect(chart).not_to_have_attribute("data-points", "0")
        wait_until(lambda m=metric: _drawn(page, m), 15, f"{metric}: nothing drawn")
    own_box = own.bounding_box()
    section_box = section.bounding_box()
    assert own_box and section_box and section_box["y"] > own_box["y"], "the system section is not after"
    # Human units: bytes in KB/MB/GB on the axis and in the read-out, percents with %.
    rss = section.locator('.chart[data-metric="system/process/rss_bytes"]')
    expect(rss.locator(".legend-value")).to_have_text(re.compile(r"^[0-9.]+ (KB|MB|GB)$"))
    expect(rss.locator(".chart-title")).to_have_text("process/rss_bytes")
    cpu = section.locator('.chart[data-metric="system/cpu/percent"]')
    expect(cpu.locator(".legend-value")).to_have_text(re.compile(r"^[0-9.]+%$"))
    shot(page, "system-run-page", full_page=True)

    # Collapsing the section removes its charts; opening it again draws them.
    section.locator("summary").click()
    expect(section.locator(".chart")).to_have_count(0)
    section.locator("summary").click()
    expect(section.locator('.chart[data-metric="system/cpu/percent"]')).to_have_count(1)
    wait_until(lambda: _drawn(page, "system/cpu/percent"), 15, "cpu chart not drawn after reopening")


def test_dashboard_charts_group_the_system_series(page: Any, system_server: tuple[Server, str],
                                                  shot: Any) -> None:
    server, run_id = system_server
    page.goto(server.url + "/")
    page.get_by_role("checkbox", name="select sampled").check()
    section = page.get_by_test_id("system-section")
    expect(section).to_be_visible()
    expect(page.locator('[data-testid="chart-grid"] .chart[data-metric="train/loss"]')).to_have_count(1)
    chart = section.locator('.chart[data-metric="system/memory/percent"]')
    expect(chart).to_have_attribute("data-runs", "1")
    colour = chart.locator(".swatch").first.get_attribute("data-color")
    assert colour

    def drawn() -> Any:
        sel = '[data-testid="system-section"] .chart[data-metric="system/memory/percent"] canvas'
        r = page.evaluate(COUNT_COLOURS_JS, [sel, [colour]])
        return r if r and r["counts"][0] > 40 else None

    wait_until(drawn, 15, "the dashboard's memory chart shows no line")
    section.scroll_into_view_if_needed()
    shot(page, "system-dashboard")
