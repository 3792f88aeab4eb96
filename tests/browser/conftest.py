"""Browser tests: a real `labtrack ui` on a free port over a fixture root, driven in Chromium.

The fixture root is written by labtrack itself (make_fixture.py, run in a throwaway git
repository with an uncommitted change). The server runs as a subprocess; its output is
attached to every failing test. Screenshots go to test-artifacts/screenshots/ (git-ignored);
the ones in docs/images/ are copied from there after a look.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
STATIC_INDEX = REPO / "src" / "labtrack" / "_server" / "static" / "index.html"
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: `apt-get install chromium` (or `make chromium`)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "playwright (python) is not installed: pip install -e '.[test]'"
    here = Path(__file__).parent
    ours = [item for item in items if Path(str(item.fspath)).parent == here]
    for item in ours:
        item.add_marker(pytest.mark.browser)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))
    # The browser journeys run last: the slowest tests, and the only ones holding a loop.
    items[:] = [item for item in items if item not in ours] + ours


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABTRACK_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={**_clean_env(), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"})


@dataclass
class Fixture:
    root: Path
    ids: dict[str, str]
    repo: Path


@pytest.fixture(scope="session")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    base = tmp_path_factory.mktemp("ui")
    repo = base / "project"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "train.py").write_text("lr = 0.1\nepochs = 3\n\n\ndef train():\n    pass\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "first model")
    (repo / "train.py").write_text("lr = 0.05\nepochs = 3\n\n\ndef train():\n    return 1\n")
    root = base / "runs"
    p = subprocess.run([sys.executable, str(Path(__file__).with_name("make_fixture.py")), str(root)],
                       cwd=repo, env=_clean_env(), capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        pytest.fail(f"make_fixture.py failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    ids = json.loads((base / "ids.json").read_text())
    return Fixture(root=root, ids=ids, repo=repo)


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError as e:
            return f"(no output: {e})"

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.loads(r.read())


def stop_server(srv: Server) -> None:
    """End a server `start_server` started: SIGTERM, then SIGKILL after 10 s."""
    srv.proc.terminate()
    try:
        srv.proc.wait(10)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
        srv.proc.wait(10)


def start_server(root: Path, log: Path, command: list[str] | None = None) -> Server:
    """`labtrack ui ROOT --port 0` (or `command`, e.g. serve with tokens); the port is read
    from the address it prints."""
    if not STATIC_INDEX.exists():
        pytest.fail(f"the front end is not built ({STATIC_INDEX} is missing): run `make frontend`")
    exe = Path(sys.executable).with_name("labtrack")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from labtrack.cli import main; main()"]
    out = log.open("wb")
    args = command or ["ui", str(root), "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen([*cmd, *args],
                            stdout=out, stderr=subprocess.STDOUT, env=_clean_env(), cwd=log.parent)
    out.close()
    server = Server(url="", proc=proc, log=log)
    deadline = time.monotonic() + 60
    last_err = "no address printed"
    while time.monotonic() < deadline and proc.poll() is None:
        if not server.url:
            m = re.search(r"http://127\.0\.0\.1:(\d+)/", server.output())
            if m:
                server.url = f"http://127.0.0.1:{m.group(1)}"
        if server.url:
            try:
                if server.get_json("/api/v1/health").get("app") == "labtrack":
                    return server
            except OSError as e:
                last_err = str(e)
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    pytest.fail(f"`labtrack ui` did not answer on /api/v1/health ({last_err}); its output:\n{server.output()}")


@pytest.fixture(scope="session")
def server(fixture_root: Fixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("server") / "labtrack-ui.log"
    srv = start_server(fixture_root.root, log)
    yield srv
    stop_server(srv)


# The machine these run on may be shared and busy: waits are generous; a passing journey is
# not slowed by them, only a failing one.
PAGE_TIMEOUT_MS = 30_000
EXPECT_TIMEOUT_MS = 20_000


# Package scope: Playwright's sync API keeps an asyncio loop running in the main thread
# while it is open, and the other tests call asyncio.run(); it must be closed when the
# browser tests are done.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield b
        b.close()


@dataclass
class PageProblems:
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
    pg = context.new_page()
    pg.set_default_timeout(PAGE_TIMEOUT_MS)
    problems = PageProblems()
    pg.on("pageerror", lambda e: problems.errors.append(str(e)))
    pg.on("console", lambda m: problems.console.append(f"{m.type}: {m.text}"))
    request.node.page_problems = problems
    yield pg
    context.close()
    # An uncaught exception in the page is a bug even when the journey got through.
    if problems.errors:
        pytest.fail("uncaught errors in the page:\n" + "\n".join(problems.errors))


@pytest.fixture
def shot() -> Any:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str, **kwargs: Any) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), **kwargs)
        return path

    return take


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Server):
                rep.sections.append(("labtrack ui output", value.output()[-20000:]))
        problems = getattr(item, "page_problems", None)
        if problems is not None and problems.console:
            rep.sections.append(("browser console", "\n".join(problems.console[-200:])))
