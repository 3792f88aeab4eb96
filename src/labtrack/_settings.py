"""The one registry of labtrack's settings.

Precedence, for every setting: an explicit argument > the environment variable > the config
file (`labtrack.toml` in the working directory, or the file named by LABTRACK_CONFIG) > the
default. Values are resolved when asked for, never at import time; tests pass `environ=`.
docs/settings.md is generated from this registry and a test keeps the two equal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import SettingError


def _parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def _parse_positive_float(text: str) -> float:
    v = float(text)
    if not v > 0 or v == float("inf"):
        raise ValueError("expected a finite number greater than 0")
    return v


def _parse_nonneg_int(text: str) -> int:
    v = int(text)
    if v < 0:
        raise ValueError("expected a whole number >= 0")
    return v


def _parse_positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise ValueError("expected a whole number >= 1")
    return v


def _parse_distributed(text: str) -> str:
    v = text.strip()
    if v not in ("one-run", "per-rank", "rank0"):
        raise ValueError("expected one of one-run, per-rank, rank0")
    return v


@dataclass(frozen=True)
class Setting:
    name: str  # the key in labtrack.toml, and the argument name where one exists
    env: str
    default: Any
    parse: Callable[[str], Any]
    kind: str  # shown in the docs
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("root", "LABTRACK_ROOT", "./labtrack", str, "path",
            "Folder that holds the experiments and their runs."),
    Setting("flush_seconds", "LABTRACK_FLUSH_SECONDS", 1.0, _parse_positive_float, "float",
            "How often the writer thread writes buffered values to disk. After a crash, "
            "everything logged more than this long before is on disk."),
    Setting("disabled", "LABTRACK_DISABLED", False, _parse_bool, "bool",
            "Make init() return a run that records nothing (for ranks other than 0)."),
    Setting("print_steps", "LABTRACK_PRINT_STEPS", False, _parse_bool, "bool",
            "Print a box table of each step's logged values when the step changes "
            "(ML-Logger's per-step table; init(print_steps=...), keys silenced with print_skip)."),
    Setting("heartbeat_seconds", "LABTRACK_HEARTBEAT_SECONDS", 5.0, _parse_positive_float, "float",
            "How often a live run touches its heartbeat file."),
    Setting("stale_seconds", "LABTRACK_STALE_SECONDS", 30.0, _parse_positive_float, "float",
            "A run whose run.json says running but whose heartbeat is older than this "
            "is shown as crashed."),
    Setting("capture_git", "LABTRACK_CAPTURE_GIT", True, _parse_bool, "bool",
            "Record the git commit, branch, dirty flag, diff and untracked files."),
    Setting("capture_console", "LABTRACK_CAPTURE_CONSOLE", True, _parse_bool, "bool",
            "Copy stdout and stderr into the run's console.log."),
    Setting("untracked_max_bytes", "LABTRACK_UNTRACKED_MAX_BYTES", 1_000_000, _parse_nonneg_int, "int",
            "Largest untracked file copied into source/untracked/ (larger ones are listed only); "
            "in all at most 20 times this and 1000 files are copied."),
    Setting("queue_size", "LABTRACK_QUEUE_SIZE", 10_000, _parse_positive_int, "int",
            "Most media/text records waiting for the writer; when full, log calls wait."),
    Setting("print_every", "LABTRACK_PRINT_EVERY", 100, _parse_positive_int, "int",
            "The console keeps a line of indicator values every this many steps."),
    Setting("remote", "LABTRACK_REMOTE", None, str, "url",
            "URL of a `labtrack serve` server to replicate runs to."),
    Setting("token", "LABTRACK_TOKEN", None, str, "str",
            "Token for the logging server."),
    Setting("sync_timeout", "LABTRACK_SYNC_TIMEOUT", 10.0, _parse_positive_float, "float",
            "Longest finish() waits for the server to receive everything."),
    Setting("spool", "LABTRACK_SPOOL", None, str, "path",
            "Where a run with an object-store root (`init(root=\"s3://bucket/prefix\")`) is "
            "written locally before it is uploaded: <spool>/<scheme>/<bucket>/<prefix>/ "
            "(default ~/.cache/labtrack/spool). See docs/object-storage.md."),
    Setting("mirror", "LABTRACK_MIRROR", None, str, "path",
            "Where `labtrack.open(\"s3://bucket/prefix\")` keeps its local copy of the runs: "
            "<mirror>/<scheme>/<bucket>/<prefix>/ (default ~/.cache/labtrack/mirror)."),
    Setting("compact", "LABTRACK_COMPACT", True, _parse_bool, "bool",
            "When a run on object storage finishes, write each append-only file (series, "
            "console.log) as one object at its plain path and delete its segments, so the "
            "bucket holds an ordinary run directory. Costs one more upload of those files."),
    Setting("compact_gzip", "LABTRACK_COMPACT_GZIP", False, _parse_bool, "bool",
            "With `compact`: write each append-only file that compaction must upload again "
            "(one logged in small flushes) as `<path>.gz`, one gzip stream, instead of its "
            "plain path. About a third of the bytes uploaded and stored for series (a run's "
            "total stays under 1.2x of its data), but a reader without labtrack then needs "
            "gunzip (pandas reads .csv.gz as it is). labtrack reads both alike."),
    Setting("compress_segments", "LABTRACK_COMPRESS_SEGMENTS", True, _parse_bool, "bool",
            "Upload the segments of append-only files (what each flush adds, below 5 MiB) to "
            "object storage gzip-compressed where that saves a tenth or more: they are "
            "labtrack's own objects under .labtrack/ and are uploaded again, plain, at "
            "compaction, so this cuts the bytes sent for series from about 2x the data to "
            "about 1.3x. Readers decompress them; the compacted objects stay plain."),
    Setting("config", "LABTRACK_CONFIG", "labtrack.toml", str, "path",
            "The config file read for settings not given as arguments or environment variables."),
    Setting("index_on_finish", "LABTRACK_INDEX_ON_FINISH", False, _parse_bool, "bool",
            "At finish(), store the run's row in the root's index (<root>/.labtrack/index.sqlite), "
            "so the next `labtrack ls` or labtrack.open() reads none of its JSON files. Off by "
            "default: training processes then never touch the index (SQLite on a shared or "
            "network file system). Does nothing for a root on a network file system, whose "
            "index each reader keeps locally. Best effort: waits at most 100 ms, never raises."),
    Setting("distributed", "LABTRACK_DISTRIBUTED", None, _parse_distributed, "str",
            "Under torchrun, SLURM, MPI or accelerate (world size > 1): `one-run` (the default: "
            "every rank logs into one run), `per-rank` (a run per rank, one group) or `rank0` "
            "(only rank 0 records). Ignored for a single process. See docs/distributed.md."),
    Setting("distributed_wait", "LABTRACK_DISTRIBUTED_WAIT", 60.0, _parse_positive_float, "float",
            "In one-run mode: how long the other ranks wait at init() for rank 0's run, and "
            "rank 0 waits at finish() for the other ranks to end."),
    Setting("job_id", "LABTRACK_JOB_ID", None, str, "str",
            "The id every rank of a job shares, for one-run mode where the launcher gives none "
            "(also `init(job_id=...)`)."),
    Setting("system", "LABTRACK_SYSTEM", True, _parse_bool, "bool",
            "Sample CPU, memory, disk, network and GPUs on a background thread into series "
            "under system/ (docs/system.md)."),
    Setting("system_seconds", "LABTRACK_SYSTEM_SECONDS", 10.0, _parse_positive_float, "float",
            "Seconds between two samples of the system series."),
    Setting("no_c", "LABTRACK_NO_C", False, _parse_bool, "bool",
            "Do not build (at install) or use (at import) the C fast path of run.log; the pure "
            "Python path records the same data, about 3x slower per call. Environment only."),
    Setting("build_frontend", "LABTRACK_BUILD_FRONTEND", True, _parse_bool, "bool",
            "At wheel build time only: build the dashboard (npm ci, npm run build in frontend/) "
            "when it is not built yet. 0 builds a wheel without the dashboard on purpose; "
            "otherwise a build without node and npm fails. Environment only."),
)

_BY_NAME = {s.name: s for s in SETTINGS}

# The hand-offs from `labtrack rerun` to the command it runs: private variables, not settings
# (a user resumes with init(resume=...) or `labtrack rerun --continue`).
RESUME_ENV = "_LABTRACK_RESUME"
PARENT_ENV = "_LABTRACK_PARENT"


@dataclass(frozen=True)
class RunSettings:
    """Every setting a Run uses, resolved once when it starts (see :func:`resolve_run`)."""

    root: str
    flush_seconds: float
    heartbeat_seconds: float
    stale_seconds: float
    capture_git: bool
    capture_console: bool
    untracked_max_bytes: int
    queue_size: int
    remote: str | None
    token: str | None
    sync_timeout: float
    index_on_finish: bool
    system: bool
    system_seconds: float
    resume: str | None  # from the argument, or rerun's private hand-off
    parent: str | None


def resolve_run(args: Mapping[str, Any], *, environ: Mapping[str, str] | None = None,
                cwd: Path | None = None) -> RunSettings:
    """Resolve a Run's settings once: argument > environment > config file > default.

    Args:
        args: the arguments given to the Run (None or missing: not given).
        environ: the environment (default: this process's).
        cwd: where the config file is looked for (default: the working directory).

    Returns:
        The frozen settings; the config file is read at most once.

    Raises:
        SettingError: an environment or config value cannot be parsed.

    Example:
        >>> resolve_run({"flush_seconds": 0.5}).flush_seconds
        0.5
    """
    env = os.environ if environ is None else environ
    conf: list[dict[str, Any]] = []

    def config() -> dict[str, Any]:
        if not conf:
            conf.append(_config_file(env, cwd))
        return conf[0]

    values: dict[str, Any] = {}
    for name in RunSettings.__dataclass_fields__:
        if name in ("resume", "parent"):
            given = args.get(name)
            values[name] = given if given is not None else (env.get(RESUME_ENV if name == "resume"
                                                                     else PARENT_ENV) or None)
        else:
            values[name] = _resolve(_BY_NAME[name], args.get(name), env, config)
    return RunSettings(**values)


def no_c() -> bool:
    """LABTRACK_NO_C, from the environment only: read when the modules that use the C code
    are imported (their classes and formatters are chosen then), so no config file."""
    try:
        return _parse_bool(os.environ.get("LABTRACK_NO_C", ""))
    except ValueError:
        return False


def _config_file(environ: Mapping[str, str], cwd: Path | None) -> dict[str, Any]:
    path = Path(environ.get("LABTRACK_CONFIG", "labtrack.toml"))
    if not path.is_absolute():
        path = (cwd or Path.cwd()) / path
    if not path.is_file():
        return {}
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SettingError(f"cannot read the config file {path}: {e}") from e
    table = data.get("labtrack", data)
    return dict(table) if isinstance(table, dict) else {}


def get(name: str, arg: Any = None, *, environ: Mapping[str, str] | None = None,
        cwd: Path | None = None) -> Any:
    """Resolve one setting: argument > environment > config file > default.

    Raises:
        SettingError: the environment or config value cannot be parsed.
    """
    env = os.environ if environ is None else environ
    return _resolve(_BY_NAME[name], arg, env, lambda: _config_file(env, cwd))


def _resolve(s: Setting, arg: Any, env: Mapping[str, str], config: Callable[[], dict[str, Any]]) -> Any:
    if arg is not None:
        return arg
    raw = env.get(s.env)
    source = f"environment variable {s.env}"
    if raw is None or raw == "":
        conf = config()
        if s.name not in conf:
            return s.default
        raw = conf[s.name]
        source = f"config file key {s.name!r}"
        if not isinstance(raw, str):
            raw = str(raw).lower() if isinstance(raw, bool) else str(raw)
    try:
        return s.parse(raw)
    except ValueError as e:
        raise SettingError(f"{source} = {raw!r} is not a valid {s.kind}: {e}") from None


def render_docs() -> str:
    """The text of docs/settings.md."""
    lines = [
        "# Settings",
        "",
        "<!-- generated from src/labtrack/_settings.py by `python -m labtrack._settings`; a test keeps it equal -->",
        "",
        "Every setting can be given, in order of precedence, as an argument (where the API has one),",
        "as an environment variable, or as a key in `labtrack.toml` in the working directory",
        "(under a `[labtrack]` table or at the top level). Otherwise the default applies.",
        "",
        "| environment variable | config key | type | default | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in SETTINGS:
        lines.append(f"| `{s.env}` | `{s.name}` | {s.kind} | `{s.default!r}` | {s.help} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_docs(), end="")
