"""Checkpoints: files on disk, last/best/keep_last, RNG restore, wrapper unwrapping, errors."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labtrack._checkpoints import checkpoint_path, checkpoint_record, load_checkpoint, save_checkpoint
from labtrack.errors import FormatError, LabtrackTypeError, LabtrackValueError, RunNotFoundError, RunStateError

torch = pytest.importorskip("torch")


def _finished_run(tmp_path: Path) -> Path:
    """A finished run directory as the core writes it (run.json only is what matters here)."""
    run_dir = tmp_path / "exp" / "20261121-141503-abc123"
    run_dir.mkdir(parents=True)
    meta = {"format_version": 1, "id": run_dir.name, "experiment": "exp", "name": None,
            "status": "finished", "checkpoints": {"last": None, "best": None, "mode": None, "metric": None}}
    (run_dir / "run.json").write_text(json.dumps(meta))
    return run_dir


def _run_json(run_dir: Path) -> dict[str, Any]:
    data = json.loads((run_dir / "run.json").read_text())
    assert isinstance(data, dict)
    return data


def test_roundtrip_torch_state_dicts_and_run_json(tmp_path: Path) -> None:
    run_dir = _finished_run(tmp_path)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    path = save_checkpoint(run_dir, {"model": net.state_dict(), "opt": opt.state_dict(), "epoch": 7}, step=10)

    assert path == run_dir / "checkpoints" / "10" / "checkpoint.pt"
    # the file is an ordinary torch checkpoint: torch.load alone reads it
    plain = torch.load(path, weights_only=False)
    assert plain["epoch"] == 7
    state = load_checkpoint(run_dir, "last")
    fresh = torch.nn.Linear(3, 2)
    fresh.load_state_dict(state["model"])
    assert torch.equal(fresh.weight, net.weight)
    assert state["opt"]["state"][0]["momentum_buffer"].shape == (2, 3)
    meta = _run_json(run_dir)
    assert meta["checkpoints"] == {"last": 10, "best": None, "mode": None, "metric": None, "steps": [10]}
    assert meta["status"] == "finished"  # other keys untouched


def test_last_best_and_keep_last(tmp_path: Path) -> None:
    run_dir = _finished_run(tmp_path)
    metrics = [5.0, 3.0, 4.0, 1.0, 2.0, 6.0]
    for step, m in enumerate(metrics, start=1):
        save_checkpoint(run_dir, {"step": step}, step=step * 100, metric=m, mode="min", keep_last=2)

    on_disk = sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir())
    assert on_disk == [400, 500, 600]  # the last two and the best (metric 1.0 at 400)
    record = _run_json(run_dir)["checkpoints"]
    assert record == {"last": 600, "best": 400, "mode": "min", "metric": 1.0, "steps": [400, 500, 600]}
    assert checkpoint_record(run_dir) == record
    assert load_checkpoint(run_dir, "best") == {"step": 4}
    assert load_checkpoint(run_dir, "last") == {"step": 6}
    assert load_checkpoint(run_dir, 500) == {"step": 5}
    with pytest.raises(LabtrackValueError, match=r"no checkpoint at step 200; saved steps: \[400, 500, 600\]"):
        load_checkpoint(run_dir, 200)


def test_mode_max_and_resaving_a_step(tmp_path: Path) -> None:
    run_dir = _finished_run(tmp_path)
    save_checkpoint(run_dir, "a", step=1, metric=0.5, mode="max")
    save_checkpoint(run_dir, "b", step=2, metric=0.9, mode="max")
    save_checkpoint(run_dir, "c", step=3, metric=0.7, mode="max")
    save_checkpoint(run_dir, "d", step=4)  # no metric: never best, but becomes last
    assert load_checkpoint(run_dir, "best") == "b"
    assert load_checkpoint(run_dir, "last") == "d"
    # saving step 2 again replaces it; it is now the most recent, and its new metric counts
    save_checkpoint(run_dir, "b2", step=2, metric=0.1, mode="max")
    record = checkpoint_record(run_dir)
    assert record["last"] == 2 and record["best"] == 3 and record["metric"] == 0.7
    assert record["steps"] == [1, 3, 4, 2]
    assert load_checkpoint(run_dir, 2) == "b2"
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]


def test_nan_metric_never_becomes_best(tmp_path: Path) -> None:
    run_dir = _finished_run(tmp_path)
    save_checkpoint(run_dir, 1, step=1, metric=float("nan"))
    with pytest.raises(LabtrackValueError, match="no best checkpoint"):
        load_checkpoint(run_dir, "best")
    save_checkpoint(run_dir, 2, step=2, metric=np.float32(3.5))
    assert load_checkpoint(run_dir, "best") == 2
    info = json.loads((run_dir / "checkpoints" / "1" / "checkpoint.json").read_text())
    assert info["metric"] == "NaN"  # valid JSON, the format's spelling of NaN


def test_rng_states_are_restored(tmp_path: Path) -> None:
    run_dir = _finished_run(tmp_path)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's legacy state
    save_checkpoint(run_dir, {"w": 1}, step=1)
    expected = (random.random(), np.random.normal(size=3).tolist(), torch.rand(3).tolist())
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    load_checkpoint(run_dir, restore_rng=False)
    assert random.random() != expected[0]
    load_checkpoint(run_dir)
    assert (random.random(), np.random.normal(size=3).tolist(), torch.rand(3).tolist()) == expected


def test_data_parallel_model_is_unwrapped(tmp_path: Path) -> None:
    run_dir = _finished_run(tmp_path)
    inner = torch.nn.Linear(2, 2)
    wrapped = torch.nn.DataParallel(inner)
    save_checkpoint(run_dir, {"model": wrapped, "others": [wrapped, 3]}, step=1)
    loaded = load_checkpoint(run_dir)
    assert type(loaded["model"]) is torch.nn.Linear
    assert type(loaded["others"][0]) is torch.nn.Linear and loaded["others"][1] == 3
    assert torch.equal(loaded["model"].weight, inner.weight)
    # a bare wrapper is unwrapped too
    save_checkpoint(run_dir, wrapped, step=2)
    assert type(load_checkpoint(run_dir, 2)) is torch.nn.Linear


def test_distributed_data_parallel_model_is_unwrapped(tmp_path: Path) -> None:
    # A real one-process gloo group in a child, so the test process keeps no global group.
    script = textwrap.dedent(f"""
        import sys, torch, torch.distributed as dist
        from labtrack._checkpoints import save_checkpoint, load_checkpoint
        dist.init_process_group("gloo", init_method="file://{tmp_path / 'pg'}", rank=0, world_size=1)
        ddp = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
        save_checkpoint(sys.argv[1], {{"model": ddp}}, step=5)
        dist.destroy_process_group()
        print(type(load_checkpoint(sys.argv[1], 5)["model"]).__name__)
    """)
    run_dir = _finished_run(tmp_path)
    out = subprocess.run([sys.executable, "-c", script, str(run_dir)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "Linear"


def test_pickle_when_torch_is_missing(tmp_path: Path) -> None:
    run_dir = _finished_run(tmp_path)
    script = textwrap.dedent("""
        import sys, random
        sys.modules["torch"] = None  # torch not installed
        from labtrack._checkpoints import save_checkpoint, load_checkpoint
        random.seed(4)
        p = save_checkpoint(sys.argv[1], {"weights": [1.5, 2.5]}, step=3, metric=0.2)
        a = random.random()
        random.seed(0)
        obj = load_checkpoint(sys.argv[1], "best")
        print(p.name, obj["weights"], random.random() == a)
    """)
    out = subprocess.run([sys.executable, "-c", script, str(run_dir)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["checkpoint.pkl", "[1.5,", "2.5]", "True"]
    info = json.loads((run_dir / "checkpoints" / "3" / "checkpoint.json").read_text())
    assert info["format"] == "pickle"
    assert "torch" not in json.loads((run_dir / "checkpoints" / "3" / "rng.json").read_text())


def test_meta_writer_receives_the_record(tmp_path: Path) -> None:
    run_dir = _finished_run(tmp_path)
    before = (run_dir / "run.json").read_bytes()
    seen: list[dict[str, Any]] = []
    save_checkpoint(run_dir, 1, step=1, metric=2.0, meta_writer=seen.append)
    save_checkpoint(run_dir, 2, step=2, metric=1.0, meta_writer=seen.append)
    assert seen[-1] == {"last": 2, "best": 2, "mode": "min", "metric": 1.0, "steps": [1, 2]}
    assert (run_dir / "run.json").read_bytes() == before


def test_bad_input_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    run_dir = _finished_run(tmp_path)
    with pytest.raises(LabtrackValueError, match="mode 'lowest' is not allowed; use 'min' or 'max'"):
        save_checkpoint(run_dir, 1, step=1, mode="lowest")
    with pytest.raises(LabtrackValueError, match="step -1 is negative"):
        save_checkpoint(run_dir, 1, step=-1)
    with pytest.raises(LabtrackTypeError, match="step must be a whole number, got str '3'"):
        save_checkpoint(run_dir, 1, step="3")  # type: ignore[arg-type]
    with pytest.raises(LabtrackTypeError, match="metric must be a number, got str 'low'"):
        save_checkpoint(run_dir, 1, step=1, metric="low")  # type: ignore[arg-type]
    with pytest.raises(LabtrackValueError, match="keep_last=0 is not allowed"):
        save_checkpoint(run_dir, 1, step=1, keep_last=0)
    assert not (run_dir / "checkpoints").exists()
    with pytest.raises(RunNotFoundError, match="has no run.json"):
        save_checkpoint(tmp_path, 1, step=1)

    with pytest.raises(LabtrackTypeError, match=r"checkpoint object \(dict\) cannot be written with torch.save"):
        save_checkpoint(run_dir, {"fn": lambda: 1}, step=1)
    assert list((run_dir / "checkpoints").iterdir()) == []  # the half-written folder is gone
    assert _run_json(run_dir)["checkpoints"]["last"] is None

    save_checkpoint(run_dir, 1, step=1, metric=1.0, mode="min")
    with pytest.raises(LabtrackValueError, match="differs from mode 'min'"):
        save_checkpoint(run_dir, 2, step=2, metric=1.0, mode="max")
    assert checkpoint_record(run_dir)["steps"] == [1]


def test_load_errors(tmp_path: Path) -> None:
    run_dir = _finished_run(tmp_path)
    with pytest.raises(RunStateError, match="has no checkpoints"):
        load_checkpoint(run_dir)
    save_checkpoint(run_dir, 1, step=1)
    with pytest.raises(LabtrackValueError, match="checkpoint 'first' is not known; use 'last', 'best'"):
        load_checkpoint(run_dir, "first")
    with pytest.raises(LabtrackTypeError, match="got float 1.0"):
        load_checkpoint(run_dir, 1.0)  # type: ignore[arg-type]
    assert checkpoint_path(run_dir, "1") == run_dir / "checkpoints" / "1" / "checkpoint.pkl"  # plain data: pickle, no torch


def test_incomplete_folder_is_ignored(tmp_path: Path) -> None:
    run_dir = _finished_run(tmp_path)
    save_checkpoint(run_dir, "good", step=1)
    # what a crash in the middle of a hand-made copy leaves: a step folder without checkpoint.json
    (run_dir / "checkpoints" / "2").mkdir()
    (run_dir / "checkpoints" / "2" / "checkpoint.pt").write_bytes(b"partial")
    assert load_checkpoint(run_dir, "last") == "good"


def test_with_runs_made_by_the_core(tmp_path: Path) -> None:
    from labtrack import Run
    from labtrack._store.reader import read_run_meta

    with Run("ck", "live", root=tmp_path, capture_git=False, capture_console=False) as run:
        for step in range(4):
            run.log({"loss": 4.0 - step}, step=step)
            run.save_checkpoint({"step": step}, step=step, metric=4.0 - step, keep_last=1)
        assert run.load_checkpoint("best") == {"step": 3}
    meta = read_run_meta(run.dir)
    assert meta["status"] == "finished"
    assert meta["checkpoints"] == {"last": 3, "best": 3, "mode": "min", "metric": 1.0, "steps": [3]}

    # later, on the finished run (what the Book's RunView does): run.json is rewritten here
    save_checkpoint(run.dir, {"step": 10}, step=10, metric=0.5)
    meta = read_run_meta(run.dir)
    assert meta["checkpoints"] == {"last": 10, "best": 10, "mode": "min", "metric": 0.5, "steps": [3, 10]}
    assert meta["status"] == "finished" and meta["name"] == "live"


# -- files another tool wrote (add_checkpoint_file) ---------------------------------------


def test_a_file_inside_the_run_is_referenced_relatively_and_loads(tmp_path: Path) -> None:
    from labtrack._checkpoints import add_checkpoint_file

    run_dir = _finished_run(tmp_path)
    own = run_dir / "artifacts" / "tool" / "last.ckpt"
    own.parent.mkdir(parents=True)
    torch.save({"w": torch.ones(2)}, own)
    path = add_checkpoint_file(run_dir, own, 5, metric=0.4, copy=False, origin="tool")
    assert path == own.absolute()
    info = json.loads((run_dir / "checkpoints" / "5" / "checkpoint.json").read_text())
    assert info["path"] == "artifacts/tool/last.ckpt" and info["file"] is None and info["origin"] == "tool"
    assert not (run_dir / "checkpoints" / "5" / "last.ckpt").exists()  # no second copy
    # the run moved elsewhere still finds it (the reference is relative)
    moved = tmp_path / "moved" / run_dir.name
    moved.parent.mkdir()
    run_dir.rename(moved)
    assert torch.equal(load_checkpoint(moved, "best")["w"], torch.ones(2))
    assert checkpoint_path(moved, 5) == moved / "artifacts" / "tool" / "last.ckpt"
    assert _run_json(moved)["checkpoints"]["best"] == 5
    (moved / "artifacts" / "tool" / "last.ckpt").unlink()
    with pytest.raises(FormatError, match="no longer exists"):
        load_checkpoint(moved, 5)


def test_a_copied_file_outlives_the_original_and_keep_prunes(tmp_path: Path) -> None:
    from labtrack._checkpoints import add_checkpoint_file

    run_dir = _finished_run(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for step, metric in ((1, 0.9), (2, 0.5), (3, 0.7)):
        f = outside / f"step={step}.ckpt"
        torch.save({"step": step}, f)
        add_checkpoint_file(run_dir, f, step, metric=metric, keep={step - 1})
        f.write_bytes(b"rewritten by the tool")  # the copy is not affected
    record = _run_json(run_dir)["checkpoints"]
    # keep={2} at step 3: step 1 is dropped, 2 is kept (and is the best anyway)
    assert record == {"last": 3, "best": 2, "mode": "min", "metric": 0.5, "steps": [2, 3]}
    assert load_checkpoint(run_dir, "best") == {"step": 2} and load_checkpoint(run_dir, "last") == {"step": 3}
    assert (outside / "step=1.ckpt").exists()  # the tool's own files are never deleted


def test_a_folder_is_referenced_and_loading_it_says_how(tmp_path: Path) -> None:
    from labtrack._checkpoints import add_checkpoint_file

    run_dir = _finished_run(tmp_path)
    folder = tmp_path / "out" / "checkpoint-8"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    add_checkpoint_file(run_dir, folder, 8, fmt="folder", copy=False, origin="transformers")
    assert checkpoint_path(run_dir, "last") == folder
    with pytest.raises(FormatError, match="is the folder .*checkpoint-8, written by transformers"):
        load_checkpoint(run_dir, "last")
    add_checkpoint_file(run_dir, folder, 9, fmt="folder")  # copied: the folder inside
    assert (run_dir / "checkpoints" / "9" / "checkpoint-8" / "config.json").is_file()


def test_add_checkpoint_file_refuses_bad_input(tmp_path: Path) -> None:
    from labtrack._checkpoints import add_checkpoint_file

    run_dir = _finished_run(tmp_path)
    with pytest.raises(LabtrackValueError, match="does not exist"):
        add_checkpoint_file(run_dir, tmp_path / "nope.ckpt", 1)
    f = tmp_path / "a.ckpt"
    f.write_bytes(b"x")
    with pytest.raises(LabtrackValueError, match="format 'zip' is not allowed"):
        add_checkpoint_file(run_dir, f, 1, fmt="zip")
    with pytest.raises(LabtrackValueError, match="mode 'best'"):
        add_checkpoint_file(run_dir, f, 1, mode="best")
    add_checkpoint_file(run_dir, f, 1, metric=1.0, mode="max", fmt="pickle")
    with pytest.raises(LabtrackValueError, match="differs from mode 'max'"):
        add_checkpoint_file(run_dir, f, 2, metric=1.0, mode="min")
    assert not (run_dir / "checkpoints" / "2").exists()
