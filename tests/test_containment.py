"""Symlinks in a root, on the analysis side: the Book, the CLI, rerun, annotate and the
TensorBoard export never list or read anything that resolves outside the root (or, for a
run's files, outside the run). Real folders, real symlinks, real runs written by the library.

Each case puts a recognisable secret outside the root and checks that either the run is not
listed or the read raises a LabtrackError, and that the secret never shows.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from click.testing import CliRunner, Result

import labtrack
from labtrack._store.rundir import RunDir, iter_runs
from labtrack.cli import main
from labtrack.errors import LabtrackError, RunNotFoundError

MakeRun = Callable[..., labtrack.Run]
SECRET = "SECRET-outside-the-root"


def cli(root: Path, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--root", str(root)], prog_name="labtrack",
                              catch_exceptions=False)


def a_run(make_run: MakeRun, experiment: str, name: str, **config: Any) -> labtrack.Run:
    run = make_run(experiment=experiment, name=name, config={"lr": 0.1, **config})
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    run.log_image("img", np.zeros((4, 4, 3), dtype=np.uint8), step=0)
    run.log_text("note", "hello", step=0)
    run.finish()
    (run.dir / "artifacts").mkdir(exist_ok=True)
    (run.dir / "artifacts" / "model.txt").write_text("weights")
    time.sleep(0.01)
    return run


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    return out


@pytest.fixture
def root(make_run: MakeRun, tmp_path: Path, outside: Path) -> dict[str, Any]:
    """A root with one good run, plus an experiment folder and a run folder that are
    symlinks to runs outside the root (copies of real runs whose params hold the secret)."""
    good = a_run(make_run, "good", "kept")
    far = a_run(make_run, "far", "away", secret=SECRET)
    lone = a_run(make_run, "good", "lone", secret=SECRET)
    root = tmp_path / "root"
    # Move the two runs out of the root and leave symlinks in their place.
    shutil.move(str(root / "far"), str(outside / "far"))
    os.symlink(outside / "far", root / "far")
    shutil.move(str(lone.dir), str(outside / lone.id))
    os.symlink(outside / lone.id, root / "good" / lone.id)
    return {"root": root, "good": good.id, "far": far.id, "lone": lone.id}


def test_symlinked_experiment_and_run_folders_are_not_part_of_the_root(root: dict[str, Any]) -> None:
    r = root["root"]
    with labtrack.open(r) as book:
        ids = [v.id for v in book.runs()]
        assert ids == [root["good"]]
        assert len(book) == 1 and book.experiments() == ["good"]
        for rid in (root["far"], root["lone"]):
            with pytest.raises(RunNotFoundError):
                book[rid]  # a full id is looked up without the index: still refused
            with pytest.raises(RunNotFoundError):
                book[rid[:-1]]  # a prefix goes through the index
        frame = book.runs().to_pandas()
        assert SECRET not in frame.to_string()
        assert SECRET not in book.table().to_string()
    assert [rd.id for rd in iter_runs(r)] == [root["good"]]
    listing = cli(r, "ls", "--json")
    assert listing.exit_code == 0 and SECRET not in listing.stdout
    assert [x["id"] for x in json.loads(listing.stdout)["runs"]] == [root["good"]]
    for rid in (root["far"], root["lone"]):
        shown = cli(r, "show", rid)
        assert shown.exit_code == 1 and "no run matches" in shown.stderr and SECRET not in shown.output
        compared = cli(r, "compare", root["good"], rid)
        assert compared.exit_code == 1 and SECRET not in compared.output
    table = cli(r, "table")
    assert table.exit_code == 0 and SECRET not in table.output


def test_a_symlink_to_a_folder_inside_the_root_is_followed_and_listed_once(root: dict[str, Any]) -> None:
    r = root["root"]
    os.symlink(r / "good", r / "alias")  # the same experiment under a second name
    with labtrack.open(r) as book:
        assert [v.id for v in book.runs()] == [root["good"]]
        assert book[root["good"]].params["lr"] == 0.1
    assert [rd.id for rd in iter_runs(r)] == [root["good"]]


def test_the_rerun_planner_refuses_a_run_outside_the_root(root: dict[str, Any]) -> None:
    from labtrack._rerun import plan_rerun

    for rid in (root["far"], root["lone"]):
        with pytest.raises(RunNotFoundError):
            plan_rerun(root["root"], rid)


FILES = ["params.json", "run.json", "summary.json", "env.json", "options.json", "console.log",
         "scalars/loss.csv", "media", "artifacts/model.txt"]


def link_out(run_dir: Path, rel: str, outside: Path) -> None:
    """Replace `rel` of the run with a symlink to a file outside that holds the secret."""
    target = outside / rel.replace("/", "_")
    if rel == "media":  # the image file that media.jsonl names
        entry = json.loads((run_dir / "media.jsonl").read_text().splitlines()[0])
        rel = entry["path"]
        shutil.copy(run_dir / rel, target)
    elif rel.endswith(".csv"):
        target.write_text(f"step,value,time\n0,{7e7},1.0\n")
    elif rel == "console.log" or rel.endswith(".txt"):
        target.write_text(SECRET)
    elif rel == "run.json":
        meta = json.loads((run_dir / rel).read_text())
        meta["comment"] = SECRET
        target.write_text(json.dumps(meta))
    else:
        target.write_text(json.dumps({"secret": SECRET}))
    path = run_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    os.symlink(target, path)


@pytest.mark.parametrize("rel", FILES)
def test_run_files_that_link_outside_are_never_read(make_run: MakeRun, tmp_path: Path, outside: Path,
                                                    rel: str) -> None:
    run = a_run(make_run, "good", "victim")
    if rel in ("env.json", "options.json"):
        for fn in ("env.json", "options.json"):
            (run.dir / fn).write_text("{}")
    if rel == "console.log":
        (run.dir / "console.log").write_text("printed\n")
    link_out(run.dir, rel, outside)
    r = tmp_path / "root"
    with labtrack.open(r) as book:
        listed = [v.id for v in book.runs()]
        if rel == "run.json":  # without a run.json inside the run it is no run at all
            assert listed == []
            with pytest.raises(LabtrackError):
                book[run.id].params
            return
        if rel in ("params.json", "summary.json"):
            # listed without the file (as the server's run page shows it); reading it refuses
            assert listed == [run.id]
            row = book.table()
            assert SECRET not in row.to_csv()
            with pytest.raises(LabtrackError):
                book[run.id].params if rel != "summary.json" else book[run.id].summary
            return
        assert listed == [run.id]
        view = book[run.id]
        seen: list[str] = []

        def read(get: Callable[[], Any]) -> None:
            try:
                seen.append(repr(get()))
            except LabtrackError:
                pass

        for get in (lambda: view.params, lambda: view.summary, lambda: view.meta, lambda: view.env,
                    lambda: view.options, lambda: view.console, lambda: view.series(),
                    lambda: view.scalars(), lambda: view.list_artifacts(), lambda: view.images(),
                    lambda: view.texts("note"), lambda: view["model.txt"], lambda: view["params.json"]):
            read(get)
        if rel == "scalars/loss.csv":
            assert "loss" not in view.series()
            with pytest.raises(LabtrackError):
                view.scalars("loss")
            read(lambda: view.scalars("loss"))
        if rel == "media":
            with pytest.raises(LabtrackError, match="outside"):
                view.images()
        if rel == "artifacts/model.txt":
            with pytest.raises(LabtrackError, match="outside"):
                view["model.txt"]
            assert "artifacts/model.txt" not in view.list_artifacts()
            assert "model.txt" not in view
        if rel in ("env.json", "options.json", "console.log"):
            with pytest.raises(LabtrackError, match="outside"):
                getattr(view, rel.split(".")[0])
        assert not any(SECRET in s or "70000000" in s for s in seen), seen
    shown = cli(r, "show", run.id, "--json")
    assert SECRET not in shown.output and "7e+07" not in shown.output
    if shown.exit_code == 0:
        files = [f["path"] for f in json.loads(shown.stdout)["files"]]
        assert rel not in files
    listing = cli(r, "ls", "-c", "metrics.loss")
    assert listing.exit_code == 0 and SECRET not in listing.output


def test_annotate_and_the_tensorboard_export_read_only_inside_the_run(make_run: MakeRun, tmp_path: Path,
                                                                      outside: Path) -> None:
    from labtrack._annotate import annotate_run
    from labtrack.integrations import tensorboard

    run = a_run(make_run, "good", "victim")
    link_out(run.dir, "scalars/loss.csv", outside)
    link_out(run.dir, "media", outside)
    (run.dir / "scalars" / "inside.csv").symlink_to(run.dir / "scalars" / "other.csv")
    (run.dir / "scalars" / "other.csv").write_text("step,value,time\n0,1.5,1.0\n")
    counts = tensorboard.export_run(run.dir, tmp_path / "tb")
    assert counts["scalars"] == 2  # other.csv and the inside symlink to it; not loss.csv
    assert counts["images"] == 0 and counts["text"] == 1
    target = tmp_path / "train.py"
    target.write_text("print('hi')\n")
    link_out(run.dir, "params.json", outside)
    with pytest.raises(LabtrackError, match="outside"):
        annotate_run(RunDir(run.dir), target)
    assert SECRET not in target.read_text()


def test_a_file_symlinked_inside_the_run_is_followed(make_run: MakeRun, tmp_path: Path) -> None:
    run = a_run(make_run, "good", "aliases")
    (run.dir / "artifacts" / "alias.txt").symlink_to(run.dir / "artifacts" / "model.txt")
    (run.dir / "scalars" / "again.csv").symlink_to(run.dir / "scalars" / "loss.csv")
    with labtrack.open(tmp_path / "root") as book:
        view = book[run.id]
        assert view["alias.txt"] == b"weights" or view["alias.txt"] == "weights"
        assert view.series() == ["again", "loss"]
        assert view.scalars("again")["value"].tolist() == view.scalars("loss")["value"].tolist()


def test_untracked_source_files_that_link_outside_are_not_copied(make_run: MakeRun, outside: Path) -> None:
    run = a_run(make_run, "good", "src")
    untracked = run.dir / "source" / "untracked"
    untracked.mkdir(parents=True)
    (untracked / "ok.py").write_text("x = 1\n")
    (outside / "secret.py").write_text(SECRET)
    (untracked / "evil.py").symlink_to(outside / "secret.py")
    rd = RunDir(run.dir)
    assert rd.untracked() == (["ok.py"], [])
    with pytest.raises(LabtrackError, match="outside"):
        rd.untracked_file("evil.py")


def test_series_listing_matches_a_walk_that_resolves_every_file(make_run: MakeRun, tmp_path: Path,
                                                                 outside: Path) -> None:
    """RunDir.named resolves only symlinks; it must list what resolving every file lists."""
    from labtrack._names import relpath_to_name

    run = a_run(make_run, "good", "many")
    sc = run.dir / "scalars"
    for rel in ("train/loss.csv", "train/deep/acc.csv", "eval/x.csv", ".hidden.csv", ".cache/y.csv",
                "notes.txt"):
        (sc / rel).parent.mkdir(parents=True, exist_ok=True)
        (sc / rel).write_text("step,value,time\n0,1.0,1.0\n")
    (outside / "far.csv").write_text(f"step,value,time\n0,{SECRET},1.0\n")
    (outside / "dir").mkdir()
    (outside / "dir" / "z.csv").write_text("step,value,time\n0,1.0,1.0\n")
    (sc / "out.csv").symlink_to(outside / "far.csv")            # a file leading out: left out
    (sc / "train" / "alias.csv").symlink_to(sc / "eval" / "x.csv")  # a file inside: listed
    (sc / "outdir").symlink_to(outside / "dir")                  # folders by symlink: not entered
    (sc / "indir").symlink_to(sc / "train")
    (sc / "dangling.csv").symlink_to(tmp_path / "nowhere.csv")   # resolves outside: left out
    rd = RunDir(run.dir)
    want = []
    for dirpath, dirs, files in os.walk(sc):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for fn in files:
            full = os.path.join(dirpath, fn)
            if fn.endswith(".csv") and not fn.startswith(".") and \
                    os.path.realpath(full).startswith(os.path.realpath(run.dir) + os.sep):
                rel = os.path.relpath(full, sc).replace(os.sep, "/")
                want.append((relpath_to_name(rel, ".csv"), f"scalars/{rel}"))
    got = rd.named("scalars")
    assert got == sorted(want)
    assert [n for n, _ in got] == ["eval/x", "loss", "train/alias", "train/deep/acc", "train/loss"]
