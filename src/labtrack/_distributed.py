"""Which job a process belongs to: rank, world size and a job id, read from the launcher's
environment (pure: plain functions over a mapping; no disk, no network).

Launchers and what they set (docs/distributed.md):

* torchrun (and `accelerate launch`, which runs torchrun): RANK, WORLD_SIZE, LOCAL_RANK,
  LOCAL_WORLD_SIZE, GROUP_RANK (the node), TORCHELASTIC_RUN_ID (a uuid for one-node jobs and
  --standalone; the user's --rdzv-id otherwise, "none" when not given) and
  TORCHELASTIC_RESTART_COUNT.
* SLURM's srun: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID, SLURM_JOB_ID,
  SLURM_STEP_ID.
* Open MPI: OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK / _LOCAL_SIZE, and the job's PMIx
  namespace (PMIX_NAMESPACE) or OMPI_MCA_ess_base_jobid.
* MPICH / Intel MPI (Hydra): PMI_RANK, PMI_SIZE, MPI_LOCALRANKID, MPI_LOCALNRANKS; MVAPICH:
  MV2_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK.

A job id every rank sees alike lets them agree on one run without talking to each other.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import LabtrackValueError

MODES = ("one-run", "per-rank", "rank0")
JOB_ID_ENV = "LABTRACK_JOB_ID"

# (launcher, rank, size, local rank, local size, node rank): the first whose rank and size
# are both set wins. torchrun's variables come first: under SLURM or MPI, a torchrun inside
# the allocation numbers the workers, and SLURM_PROCID is then the node's task.
_LAUNCHERS: tuple[tuple[str, str, str, str | None, str | None, str | None], ...] = (
    ("torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK"),
    ("slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", None, "SLURM_NODEID"),
    ("mpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE", None),
    ("mpi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", None),
    ("mpi", "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_LOCAL_RANK",
     "MV2_COMM_WORLD_LOCAL_SIZE", None),
)


@dataclass(frozen=True)
class Launch:
    """What the environment says about this process's job.

    `launcher` is None outside a launcher (world size 1); `job_id` is None when no id that
    every rank sees alike was found; `job_source` names where it came from.
    """

    launcher: str | None = None
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int | None = None
    node_rank: int | None = None
    job_id: str | None = None
    job_source: str | None = None

    def record(self, mode: str | None) -> dict[str, Any]:
        """The `distributed` entry of run.json (docs/format.md)."""
        return {"mode": mode, "launcher": self.launcher, "rank": self.rank,
                "world_size": self.world_size, "local_rank": self.local_rank,
                "node_rank": self.node_rank, "job_id": self.job_id}


def _int(environ: Mapping[str, str], key: str | None) -> int | None:
    if key is None:
        return None
    raw = environ.get(key, "").strip()
    try:
        return int(raw)
    except ValueError:
        return None


def detect(environ: Mapping[str, str], *, job_id: str | None = None, host: str = "",
           ppid: int | None = None) -> Launch:
    """Read rank, world size and job id from a launcher's environment variables.

    Args:
        environ: the environment (e.g. `os.environ`).
        job_id: an id the user passed (`init(job_id=...)`); else LABTRACK_JOB_ID, else the
            launcher's.
        host, ppid: this machine's name and the parent process id: ranks of a one-node job
            that gives no id share the launcher as parent, which then names the job.

    Returns:
        The :class:`Launch`; world size 1 and rank 0 outside any launcher.

    Example:
        >>> detect({"RANK": "1", "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "abc"}).job_id
        'torchrun:abc:0'
    """
    found: tuple[str, int, int, int, int | None, int | None] | None = None
    for launcher, r_key, s_key, lr_key, ls_key, n_key in _LAUNCHERS:
        rank, size = _int(environ, r_key), _int(environ, s_key)
        if rank is None or size is None or size < 1 or not 0 <= rank < size:
            continue
        found = (launcher, rank, size, _int(environ, lr_key) or 0, _int(environ, ls_key),
                 _int(environ, n_key))
        break
    if found is None:
        return Launch()
    launcher, rank, size, local_rank, local_size, node = found
    if launcher == "torchrun" and any(k.startswith("ACCELERATE_") for k in environ):
        launcher = "accelerate"
    if launcher == "torchrun" and "TORCHELASTIC_RUN_ID" not in environ:
        launcher = "env"  # RANK and WORLD_SIZE set by hand or by another tool
    if launcher == "slurm" and local_size is None:
        local_size = _slurm_tasks_on_node(environ)
    if launcher == "torchrun" and node is None and _int(environ, "GROUP_WORLD_SIZE") == 1:
        node = 0
    jid, source = _job_id(environ, job_id, host, ppid, size, local_size)
    return Launch(launcher, rank, size, local_rank, local_size, node, jid, source)


def _slurm_tasks_on_node(environ: Mapping[str, str]) -> int | None:
    # SLURM_STEP_TASKS_PER_NODE is like "4" or "4(x2)" or "3,2": one number means every node
    # runs that many tasks.
    raw = environ.get("SLURM_STEP_TASKS_PER_NODE") or environ.get("SLURM_TASKS_PER_NODE") or ""
    m = re.fullmatch(r"(\d+)(\(x\d+\))?", raw.strip())
    return int(m.group(1)) if m else None


def _job_id(environ: Mapping[str, str], given: str | None, host: str, ppid: int | None,
            size: int, local_size: int | None) -> tuple[str | None, str | None]:
    if given is not None:
        if not isinstance(given, str) or not given.strip():
            raise LabtrackValueError(f"job_id must be a non-empty str, got {given!r}")
        return "user:" + given, "job_id"
    env_given = environ.get(JOB_ID_ENV, "").strip()
    if env_given:
        return "user:" + env_given, JOB_ID_ENV
    run_id = environ.get("TORCHELASTIC_RUN_ID", "").strip()
    if run_id and run_id != "none":  # "none": torchrun's default --rdzv-id on several nodes
        restart = environ.get("TORCHELASTIC_RESTART_COUNT", "0").strip() or "0"
        return f"torchrun:{run_id}:{restart}", "TORCHELASTIC_RUN_ID"
    slurm = environ.get("SLURM_JOB_ID", "").strip() or environ.get("SLURM_JOBID", "").strip()
    if slurm:
        step = environ.get("SLURM_STEP_ID", "").strip() or environ.get("SLURM_STEPID", "").strip()
        return f"slurm:{slurm}" + (f".{step}" if step else ""), "SLURM_JOB_ID"
    for key in ("PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid"):
        value = environ.get(key, "").strip()
        if value:
            return f"mpi:{value}", key
    if local_size is not None and local_size == size and host and ppid is not None and ppid > 1:
        # One node, and every rank a child of the same launcher process.
        return f"node:{host}:{ppid}", "parent process"
    return None, None


def resolve_mode(requested: str | None, launch: Launch) -> str | None:
    """The distributed mode to use: None for a single process, else the requested one
    (default "one-run").

    Raises:
        LabtrackValueError: a mode that is not one of MODES.
    """
    mode = "one-run" if requested is None else requested
    if mode not in MODES:
        raise LabtrackValueError(f"distributed={mode!r} is not one of {', '.join(MODES)}")
    return None if launch.world_size <= 1 else mode


def no_job_id_warning(launch: Launch) -> str:
    """The warning when "one-run" cannot be agreed and each rank gets its own run."""
    return (f"labtrack: rank {launch.rank} of {launch.world_size} ({launch.launcher}) found no job "
            "id that every rank sees alike, so the ranks cannot share one run; each rank makes "
            "its own run (distributed='per-rank'). To get one run, pass the same id on every "
            f"rank: labtrack.init(..., job_id='my-job-1') or {JOB_ID_ENV}=my-job-1")


def job_key(job_id: str) -> str:
    """A file name for a job id: its readable part and a hash of the whole (ids may hold any
    character; two ids never share a key)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", job_id).strip("-.")[:48] or "job"
    return readable + "-" + hashlib.sha256(job_id.encode()).hexdigest()[:12]


def same_launch(mine: float | None, theirs: Any, slack: float) -> bool:
    """Whether a rendezvous record written by rank 0 belongs to this launch: the two
    processes started within `slack` seconds of each other (a record left by an earlier job
    with the same id is older). Unknown start times are accepted."""
    if mine is None or not isinstance(theirs, (int, float)):
        return True
    return abs(mine - float(theirs)) <= slack


def rank_name(name: str | None, experiment: str, rank: int) -> str:
    """The run name of one rank in "per-rank" mode: `<name or experiment>-rank<N>`."""
    return f"{name or experiment}-rank{rank}"
