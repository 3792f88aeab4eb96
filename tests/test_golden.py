"""Golden run directories: a small fixed script's output compared byte for byte.

Ids, times, pids, hosts, users and paths are replaced by placeholders first (see
`normalise`); env.json, which lists this machine's packages, is reduced to its keys; images
are compared by their decoded pixels (PNG/GIF compression differs between Pillow and zlib
builds). Regenerate with `LABTRACK_REGEN_GOLDEN=1` (see tests/golden/README.md).
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from conftest import only_run_dir, run_script

pytestmark = pytest.mark.timeout(120)

GOLDEN = Path(__file__).resolve().parent / "golden"
REGEN = os.environ.get("LABTRACK_REGEN_GOLDEN") == "1"

SCRIPT = r'''
import argparse
import numpy as np
import labtrack

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1, help="learning rate")
parser.add_argument("--layers", type=int, nargs="+", default=[64, 32])
args = parser.parse_args([])

run = labtrack.init("golden run", name="fixed", comment="golden", tags=["cnn", "small"], seed=1,
                    config={"lr": 0.1, "layers": [64, 32], "opt": {"name": "adam", "betas": (0.9, 0.999)},
                            "eps": float("inf"), "flag": True, "none": None})
run.log_command(parser, args)
for step in range(5):
    run.log({"train/loss": 1.0 / (step + 1), "acc": step / 4, "val acc/top-1": 0.5, "ok": step % 2 == 0},
            step=step)
run.log({"odd": float("nan")}, step=5)
run.log({"odd": float("inf")}, step=6)
run.log({"odd": -2.5}, step=7)
img = (np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5)
run.log_image("samples/bird", img, step=3,
              boxes=[{"xStart": 0, "yStart": 1, "xEnd": 2, "yEnd": 3, "className": "bird", "probability": 0.4}],
              classes=["bird", "background"], threshold=0.2)
run.log_image("anim", [np.zeros((4, 4), np.uint8), np.full((4, 4), 255, np.uint8)], step=4, fps=2)
run.log_text("translation", "Hallo Welt", step=3, expected="Hello world")
run.log_text("translation", "Zeile\nzwei \u00e9", step=4)
run.log_markdown("notes", "# Result\n\nGood")
run.log_markdown("per step", "step two", step=2)
run.log_histogram("weights/fc1", np.linspace(-1, 1, 21), step=3, bins=4)
run.log_table("predictions", [{"x": 1, "y": "bird"}, {"x": 2.5, "y": "cat, dog"}], step=3)
print("epoch 1\repoch 2\rdone")
run.println("loss {:.3f}", 0.25)
open("model.txt", "w").write("weights\n")
run.save_artifact("model.txt", name="export/model.txt")
run.save_object("arr", np.arange(4, dtype=np.int64))
run.finish()
'''

_TIME = re.compile(rb'("(?:time|started|ended)": ?)(?:"[0-9T:.+-]+"|[0-9.]+)')
_PID = re.compile(rb'("pid": ?)[0-9]+')
_HOST_USER = re.compile(rb'("(?:host|user)": ?)"[^"]*"')
_COMMAND = re.compile(rb'("command": ?)\{.*?\n  \}', re.S)


def _skeleton(obj: Any) -> Any:
    if isinstance(obj, dict) and obj and not all(isinstance(v, str) for v in obj.values()):
        return {k: _skeleton(v) for k, v in obj.items()}
    return f"<{type(obj).__name__}>"


def normalise(run_dir: Path, cwd: Path) -> dict[str, bytes]:
    """relative path -> bytes with ids, times, pids, hosts, users and paths replaced.

    Substitutions work on the raw bytes, so the files' own formatting (indentation,
    separators, key order, escaping, final newline) is still compared exactly.
    """
    subs = [(run_dir.name.encode(), b"<RUN_ID>"), (str(cwd.resolve()).encode(), b"<CWD>"),
            (str(cwd).encode(), b"<CWD>")]
    out: dict[str, bytes] = {}
    # .row.json is derived (the index row, with this host's inodes: docs/format.md), tested in test_rowfile.py
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file() and p.name != ".row.json"):
        rel = path.relative_to(run_dir).as_posix()
        data = path.read_bytes()
        if rel == "env.json":  # this machine's packages: only the keys are the format
            data = (json.dumps(_skeleton(json.loads(data)), indent=2) + "\n").encode()
        elif rel.startswith("scalars/"):
            data = re.sub(rb",[0-9.]+\n", b",<time>\n", data)
        elif path.suffix in (".json", ".jsonl"):
            data = _COMMAND.sub(rb'\1"<command>"', data)
            data = _TIME.sub(rb'\1"<time>"', data)
            data = _PID.sub(rb'\1"<pid>"', data)
            data = _HOST_USER.sub(rb'\1"<value>"', data)
        for old, new in subs:
            data = data.replace(old, new)
        out[rel] = data
    return out


def _pixels(data: bytes) -> list[tuple[str, tuple[int, int], bytes]]:
    frames = []
    with Image.open(io.BytesIO(data)) as im:
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            frames.append((im.mode, im.size, im.tobytes()))
    return frames


def _generate(tmp_path: Path) -> tuple[Path, Path]:
    work = tmp_path / "work"
    work.mkdir()
    root = work / "labtrack"
    p = run_script(SCRIPT, cwd=work, env={"LABTRACK_ROOT": str(root), "LABTRACK_CAPTURE_GIT": "0"})
    assert p.returncode == 0, p.stderr
    return only_run_dir(root), work


def test_golden_run_directory(tmp_path: Path) -> None:
    run_dir, cwd = _generate(tmp_path)
    assert run_dir.parent.name == "golden-run"
    got = normalise(run_dir, cwd)
    expected_dir = GOLDEN / "basic"
    if REGEN:
        import shutil

        shutil.rmtree(expected_dir, ignore_errors=True)
        for rel, data in got.items():
            (expected_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (expected_dir / rel).write_bytes(data)
        pytest.skip(f"regenerated {expected_dir}")
    expected = {p.relative_to(expected_dir).as_posix(): p.read_bytes()
                for p in sorted(expected_dir.rglob("*")) if p.is_file()}
    assert sorted(got) == sorted(expected), "the set of files differs from tests/golden/basic"
    for rel in expected:
        if rel.endswith((".png", ".gif")):
            assert _pixels(got[rel]) == _pixels(expected[rel]), rel
        elif got[rel] != expected[rel]:
            try:  # a readable diff for text files
                assert got[rel].decode() == expected[rel].decode(), rel
            except UnicodeDecodeError:
                pass
            assert got[rel] == expected[rel], rel


GIT_SCRIPT = r'''
import labtrack
run = labtrack.init("golden git", name="fixed", seed=2)
run.log({"loss": 0.5}, step=0)
run.finish()
'''


def _git_repo(work: Path) -> dict[str, str]:
    """A repository whose commit id is the same on every machine (fixed names and dates)."""
    import subprocess

    env = {**os.environ, "GIT_AUTHOR_NAME": "Golden", "GIT_AUTHOR_EMAIL": "golden@example.com",
           "GIT_COMMITTER_NAME": "Golden", "GIT_COMMITTER_EMAIL": "golden@example.com",
           "GIT_AUTHOR_DATE": "2026-01-01T00:00:00+00:00", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00+00:00",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(work)}

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=work, env=env, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("config", "commit.gpgsign", "false")
    (work / ".gitignore").write_text("labtrack/\n")
    (work / "model.py").write_text("W = 1\n")
    git("add", ".gitignore", "model.py")
    git("commit", "-q", "-m", "golden commit")
    git("remote", "add", "origin", "https://bob:s3cret@example.com/lab/proj.git")
    (work / "model.py").write_text("W = 2\n")  # dirty: a change and an untracked file
    (work / "notes.txt").write_text("untracked notes\n")
    return {"HOME": str(work), "GIT_CONFIG_NOSYSTEM": "1"}


def test_golden_run_directory_with_git(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = _git_repo(work)
    root = work / "labtrack"
    p = run_script(GIT_SCRIPT, cwd=work, env={**env, "LABTRACK_ROOT": str(root)})
    assert p.returncode == 0, p.stderr
    run_dir = only_run_dir(root)
    assert not [p for p in run_dir.rglob("*") if p.is_file() and b"s3cret" in p.read_bytes()]
    got = {rel: data for rel, data in normalise(run_dir, work).items()
           if rel in ("run.json", "source/commit.txt", "source/diff.patch") or rel.startswith("source/untracked/")}
    expected_dir = GOLDEN / "git"
    if REGEN:
        import shutil

        shutil.rmtree(expected_dir, ignore_errors=True)
        for rel, data in got.items():
            (expected_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (expected_dir / rel).write_bytes(data)
        pytest.skip(f"regenerated {expected_dir}")
    expected = {p.relative_to(expected_dir).as_posix(): p.read_bytes()
                for p in sorted(expected_dir.rglob("*")) if p.is_file()}
    assert sorted(got) == sorted(expected)
    for rel in expected:
        assert got[rel].decode() == expected[rel].decode(), rel


def test_golden_files_are_readable_without_labtrack() -> None:
    # The stored golden directory itself obeys the format: pandas reads series, JSON parses.
    import pandas as pd

    base = GOLDEN / "basic"
    loss = pd.read_csv(base / "scalars" / "train" / "loss.csv")
    assert list(loss.columns) == ["step", "value", "time"] and loss["step"].tolist() == [0, 1, 2, 3, 4]
    assert (base / "scalars" / "val%20acc" / "top-1.csv").is_file()
    summary = json.loads((base / "summary.json").read_text())
    assert "val acc/top-1" in summary and summary["odd"]["last"] == -2.5
    meta = json.loads((base / "run.json").read_text())
    assert meta["format_version"] == 1 and meta["status"] == "finished"
