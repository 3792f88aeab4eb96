"""Lavd's `log_summary` (issue 14): markdown/summary.md shows with the run's markdown documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

import labtrack

from .conftest import start_server, stop_server


def test_log_summary_renders_in_the_markdown_tab(page: Any, tmp_path: Path, shot: Any) -> None:
    root = tmp_path / "runs"
    run = labtrack.Run("lavd", "summary-run", root=root, capture_git=False, capture_console=False,
                       _environ={})
    run.log({"loss": 0.5}, step=0)
    run.log_summary(infos={"size": {"train": 1000, "validation": 200}},
                    sections={"Notes": "Trained on **half** the data."})
    run.finish()
    srv = start_server(root, tmp_path / "ui.log")
    try:
        page.goto(srv.url + "/")
        page.locator("a.run-link").first.click()
        expect(page.get_by_test_id("run-page")).to_be_visible()
        page.get_by_test_id("tab-markdown").click()
        md = page.locator(".markdown")
        expect(md.locator("h1")).to_have_text("Summary")
        expect(md.locator("h2")).to_have_text(["size", "Notes"])
        expect(md.locator("li").first).to_contain_text("train: 1000")
        expect(md.locator("strong").last).to_have_text("half")
        shot(page, "run-summary-markdown")
    finally:
        stop_server(srv)
