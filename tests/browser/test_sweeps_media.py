"""Sweeps and media across runs on the dashboard, over the 20-run sweep (sweep_fixture.py):
parallel coordinates whose brushes filter the table and the charts; "best" by a metric's
declared direction on the compare page and in a run's summary; images and text of several
runs side by side under one step slider, with one box threshold and class filter."""

from __future__ import annotations

import re
from typing import Any, Iterator
from urllib.parse import parse_qs, unquote

import numpy as np
import pytest
from playwright.sync_api import expect

import labtrack

from .conftest import Server, start_server, stop_server
from .helpers import wait_until
from .test_analysis import LOSS, sweep  # noqa: F401  (the module-scoped sweep fixture)

LRS = [10 ** (-4 + 3 * i / 19) for i in range(20)]
WARMUP_MISSING = {0, 7, 14}


def hash_params(page: Any) -> dict[str, str]:
    frag = page.url.split("#", 1)[1]
    query = frag.split("?", 1)[1] if "?" in frag else ""
    return {k: v[0] for k, v in parse_qs(query).items()}


def brush(page: Any, col: str, top: float, bottom: float) -> None:
    """Drag along `col`'s axis from `top` to `bottom` (fractions of the axis's hit area)."""
    hit = page.get_by_test_id(f"pc-axis-{col}").get_by_test_id("pc-hit")
    box = hit.bounding_box()
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + box["height"] * top)
    page.mouse.down()
    page.mouse.move(x, box["y"] + box["height"] * (top + bottom) / 2, steps=4)
    page.mouse.move(x, box["y"] + box["height"] * bottom, steps=4)
    page.mouse.up()


def test_parallel_coordinates_brush_filters_table_and_charts(page: Any, sweep: tuple[Server, dict[str, str]],  # noqa: F811
                                                             shot: Any) -> None:
    server, ids = sweep
    page.goto(server.url + "/#/?n=5")
    expect(page.get_by_test_id("runs-total")).to_have_text("20 runs")
    page.get_by_test_id("parcoords-section").locator("summary").click()
    expect(page).to_have_url(re.compile(r"[?&]pc=1"))
    pc = page.get_by_test_id("parcoords")
    expect(pc).to_have_attribute("data-lines", "20")
    # The axes: the params (lr first, on a log axis) and the val metrics.
    cols = pc.locator(".pc-axis").evaluate_all("els => els.map(e => e.dataset.col)")
    assert cols == ["params.lr", "params.batch_size", "params.optimizer", "params.warmup",
                    "metrics.val/acc", "metrics.val/loss"], cols
    expect(page.get_by_test_id("pc-axis-params.lr").get_by_test_id("pc-log")).to_have_text("log ⇄")
    expect(page.get_by_test_id("pc-axis-params.batch_size").get_by_test_id("pc-log")).to_have_text("linear ⇄")
    lr_ticks = page.get_by_test_id("pc-axis-params.lr").locator(".scatter-tick").all_text_contents()
    assert {"1e-4", "0.001", "0.01", "0.1"} <= set(lr_ticks), lr_ticks
    expect(page.get_by_test_id("pc-axis-params.optimizer").locator(".scatter-tick")).to_have_text(["adam", "sgd"])
    # The three runs without warmup go through the "missing" tick of that axis, not off the plot.
    warm = page.get_by_test_id("pc-axis-params.warmup")
    expect(warm.get_by_test_id("pc-missing")).to_have_text("missing")
    expect(page.get_by_test_id("pc-axis-params.lr").get_by_test_id("pc-missing")).to_have_count(0)
    through = page.evaluate(
        """() => {
          const g = document.querySelector('[data-testid="pc-axis-params.warmup"] [data-testid="pc-missing"]');
          const y = Number(g.getAttribute('transform').match(/,([\\d.]+)\\)/)[1]);
          const out = {};
          for (const p of document.querySelectorAll('.pc-line')) {
            const pts = p.getAttribute('d').slice(1).split('L').map(s => s.split(',').map(Number));
            out[p.dataset.run] = pts.length === 6 && Math.abs(pts[3][1] - y) < 0.2;
          }
          return out;
        }"""
    )
    by_name = {name: through[rid] for name, rid in ids.items()}
    assert {n for n, on in by_name.items() if on} == {f"run-{i:02d}" for i in WARMUP_MISSING}, by_name
    shot(page, "sweeps-parcoords")

    # Brushing the upper part of the lr axis: the table and the charts keep the runs inside.
    brush(page, "params.lr", 0.08, 0.45)
    expect(page).to_have_url(re.compile(r"pcb=params\.lr"))
    spec = unquote(hash_params(page)["pcb"])
    m = re.fullmatch(r"params\.lr:([\d.e+-]+)\.\.([\d.e+-]+)", spec)
    assert m, spec
    lo, hi = float(m[1]), float(m[2])
    assert 1e-3 < lo < hi < 0.2, (lo, hi)
    inside = [i for i, lr in enumerate(LRS) if lo <= lr <= hi]
    assert 3 <= len(inside) < 20, inside
    expect(page.get_by_test_id("runs-total")).to_have_text(f"{len(inside)} runs")
    expect(pc).to_have_attribute("data-inside", str(len(inside)))
    expect(pc).to_have_attribute("data-lines", "20")  # the plot still shows every run, greyed outside
    expect(pc.locator(".pc-line.out")).to_have_count(20 - len(inside))
    names = page.locator(".grid-row[data-run] a.run-link").all_text_contents()
    assert sorted(names) == sorted(f"run-{i:02d}" for i in inside), names
    expect(page.locator(LOSS)).to_have_attribute("data-runs", str(min(5, len(inside))))
    expect(page.get_by_test_id("brush-chip")).to_contain_text("brushed: lr")
    expect(page.get_by_test_id("pc-count")).to_have_text(f"20 runs · {len(inside)} inside the brush")

    # A second brush over the "missing" tick of warmup keeps the runs without warmup.
    box = warm.get_by_test_id("pc-hit").bounding_box()
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + box["height"] - 22)
    page.mouse.down()
    page.mouse.move(x, box["y"] + box["height"] - 2, steps=4)
    page.mouse.up()
    expect(page).to_have_url(re.compile(r"params\.warmup%3Amissing|params\.warmup:missing"))
    both = [i for i in inside if i in WARMUP_MISSING]
    if both:
        expect(page.get_by_test_id("runs-total")).to_have_text(f"{len(both)} run{'s' if len(both) != 1 else ''}")
    else:
        expect(page.get_by_test_id("table-empty")).to_be_visible()
    expect(page.get_by_test_id("pc-count")).to_have_text(f"20 runs · {len(both)} inside the brushes")
    shot(page, "sweeps-parcoords-brushed")

    # A click on an axis clears its brush; the chip's ✕ clears them all.
    page.get_by_test_id("pc-axis-params.warmup").get_by_test_id("pc-hit").click()
    expect(page.get_by_test_id("runs-total")).to_have_text(f"{len(inside)} runs")
    page.get_by_test_id("brush-chip-clear").click()
    expect(page.get_by_test_id("runs-total")).to_have_text("20 runs")
    expect(page.get_by_test_id("brush-chip")).to_have_count(0)
    assert "pcb" not in hash_params(page)
    expect(pc.locator(".pc-line.out")).to_have_count(0)

    # A linear axis goes log on a click (kept in the URL); axes are chosen in the picker.
    page.get_by_test_id("pc-axis-params.batch_size").get_by_test_id("pc-log").click()
    expect(page.get_by_test_id("pc-axis-params.batch_size").get_by_test_id("pc-log")).to_have_text("log ⇄")
    assert set(hash_params(page)["pclog"].split(",")) == {"params.lr", "params.batch_size"}
    page.get_by_test_id("pc-axes").locator("summary").click()
    page.get_by_test_id("pc-axes").get_by_label("metrics.val/loss").uncheck()
    expect(pc.locator(".pc-axis")).to_have_count(5)
    # Hovering a line reads out the run and highlights its row.
    page.keyboard.press("Escape")
    at = page.evaluate(
        """(id) => {
          const p = document.querySelector(`.pc-line[data-run="${id}"]`);
          const pt = p.getPointAtLength(p.getTotalLength() * 0.1);
          const m = p.getScreenCTM();
          return [pt.x * m.a + pt.y * m.c + m.e, pt.x * m.b + pt.y * m.d + m.f];
        }""",
        ids["run-19"],
    )
    page.mouse.move(at[0], at[1])
    expect(page.get_by_test_id("pc-readout")).to_contain_text("run-19")


@pytest.fixture(scope="module")
def directed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    """Three runs: `score` declared "min" (its name would guess "max"), `val/acc` undeclared."""
    base = tmp_path_factory.mktemp("directed")
    ids: dict[str, str] = {}
    for name, score, acc in (("dir-a", 0.3, 0.7), ("dir-b", 0.1, 0.8), ("dir-c", 0.2, 0.9)):
        with labtrack.Run("directions", name, root=base / "root", metrics={"score": "min"},
                          capture_git=False, capture_console=False, system=False) as run:
            for step in range(3):
                run.log({"score": score + (2 - step) * 0.5, "val/acc": acc - (2 - step) * 0.1,
                         "timings/forward": score * 10 + step}, step=step)
        ids[name] = run.id
    srv = start_server(base / "root", base / "ui.log")
    yield srv, ids
    stop_server(srv)


def test_compare_and_summary_mark_best_by_the_declared_direction(page: Any, directed: tuple[Server, dict[str, str]],
                                                                 shot: Any) -> None:
    server, ids = directed
    page.goto(server.url + "/#/compare?runs=" + ",".join(ids.values()))
    score = page.locator('tr[data-metric="score"]')
    # Declared "min": the lowest score is best, though the name alone would say higher.
    expect(score.locator("td.best")).to_have_count(1)
    expect(score.locator("td.best")).to_have_attribute("data-run", ids["dir-b"])
    expect(score.locator("td.best")).to_contain_text("0.1")
    mark = score.get_by_test_id("direction")
    expect(mark).to_have_text("↓ min")
    expect(mark).to_have_attribute("data-source", "declared")
    expect(mark).to_have_attribute("title", re.compile("^lower is better: declared by the run"))
    # Undeclared: guessed from the name, and the tooltip says so.
    acc = page.locator('tr[data-metric="val/acc"]')
    expect(acc.locator("td.best")).to_have_attribute("data-run", ids["dir-c"])
    expect(acc.get_by_test_id("direction")).to_have_text("↑ max?")
    expect(acc.get_by_test_id("direction")).to_have_attribute("data-source", "guessed")
    expect(acc.get_by_test_id("direction")).to_have_attribute("title", re.compile("not declared, guessed from the name"))
    # A machine series (timings/, system/) has no best: more time or memory is not better.
    timing = page.locator('tr[data-metric="timings/forward"]')
    expect(timing.locator("td")).to_have_count(4)
    expect(timing.locator("td.best")).to_have_count(0)
    expect(timing.get_by_test_id("direction")).to_have_count(0)
    shot(page, "directions-compare")
    # The run page's summary shows each series' best by the same rule.
    page.goto(server.url + f"/#/run/{ids['dir-a']}")
    best = page.locator('tr[data-series="score"]').get_by_test_id("summary-best")
    expect(best).to_have_text("0.3 ↓ min")
    expect(page.locator('tr[data-series="val/acc"]').get_by_test_id("summary-best")).to_have_text("0.7 ↑ max?")
    expect(page.locator('tr[data-series="timings/forward"]').get_by_test_id("summary-best")).to_have_text("")
    page.locator('tr[data-series="score"]').scroll_into_view_if_needed()
    shot(page, "directions-summary")


BOXES = [{"xStart": 8, "yStart": 10, "xEnd": 40, "yEnd": 44, "className": "bird", "probability": 0.92},
         {"xStart": 50, "yStart": 20, "xEnd": 88, "yEnd": 56, "className": "orange", "probability": 0.55},
         {"xStart": 2, "yStart": 2, "xEnd": 20, "yEnd": 9, "className": "background", "probability": 0.1}]


@pytest.fixture(scope="module")
def media_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    """m-a logs an image at steps 0, 100, 200; m-b also at 300; m-c logs no image. Each logs
    text with an expected text at steps 100 and 299 (m-c only at 299)."""
    base = tmp_path_factory.mktemp("media")
    ids: dict[str, str] = {}
    for k, (name, steps) in enumerate((("m-a", [0, 100, 200]), ("m-b", [0, 100, 200, 300]), ("m-c", []))):
        with labtrack.Run("media", name, root=base / "root", capture_git=False, capture_console=False,
                          system=False) as run:
            for step in range(0, 301, 50):
                run.log({"train/loss": 1 / (1 + step + k)}, step=step)
            for step in steps:
                img = np.zeros((64, 96, 3), np.uint8)
                img[..., 0] = np.linspace(0, 255, 96, dtype=np.uint8)[None, :]
                img[..., 1] = 60 * k + step // 5
                img[..., 2] = np.linspace(255, 0, 64, dtype=np.uint8)[:, None]
                run.log_image("samples/street", img, step=step, boxes=BOXES,
                              classes=["bird", "orange", "background"], threshold=0.2)
            for step, text in ((100, f"the quick brown fox jumpt over the lazy dog {name}"),
                               (299, f"the quick brown fox jumps over a lazy cat {name}")):
                if name != "m-c" or step == 299:
                    run.log_text("decoder/sample", text, step=step,
                                 expected=f"the quick brown fox jumps over the lazy dog {name}")
        ids[name] = run.id
    srv = start_server(base / "root", base / "ui.log")
    yield srv, ids
    stop_server(srv)


def test_images_and_text_of_the_charted_runs_side_by_side_under_one_slider(
        page: Any, media_runs: tuple[Server, dict[str, str]], shot: Any) -> None:
    server, ids = media_runs
    page.goto(server.url + "/#/?n=3")
    expect(page.get_by_test_id("runs-total")).to_have_text("3 runs")
    page.get_by_test_id("media-section").locator("summary").click()
    expect(page).to_have_url(re.compile(r"[?&]media=1"))
    cards = page.get_by_test_id("side-image")
    expect(cards).to_have_count(3)
    card = {name: page.locator(f'[data-testid="side-image"][data-run="{rid}"]') for name, rid in ids.items()}
    # One slider over every step any run logged; at 300, m-a shows its last image (step 200).
    images = page.get_by_test_id("images-across")
    expect(images.get_by_test_id("step-value")).to_have_text("300")
    expect(card["m-b"].get_by_test_id("side-step")).to_have_text("step 300")
    expect(card["m-a"].get_by_test_id("side-step")).to_have_text("step 200")
    expect(card["m-c"]).to_contain_text("no samples/street")
    for name in ("m-a", "m-b"):
        img = card[name].locator("img")
        wait_until(lambda: img.evaluate("i => i.complete && i.naturalWidth") == 96, 15, f"{name}'s image did not load")
        # the box file's threshold 0.2 hides the 0.1 background box
        expect(card[name].locator("g.box")).to_have_count(2)
    expect(images.get_by_test_id("threshold-value")).to_have_text("0.20")
    # A box stays inside its image.
    b = card["m-a"].locator('g.box[data-class="orange"] rect').first.bounding_box()
    im = card["m-a"].locator("img").bounding_box()
    assert im["x"] <= b["x"] and b["x"] + b["width"] <= im["x"] + im["width"] + 2, (b, im)
    page.get_by_test_id("table-toggle").click()
    shot(page, "media-across-runs")

    # One threshold for every run: 0.6 leaves the bird box in both images.
    images.get_by_test_id("threshold").fill("0.6")
    expect(page).to_have_url(re.compile(r"mthr=0\.6"))
    for name in ("m-a", "m-b"):
        expect(card[name].locator("g.box")).to_have_count(1)
        expect(card[name].get_by_test_id("box-count")).to_have_text("1 of 3 boxes")
    # ...and for every step: moving the slider keeps it (it used to reset to the file's 0.2).
    images.get_by_test_id("images-step").fill("1")
    expect(images.get_by_test_id("step-value")).to_have_text("100")
    expect(card["m-a"].get_by_test_id("side-step")).to_have_text("step 100")
    expect(card["m-a"].locator("img")).to_have_attribute("src", re.compile(r"media%2F100%2F"))
    expect(images.get_by_test_id("threshold-value")).to_have_text("0.60")
    for name in ("m-a", "m-b"):
        expect(card[name].locator("g.box")).to_have_count(1)
    # The class filter too: bird off hides it in every run, at every step.
    images.locator(".class-toggle", has_text="bird").locator("input").uncheck()
    expect(page).to_have_url(re.compile(r"mhide=bird"))
    expect(images.locator("g.box")).to_have_count(0)
    images.get_by_test_id("images-step").fill("3")
    expect(card["m-b"].get_by_test_id("side-step")).to_have_text("step 300")
    expect(images.locator("g.box")).to_have_count(0)
    images.locator(".class-toggle", has_text="bird").locator("input").check()
    expect(images.locator("g.box")).to_have_count(2)

    # Text side by side under its own slider; m-c has nothing by step 100.
    text = page.get_by_test_id("text-across")
    expect(text.get_by_test_id("side-text")).to_have_count(3)
    expect(text.get_by_test_id("step-value")).to_have_text("299")
    expect(text.get_by_test_id("text-diff")).to_have_count(3)
    expect(text.get_by_test_id("text-diff").first.locator("ins")).to_have_text(["a", "cat"])
    text.get_by_test_id("text-step").fill("0")
    expect(text.get_by_test_id("step-value")).to_have_text("100")
    expect(page.locator(f'[data-testid="side-text"][data-run="{ids["m-c"]}"]')).to_contain_text("nothing by step 100")
    expect(text.get_by_test_id("text-diff")).to_have_count(2)
    text.scroll_into_view_if_needed()
    shot(page, "media-across-runs-text")


def test_the_run_page_keeps_the_box_threshold_when_the_step_changes(
        page: Any, media_runs: tuple[Server, dict[str, str]]) -> None:
    server, ids = media_runs
    page.goto(server.url + f"/#/run/{ids['m-b']}?tab=images")
    series = page.get_by_test_id("image-series")
    expect(series.locator("g.box")).to_have_count(2)
    series.get_by_test_id("threshold").fill("0.6")
    expect(series.locator("g.box")).to_have_count(1)
    series.locator(".class-toggle", has_text="orange").locator("input").uncheck()
    series.get_by_test_id("image-step").fill("0")
    expect(series.get_by_test_id("step-value")).to_have_text("0")
    expect(series.locator("img")).to_have_attribute("src", re.compile(r"media%2F0%2F"))
    expect(series.get_by_test_id("threshold-value")).to_have_text("0.60")
    expect(series.locator("g.box")).to_have_count(1)
    expect(series.locator(".class-toggle", has_text="orange").locator("input")).not_to_be_checked()
