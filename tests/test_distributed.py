"""Distributed jobs (docs/distributed.md): detection over launcher environments (pure), the
per-rank files and combined status of a one-run job (real files and processes), and real
`torchrun --standalone --nproc_per_node 2` jobs (gloo, CPU) in each mode."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import labtrack
from labtrack import _distributed as D
from labtrack._book import ReadOnlyBook
from labtrack._store import layout, ranks
from labtrack._store.rundir import RunDir
from labtrack.cli import main
from labtrack.errors import LabtrackValueError

from conftest import child_env

TORCH_ENV = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
             "GROUP_RANK": "0", "TORCHELASTIC_RUN_ID": "5f0c", "TORCHELASTIC_RESTART_COUNT": "0"}


# --- detection: pure, over environment dicts -------------------------------------------------

def test_no_launcher_is_one_process() -> None:
    launch = D.detect({"PATH": "/bin"})
    assert (launch.launcher, launch.rank, launch.world_size, launch.job_id) == (None, 0, 1, None)
    assert D.resolve_mode(None, launch) is None  # distributed is ignored for one process
    assert D.resolve_mode("per-rank", launch) is None


def test_torchrun() -> None:
    launch = D.detect(TORCH_ENV)
    assert (launch.launcher, launch.rank, launch.world_size, launch.local_rank,
            launch.local_world_size, launch.node_rank) == ("torchrun", 1, 4, 1, 2, 0)
    assert launch.job_id == "torchrun:5f0c:0" and launch.job_source == "TORCHELASTIC_RUN_ID"
    # an elastic restart is a new launch: a new run
    assert D.detect({**TORCH_ENV, "TORCHELASTIC_RESTART_COUNT": "1"}).job_id == "torchrun:5f0c:1"
    assert D.resolve_mode(None, launch) == "one-run"


def test_torchrun_without_rdzv_id_uses_the_launcher_process_on_one_node() -> None:
    # torchrun's default --rdzv-id is "none" (several nodes without --rdzv-id): no job id,
    # unless every rank is on this node, children of the same agent.
    env = {**TORCH_ENV, "TORCHELASTIC_RUN_ID": "none"}
    assert D.detect(env, host="n1", ppid=4242).job_id is None  # 4 ranks, 2 per node
    one_node = {**env, "LOCAL_WORLD_SIZE": "4"}
    launch = D.detect(one_node, host="n1", ppid=4242)
    assert launch.job_id == "node:n1:4242" and launch.job_source == "parent process"


def test_accelerate_is_torchrun_with_its_variables() -> None:
    launch = D.detect({**TORCH_ENV, "ACCELERATE_MIXED_PRECISION": "no"})
    assert launch.launcher == "accelerate" and launch.job_id == "torchrun:5f0c:0"


def test_rank_and_world_size_by_hand() -> None:
    launch = D.detect({"RANK": "0", "WORLD_SIZE": "2"}, host="h", ppid=7)
    assert launch.launcher == "env" and launch.job_id is None  # nothing says the ranks are one job


def test_slurm() -> None:
    env = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NODEID": "2",
           "SLURM_JOB_ID": "991", "SLURM_STEP_ID": "3", "SLURM_STEP_TASKS_PER_NODE": "4(x2)"}
    launch = D.detect(env)
    assert (launch.launcher, launch.rank, launch.world_size, launch.local_rank, launch.node_rank,
            launch.local_world_size) == ("slurm", 5, 8, 1, 2, 4)
    assert launch.job_id == "slurm:991.3"
    no_step = {k: v for k, v in env.items() if k != "SLURM_STEP_ID"}
    assert D.detect(no_step).job_id == "slurm:991"


def test_torchrun_inside_slurm_numbers_by_torchrun_and_takes_the_slurm_job() -> None:
    env = {**TORCH_ENV, "TORCHELASTIC_RUN_ID": "none", "SLURM_PROCID": "0", "SLURM_NTASKS": "2",
           "SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0"}
    launch = D.detect(env)
    assert (launch.launcher, launch.rank, launch.world_size) == ("torchrun", 1, 4)
    assert launch.job_id == "slurm:77.0"


def test_open_mpi() -> None:
    env = {"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_LOCAL_RANK": "0",
           "OMPI_COMM_WORLD_LOCAL_SIZE": "1", "PMIX_NAMESPACE": "prterun-h-123@1"}
    launch = D.detect(env)
    assert (launch.launcher, launch.rank, launch.world_size, launch.job_id) == \
        ("mpi", 2, 3, "mpi:prterun-h-123@1")
    legacy = {**env, "PMIX_NAMESPACE": "", "OMPI_MCA_ess_base_jobid": "4711"}
    assert D.detect(legacy).job_id == "mpi:4711"


def test_mpich_pmi_and_mvapich() -> None:
    pmi = D.detect({"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"},
                   host="h", ppid=99)
    assert (pmi.launcher, pmi.rank, pmi.world_size, pmi.local_rank) == ("mpi", 1, 2, 1)
    assert pmi.job_id == "node:h:99"  # Hydra gives no job id; one node, one parent
    mv = D.detect({"MV2_COMM_WORLD_RANK": "3", "MV2_COMM_WORLD_SIZE": "4"})
    assert (mv.rank, mv.world_size, mv.job_id) == (3, 4, None)


def test_user_job_id_wins_and_is_checked() -> None:
    assert D.detect(TORCH_ENV, job_id="exp-7").job_id == "user:exp-7"
    assert D.detect({**TORCH_ENV, "LABTRACK_JOB_ID": "j9"}).job_id == "user:j9"
    with pytest.raises(LabtrackValueError, match="job_id must be a non-empty str"):
        D.detect(TORCH_ENV, job_id=" ")


def test_bad_values_are_no_launcher() -> None:
    assert D.detect({"RANK": "2", "WORLD_SIZE": "2"}).world_size == 1  # rank outside the world
    assert D.detect({"RANK": "x", "WORLD_SIZE": "2"}).world_size == 1
    with pytest.raises(LabtrackValueError, match="'everywhere' is not one of one-run, per-rank, rank0"):
        D.resolve_mode("everywhere", D.detect(TORCH_ENV))


def test_job_key_is_a_file_name_unique_per_id() -> None:
    a, b = D.job_key("user:a/b c"), D.job_key("user:a-b-c")
    assert a != b and "/" not in a and " " not in a and a.startswith("user-a-b-c-")


def test_same_launch() -> None:
    assert D.same_launch(1000.0, 1010.0, 120)
    assert not D.same_launch(1000.0, 700.0, 120)  # a note an earlier job left
    assert D.same_launch(None, 5.0, 120) and D.same_launch(1.0, None, 120)


def test_combine() -> None:
    assert ranks.combine(["finished", "finished"]) == "finished"
    assert ranks.combine(["finished", "running"]) == "running"
    assert ranks.combine(["running", "crashed"]) == "crashed"
    assert ranks.combine(["finished", "failed", "killed"]) == "failed"


def test_rank_owns() -> None:
    assert layout.rank_owns("scalars/rank1/loss.csv", 1) and not layout.rank_owns("scalars/rank1/loss.csv", 0)
    assert layout.rank_owns("ranks/1/console.log", 1) and not layout.rank_owns("ranks/2/console.log", 1)
    assert layout.rank_owns("scalars/loss.csv", 0) and not layout.rank_owns("scalars/loss.csv", 1)
    assert layout.rank_owns("scalars/rank1.csv", 0)  # a series named rank1 is rank 0's
    assert layout.rank_owns("run.json", 3)


# --- the combined status of a one-run job, from real files ----------------------------------

def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _job_dir(root: Path, status0: str, rank1: dict[str, object] | None) -> Path:
    run_dir = root / "exp" / "20261203-120000-aaaaaa"
    run_dir.mkdir(parents=True)
    meta = {"format_version": 1, "id": run_dir.name, "experiment": "exp", "name": "n",
            "status": status0, "started": "2026-12-03T12:00:00+00:00", "ended": None,
            "pid": os.getpid(), "host": socket.gethostname(),
            "distributed": {"mode": "one-run", "world_size": 2, "rank": 0, "job_id": "user:j"}}
    (run_dir / "run.json").write_text(json.dumps(meta))
    (run_dir / "heartbeat").touch()
    if status0 != "running":
        (run_dir / "ranks" / "0").mkdir(parents=True)
        (run_dir / "ranks" / "0" / "status.json").write_text(json.dumps({"rank": 0, "status": status0}))
    if rank1 is not None:
        (run_dir / "ranks" / "1").mkdir(parents=True)
        (run_dir / "ranks" / "1" / "status.json").write_text(json.dumps(rank1))
        (run_dir / "ranks" / "1" / "heartbeat").touch()
    return run_dir


def test_a_dead_rank_makes_a_running_job_crashed(tmp_path: Path) -> None:
    rank1 = {"rank": 1, "status": "running", "pid": _dead_pid(), "host": socket.gethostname(),
             "started": "2026-12-03T12:00:00+00:00"}
    run_dir = _job_dir(tmp_path / "root", "running", rank1)
    meta = RunDir(run_dir).meta()
    assert meta["status"] == "crashed"
    assert [(r["rank"], r["status"]) for r in meta["ranks"]] == [(0, "running"), (1, "crashed")]
    book = ReadOnlyBook(tmp_path / "root")
    assert [r["status"] for r in book.index.query()[1]] == ["crashed"]  # the listing agrees


def test_rank0_done_first_then_the_others_decide(tmp_path: Path) -> None:
    # Rank 0 left after its wait (its end in ranks/0, run.json still running, its pid dead).
    alive = {"rank": 1, "status": "running", "pid": os.getpid(), "host": socket.gethostname(),
             "started": "2026-12-03T12:00:00+00:00"}
    run_dir = _job_dir(tmp_path / "root", "finished", alive)
    meta = json.loads((run_dir / "run.json").read_text())
    meta.update(status="running", pid=_dead_pid())
    (run_dir / "run.json").write_text(json.dumps(meta))
    assert RunDir(run_dir).meta()["status"] == "running"
    book = ReadOnlyBook(tmp_path / "root")
    assert [r["status"] for r in book.index.query()[1]] == ["running"]
    (run_dir / "ranks" / "1" / "status.json").write_text(json.dumps({**alive, "pid": _dead_pid()}))
    assert RunDir(run_dir).meta()["status"] == "crashed"
    assert [r["status"] for r in book.index.query()[1]] == ["crashed"]


def test_an_ordinary_run_has_no_ranks(make_run: object, tmp_path: Path) -> None:
    run = make_run()  # type: ignore[operator]
    assert (run.rank, run.world_size) == (0, 1)
    run.log({"a": 1.0})
    run.finish()
    rd = RunDir(run.dir)
    assert rd.ranks() == [] and "ranks" not in rd.meta() and "distributed" not in rd.meta()
    assert list(rd.summary()) == ["a"]


def test_disabled_run_has_rank_and_world_size() -> None:
    d = labtrack.DisabledRun(rank=3, world_size=4)
    assert (d.rank, d.world_size) == (3, 4)
    assert (labtrack.DisabledRun().rank, labtrack.DisabledRun().world_size) == (0, 1)


# --- ranks as plain processes with a launcher's variables (no torch) -------------------------

RANK_SCRIPT = """
    import os, sys, time, labtrack
    rank = int(os.environ["RANK"])
    run = labtrack.init(experiment="job", config={"lr": 0.1}, capture_git=False,
                        disabled=True if os.environ.get("DISABLE") == str(rank) else None)
    print(f"rank {rank} up", flush=True)
    run.log({"x": float(rank)})
    time.sleep(float(os.environ.get(f"SLEEP{rank}", "0")))
    run.finish()
    if os.environ.get("TWICE"):  # a second run of the same job
        time.sleep(float(os.environ.get(f"PAUSE{rank}", "0")))
        run = labtrack.init(experiment="job", capture_git=False)
        run.log({"y": float(rank)})
        run.finish()
    print("done", flush=True)
"""


def _rank(tmp_path: Path, rank: int, env: dict[str, str]) -> subprocess.Popen[str]:
    script = tmp_path / "rank.py"
    script.write_text(textwrap.dedent(RANK_SCRIPT))
    full = child_env({"LABTRACK_ROOT": str(tmp_path / "root"), "RANK": str(rank), "WORLD_SIZE": "2",
                      "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "job-1",
                      "LABTRACK_FLUSH_SECONDS": "0.2", **env})
    return subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _done(p: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str]:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, f"exit {p.returncode}\n{out}\n{err}"
    return out, err


def test_rank0_leaves_first_and_the_last_rank_closes_the_run(tmp_path: Path) -> None:
    env = {"LABTRACK_DISTRIBUTED_WAIT": "1", "SLEEP1": "3"}
    r0, r1 = _rank(tmp_path, 0, env), _rank(tmp_path, 1, env)
    _done(r0)
    (rd,) = _runs(tmp_path / "root")
    assert json.loads((rd.path / "run.json").read_text())["status"] == "running"  # rank 1 still runs
    assert rd.meta()["status"] == "running"
    _done(r1)
    stored = json.loads((rd.path / "run.json").read_text())
    assert stored["status"] == "finished" and stored["ended"] is not None
    assert [(r["rank"], r["status"]) for r in rd.meta()["ranks"]] == [(0, "finished"), (1, "finished")]


def test_a_second_init_on_every_rank_meets_in_a_second_run(tmp_path: Path) -> None:
    env = {"TWICE": "1", "PAUSE0": "1.5"}  # rank 1 looks before rank 0 made the second run
    r0, r1 = _rank(tmp_path, 0, env), _rank(tmp_path, 1, env)
    _done(r0)
    _done(r1)
    runs = _runs(tmp_path / "root")
    assert len(runs) == 2
    assert sorted(tuple(rd.summary()) for rd in runs) == [("rank1/x", "x"), ("rank1/y", "y")]
    assert [rd.meta()["status"] for rd in runs] == ["finished", "finished"]


def test_a_rank_disabled_by_hand_does_not_hold_rank0(tmp_path: Path) -> None:
    # old scripts pass disabled=(rank != 0): rank 0 must not wait its whole wait for rank 1
    env = {"LABTRACK_DISTRIBUTED_WAIT": "30", "DISABLE": "1"}
    started = time.monotonic()
    r0, r1 = _rank(tmp_path, 0, env), _rank(tmp_path, 1, env)
    _done(r1)
    _done(r0)
    assert time.monotonic() - started < 25  # NEVER_JOINED_SECONDS (10 s), not 30
    (rd,) = _runs(tmp_path / "root")
    assert json.loads((rd.path / "run.json").read_text())["status"] == "finished"


def test_a_rank_without_rank0_fails_clearly(tmp_path: Path) -> None:
    p = _rank(tmp_path, 1, {"LABTRACK_DISTRIBUTED_WAIT": "0.5"})
    out, err = p.communicate(timeout=60)
    assert p.returncode != 0
    assert "rank 1 of job torchrun:job-1:0 waited 0.5 s for rank 0 to create the run" in err, err
    assert "distributed='per-rank'" in err


def test_a_note_left_by_an_earlier_job_is_not_taken(tmp_path: Path) -> None:
    env = {"LABTRACK_DISTRIBUTED_WAIT": "5"}
    _done(_rank(tmp_path, 0, {**env, "LABTRACK_DISTRIBUTED_WAIT": "0.2"}))  # rank 1 never came
    (old,) = _runs(tmp_path / "root")
    note = next((tmp_path / "root" / "job" / ".jobs").glob("*.json"))
    rec = json.loads(note.read_text())
    rec["started"] -= 1000  # as if that job ran long ago
    note.write_text(json.dumps(rec))
    p = _rank(tmp_path, 1, {"LABTRACK_DISTRIBUTED_WAIT": "0.5"})
    out, err = p.communicate(timeout=60)
    assert p.returncode != 0 and "waited 0.5 s" in err, err
    assert not (old.path / "ranks" / "1").exists()  # it did not join the old run


def test_no_job_id_falls_back_to_a_run_per_rank_with_one_warning() -> None:
    from labtrack import _ranks

    with pytest.warns(RuntimeWarning, match="pass the same id on every rank: labtrack.init"):
        job = _ranks.plan(None, None, environ={"RANK": "1", "WORLD_SIZE": "2"})
    assert job is not None and job.mode == "per-rank"
    job = _ranks.plan(None, "mine", environ={"RANK": "1", "WORLD_SIZE": "2"})
    assert job is not None and job.mode == "one-run" and job.launch.job_id == "user:mine"
    assert _ranks.plan("rank0", None, environ={}) is None  # one process: ignored


# --- real torchrun jobs ----------------------------------------------------------------------

DDP = """
    import os, sys, time
    import torch
    import torch.distributed as dist
    import labtrack

    mode = os.environ.get("MODE") or None
    dist.init_process_group("gloo")
    run = labtrack.init(experiment="ddp", config={"lr": 0.1}, distributed=mode, capture_git=False)
    rank = dist.get_rank()
    assert (run.rank, run.world_size) == (rank, 2), (run.rank, run.world_size)
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(5):
        x = torch.randn(8, 4)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        run.log({"train/loss": float(loss), "rank_id": float(rank)}, step=step)
        print(f"rank {rank} step {step} loss {float(loss):.4f}", flush=True)
    if rank == 0:
        run.log_params({"batch": 8})
    dist.barrier()
    if os.environ.get("DIE") == str(rank):
        run.flush()
        os.kill(os.getpid(), 9)
    if os.environ.get("DIE"):
        time.sleep(1.0)  # the other rank dies meanwhile; no collective after the barrier
    run.finish()
    dist.destroy_process_group()
"""


def _torchrun(tmp_path: Path, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(DDP))
    full = child_env({"LABTRACK_ROOT": str(tmp_path / "root"), "OMP_NUM_THREADS": "1",
                      "LABTRACK_FLUSH_SECONDS": "0.2", "LABTRACK_DISTRIBUTED_WAIT": "20", **env})
    for k in [k for k in full if k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")]:
        del full[k]
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", str(script)], cwd=tmp_path, env=full,
                          capture_output=True, text=True, timeout=timeout)


def _runs(root: Path) -> list[RunDir]:
    return [RunDir(p.parent) for p in sorted(root.glob("*/*/run.json"))]


def _why(p: subprocess.CompletedProcess[str]) -> str:
    return f"exit {p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_torchrun_one_run(tmp_path: Path) -> None:
    # with the system sampler on (child_env turns it off): both ranks' machine series in one run
    p = _torchrun(tmp_path, {"LABTRACK_SYSTEM": "1", "LABTRACK_SYSTEM_SECONDS": "0.5"})
    assert p.returncode == 0, _why(p)
    runs = _runs(tmp_path / "root")
    assert len(runs) == 1, [r.path for r in runs]
    rd = runs[0]
    meta = rd.meta()
    assert meta["status"] == "finished" and meta["ranks"][1]["status"] == "finished"
    d = meta["distributed"]
    assert (d["mode"], d["world_size"], d["launcher"]) == ("one-run", 2, "torchrun")
    assert d["job_id"].startswith("torchrun:")
    assert "rank 0 step 4" in rd.console() and "rank 1" not in rd.console()
    assert "rank 1 step 4" in rd.console(1) and "rank 0" not in rd.console(1)
    names = rd.names("scalars")
    assert {"train/loss", "rank_id", "rank1/train/loss", "rank1/rank_id"} <= set(names), names
    assert {"system/process/rss_bytes", "rank1/system/process/rss_bytes"} <= set(names), names
    summary = rd.summary()
    assert summary["rank_id"]["last"] == 0.0 and summary["rank1/rank_id"]["last"] == 1.0
    assert summary["rank1/train/loss"]["count"] == 5
    assert rd.params() == {"lr": 0.1, "batch": 8}  # rank 0's params
    assert rd.ranks() == [0, 1]
    view = labtrack.open(tmp_path / "root")[meta["id"]]
    assert view.console_of(1) == rd.console(1) and view.console == rd.console()
    assert "rank1/train/loss" in view.summary
    # the CLI shows both ranks
    show = CliRunner().invoke(main, ["show", meta["id"], "--root", str(tmp_path / "root")],
                              catch_exceptions=False)
    assert show.exit_code == 0, show.output
    assert "one-run, world size 2" in show.output, show.output
    assert "rank 1       finished on" in show.output, show.output


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_torchrun_per_rank(tmp_path: Path) -> None:
    p = _torchrun(tmp_path, {"MODE": "per-rank"})
    assert p.returncode == 0, _why(p)
    runs = _runs(tmp_path / "root")
    assert len(runs) == 2
    metas = sorted((r.meta() for r in runs), key=lambda m: m["name"])
    assert [m["name"] for m in metas] == ["ddp-rank0", "ddp-rank1"]
    assert metas[0]["group"] == metas[1]["group"] and metas[0]["group"].startswith("torchrun:")
    assert [m["status"] for m in metas] == ["finished", "finished"]
    by_name = {m["name"]: RunDir(m["dir"]) for m in metas}
    assert "rank 1 step 4" in by_name["ddp-rank1"].console()
    assert by_name["ddp-rank1"].names("scalars") == ["rank_id", "train/loss"]  # no prefix: its own run


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_torchrun_rank0(tmp_path: Path) -> None:
    p = _torchrun(tmp_path, {"MODE": "rank0"})
    assert p.returncode == 0, _why(p)
    runs = _runs(tmp_path / "root")
    assert len(runs) == 1
    rd = runs[0]
    assert rd.meta()["status"] == "finished" and rd.meta()["distributed"]["mode"] == "rank0"
    assert "rank 0 step 4" in rd.console() and "rank 1" not in rd.console()
    assert rd.ranks() == [] and rd.summary()["rank_id"]["last"] == 0.0


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_torchrun_a_killed_rank_marks_the_run_crashed(tmp_path: Path) -> None:
    p = _torchrun(tmp_path, {"DIE": "1"})
    assert p.returncode != 0, _why(p)  # torchrun reports the dead worker
    runs = _runs(tmp_path / "root")
    assert len(runs) == 1
    rd = runs[0]
    meta = rd.meta()
    assert meta["status"] == "crashed", (meta, _why(p))
    by_rank = {r["rank"]: r["status"] for r in meta["ranks"]}
    assert by_rank[1] == "crashed" and by_rank[0] != "crashed", by_rank
    # both ranks' data is kept
    assert rd.summary()["rank1/train/loss"]["count"] == 5
    assert rd.summary()["train/loss"]["count"] == 5
    assert "rank 1 step 4" in rd.console(1) and "rank 0 step 4" in rd.console()
    # the index (labtrack ls) agrees
    deadline = time.monotonic() + 5
    while json.loads((rd.path / "run.json").read_text())["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [r["status"] for r in ReadOnlyBook(tmp_path / "root").index.query()[1]] == ["crashed"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_torchrun_one_run_with_remote_replicates_every_rank(tmp_path: Path) -> None:
    from test_remote_e2e import Server, assert_identical, free_port

    srv = Server(tmp_path / "server-root", free_port(), tmp_path / "serve.log")
    srv.start()
    try:
        p = _torchrun(tmp_path, {"LABTRACK_REMOTE": srv.url})
        assert p.returncode == 0, _why(p) + "\nserver:\n" + srv.output()
        (local,) = _runs(tmp_path / "root")
        remote = tmp_path / "server-root" / local.path.parent.name / local.path.name
        assert (remote / "ranks" / "1" / "console.log").read_text() == local.console(1)
        assert RunDir(remote).meta()["status"] == "finished"
        assert "rank1/train/loss" in RunDir(remote).names("scalars")
        assert_identical(local.path, remote, mtimes=False)
    finally:
        srv.kill()
