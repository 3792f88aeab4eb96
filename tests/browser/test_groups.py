"""Runs made through labtrack.wandb with group and job_type: the runs table shows both as
columns and groups by them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from .conftest import Server, _clean_env, start_server, stop_server
from .helpers import wait_until

SCRIPT = """
import labtrack.wandb as wandb
for group, job, name, acc in [("sweep-a", "train", "a1", 0.5), ("sweep-a", "eval", "a2", 0.6),
                              ("sweep-b", "train", "b1", 0.7)]:
    run = wandb.init(project="grouped", name=name, group=group, job_type=job, reinit=True)
    wandb.log({"acc": acc})
    run.summary["best"] = acc + 0.1
    wandb.finish()
"""


@pytest.fixture(scope="module")
def grouped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("grouped")
    env = {**_clean_env(), "LABTRACK_ROOT": str(base / "root"), "LABTRACK_CAPTURE_GIT": "false"}
    p = subprocess.run([sys.executable, "-c", SCRIPT], cwd=base, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    srv = start_server(base / "root", base / "ui.log")
    yield srv
    stop_server(srv)


def test_group_and_job_type_columns_and_group_by(page: Any, grouped_server: Server, shot: Any) -> None:
    from playwright.sync_api import expect

    page.goto(grouped_server.url + "/#/?cols=metrics.best")
    expect(page.get_by_test_id("runs-total")).to_have_text("3 runs")
    heads = page.locator(".grid-head .th")
    wait_until(lambda: {"group", "job type"} <= set(heads.all_inner_texts()), 10, "no group / job type columns")
    expect(page.locator('.grid-row[data-run]').filter(has_text="a2")).to_contain_text("eval")
    page.get_by_test_id("group").select_option("group")
    labels = page.locator(".group-label")
    expect(labels).to_have_count(2)
    wait_until(lambda: labels.all_inner_texts() == ["sweep-a", "sweep-b"], 10, "group labels are not the groups")
    expect(page.locator('.grid-row[data-run]').filter(has_text="b1")).to_contain_text("0.8")
    shot(page, "runs-grouped-by-group")
