"""The side virtualenv of the peers' libraries (tests/peers-requirements.txt) and labtrack.

Tests that need a file written by MLflow, W&B, trackio, DVCLive or tensorboardX run a small
script in it (`peer_script`); labtrack's own .venv never gets those packages. labtrack is installed
into it too (with its dependencies), and a script sees this checkout's src/ first. The venv is made
once and reused while the requirements are unchanged (a stamp file); a lock keeps two test
processes from building it at once. Its place: LABTRACK_TEST_PEERS_VENV, else
<repo>/.venv-test-peers.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "tests" / "peers-requirements.txt"


def venv_dir() -> Path:
    return Path(os.environ.get("LABTRACK_TEST_PEERS_VENV") or REPO / ".venv-test-peers")


def peers_python() -> Path:
    """The side venv's python, made or updated first (a few minutes the first time)."""
    venv = venv_dir()
    python = venv / "bin" / "python"
    wanted = REQUIREMENTS.read_text()
    stamp = venv / ".requirements"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(str(venv) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and stamp.exists() and stamp.read_text() == wanted:
            return python
        if not python.exists():
            base = getattr(sys, "_base_executable", sys.executable)
            subprocess.run([base, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        done = subprocess.run([*pip, "-r", str(REQUIREMENTS), "-e", str(REPO)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"could not install the peers into {venv}:\n{done.stderr[-3000:]}")
        stamp.write_text(wanted)
    return python


@pytest.fixture(scope="session")
def peers() -> Path:
    """The side venv's python (built on first use)."""
    return peers_python()


def peer_script(python: Path, code: str, *, cwd: Path, env: dict[str, str] | None = None,
                timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `code` (dedented) with the side venv's python in `cwd`, offline and without telemetry;
    fail the test with its stderr when it exits non-zero."""
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("LABTRACK_", "WANDB_", "MLFLOW_", "TRACKIO_"))
            and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    full.update({"HOME": str(cwd / ".home"), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
                 "WANDB_DISABLE_GIT": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
                 "TRACKIO_DIR": str(cwd / ".trackio"), "HF_HUB_OFFLINE": "1",
                 "DVCLIVE_OPEN": "false", "DVC_NO_ANALYTICS": "1", "LABTRACK_SYSTEM": "0"})
    full["PYTHONPATH"] = str(REPO / "src")  # this checkout's labtrack, whichever the venv was made from
    full.update(env or {})
    (cwd / ".home").mkdir(parents=True, exist_ok=True)
    p = subprocess.run([str(python), "-c", textwrap.dedent(code)], cwd=cwd, env=full, capture_output=True,
                       text=True, timeout=timeout)
    if p.returncode != 0:
        pytest.fail(f"the peer script failed ({p.returncode}):\n{p.stderr[-4000:]}\n{p.stdout[-2000:]}")
    return p


def as_json(p: subprocess.CompletedProcess[str]) -> Any:
    """The last line of a peer script's stdout, read as JSON (the script prints it last)."""
    import json

    return json.loads(p.stdout.strip().splitlines()[-1])


# --- reading back what an import wrote (the run directory's plain files) -----------------

def series(run_dir: Path, name: str) -> list[tuple[int, float, float]]:
    """(step, value, time) of every point of a scalars file, as the file holds them."""
    import csv

    with open(run_dir / "scalars" / f"{name}.csv", newline="") as f:
        return [(int(r["step"]), float(r["value"]), float(r["time"])) for r in csv.DictReader(f)]


def by_name(root: Path) -> dict[str, Path]:
    """name -> run folder of every run under `root`."""
    import json

    return {json.loads((p / "run.json").read_text())["name"]: p for p in (q.parent for q in root.glob("*/*/run.json"))}


def lines(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file."""
    import json

    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
