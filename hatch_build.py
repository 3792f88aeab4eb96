"""Build hook: compile labtrack's one C module, `labtrack._hot` (the fast path of Run.log),
and build the dashboard into the wheel.

The C module is optional. Without a C compiler or the Python headers, or with LABTRACK_NO_C=1,
the build says so and labtrack runs its pure Python path (same results, about 3x slower per
`run.log` call). The shared library is written next to its source, so an editable install
(`pip install -e .`, what `make install` does) imports it from the source tree too.

The dashboard is not optional: a wheel without it serves a "the dashboard is not built" page.
When `src/labtrack/_server/static/index.html` is missing (a clean checkout, an sdist), a wheel
build runs `npm ci` (or, where npm refuses its own lock file, `npm install --no-save`) and
`npm run build` in `frontend/`, and fails with a clear message when node or npm is missing.
LABTRACK_BUILD_FRONTEND=0 builds the wheel without the dashboard, on purpose. An editable
install never builds it (`make frontend` does, into the source tree).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def compile_hot(package_dir: Path) -> Path | None:
    """Compile `_hot.c` into `package_dir`; return the library, or None (with a message) if it cannot."""
    source = package_dir / "_hot.c"
    target = package_dir / ("_hot" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
    if os.environ.get("LABTRACK_NO_C", "").strip().lower() in ("1", "true", "yes", "on"):
        print("labtrack: LABTRACK_NO_C=1, not building the C fast path", file=sys.stderr)
        return None
    if sys.platform == "win32":
        print("labtrack: the C fast path is not built on Windows; using pure Python", file=sys.stderr)
        return None
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        print(f"labtrack: no Python.h in {include} (install the python3-dev package); using pure Python",
              file=sys.stderr)
        return None
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    cmd = [*cc, "-O2", "-fPIC", "-shared", "-pthread", "-I", include, str(source), "-o", str(target), "-lm"]
    if sys.platform == "darwin":
        cmd[len(cc):len(cc)] = ["-undefined", "dynamic_lookup"]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        print(f"labtrack: no C compiler ({cc[0]}); using pure Python", file=sys.stderr)
        return None
    except subprocess.CalledProcessError as e:
        print(f"labtrack: compiling {source.name} failed; using pure Python\n{e.stderr}", file=sys.stderr)
        return None
    return target


_OFF = ("0", "false", "no", "off")


def _npm(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["npm", *args], cwd=cwd, capture_output=True, text=True)


def _tail(p: subprocess.CompletedProcess[str], lines: int = 30) -> str:
    return "\n".join((p.stdout + p.stderr).strip().splitlines()[-lines:])


def build_frontend(root: Path) -> Path | None:
    """Build the dashboard into `src/labtrack/_server/static` unless it is there already.

    Returns:
        The static folder, or None when LABTRACK_BUILD_FRONTEND=0 left it out.

    Raises:
        RuntimeError: the dashboard is missing and cannot be built (no frontend/ sources,
            no npm, or the build failed); the message says what to install or set.
    """
    static = root / "src" / "labtrack" / "_server" / "static"
    frontend = root / "frontend"
    if (static / "index.html").is_file():
        print(f"labtrack: using the dashboard already built in {static}", file=sys.stderr)
        return static
    if os.environ.get("LABTRACK_BUILD_FRONTEND", "").strip().lower() in _OFF:
        print("labtrack: LABTRACK_BUILD_FRONTEND=0: this wheel has NO dashboard "
              "(`labtrack ui` will say it is not built)", file=sys.stderr)
        return None
    if not (frontend / "package.json").is_file():
        raise RuntimeError(
            f"labtrack: the dashboard is not built ({static / 'index.html'} is missing) and there "
            f"are no sources to build it from ({frontend / 'package.json'} is missing); build "
            "from a checkout or an sdist, or set LABTRACK_BUILD_FRONTEND=0 for a wheel without it")
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise RuntimeError(
            "labtrack: building the wheel builds the dashboard, which needs node (>= 20.19) and "
            "npm on PATH, and they were not found. Install them (e.g. `apt-get install nodejs "
            "npm`), or build the dashboard first (`make frontend`), or set "
            "LABTRACK_BUILD_FRONTEND=0 to build a wheel without the dashboard")
    print(f"labtrack: building the dashboard in {frontend} (npm ci, npm run build)", file=sys.stderr)
    if not (frontend / "node_modules" / ".package-lock.json").is_file():
        p = _npm(["ci", "--no-audit", "--no-fund"], frontend)
        if p.returncode != 0:
            # npm 11 can refuse its own lock file when a dependency has per-platform optional
            # packages (npm/cli#8726): install the locked versions without rewriting the lock.
            p = _npm(["install", "--no-audit", "--no-fund", "--no-save"], frontend)
        if p.returncode != 0:
            raise RuntimeError(f"labtrack: `npm ci` in {frontend} failed:\n{_tail(p)}")
    p = _npm(["run", "build"], frontend)
    if p.returncode != 0 or not (static / "index.html").is_file():
        raise RuntimeError(f"labtrack: `npm run build` in {frontend} did not build "
                           f"{static / 'index.html'}:\n{_tail(p)}")
    return static


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        if version != "editable":
            # Its files enter the wheel as `artifacts` (pyproject.toml): git ignores them.
            build_frontend(Path(self.root))
        built = compile_hot(Path(self.root) / "src" / "labtrack")
        if built is None:
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            build_data["force_include"][str(built)] = f"labtrack/{built.name}"
