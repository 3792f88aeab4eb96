"""Real journeys through the dashboard in Chromium against `labtrack ui` over fixture runs."""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

from playwright.sync_api import expect

from .conftest import Fixture, Server
from .helpers import CANVAS_DIGEST_JS, COUNT_COLOURS_JS, wait_until
from .make_fixture import LONG_N

LOSS_CANVAS = '.chart[data-metric="train/loss"] canvas'


def row(page: Any, name: str) -> Any:
    return page.locator(".grid-row").filter(has=page.locator("a.run-link", has_text=re.compile(f"^{re.escape(name)}$")))


def test_table_filter_select_three_runs_chart_and_smoothing(page: Any, server: Server, fixture_root: Fixture,
                                                            shot: Any) -> None:
    # n=0: only the ticked runs are charted (by default the first 10 of the view are).
    page.goto(server.url + "/#/?n=0")
    total = page.get_by_test_id("runs-total")
    expect(total).to_have_text("7 runs")
    # Status marks: the SIGKILLed run shows as crashed, the one that raised as failed.
    expect(row(page, "resnet-oom").locator('[data-status="crashed"]')).to_be_visible()
    expect(row(page, "resnet-diverged").locator('[data-status="failed"]')).to_be_visible()
    # A comment holding HTML is shown as text, never run.
    expect(row(page, "baseline")).to_contain_text('<img src=x onerror=')
    assert page.evaluate("window.__pwned") is None
    # Commit with the dirty mark (the fixture repo had an uncommitted change).
    expect(row(page, "baseline").locator(".dirty")).to_have_text("*")

    # Free text finds a status too, the derived one included (the SIGKILLed run is stored as running).
    page.get_by_test_id("filter").fill("crashed")
    expect(total).to_have_text("1 run")
    expect(row(page, "resnet-oom")).to_have_count(1)
    page.get_by_test_id("filter").fill("failed cifar")
    expect(total).to_have_text("1 run")
    expect(row(page, "resnet-diverged")).to_have_count(1)
    # Free-text filter (server side), then a `where` expression on top.
    page.get_by_test_id("filter").fill("mnist")
    expect(total).to_have_text("4 runs")
    where = page.get_by_test_id("where")
    where.fill("params.lr >= 0.03")
    where.press("Enter")
    expect(total).to_have_text("3 runs")
    expect(row(page, "lr-0.01")).to_have_count(0)
    where.fill("params.lr >>> 1")
    where.press("Enter")
    expect(page.get_by_test_id("table-error")).to_be_visible()
    where.fill("")
    where.press("Enter")
    expect(total).to_have_text("4 runs")

    # Sorting by a column asks the server; name ascending puts baseline first.
    page.locator(".th", has_text=re.compile("^name")).click()
    page.locator(".th", has_text=re.compile("^name")).click()
    expect(page.locator(".grid-row a.run-link").first).to_have_text("baseline")

    for name in ("baseline", "lr-0.03", "lr-0.01"):
        page.get_by_role("checkbox", name=f"select {name}").check()
    chart = page.locator('.chart[data-metric="train/loss"]')
    expect(chart).to_have_attribute("data-runs", "3")
    expect(chart.locator(".legend-item")).to_have_count(3)
    colours = chart.locator(".swatch").evaluate_all("els => els.map(e => e.dataset.color)")
    assert len(set(colours)) == 3, colours

    def three_lines() -> Any:
        r = page.evaluate(COUNT_COLOURS_JS, [LOSS_CANVAS, colours])
        return r if r and all(c > 150 for c in r["counts"]) else None

    pixels = wait_until(three_lines, 10, "train/loss canvas does not show three lines in the runs' colours")
    assert pixels["painted"] > 1000
    before_digest = page.evaluate(CANVAS_DIGEST_JS, LOSS_CANVAS)
    last_raw = chart.locator(".legend-value").all_inner_texts()
    shot(page, "dashboard")

    # Smoothing: the URL keeps it, the drawn lines change, the read-out shows smoothed values.
    page.get_by_test_id("smoothing").fill("0.9")
    expect(page).to_have_url(re.compile(r"smooth=0\.9"))
    wait_until(lambda: page.evaluate(CANVAS_DIGEST_JS, LOSS_CANVAS) != before_digest, 15,
               "the chart did not change with smoothing")
    wait_until(lambda: chart.locator(".legend-value").all_inner_texts() != last_raw, 15,
               "the legend still shows the raw last values")
    wait_until(lambda: all(c > 150 for c in page.evaluate(COUNT_COLOURS_JS, [LOSS_CANVAS, colours])["counts"]),
               10, "the smoothed chart does not show the three runs' colours")

    # Hover read-out: one value per run at the cursor.
    box = page.locator(LOSS_CANVAS).bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
    expect(chart.locator(".legend-x")).to_contain_text("step")

    def three_numbers() -> list[str] | None:
        values = chart.locator(".legend-value").all_inner_texts()
        return values if len(values) == 3 and all(re.match(r"^-?\d", v) for v in values) else None

    wait_until(three_numbers, 10, "the legend does not show three values at the cursor")

    # The link is shareable: a fresh page on the same URL shows the same selection and smoothing.
    url = page.url
    assert "sel=" in url and "smooth=0.9" in url
    page.goto("about:blank")
    page.goto(url)
    expect(page.locator('.chart[data-metric="train/loss"] .legend-item')).to_have_count(3)
    expect(page.get_by_test_id("smoothing")).to_have_value("0.9")
    expect(page.get_by_test_id("filter")).to_have_value("mnist")


def test_group_by_experiment_and_columns(page: Any, server: Server, shot: Any) -> None:
    page.goto(server.url + "/#/?cols=params.lr,metrics.val/acc")
    expect(page.get_by_test_id("runs-total")).to_have_text("7 runs")
    page.get_by_test_id("group").select_option("experiment")
    labels = page.locator(".group-label")
    expect(labels).to_have_count(2)
    # Read until the texts settle: the virtualised table may redraw its rows between two
    # calls (an empty read failed once in a fresh-clone CI).
    wait_until(lambda: sorted(labels.all_inner_texts()) == ["cifar", "mnist"], 10,
               "the group labels are not cifar and mnist")
    # The picked columns show each run's param and last metric value.
    expect(row(page, "lr-0.03")).to_contain_text("0.03")
    expect(page.locator(".th.user-col")).to_have_count(2)
    shot(page, "runs-grouped")


def test_zoom_asks_the_server_for_the_visible_range(page: Any, server: Server, fixture_root: Fixture) -> None:
    long_id = fixture_root.ids["long"]
    page.goto(server.url + f"/#/?sel={long_id}&n=0")
    chart = page.locator('.chart[data-metric="train/loss"]')
    expect(chart).to_have_attribute("data-runs", "1")
    # LONG_N points arrive downsampled, with the min/max envelope drawn.
    expect(chart.locator(".badge")).to_have_text("envelope")
    points = int(chart.get_attribute("data-points"))
    assert 500 < points <= 2100, points
    canvas = page.locator('.chart[data-metric="train/loss"] canvas').first
    # uPlot listens on its overlay; drag across 5% of the plot.
    over = page.locator('.chart[data-metric="train/loss"] .u-over')
    b = over.bounding_box()
    with page.expect_request(lambda r: "/scalars?" in r.url and "xmin=" in r.url and "xmax=" in r.url) as ranged:
        page.mouse.move(b["x"] + b["width"] * 0.60, b["y"] + b["height"] / 2)
        page.mouse.down()
        page.mouse.move(b["x"] + b["width"] * 0.65, b["y"] + b["height"] / 2, steps=5)
        page.mouse.up()
    q = dict(p.split("=", 1) for p in ranged.value.url.split("?", 1)[1].split("&"))
    assert 0.55 * LONG_N < float(q["xmin"]) < float(q["xmax"]) < 0.7 * LONG_N, q
    expect(chart).to_have_attribute("data-zoomed", "1")
    # Only the visible range came back.
    wait_until(lambda: chart.get_attribute("data-xmax") and float(chart.get_attribute("data-xmax")) < 0.7 * LONG_N, 15,
               "the zoomed data still reaches the end of the series")
    assert canvas.is_visible()
    page.get_by_role("button", name="reset zoom").click()
    expect(chart).to_have_attribute("data-zoomed", "0")
    wait_until(lambda: float(chart.get_attribute("data-xmax")) >= LONG_N - 1, 15,
               "reset did not bring back the whole series")

    # x by relative time: seconds since the run's first point (the fixture logged it in seconds).
    canvas_sel = '.chart[data-metric="train/loss"] canvas'
    # The reset's data can arrive a frame before uPlot has drawn it: take the picture once
    # two looks 0.3 s apart agree (a half-drawn `before` would never come back).
    def settled() -> Any:
        first = page.evaluate(CANVAS_DIGEST_JS, canvas_sel)
        page.wait_for_timeout(300)
        return first if page.evaluate(CANVAS_DIGEST_JS, canvas_sel) == first else None

    before = wait_until(settled, 15, "the whole-series chart did not settle")
    page.get_by_test_id("xaxis").select_option("relative")
    expect(page).to_have_url(re.compile(r"x=relative"))
    wait_until(lambda: 0 < float(chart.get_attribute("data-xmax")) < 600, 15, "x is not seconds since the start")
    # Wall time: Unix seconds.
    page.get_by_test_id("xaxis").select_option("time")
    wait_until(lambda: float(chart.get_attribute("data-xmax")) > 1.7e9, 15, "x is not wall time")
    page.get_by_test_id("xaxis").select_option("step")
    wait_until(lambda: float(chart.get_attribute("data-xmax")) >= LONG_N - 1, 15, "x is not the step again")
    # Log scale redraws the same data on a log axis.
    wait_until(lambda: page.evaluate(CANVAS_DIGEST_JS, canvas_sel) == before, 15, "the step view did not come back")
    page.get_by_test_id("logy").check()
    expect(page).to_have_url(re.compile(r"log=1"))
    wait_until(lambda: page.evaluate(CANVAS_DIGEST_JS, canvas_sel) != before, 15, "log scale did not redraw")


def test_run_page_provenance_images_text_markdown(page: Any, server: Server, fixture_root: Fixture, shot: Any) -> None:
    page.goto(server.url + "/")
    row(page, "baseline").locator("a.run-link").click()
    expect(page.get_by_test_id("run-page")).to_be_visible()
    prov = page.get_by_test_id("provenance")
    expect(prov).to_contain_text("first model")
    expect(prov).to_contain_text("dirty")
    expect(prov).to_contain_text("make_fixture.py")
    expect(page.get_by_test_id("param-tree")).to_contain_text("momentum")
    diff = page.get_by_test_id("git-diff")
    expect(diff.locator(".d-add")).to_contain_text(["+lr = 0.05", "+    return 1"])
    expect(diff.locator(".d-del")).to_contain_text(["-lr = 0.1", "-    pass"])
    expect(page.get_by_test_id("timings")).to_contain_text("backward")
    # Checkpoints read as steps and the metric they were ranked by, not as JSON.
    expect(page.get_by_test_id("checkpoints")).to_have_text("last step 299 · best step 299 (min 0.12) · 1 kept")
    shot(page, "run-overview", full_page=True)

    page.get_by_test_id("tab-images").click()
    series = page.get_by_test_id("image-series")
    img = series.locator("img")
    expect(img).to_be_visible()
    wait_until(lambda: img.evaluate("i => i.complete && i.naturalWidth") == 128, 15, "the image did not load")
    boxes = series.locator("g.box")
    # threshold 0.2 (from the logged file) hides the 0.1 "background" box
    expect(boxes).to_have_count(2)
    expect(series.locator(".box-label")).to_have_text(["bird 0.92", "orange 0.55"])
    box = series.locator('g.box[data-class="bird"] rect').first.bounding_box()
    im = img.bounding_box()
    assert box["x"] >= im["x"] and box["x"] + box["width"] <= im["x"] + im["width"] + 2
    shot(page, "run-images")
    page.get_by_test_id("threshold").fill("0.6")
    expect(boxes).to_have_count(1)
    series.locator(".class-toggle", has_text="bird").locator("input").uncheck()
    expect(boxes).to_have_count(0)
    page.get_by_test_id("threshold").fill("0")
    expect(boxes).to_have_count(2)
    # The step slider moves through the logged steps.
    page.get_by_test_id("image-step").fill("0")
    expect(series.get_by_test_id("step-value")).to_have_text("0")
    expect(img).to_have_attribute("src", re.compile(r"media%2F0%2F"))

    page.get_by_test_id("tab-text").click()
    d = page.get_by_test_id("text-diff")
    expect(d.locator("del")).to_have_text(["the", "dog"])
    expect(d.locator("ins")).to_have_text(["a", "cat"])
    page.get_by_label("characters").check()
    expect(d.locator("del").first).to_be_visible()
    page.get_by_label("words").check()
    shot(page, "run-text")

    page.get_by_test_id("tab-markdown").click()
    md = page.locator(".markdown")
    expect(md.locator("h1")).to_have_text("Evaluation report")
    expect(md.locator("table td").first).to_have_text("val")
    expect(md.locator("strong")).to_have_text("97.1%")
    assert md.locator("script").count() == 0
    assert md.locator("[onerror]").count() == 0
    assert md.locator('a[href^="javascript:"]').count() == 0
    # A relative image path shows the run's own file.
    sample = md.locator('img[alt="first sample"]')
    expect(sample).to_have_attribute("src", re.compile(r"file\?path=media%2F0%2Fsamples%2Fstreet\.png$"))
    wait_until(lambda: sample.evaluate("i => i.complete && i.naturalWidth") == 128, 15, "the markdown image did not load")
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    shot(page, "run-markdown")

    page.get_by_test_id("tab-tables").click()
    expect(page.locator(".data-table")).to_contain_text("orange")
    page.get_by_test_id("tab-histograms").click()
    heat = page.locator(".hist-heat")
    expect(heat).to_be_visible()
    painted = heat.evaluate("c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                            " let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 200) n++; return n; }")
    assert painted > 500, painted
    shot(page, "run-histograms")
    page.get_by_test_id("tab-console").click()
    expect(page.get_by_test_id("console")).to_contain_text("done: final loss")

    page.get_by_test_id("tab-files").click()
    link = page.locator("a", has_text="artifacts/eval/confusion.json")
    href = link.get_attribute("href")
    with urllib.request.urlopen(server.url + "/" + href, timeout=10) as r:
        assert json.loads(r.read()) == [[50, 2], [3, 45]]
    expect(page.locator("a", has_text=re.compile(r"^checkpoints/299/"))).not_to_have_count(0)

    page.get_by_test_id("tab-charts").click()
    expect(page.locator('.chart[data-metric="val/acc"]')).to_have_attribute("data-runs", "1")
    shot(page, "run-charts")


def test_compare_marks_differences_and_draws_parallel_coordinates(page: Any, server: Server, fixture_root: Fixture,
                                                                  shot: Any) -> None:
    ids = fixture_root.ids
    sel = ",".join([ids["baseline"], ids["lr-0.03"], ids["lr-0.01"]])
    page.goto(server.url + f"/#/?sel={sel}")
    page.get_by_test_id("compare").click()
    table = page.get_by_test_id("compare-params")
    expect(table.locator('tr[data-param="lr"]')).to_have_class(re.compile("differs"))
    expect(table.locator('tr[data-param="epochs"]')).not_to_have_class(re.compile("differs"))
    expect(table.locator('tr[data-param="optimizer.name"] td')).to_have_text(["optimizer.name", "sgd", "sgd", "adam"])
    lines = page.get_by_test_id("parallel").locator("g.pc-run")
    expect(lines).to_have_count(3)
    # lr-0.01 (adam) has no momentum: its line stays whole through that axis's "missing" tick
    # (as on the dashboard's parallel coordinates), below the axis, never at an invented value.
    expect(lines.nth(0).locator("polyline")).to_have_count(1)
    expect(lines.nth(2).locator("polyline")).to_have_count(1)
    expect(page.get_by_test_id("pc-missing")).to_have_count(1)
    bottom = float(page.get_by_test_id("parallel").locator("line").first.get_attribute("y2"))
    ys = [float(p.split(",")[1]) for p in lines.nth(2).locator("polyline").get_attribute("points").split()]
    assert max(ys) > bottom  # the missing momentum is drawn below the axis
    page.get_by_test_id("pc-metric").select_option("val/acc")
    expect(page.locator(".pc-metric")).to_have_text("val/acc")
    shot(page, "compare", full_page=True)
