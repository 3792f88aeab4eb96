"""A one-run distributed job in the dashboard: the run page's header names the ranks and their
states (a SIGKILLed rank crashed), and the console tab shows each rank's own output.

The job is two real processes with torchrun's variables (no torch: the files are the same),
rank 1 killing itself with SIGKILL after it logged and printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Server, start_server, stop_server

RANK = """
    import os, time, labtrack
    rank = int(os.environ["RANK"])
    run = labtrack.init(experiment="ddp", config={"lr": 0.1}, capture_git=False)
    for step in range(20):
        run.log({"train/loss": 1.0 / (step + 1) + rank}, step=step)
    print(f"hello from rank {rank}", flush=True)
    run.flush()
    if rank == 1:
        time.sleep(0.5)  # the console is flushed with the series
        os.kill(os.getpid(), 9)
    time.sleep(1.0)
    run.finish()
"""


@pytest.fixture(scope="module")
def job_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("job")
    script = base / "rank.py"
    script.write_text(textwrap.dedent(RANK))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABTRACK_")}
    src = str(Path(__file__).resolve().parents[2] / "src")
    procs = [subprocess.Popen([sys.executable, str(script)], cwd=base, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env={**env, "PYTHONPATH": src, "LABTRACK_ROOT": str(base / "root"),
                                   "LABTRACK_FLUSH_SECONDS": "0.2", "RANK": str(r), "WORLD_SIZE": "2",
                                   "LOCAL_RANK": str(r), "LOCAL_WORLD_SIZE": "2",
                                   "TORCHELASTIC_RUN_ID": "ui-job"})
             for r in (0, 1)]
    outs = [p.communicate(timeout=90)[0] for p in procs]
    assert procs[0].returncode == 0 and procs[1].returncode == -9, outs
    srv = start_server(base / "root", base / "ui.log")
    yield srv
    stop_server(srv)


def test_run_page_shows_ranks_and_each_console(page: Any, job_server: Server, shot: Any) -> None:
    from playwright.sync_api import expect

    runs = job_server.get_json("/api/v1/runs")["runs"]
    assert len(runs) == 1 and runs[0]["status"] == "crashed"
    run_id = runs[0]["id"]
    page.goto(f"{job_server.url}/#/run/{run_id}")
    job = page.locator("[data-testid=run-job]")
    expect(job).to_contain_text("2 ranks, one run")
    expect(job.locator("[data-rank='0']")).to_contain_text("finished")
    expect(job.locator("[data-rank='1']")).to_contain_text("crashed")
    shot(page, "distributed-run-header")
    page.goto(f"{job_server.url}/#/run/{run_id}?tab=console")
    console = page.locator("[data-testid=console]")
    expect(console).to_contain_text("hello from rank 0")
    page.locator("[data-testid=console-ranks] button", has_text="rank 1").click()
    expect(console).to_contain_text("hello from rank 1")
    expect(console).not_to_contain_text("hello from rank 0")
    shot(page, "distributed-run-console")
