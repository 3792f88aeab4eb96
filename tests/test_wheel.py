"""The wheel a user installs: built from a clean clone of this repository's HEAD (no built
dashboard, no compiled module), installed into a fresh venv, and `labtrack ui` from that venv
serving the dashboard over a run that venv's labtrack wrote; the sdist carries what a wheel
build needs (a wheel built from it holds the same files).

Uncommitted changes are not in the clone: commit before running this test. Slow (a wheel
build with the dashboard, a venv, an install of the dependencies from the pip cache).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tarfile
import time
import types
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def sh(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run `cmd`; fail the test with its output when it fails."""
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    print(f"{time.monotonic() - t0:6.1f} s  {' '.join(cmd)[:150]}")  # shown when the test fails
    assert p.returncode == 0, f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
    return p.stdout


def clean_env() -> dict[str, str]:
    """This environment without what would make the build or the venv see this checkout."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "MYPYPATH")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("LABTRACK_")}


def has_compiler() -> bool:
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) is not None and (Path(sysconfig.get_paths()["include"]) / "Python.h").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.slow
def test_a_wheel_from_a_clean_clone_serves_the_dashboard(tmp_path: Path) -> None:
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout: the wheel is built from a clone of HEAD")
    if shutil.which("npm") is None:
        pytest.fail("the wheel build needs node and npm (it builds the dashboard); install them")
    head = sh(["git", "rev-parse", "HEAD"], REPO).strip()
    src = tmp_path / "src"
    sh(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(src)], tmp_path)
    sh(["git", "checkout", "--quiet", head], src)
    assert not (src / "src" / "labtrack" / "_server" / "static").exists()  # really clean
    assert not list((src / "src" / "labtrack").glob("*.so"))
    env = clean_env()

    # -- build: with the venv's hatchling when it has one, else pip's isolated build env
    dist = tmp_path / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(src)]
    if importlib.util.find_spec("hatchling") is not None:
        cmd.insert(4, "--no-build-isolation")
    sh(cmd, tmp_path, env)
    wheels = list(dist.glob("labtrack-*.whl"))
    assert len(wheels) == 1, wheels
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "labtrack/_server/static/index.html" in names
    assert any(re.fullmatch(r"labtrack/_server/static/assets/[^/]+\.js", n) for n in names), names
    if has_compiler():
        assert any(re.fullmatch(r"labtrack/_hot\.[^/]*(so|pyd)", n) for n in names), names
    assert not any("node_modules" in n for n in names)

    # -- install into a fresh venv (its dependencies from PyPI, through the pip cache)
    venv = tmp_path / "venv"
    sh([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    py = venv / "bin" / "python"
    sh([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheels[0])],
       tmp_path, env)
    where = sh([str(py), "-c", "import labtrack, labtrack._run as r; print(labtrack.__file__); "
                               "print(r.HOT)"], tmp_path, env).split()
    assert where[0].startswith(str(venv)), where  # the installed copy, not this checkout
    if has_compiler():
        assert where[1] == "True", "the installed wheel's C module did not load"

    # -- the sdist carries the sources a wheel build needs, and a wheel built from it is the same
    if importlib.util.find_spec("hatchling") is not None:
        builder = Path(sys.executable)
    else:
        sh([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "hatchling"],
           tmp_path, env)
        builder = py
    sdists = tmp_path / "sdist"
    sh([str(builder), "-c", f"from hatchling.build import build_sdist; build_sdist({str(sdists)!r})"],
       src, env)
    sdist = next(sdists.glob("labtrack-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        members = [m.split("/", 1)[1] for m in tar.getnames() if "/" in m]
    for needed in ("src/labtrack/__init__.py", "src/labtrack/_hot.c", "hatch_build.py",
                   "frontend/package.json", "frontend/package-lock.json", "frontend/src/main.tsx"):
        assert needed in members, f"the sdist lacks {needed}"
    assert not [m for m in members if "node_modules" in m or "/static/" in m or m.endswith(".so")]
    from_sdist = tmp_path / "from-sdist"
    # with the hatchling at hand: the isolated build was tested above
    sh([str(builder), "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
        "-w", str(from_sdist), str(sdist)], tmp_path, env)
    names_from_sdist = zipfile.ZipFile(next(from_sdist.glob("labtrack-*.whl"))).namelist()
    assert sorted(names_from_sdist) == sorted(names)

    # -- a tiny root written by that venv's labtrack, served by that venv's `labtrack ui`
    root = tmp_path / "root"
    run_id = sh([str(py), "-c",
                 "import labtrack\n"
                 f"run = labtrack.Run('smoke', name='from-the-wheel', root={str(root)!r}, capture_git=False)\n"
                 "for i in range(5): run.log({'loss': 1.0 / (i + 1)}, step=i)\n"
                 "run.finish(); print(run.id)"], tmp_path, env).strip().splitlines()[-1]
    port = free_port()
    log = tmp_path / "ui.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([str(venv / "bin" / "labtrack"), "ui", str(root), "--port", str(port),
                                   "--host", "127.0.0.1"], cwd=tmp_path, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        status, page = 0, b""
        while time.monotonic() < deadline and server.poll() is None:
            try:
                status, page = get(base + "/")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        output = log.read_text(errors="replace")
        assert status == 200, f"GET / answered {status}; server output:\n{output}"
        html = page.decode()
        assert "<div id=" in html or "<div id" in html, html[:500]
        assets = re.findall(r'(?:src|href)="/?(?:\./)?(assets/[^"]+\.js)"', html)
        assert assets, f"the page references no script asset:\n{html}"
        status, body = get(f"{base}/{assets[0]}")
        assert status == 200 and len(body) > 1000, (status, body[:200])
        status, body = get(f"{base}/api/v1/runs")
        assert status == 200, body[:500]
        listed = json.loads(body)
        assert [r["id"] for r in listed["runs"]] == [run_id]
        assert listed["runs"][0]["name"] == "from-the-wheel"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)


def load_hook(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """hatch_build.py, imported without hatchling (only its hook class needs it)."""
    if importlib.util.find_spec("hatchling") is None:
        stub = types.ModuleType("hatchling.builders.hooks.plugin.interface")
        stub.BuildHookInterface = object  # type: ignore[attr-defined]
        for name in ("hatchling", "hatchling.builders", "hatchling.builders.hooks",
                     "hatchling.builders.hooks.plugin"):
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
        monkeypatch.setitem(sys.modules, stub.__name__, stub)
    spec = importlib.util.spec_from_file_location("labtrack_hatch_build", REPO / "hatch_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checkout(tmp_path: Path) -> Path:
    (tmp_path / "frontend").mkdir()
    (tmp_path / "frontend" / "package.json").write_text("{}")
    (tmp_path / "src" / "labtrack" / "_server").mkdir(parents=True)
    return tmp_path


def test_without_npm_the_wheel_build_fails_and_says_what_to_do(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    hook = load_hook(monkeypatch)
    root = checkout(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no node, no npm
    monkeypatch.delenv("LABTRACK_BUILD_FRONTEND", raising=False)
    with pytest.raises(RuntimeError) as e:
        hook.build_frontend(root)
    message = str(e.value)
    assert "node" in message and "npm" in message and "LABTRACK_BUILD_FRONTEND=0" in message
    # the opt-out builds a wheel without the dashboard, on purpose
    monkeypatch.setenv("LABTRACK_BUILD_FRONTEND", "0")
    assert hook.build_frontend(root) is None


def test_a_built_dashboard_is_used_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = load_hook(monkeypatch)
    root = checkout(tmp_path)
    static = root / "src" / "labtrack" / "_server" / "static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html>")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # npm would be needed to build it
    assert hook.build_frontend(root) == static


def test_without_frontend_sources_the_build_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = load_hook(monkeypatch)
    monkeypatch.delenv("LABTRACK_BUILD_FRONTEND", raising=False)
    with pytest.raises(RuntimeError, match="no sources to build it from"):
        hook.build_frontend(tmp_path)
