"""The dashboard as an analysis tool, over a 20-run sweep in 4 groups (sweep_fixture.py):
charts without asking, readable steps, room for charts, groups drawn as bands."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import expect

from .conftest import Server, _clean_env, start_server, stop_server
from .helpers import COUNT_COLOURS_JS, wait_until

LOSS = '.chart[data-metric="train/loss"]'


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    base = tmp_path_factory.mktemp("sweep")
    p = subprocess.run([sys.executable, str(Path(__file__).with_name("sweep_fixture.py")), str(base / "root")],
                       cwd=base, env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    ids = json.loads((base / "sweep-ids.json").read_text())
    srv = start_server(base / "root", base / "ui.log")
    yield srv, ids
    stop_server(srv)


def rows(page: Any) -> Any:
    return page.locator(".grid-row[data-run]")


def test_first_runs_are_charted_with_colours_eye_and_hover(page: Any, sweep: tuple[Server, dict[str, str]],
                                                           shot: Any) -> None:
    server, ids = sweep
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/scalars" in r.url else None)
    page.goto(server.url + "/")
    expect(page.get_by_test_id("runs-total")).to_have_text("20 runs")
    chart = page.locator(LOSS)
    # Nothing ticked, yet the first 10 runs of the view (newest first) are charted.
    expect(chart).to_have_attribute("data-runs", "10")
    # Their series come in one request per panel, not one per run and panel.
    panels = page.locator(".chart")
    wait_until(lambda: panels.count() == 6 and all(r == "10" for r in panels.evaluate_all("els => els.map(e => e.dataset.runs)")),
               10, "not every panel shows the ten runs")
    assert len(asked) == 6 and all("runs=" in u for u in asked), asked
    expect(chart.locator(".legend-item")).to_have_count(10)
    first = rows(page).first
    expect(first.locator("a.run-link")).to_have_text("run-19")
    colour = first.get_by_test_id("row-swatch").get_attribute("data-color")
    assert colour and chart.locator(f'.legend-item[data-run="{ids["run-19"]}"] .swatch').get_attribute("data-color") == colour
    # The 11th row is not charted: a hollow mark, a closed eye.
    eleventh = rows(page).nth(10)
    expect(eleventh.get_by_test_id("row-swatch")).to_have_attribute("data-color", "")
    expect(eleventh.get_by_test_id("eye")).to_have_attribute("aria-pressed", "false")
    def drawn() -> int:
        r = page.evaluate(COUNT_COLOURS_JS, [f"{LOSS} canvas", [colour]])
        return int(r["counts"][0]) if r else 0

    wait_until(lambda: drawn() > 30, 10, "run-19's colour is not drawn")
    shot(page, "analysis-first-runs")

    # Fewer runs: the URL keeps the count.
    page.get_by_test_id("chart-n").fill("5")
    page.get_by_test_id("chart-n").press("Enter")
    expect(page).to_have_url(re.compile(r"[?&]n=5"))
    expect(chart).to_have_attribute("data-runs", "5")
    page.wait_for_timeout(300)
    before = wait_until(lambda: drawn() > 30 and drawn(), 10, "run-19's colour is not drawn among five runs")

    # The eye hides run-19's lines; its colour leaves the canvas.
    first.get_by_test_id("eye").click()
    expect(chart).to_have_attribute("data-runs", "4")
    expect(page).to_have_url(re.compile(r"hide="))
    expect(chart.locator(f'.legend-item[data-run="{ids["run-19"]}"]')).to_have_count(0)
    wait_until(lambda: drawn() < before / 4, 10, "run-19's line is still drawn after its eye was closed")
    first.get_by_test_id("eye").click()
    expect(chart).to_have_attribute("data-runs", "5")

    # Ticking a run past the first five pins it into the charts; ticking runs one at a time
    # fetches each run's details once, not every ticked run again.
    details: list[str] = []
    page.on("request", lambda r: details.append(r.url) if re.search(r"/api/v1/runs/[^/?]+$", r.url.split("?")[0]) else None)
    page.get_by_role("checkbox", name="select run-02").check()
    expect(chart).to_have_attribute("data-runs", "6")
    expect(chart.locator(f'.legend-item[data-run="{ids["run-02"]}"]')).to_have_count(1)
    page.get_by_role("checkbox", name="select run-03").check()
    expect(chart).to_have_attribute("data-runs", "7")
    page.get_by_role("checkbox", name="select run-03").uncheck()
    expect(chart).to_have_attribute("data-runs", "6")
    assert sorted(u.rsplit("/", 1)[1] for u in details) == sorted([ids["run-02"], ids["run-03"]]), details

    # Hovering a row highlights its line's legend entry in every chart.
    page.locator(f'.grid-row[data-run="{ids["run-17"]}"]').hover()
    expect(chart.locator(".legend-item.hovered")).to_have_attribute("data-run", ids["run-17"])
    expect(page.locator('.chart[data-metric="val/acc"] .legend-item.hovered')).to_have_attribute("data-run", ids["run-17"])
    # Hovering near a line in a chart highlights that run's row.
    over = chart.locator(".u-over").bounding_box()

    def hovered_row() -> Any:
        for y in (0.55, 0.65, 0.75, 0.85, 0.9):
            page.mouse.move(over["x"] + over["width"] * 0.3, over["y"] + over["height"] * y, steps=2)
            page.wait_for_timeout(100)
            if page.locator(".grid-row.hovered").count() == 1:
                return page.locator(".grid-row.hovered").get_attribute("data-run")
        return None

    run = wait_until(hovered_row, 10, "no row is highlighted while the mouse is on a line")
    expect(chart.locator(".legend-item.hovered")).to_have_attribute("data-run", run)
    shot(page, "analysis-hover")


def test_steps_read_as_integers_and_smoothing_shows_raw_and_smoothed(page: Any, sweep: tuple[Server, dict[str, str]],
                                                                     shot: Any) -> None:
    server, ids = sweep
    page.goto(server.url + "/#/?n=3&smooth=0.9")
    chart = page.locator(LOSS)
    expect(chart).to_have_attribute("data-runs", "3")
    # The last step, 690,010, with thousands separators (never 6.9001e+5).
    expect(chart.get_by_test_id("last-step")).to_have_text("step 690,010")
    # Not hovering, the legend shows each run's last point: smoothed, and raw beside it.
    series = server.get_json(f"/api/v1/runs/{ids['run-19']}/scalars?name=train/loss")
    item = chart.locator(f'.legend-item[data-run="{ids["run-19"]}"]')
    raw = float(item.locator(".legend-raw").inner_text().removeprefix("raw "))
    smoothed = float(item.locator(".legend-value").inner_text())
    assert abs(raw - series["value"][-1]) < 1e-4, (raw, series["value"][-1])
    assert abs(smoothed - raw) > 1e-4, "the smoothed value is the raw one"
    # Hovering: the step under the cursor, as an integer with separators.
    over = chart.locator(".u-over").bounding_box()
    page.mouse.move(over["x"] + over["width"] * 0.62, over["y"] + over["height"] * 0.5, steps=3)
    step = chart.locator(".legend-x")
    wait_until(lambda: re.fullmatch(r"step \d{3},\d{3}", step.inner_text()), 10, "the hovered step is not an integer with separators")
    assert "e+" not in step.inner_text()
    expect(chart.locator(".legend-raw")).to_have_count(3)
    shot(page, "analysis-steps-smoothing")


def test_room_for_charts_table_collapses_and_resizes_panels_in_sections(page: Any, sweep: tuple[Server, dict[str, str]],
                                                                       shot: Any) -> None:
    server, _ = sweep
    page.goto(server.url + "/#/?n=4")
    expect(page.locator(LOSS)).to_have_attribute("data-runs", "4")
    # Panels are grouped by their name's prefix; the machine's series come last.
    sections = page.locator(".chart-section[data-section]")
    wait_until(lambda: sections.evaluate_all("els => els.map(e => e.dataset.section)") == ["train", "val", "system"], 10,
               "the panels are not in train, val and system sections")
    expect(page.locator('.chart-section[data-section="val"] .chart')).to_have_count(2)

    # The table's bottom edge drags; the height is kept.
    table = page.get_by_test_id("runs-table")
    h0 = table.bounding_box()["height"]
    handle = page.get_by_test_id("table-resize").bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + 3)
    page.mouse.down()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + 153, steps=6)
    page.mouse.up()
    h1 = table.bounding_box()["height"]
    assert 130 < h1 - h0 < 170, (h0, h1)
    # Collapsed, the table is one line and the charts take the room; a reload keeps it so.
    charts_top = page.locator(".charts-area").bounding_box()["y"]
    page.get_by_test_id("table-toggle").click()
    expect(page.locator(".grid-body")).to_have_count(0)
    assert table.bounding_box()["height"] < 50
    assert page.locator(".charts-area").bounding_box()["y"] < charts_top - 200
    page.reload()
    expect(page.get_by_test_id("table-toggle")).to_have_text("▸ show table")
    expect(page.locator(".grid-body")).to_have_count(0)

    # A regular expression picks panels across sections; the URL keeps it.
    search = page.get_by_test_id("panel-search")
    search.fill("^val/|cpu")
    expect(page).to_have_url(re.compile(r"panels=%5Eval%2F%7Ccpu"))
    wait_until(lambda: page.locator(".chart").evaluate_all("els => els.map(e => e.dataset.metric)")
               == ["val/acc", "val/loss", "system/cpu/percent"], 10, "the regex did not pick the val and cpu panels")
    # Not a regular expression: matched as text, marked, never an error page.
    search.fill("loss(")
    expect(search).to_have_class(re.compile("invalid"))
    expect(page.get_by_test_id("no-panels")).to_be_visible()
    search.fill("loss")
    expect(page.locator(".chart")).to_have_count(2)

    # A panel goes full width and back.
    loss = page.locator(LOSS)
    val = page.locator('.chart[data-metric="val/loss"]')
    narrow = loss.bounding_box()["width"]
    loss.get_by_test_id("wide").click()
    expect(loss).to_have_class(re.compile(r"\bwide\b"))
    expect(page).to_have_url(re.compile(r"wide=train%2Floss"))
    wait_until(lambda: loss.bounding_box()["width"] > 1.8 * narrow, 10, "the panel did not grow to the full width")
    assert val.bounding_box()["width"] < 1.2 * narrow
    shot(page, "analysis-room")
    loss.get_by_test_id("wide").click()
    wait_until(lambda: loss.bounding_box()["width"] < 1.2 * narrow, 10, "the panel did not go back to the grid")
    page.get_by_test_id("table-toggle").click()
    expect(page.locator(".grid-body")).to_have_count(1)


def test_groups_are_lines_with_bands_and_sticky_collapsible_headers(page: Any, sweep: tuple[Server, dict[str, str]],
                                                                    shot: Any) -> None:
    server, ids = sweep
    page.goto(server.url + "/#/")
    expect(page.locator(LOSS)).to_have_attribute("data-runs", "10")
    page.get_by_test_id("group").select_option("group")
    chart = page.locator(LOSS)
    # One line per group, its mean, with its run count in the legend.
    expect(chart).to_have_attribute("data-runs", "4")
    legend = chart.locator(".legend-item")
    wait_until(lambda: legend.locator(".legend-label").all_inner_texts() == ["sweep-a", "sweep-b", "sweep-c", "sweep-d"],
               10, "the legend is not the four groups")
    expect(chart.get_by_test_id("legend-count")).to_have_text(["(5 runs)"] * 4)
    expect(chart.get_by_test_id("band-badge")).to_have_text("mean, min – max")
    colours = legend.locator(".swatch").evaluate_all("els => els.map(e => e.dataset.color)")
    # The band is drawn in each group's colour, faint: more of the canvas is tinted than lines alone.
    wait_until(lambda: all(c > 100 for c in page.evaluate(COUNT_COLOURS_JS, [f"{LOSS} canvas", colours])["counts"]), 10,
               "the four group lines are not drawn")
    from .helpers import CANVAS_DIGEST_JS
    minmax = page.evaluate(CANVAS_DIGEST_JS, f"{LOSS} canvas")
    page.get_by_test_id("band").select_option("std")
    expect(page).to_have_url(re.compile(r"band=std"))
    expect(chart.get_by_test_id("band-badge")).to_have_text("mean ± std")
    wait_until(lambda: page.evaluate(CANVAS_DIGEST_JS, f"{LOSS} canvas") != minmax, 10, "the ± std band looks like min – max")

    # The table: a header per group with its count and line colour; rows wear their group's colour.
    heads = page.get_by_test_id("group-head")
    wait_until(lambda: heads.locator(".group-label").all_inner_texts() == ["sweep-a", "sweep-b", "sweep-c", "sweep-d"],
               10, "the group headers are not the four groups")
    run16 = page.locator(f'.grid-row[data-run="{ids["run-16"]}"]')  # in sweep-a
    expect(run16.get_by_test_id("row-swatch")).to_have_attribute("data-color", colours[0])
    # Hovering a run's row highlights its group's line.
    run16.hover()
    expect(chart.locator(".legend-item.hovered .legend-label")).to_have_text("sweep-a")
    # Its eye leaves it out of the group's line.
    run16.get_by_test_id("eye").click()
    expect(chart.get_by_test_id("legend-count").first).to_have_text("(4 runs)")
    run16.get_by_test_id("eye").click()
    expect(chart.get_by_test_id("legend-count").first).to_have_text("(5 runs)")

    # Scrolled into sweep-b's rows, sweep-b's header stays in sight under the column heads.
    body = page.locator(".grid-body")
    body.evaluate("e => e.scrollTop = 250")
    sticky = page.get_by_test_id("group-sticky")
    expect(sticky.locator(".group-sticky-label")).to_have_text("sweep-b")
    head_box = page.locator(".grid-head").bounding_box()
    box = sticky.bounding_box()
    assert abs(box["y"] - (head_box["y"] + head_box["height"])) < 3, (box, head_box)
    page.mouse.move(700, 60)  # off the rows: no line highlighted in the picture
    expect(chart.locator(".legend-item.hovered")).to_have_count(0)
    shot(page, "analysis-groups")
    body.evaluate("e => e.scrollTop = 0")
    expect(sticky).to_have_count(0)

    # A header collapses its group; the others stay.
    heads.filter(has_text="sweep-a").click()
    expect(run16).to_have_count(0)
    expect(heads).to_have_count(4)
    heads.filter(has_text="sweep-a").click()
    expect(run16).to_have_count(1)

    # A new sort, group or filter starts at the top.
    body.evaluate("e => e.scrollTop = 250")
    page.get_by_test_id("group").select_option("")
    wait_until(lambda: body.evaluate("e => e.scrollTop") == 0, 10, "the table did not scroll back to the top")
    expect(chart).to_have_attribute("data-runs", "10")


def test_sweep_scatter_over_the_filtered_runs(page: Any, sweep: tuple[Server, dict[str, str]], shot: Any) -> None:
    server, ids = sweep
    page.goto(server.url + "/#/?n=3")
    page.get_by_test_id("scatter-section").locator("summary").click()
    scatter = page.get_by_test_id("scatter")
    # Every run of the view, lr (log by default: it spans three decades) against a val metric.
    expect(scatter).to_have_attribute("data-points", "20")
    expect(page.get_by_test_id("scatter-x")).to_have_value("params.lr")
    expect(page.get_by_test_id("scatter-logx")).to_be_checked()
    expect(page.get_by_test_id("scatter-y")).to_have_value("metrics.val/acc")
    expect(page.get_by_test_id("scatter-logy")).not_to_be_checked()
    ticks = scatter.locator(".scatter-tick").all_text_contents()
    assert {"1e-4", "0.001", "0.01", "0.1"} <= set(ticks), ticks
    # Hovering a point reads it out and highlights its run's row.
    dot = scatter.locator(f'circle[data-run="{ids["run-19"]}"]')
    dot.hover()
    expect(page.get_by_test_id("scatter-readout")).to_contain_text("run-19")
    expect(page.locator(f'.grid-row[data-run="{ids["run-19"]}"]')).to_have_class(re.compile("hovered"))
    # Coloured by a category: one colour per optimizer, named in the legend.
    page.get_by_test_id("scatter-color").select_option("params.optimizer")
    expect(scatter.locator(".scatter-legend .legend-item")).to_have_text(["adam", "sgd"])
    fills = set(scatter.locator("circle").evaluate_all("els => els.map(e => e.getAttribute('fill'))"))
    assert len(fills) == 2, fills
    # A param some runs lack: they are counted, not drawn at 0.
    page.get_by_test_id("scatter-x").select_option("params.warmup")
    expect(scatter).to_have_attribute("data-points", "17")
    expect(page.get_by_test_id("scatter-count")).to_have_text("17 runs · 3 without warmup or val/acc")
    expect(page.get_by_test_id("scatter-logx")).not_to_be_checked()
    # The table's filter is the scatter's: lr < 0.01 leaves 13 runs.
    page.get_by_test_id("scatter-x").select_option("params.lr")
    where = page.get_by_test_id("where")
    where.fill("params.lr < 0.01")
    where.press("Enter")
    expect(page.get_by_test_id("runs-total")).to_have_text("13 runs")
    expect(scatter).to_have_attribute("data-points", "13")
    # A filter that hides every run says so (it does not blame a missing init()).
    where.fill("params.lr < 0")
    where.press("Enter")
    expect(page.get_by_test_id("table-empty")).to_have_text(re.compile("^No run matches this filter"))
    where.fill("params.lr < 0.01")
    where.press("Enter")
    expect(scatter).to_have_attribute("data-points", "13")
    # Clicking a point pins its run into the charts.
    scatter.locator(f'circle[data-run="{ids["run-00"]}"]').click()
    expect(page).to_have_url(re.compile(rf"sel={ids['run-00']}"))
    expect(page.locator(LOSS)).to_have_attribute("data-runs", "4")
    page.get_by_test_id("table-toggle").click()
    shot(page, "analysis-scatter")
    page.get_by_test_id("table-toggle").click()


def test_keys_csv_export_and_a_bad_where_sent_once(page: Any, sweep: tuple[Server, dict[str, str]]) -> None:
    server, ids = sweep
    page.goto(server.url + "/#/?n=2")
    expect(page.get_by_test_id("runs-total")).to_have_text("20 runs")
    # `/` goes to the filter; Esc leaves it.
    page.locator("body").press("/")
    expect(page.get_by_test_id("filter")).to_be_focused()
    page.keyboard.type("run-1")
    expect(page.get_by_test_id("runs-total")).to_have_text("10 runs")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("filter")).not_to_be_focused()

    # The view as CSV: a header and one line per run of the view, the picked columns last.
    page.goto(server.url + "/#/?n=2&q=run-1&cols=params.lr,metrics.val/acc")
    expect(page.get_by_test_id("runs-total")).to_have_text("10 runs")
    with page.expect_download() as dl:
        page.get_by_test_id("export-csv").click()
    text = Path(dl.value.path()).read_bytes().decode()
    lines = text.strip().split("\r\n")
    assert lines[0] == "id,experiment,name,status,started,duration,commit,group,comment,tags,params.lr,metrics.val/acc", lines[0]
    assert len(lines) == 11 and lines[1].split(",")[2] == "run-19", lines[:3]
    assert float(lines[1].split(",")[10]) == pytest.approx(0.1)

    # A bad `where` is asked once, shown as an error, and not asked again.
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/api/v1/runs?" in r.url and "where=" in r.url else None)
    where = page.get_by_test_id("where")
    where.fill("params.lr >>> 1")
    where.press("Enter")
    expect(page.get_by_test_id("table-error")).to_be_visible()
    where.blur()
    page.wait_for_timeout(1000)
    assert len(asked) == 1, asked

    # `c` compares the ticked runs.
    page.goto(server.url + "/#/?n=2")
    page.get_by_role("checkbox", name="select run-19").check()
    page.get_by_role("checkbox", name="select run-18").check()
    page.keyboard.press("c")
    expect(page).to_have_url(re.compile(r"#/compare\?runs="))
    expect(page.get_by_test_id("compare-params")).to_be_visible()
