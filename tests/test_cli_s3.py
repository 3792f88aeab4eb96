"""The command line over an object-store root (`--root s3://bucket/prefix`, LABTRACK_ROOT), end
to end against a real moto S3 server (tests/s3.py): the reading commands print what they print
for the same runs in a local folder, the commands that change runs refuse with one line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import labtrack
from conftest import child_env
from s3 import MotoS3, s3  # noqa: F401  (s3 is a fixture)


@pytest.fixture
def runs(s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Three finished runs written to the bucket by training with root="s3://..."."""
    monkeypatch.setenv("LABTRACK_SPOOL", str(tmp_path / "spool"))
    monkeypatch.setenv("LABTRACK_MIRROR", str(tmp_path / "train-mirror"))
    monkeypatch.setenv("LABTRACK_SYNC_TIMEOUT", "30")
    ids = []
    for experiment, name, config, tags in [("mnist", "base", {"lr": 0.1, "batch": 64}, ["cnn"]),
                                           ("mnist", "small", {"lr": 0.01, "batch": 64}, []),
                                           ("cifar", "wide", {"lr": 0.1, "width": 4}, [])]:
        run = labtrack.init(experiment=experiment, name=name, root=s3.url(), config=config, tags=tags,
                            capture_git=False, capture_console=False, system=False)
        assert isinstance(run, labtrack.Run)
        for step in range(5):
            run.log({"train/loss": 1.0 / (step + 1) + len(ids), "acc": step / 10}, step=step)
        run.finish()
        ids.append(run.id)
        time.sleep(0.01)  # distinct start times: `ls` sorts by them
    return ids


def _local_copy(s3: MotoS3, dest: Path) -> Path:
    """The bucket's runs downloaded with a plain S3 client: the same runs in a local folder."""
    s3.fs().get(f"{s3.bucket}/runs/", str(dest), recursive=True)
    # Each run's .labtrack/manifest.json is the bucket's list of its objects
    # (docs/object-storage.md), not a file of the run: the mirror does not show it.
    for manifest in dest.glob("*/*/.labtrack/manifest.json"):
        manifest.unlink()
        manifest.parent.rmdir()
    assert sorted(p.name for p in dest.iterdir()) == ["cifar", "mnist"]
    return dest


def _bucket(s3: MotoS3) -> dict[str, Any]:
    """Every object under the bucket's prefix with its size and ETag."""
    fs = s3.fs()
    return {k: (v["size"], v.get("ETag")) for k, v in fs.find(f"{s3.bucket}/runs", detail=True).items()}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from labtrack.cli import main; main()", *args],
                          env=env, capture_output=True, text=True, timeout=120)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _env(s3: MotoS3, tmp_path: Path, **extra: str) -> dict[str, str]:
    return child_env({**s3.env, "LABTRACK_MIRROR": str(tmp_path / "cli-mirror"), **extra})


def test_reading_commands_print_what_they_print_for_a_local_copy(
        s3: MotoS3, runs: list[str], tmp_path: Path) -> None:
    url = s3.url()
    local = str(_local_copy(s3, tmp_path / "local"))
    env = _env(s3, tmp_path)
    a, b, c = runs

    # A run's folder (`dir` in `ls --json` and `show`) is where its files are read from: for
    # a bucket, the local mirror. Apart from that, the output is the local folder's.
    mirror = str(tmp_path / "cli-mirror" / "s3" / s3.bucket / "runs")

    def both(*args: str) -> str:
        remote = _ok(_cli(env, *args, "--root", url))
        here = _ok(_cli(env, *args, "--root", local))
        assert remote.replace(mirror, "ROOT").splitlines() == here.replace(local, "ROOT").splitlines(), args
        return remote

    listing = both("ls")
    assert [line.split()[0] for line in listing.splitlines()[1:]] == [c, b, a]  # newest first
    assert "no labtrack root" not in listing
    assert (tmp_path / "cli-mirror" / "s3" / s3.bucket / "runs" / "mnist" / a / "run.json").is_file()

    listed = json.loads(both("ls", "--json"))
    assert all(r["dir"].startswith(mirror) for r in listed["runs"])
    assert listed["total"] == 3 and sorted(r["id"] for r in listed["runs"]) == sorted(runs)
    assert both("ls", "-w", "params.lr < 0.05", "-c", "params.lr").splitlines()[1].split()[0] == b

    shown = both("show", a)
    assert shown.startswith(f"run {a}  mnist/base  finished")
    assert "lr" in shown and "train/loss" in shown
    assert json.loads(both("show", "--json", b))["params"] == {"lr": 0.01, "batch": 64}

    compared = both("compare", a, b)
    assert "* params.lr" in compared and "0.01" in compared
    assert json.loads(both("compare", "--json", a, b))["runs"] == [a, b]

    table = both("table")
    assert all(run_id in table for run_id in runs) and "train/loss" in table
    assert both("table", "-e", "mnist", "-f", "csv").count("\n") == 3  # a header and two runs

    # LABTRACK_ROOT names the bucket as well as --root does.
    assert _ok(_cli(_env(s3, tmp_path, LABTRACK_ROOT=url), "ls")) == listing
    assert _ok(_cli(_env(s3, tmp_path, LABTRACK_ROOT=url), "show", c)).startswith(f"run {c}  cifar/wide")


def test_a_run_written_after_a_listing_shows_in_the_next(s3: MotoS3, runs: list[str], tmp_path: Path) -> None:
    env = _env(s3, tmp_path)
    assert len(_ok(_cli(env, "ls", "--root", s3.url())).splitlines()) == 4
    run = labtrack.init(experiment="cifar", name="late", root=s3.url(), capture_git=False,
                        capture_console=False, system=False)
    assert isinstance(run, labtrack.Run)
    run.finish()
    listing = _ok(_cli(env, "ls", "--root", s3.url())).splitlines()
    assert len(listing) == 5 and listing[1].split()[:3] == [run.id, "cifar", "late"]


def test_commands_that_change_runs_refuse_a_bucket_and_leave_it_as_it_was(
        s3: MotoS3, runs: list[str], tmp_path: Path) -> None:
    url = s3.url()
    env = _env(s3, tmp_path)
    before = _bucket(s3)
    assert before
    a = runs[0]
    for args, does in [(["rm", a, "--root", url], "changes runs"),
                       (["gc", "--root", url], "changes runs"),
                       (["mv", a, "other", "--root", url], "changes runs"),
                       (["tag", a, "best", "--root", url], "changes runs"),
                       (["comment", a, "hi", "--root", url], "changes runs"),
                       (["rerun", a, "--dry-run", "--root", url], "writes a new run"),
                       (["import", "dvclive", str(tmp_path), "--root", url], "writes runs"),
                       (["merge", str(tmp_path), "--into", url], "writes runs"),
                       (["merge", url, "--into", str(tmp_path / "into")], "copies runs"),
                       (["ui", url], "serves a local folder")]:
        proc = _cli(env, *args)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert lines[0].startswith(f"error: labtrack {args[0]}"), lines[0]
        assert does in lines[0] and url in lines[0], lines[0]
        assert "only reads a bucket (ls, show" in lines[0], lines[0]
        assert proc.stdout == "", args
    rm = _cli(_env(s3, tmp_path, LABTRACK_ROOT=url), "rm", a)
    assert rm.returncode == 1 and "--root PATH" in rm.stderr and url in rm.stderr, rm.stderr
    assert _bucket(s3) == before
    assert not (tmp_path / "into").exists()
    # The run is still there for the reading commands.
    assert _ok(_cli(env, "show", a, "--root", url)).startswith(f"run {a}")


def test_the_upload_the_refusal_of_merge_suggests_puts_local_runs_in_the_bucket(
        s3: MotoS3, runs: list[str], tmp_path: Path) -> None:
    env = _env(s3, tmp_path)
    other = s3.url("other")
    local = _local_copy(s3, tmp_path / "local")
    refused = _cli(env, "merge", str(local), "--into", other)
    suggested = f"labtrack sync --root FOLDER --remote {other}"
    assert refused.returncode == 1 and suggested in refused.stderr, refused.stderr
    _ok(_cli(env, "sync", "--root", str(local), "--remote", other))
    uploaded = json.loads(_ok(_cli(env, "ls", "--json", "--root", other)))
    kept = json.loads(_ok(_cli(env, "ls", "--json", "--root", str(local))))
    for listing in (uploaded, kept):  # the folder runs are read from differs: mirror or local
        for run in listing["runs"]:
            run.pop("dir")
    assert uploaded == kept and uploaded["total"] == 3


def test_a_bad_object_store_url_is_one_line(tmp_path: Path) -> None:
    proc = _cli(child_env({"LABTRACK_MIRROR": str(tmp_path / "mirror")}), "ls", "--root", "s4://bucket/runs")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: object-store URL 's4://bucket/runs' is not allowed"), proc.stderr
