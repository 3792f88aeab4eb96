"""The system sampler: real series from a real run, GPU selection, missing drivers, the thread's end."""

from __future__ import annotations

import json
import os
import re
import statistics
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

import pytest

import labtrack
from labtrack._store import scalars
from labtrack._system import (CUMULATIVE, GpuDevice, Sampler, describe, is_system_series, nvidia_expected,
                              visible_gpus)

from conftest import only_run_dir, run_script, without_banner

MakeRun = Callable[..., labtrack.Run]
FAST = {"LABTRACK_SYSTEM_SECONDS": "0.2"}
ON = {"LABTRACK_SYSTEM": "1", **FAST}  # child_env turns the sampler off by default
NAMES = ["cpu/percent", "memory/used_bytes", "memory/percent", "process/rss_bytes",
         "process/cpu_percent", *CUMULATIVE]


def _series(run_dir: Path, name: str) -> tuple[list[float], list[float], list[float]]:
    cols = scalars.read_columns(run_dir / "scalars" / f"{name}.csv")
    return list(cols[0]), list(cols[1]), list(cols[2])


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(i * i for i in range(2000))


def _sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("labtrack-system")]


def test_a_real_run_records_plausible_system_series(make_run: MakeRun) -> None:
    run = make_run(system=True, _environ=FAST)
    started = time.time()
    for i in range(3):
        run.log({"loss": 1.0 / (i + 1)})
    # ~1.2 s of busy work (about 6 samples); longer only on a machine too loaded to sample
    _busy(1.2)
    deadline = time.time() + 15
    while run._sampler.samples < 3 and time.time() < deadline:
        _busy(0.1)
    run.finish()
    assert run.current_step == 2  # the sampler's points did not move the script's step
    cores = os.cpu_count() or 1
    for name in NAMES:
        steps, values, times = _series(run.dir, "system/" + name)
        assert len(values) >= 3, (name, values)
        assert times == sorted(times), f"{name}: wall times not monotone: {times}"
        for s, t in zip(steps, times):
            # x = whole seconds since the run started; the wall time is kept beside it
            assert s == int(s) and abs(s - (t - started)) <= 1.0, (name, s, t - started)
        assert min(times) - started < 5.0, "the first sample came late (it is due after 0.1 s)"
        assert all(v >= 0 for v in values), (name, values)
    _, cpu, _ = _series(run.dir, "system/cpu/percent")
    assert all(0 <= v <= 100 * cores for v in cpu)
    _, proc_cpu, _ = _series(run.dir, "system/process/cpu_percent")
    assert all(0 <= v <= 100 * cores for v in proc_cpu)
    assert max(proc_cpu) > 20, f"a busy loop should show as process CPU, got {proc_cpu}"
    _, rss, _ = _series(run.dir, "system/process/rss_bytes")
    assert min(rss) > 1_000_000
    _, used, _ = _series(run.dir, "system/memory/used_bytes")
    assert min(used) > 0
    _, pct, _ = _series(run.dir, "system/memory/percent")
    assert all(0 < v <= 100 for v in pct)
    for name in CUMULATIVE:  # bytes since the start: never falling
        _, v, _ = _series(run.dir, "system/" + name)
        assert v == sorted(v), (name, v)
    summary = json.loads((run.dir / "summary.json").read_text())
    assert summary["loss"]["step"] == 2 and "system/cpu/percent" in summary


def test_the_last_sample_is_taken_at_finish(make_run: MakeRun) -> None:
    run = make_run(system=True, _environ={"LABTRACK_SYSTEM_SECONDS": "30"})
    deadline = time.time() + 20
    while run._sampler.samples < 1 and time.time() < deadline:  # the first, soon after the start
        time.sleep(0.02)
    assert time.time() - run._sampler._started < 10, "the first sample waited for the interval"
    t = time.time()
    run.finish()  # long before the next sample is due
    _, _, times = _series(run.dir, "system/process/rss_bytes")
    assert len(times) == 2 and times[-1] >= t - 0.001, times  # times are kept to the millisecond


def test_system_false_and_the_environment_variable_record_nothing(make_run: MakeRun) -> None:
    for run in (make_run(system=False, _environ=FAST),
                make_run(system=None, _environ={**FAST, "LABTRACK_SYSTEM": "0"})):
        assert run._sampler is None
        run.log({"loss": 1.0})
        time.sleep(0.3)
        run.finish()
        assert not (run.dir / "scalars" / "system").exists()
        assert sorted(json.loads((run.dir / "summary.json").read_text())) == ["loss"]


def test_init_takes_system(tmp_path: Path) -> None:
    run = labtrack.init("e", root=tmp_path, capture_git=False, capture_console=False, system=False)
    assert isinstance(run, labtrack.Run) and run._sampler is None
    run.finish()


def test_the_sampler_thread_is_gone_after_finish_and_finish_is_not_delayed(make_run: MakeRun) -> None:
    def finish_seconds(system: bool) -> float:
        run = make_run(system=system, _environ=FAST)
        run.log({"loss": 1.0})
        time.sleep(0.3)
        t = time.perf_counter()
        run.finish()
        return time.perf_counter() - t

    on, off = [], []
    for _ in range(4):
        on.append(finish_seconds(True))
        off.append(finish_seconds(False))
        assert not _sampler_threads(), "the sampler thread outlived finish()"
    m_on, m_off = statistics.median(on), statistics.median(off)
    # The last sample costs milliseconds; finish() waits for it at most 0.5 s by design.
    assert m_on <= 2 * m_off + 0.1, f"finish() took {m_on:.3f}s with the sampler, {m_off:.3f}s without"


def test_a_resumed_run_continues_the_x_axis_and_the_script_step(make_run: MakeRun) -> None:
    first = make_run(system=True, _environ=FAST)
    for i in range(3):
        first.log({"loss": float(i)})
    time.sleep(0.3)
    first.finish()
    # Pretend the run began 100 s ago: its system steps after the resume are ~100 and more.
    meta_path = first.dir / "run.json"
    meta = json.loads(meta_path.read_text())
    meta["started"] = (datetime.fromisoformat(meta["started"]) - timedelta(seconds=100)).isoformat()
    meta_path.write_text(json.dumps(meta))
    _, before, _ = _series(first.dir, "system/network/recv_bytes")
    for expected in (3, 4):  # the second resume reads a summary holding system steps ~100
        run = make_run(resume=first.id, system=True, _environ=FAST)
        time.sleep(0.3)
        run.log({"loss": 9.0})
        run.finish()
        steps, _, _ = _series(first.dir, "loss")
        assert steps[-1] == expected, steps
    sys_steps, after, _ = _series(first.dir, "system/network/recv_bytes")
    assert sys_steps[-1] >= 100, sys_steps
    assert after[len(before):] and min(after[len(before):]) >= before[-1], (before, after)


def test_missing_pynvml_is_one_info_line_and_no_error(tmp_path: Path) -> None:
    """Where a GPU is expected (here: CUDA_VISIBLE_DEVICES is set) and nvidia-ml-py is missing."""
    p = run_script("""
        import sys
        sys.modules["pynvml"] = None  # makes `import pynvml` raise ImportError
        import labtrack
        run = labtrack.init("e", capture_git=False)
        run.log({"loss": 1.0})
        run.finish()
        run = labtrack.init("e", capture_git=False)  # a second run does not say it again
        run.finish()
        print("ok")
    """, cwd=tmp_path, env={"LABTRACK_ROOT": str(tmp_path / "root"), "CUDA_VISIBLE_DEVICES": "0", **ON})
    assert p.returncode == 0, p.stderr
    assert without_banner(p.stdout).strip() == "ok"
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines == ["labtrack: no NVIDIA GPU metrics: nvidia-ml-py is not installed "
                     "(pip install nvidia-ml-py)"], p.stderr
    run_dir = sorted((tmp_path / "root" / "e").iterdir())[0]
    assert (run_dir / "scalars" / "system" / "cpu" / "percent.csv").is_file()
    assert not (run_dir / "scalars" / "system" / "gpu").exists()


@pytest.mark.parametrize("gpu_job", [True, False])
def test_no_driver_is_one_info_line_where_a_gpu_is_expected(tmp_path: Path, gpu_job: bool) -> None:
    """pynvml installed, no NVIDIA driver on this machine: nvmlInit raises; one line where the
    job was given a GPU, none on a plain CPU job; never an error."""
    pytest.importorskip("pynvml")
    p = run_script("""
        import labtrack, pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError:
            pass
        else:
            print("has-gpu")
        run = labtrack.init("e", capture_git=False)
        run.finish()
    """, cwd=tmp_path, env={"LABTRACK_ROOT": str(tmp_path / "root"), **ON,
                            **({"CUDA_VISIBLE_DEVICES": "0"} if gpu_job else {})})
    assert p.returncode == 0, p.stderr
    if "has-gpu" in p.stdout or nvidia_expected({}):
        pytest.skip("this machine has an NVIDIA GPU or driver")
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    if gpu_job:
        assert len(lines) == 1 and lines[0].startswith("labtrack: no NVIDIA GPU metrics: NVML did not start"), p.stderr
    else:
        assert lines == [], p.stderr
    run_dir = only_run_dir(tmp_path / "root")
    assert (run_dir / "scalars" / "system" / "cpu" / "percent.csv").is_file()


def test_a_sampler_stops_when_the_run_refuses_points() -> None:
    got: list[dict[str, float]] = []

    def log_at(values: dict[str, float], step: int, t: float) -> None:
        got.append(values)
        raise labtrack.errors.RunStateError("finished")

    s = Sampler(log_at, started=time.time(), interval=0.05, environ={}, say=lambda _: None)
    s.start()
    deadline = time.time() + 5
    while s.alive and time.time() < deadline:
        time.sleep(0.02)
    assert not s.alive and len(got) == 1


# --- which GPUs (pure) -------------------------------------------------------------------------
GPUS = [GpuDevice(0, "GPU-aaaa-1111", 0), GpuDevice(1, "GPU-bbbb-2222", 1),
        GpuDevice(2, "GPU-cccc-3333", 4), GpuDevice(3, "GPU-ccdd-4444", 5)]


@pytest.mark.parametrize("environ, expected", [
    ({}, [0, 1, 2, 3]),
    ({"CUDA_VISIBLE_DEVICES": "2,0"}, [2, 0]),
    ({"CUDA_VISIBLE_DEVICES": " 1 , 1 "}, [1]),
    ({"CUDA_VISIBLE_DEVICES": ""}, []),
    ({"CUDA_VISIBLE_DEVICES": "-1"}, []),
    ({"CUDA_VISIBLE_DEVICES": "0,7,1"}, [0]),  # the runtime stops at the first bad entry
    ({"CUDA_VISIBLE_DEVICES": "GPU-bbbb-2222"}, [1]),
    ({"CUDA_VISIBLE_DEVICES": "bbbb"}, [1]),  # a unique start of a UUID, without "GPU-"
    ({"CUDA_VISIBLE_DEVICES": "GPU-cc"}, []),  # not unique
    ({"CUDA_VISIBLE_DEVICES": "3", "SLURM_STEP_GPUS": "0"}, [3]),  # the runtime's variable wins
    ({"SLURM_STEP_GPUS": "4,5", "SLURM_JOB_GPUS": "0,1,4,5"}, [2, 3]),  # SLURM counts minors
    ({"SLURM_JOB_GPUS": "1"}, [1]),
    ({"GPU_DEVICE_ORDINAL": "0"}, [0]),
    ({"SLURM_JOB_GPUS": "9,10"}, [0, 1, 2, 3]),  # a cgroup shows only the job's GPUs
    ({"ROCR_VISIBLE_DEVICES": "1"}, [0, 1, 2, 3]),  # an AMD variable, for NVIDIA
])
def test_visible_gpus(environ: dict[str, str], expected: list[int]) -> None:
    assert [d.index for d in visible_gpus(GPUS, environ)] == expected


def test_visible_gpus_for_amd() -> None:
    amd = [GpuDevice(0), GpuDevice(1)]
    assert [d.index for d in visible_gpus(amd, {"ROCR_VISIBLE_DEVICES": "1"}, "amd")] == [1]
    assert [d.index for d in visible_gpus(amd, {"HIP_VISIBLE_DEVICES": "0", "CUDA_VISIBLE_DEVICES": "1"},
                                          "amd")] == [0]
    # without minor numbers SLURM's numbers are the driver's indices
    assert [d.index for d in visible_gpus(amd, {"GPU_DEVICE_ORDINAL": "1"}, "amd")] == [1]


@pytest.mark.parametrize("name, expected", [
    ("system/cpu/percent", True), ("rank3/system/gpu/0/power_w", True), ("train/loss", False),
    ("my/system/x", False), ("systems", False),
])
def test_is_system_series(name: str, expected: bool) -> None:
    assert is_system_series(name) is expected


@pytest.mark.parametrize("environ, files, expected", [
    ({}, [], False),
    ({"CUDA_VISIBLE_DEVICES": "0"}, [], True),
    ({"CUDA_VISIBLE_DEVICES": "-1"}, [], False),
    ({"CUDA_VISIBLE_DEVICES": ""}, [], False),
    ({"NVIDIA_VISIBLE_DEVICES": "all"}, [], True),
    ({"SLURM_JOB_GPUS": "2"}, [], True),
    ({}, ["/dev/nvidiactl"], True),
    ({}, ["/proc/driver/nvidia"], True),
])
def test_nvidia_expected(environ: dict[str, str], files: list[str], expected: bool) -> None:
    assert nvidia_expected(environ, exists=lambda p: p in files) is expected


def test_show_sums_up_the_system_series(make_run: MakeRun) -> None:
    from click.testing import CliRunner

    from labtrack.cli import main

    run = make_run(system=True, _environ=FAST)
    run.log({"loss": 0.5})
    time.sleep(0.4)
    run.finish()
    out = CliRunner().invoke(main, ["show", run.id, "--root", str(run.root)], catch_exceptions=False).output
    summary_part = out.split("\nsystem\n")[0]
    assert "loss" in summary_part and "system/cpu/percent" not in summary_part  # the machine is apart
    system_part = out.split("\nsystem\n")[1].split("\nfiles")[0]
    assert re.search(r"cpu +mean \d+%, peak \d+% of the machine", system_part), out
    assert re.search(r"process +peak rss [0-9.]+ [KMG]?B, cpu mean \d+% \(100% = one core\)", system_part), out
    assert re.search(r"memory +peak [0-9.]+ (MB|GB) used \(\d+%\)", system_part), out


def test_describe_per_rank_and_gpu() -> None:
    s = {"rank1/system/process/rss_bytes": {"max": 3 * 2**30}, "system/gpu/2/utilization": {"mean": 80.4},
         "system/gpu/2/memory_used_bytes": {"max": 2**30}, "system/gpu/2/memory_percent": {"max": 12.5},
         "system/gpu/2/power_w": {"max": 250.0}, "system/gpu/2/temperature_c": {"max": 71.0},
         "train/loss": {"max": 1.0}}
    assert describe(s) == [
        ("rank1 process", "peak rss 3.0 GB"),
        ("gpu 2", "utilization mean 80%, memory peak 1.0 GB (12%), power peak 250 W, temperature peak 71 °C"),
    ]
    assert describe({"train/loss": {"max": 1.0}}) == []


BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_the_benchmarks_run(tmp_path: Path) -> None:
    """benchmarks/system_cost.py (tiny) gives a well-formed result; gpu_check.py says why it
    has nothing to check on a machine without CUDA, and exits 0."""
    import subprocess
    import sys

    from conftest import child_env

    p = subprocess.run([sys.executable, str(BENCH / "system_cost.py"), "--steps", "2000", "--reps", "1",
                        "--samples", "3", "--json"], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path, env=child_env())
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["samples"] >= 3 and out["series_per_sample"] >= 9 and out["cpu_ms_per_sample"] > 0
    assert set(out["ratio_to_off"]) == {"off", "off (again)", "on, every 10 s", "on, every 0.1 s"}
    p = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--seconds", "1"], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path, env=child_env())
    import torch

    if torch.cuda.is_available():
        assert p.returncode == 0 and "system/gpu/" in p.stdout, p.stdout + p.stderr
    else:
        assert p.returncode == 0 and "no CUDA device here" in p.stdout, p.stdout + p.stderr


def test_a_name_clash_stops_the_sampler_with_one_line(make_run: MakeRun, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(system=True, _environ=FAST)
    run.log({"system/cpu/percent.csv/x": 1.0})  # a folder where the sampler needs its file
    deadline = time.time() + 20
    while run._sampler.alive and time.time() < deadline:
        time.sleep(0.05)
    assert not run._sampler.alive
    run.log({"loss": 1.0})  # the run goes on
    run.finish()
    err = capsys.readouterr().err
    assert "labtrack: system metrics stopped:" in err and "system/cpu/percent" in err, err
