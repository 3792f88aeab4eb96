"""Build hook: compile labtrack's one C module, `labtrack._hot` (the fast path of Run.log).

The module is optional. Without a C compiler or the Python headers, or with LABTRACK_NO_C=1,
the build says so and labtrack runs its pure Python path (same results, about 3x slower per
`run.log` call). The shared library is written next to its source, so an editable install
(`pip install -e .`, what `make install` does) imports it from the source tree too.
"""

from __future__ import annotations

import os
import shlex
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


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        built = compile_hot(Path(self.root) / "src" / "labtrack")
        if built is None:
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            build_data["force_include"][str(built)] = f"labtrack/{built.name}"
