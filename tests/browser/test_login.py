"""A token-protected `labtrack serve`: the dashboard sends a browser without the cookie to
the login form, and after logging in shows the runs."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import Server, _clean_env, start_server, stop_server


def _labtrack(*args: str, cwd: Path) -> str:
    p = subprocess.run([sys.executable, "-c", "from labtrack.cli import main; main()", *args], cwd=cwd,
                       env=_clean_env(), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    root = tmp_path / "runs"
    subprocess.run([sys.executable, "-c", (
        "import labtrack\n"
        "run = labtrack.init('guarded', name='behind-a-token', capture_git=False, capture_console=False)\n"
        "[run.log({'loss': 1 / (i + 1)}) for i in range(20)]\n"
        "run.finish()\n")], cwd=tmp_path, env={**_clean_env(), "LABTRACK_ROOT": str(root)},
        check=True, timeout=60)
    tokens = tmp_path / "tokens.json"
    out = _labtrack("token", "create", "viewer", "--tokens", str(tokens), cwd=tmp_path)
    token = re.search(r"lt_[A-Za-z0-9_-]+", out)
    assert token, out
    srv = start_server(root, tmp_path / "serve.log", ["serve", "--root", str(root), "--tokens", str(tokens),
                                                      "--host", "127.0.0.1", "--port", "0"])
    yield srv, token.group(0)
    stop_server(srv)


def test_a_token_server_sends_the_browser_to_login_then_shows_the_runs(
        token_server: tuple[Server, str], page: Any, shot: Any) -> None:
    # token_server first: pytest stops it after the page is closed, not under a live page
    srv, token = token_server
    page.goto(srv.url + "/")
    page.wait_for_url(re.compile(r".*/login$"), timeout=15_000)
    expect(page.get_by_text("This server needs a token")).to_be_visible()
    page.fill("input[name=token]", "not-a-token")
    page.click("input[type=submit]")
    expect(page.get_by_text("not known to this server")).to_be_visible()
    page.fill("input[name=token]", token)
    page.click("input[type=submit]")
    expect(page.locator("a.run-link", has_text="behind-a-token")).to_be_visible(timeout=15_000)
    shot(page, "login-then-runs")
