"""The system sampler: one background thread per run that records the machine as series.

Every `interval` seconds (LABTRACK_SYSTEM_SECONDS, default 10) the thread reads psutil and,
where a driver answers, NVML (nvidia-ml-py) or amdsmi, and appends one point per series under
`system/` through the run's ordinary columns, so Book, CLI and dashboard read them like any
other series (docs/system.md). The x of a point ("step") is whole seconds since the run
started (the first start, for a resumed run); the time column keeps the wall time. The
script's own automatic step is never touched.

A missing library or driver is one info line on stderr, never an error; a failing read skips
that series for that sample. The thread is named and daemon, sleeps on an Event (so stop()
wakes it at once) and takes its last sample when stopped.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

PREFIX = "system/"
# Counters recorded as bytes since the run started (a resumed run continues from its last value).
CUMULATIVE = ("disk/read_bytes", "disk/write_bytes", "network/sent_bytes", "network/recv_bytes")
_STOP_WAIT_SECONDS = 0.5  # finish() waits this long at most for the last sample
_SYSTEM_NAME = re.compile(r"(?:rank\d+/)?system/")
_said: set[str] = set()  # info lines already printed by this process (each is said once)


def is_system_series(name: str) -> bool:
    """True for a series the sampler records (`system/...`, or `rank<N>/system/...` of a rank).

    Example:
        >>> is_system_series("system/cpu/percent"), is_system_series("train/loss")
        (True, False)
    """
    return _SYSTEM_NAME.match(name) is not None


# --- which GPUs the job may use (pure) ---------------------------------------------------------
@dataclass(frozen=True)
class GpuDevice:
    """One GPU as the driver lists it: its index there, its UUID and its /dev minor number."""

    index: int
    uuid: str | None = None
    minor: int | None = None


def _entries(text: str) -> list[str]:
    return [e.strip() for e in text.split(",") if e.strip()]


def _match(entry: str, devices: Sequence[GpuDevice], by_minor: bool) -> GpuDevice | None:
    if entry.lstrip("-").isdigit():
        n = int(entry)
        for d in devices:
            if (d.minor if by_minor and d.minor is not None else d.index) == n:
                return d
        return None
    # A UUID, with or without its "GPU-" prefix, or a unique start of one (as CUDA accepts).
    want = entry.lower().removeprefix("gpu-")
    hits = [d for d in devices if d.uuid and d.uuid.lower().removeprefix("gpu-").startswith(want)]
    return hits[0] if len(hits) == 1 else None


def visible_gpus(devices: Sequence[GpuDevice], environ: Mapping[str, str],
                 vendor: str = "nvidia") -> list[GpuDevice]:
    """The GPUs this process may use, out of those the driver lists.

    The first variable that is set decides: CUDA_VISIBLE_DEVICES (NVIDIA) or
    ROCR_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES (AMD), read as the runtime reads them (indices
    or UUIDs; the list ends at the first entry that names no device, so "" or "-1" means
    none); then SLURM's binding, SLURM_STEP_GPUS, SLURM_JOB_GPUS, GPU_DEVICE_ORDINAL (numbers
    matched against the devices' minor numbers, as SLURM counts /dev/nvidia<N>; if none
    matches, the job's cgroup already hides the others and all listed devices are the job's).
    With none set, every device.

    Args:
        devices: the devices the driver lists.
        environ: the process environment.
        vendor: "nvidia" or "amd" (which runtime variables apply).

    Returns:
        The usable devices, in the order the variable gives, without repeats.

    Example:
        >>> visible_gpus([GpuDevice(0), GpuDevice(1)], {"CUDA_VISIBLE_DEVICES": "1"})
        [GpuDevice(index=1, uuid=None, minor=None)]
    """
    runtime = ("CUDA_VISIBLE_DEVICES",) if vendor == "nvidia" else ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")
    for var in runtime:
        text = environ.get(var)
        if text is None:
            continue
        out: list[GpuDevice] = []
        for entry in _entries(text):
            d = _match(entry, devices, by_minor=False)
            if d is None:
                break  # the CUDA runtime ignores everything after an invalid entry
            if d not in out:
                out.append(d)
        return out
    for var in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "GPU_DEVICE_ORDINAL"):
        text = environ.get(var)
        if not text or not text.strip():
            continue
        found = [d for d in (_match(e, devices, by_minor=True) for e in _entries(text)) if d is not None]
        if not found:
            return list(devices)
        return list(dict.fromkeys(found))
    return list(devices)


def nvidia_expected(environ: Mapping[str, str], exists: Callable[[str], bool] = os.path.exists) -> bool:
    """Whether this machine or job looks like it has an NVIDIA GPU: a device file or driver
    folder, or a launcher that assigned GPUs. Without one, no NVML is the expected answer and
    not worth a line on every run of a CPU machine.

    Example:
        >>> nvidia_expected({"CUDA_VISIBLE_DEVICES": "0"}, exists=lambda p: False)
        True
    """
    for var in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        v = environ.get(var, "").strip()
        if v and v not in ("-1", "none", "void", "NoDevFiles"):
            return True
    return exists("/dev/nvidiactl") or exists("/proc/driver/nvidia")


# --- the sources -------------------------------------------------------------------------------
class _Psutil:
    """CPU, memory, this process (and its children), disk and network through psutil."""

    def __init__(self, psutil: Any, offsets: Mapping[str, float]) -> None:
        self.ps = psutil
        self.me = psutil.Process()
        self.procs: dict[int, Any] = {}  # pid -> Process, kept so cpu_percent() has a baseline
        self.cores = psutil.cpu_count() or 1
        psutil.cpu_percent(None)  # the first call only sets the baseline
        self.me.cpu_percent(None)
        self.base = self._counters()
        self.offsets = {k: offsets.get(k, 0.0) for k in CUMULATIVE}

    def _counters(self) -> dict[str, float]:
        out: dict[str, float] = {}
        try:
            d = self.ps.disk_io_counters()
            if d is not None:
                out["disk/read_bytes"], out["disk/write_bytes"] = float(d.read_bytes), float(d.write_bytes)
        except Exception:  # containers without /proc/diskstats
            pass
        try:
            nics = self.ps.net_io_counters(pernic=True)
            # Loopback is the machine talking to itself (a local `labtrack serve`, a data loader
            # server): it is not network traffic.
            real = [c for name, c in nics.items() if name != "lo" and not name.startswith("lo:")]
            out["network/sent_bytes"] = float(sum(c.bytes_sent for c in real))
            out["network/recv_bytes"] = float(sum(c.bytes_recv for c in real))
        except Exception:
            pass
        return out

    def _family(self) -> list[Any]:
        ps = self.ps
        try:
            kids = self.me.children(recursive=True)
        except ps.Error:
            kids = []
        seen = {self.me.pid}
        out = [self.me]
        for k in kids:
            p = self.procs.get(k.pid)
            if p is None:
                p = self.procs[k.pid] = k
                try:
                    k.cpu_percent(None)  # baseline; it counts from the next sample
                except ps.Error:
                    pass
            seen.add(k.pid)
            out.append(p)
        for pid in [pid for pid in self.procs if pid not in seen]:
            del self.procs[pid]
        return out

    def sample(self) -> dict[str, float]:
        ps = self.ps
        v: dict[str, float] = {"cpu/percent": float(ps.cpu_percent(None))}
        vm = ps.virtual_memory()
        v["memory/used_bytes"] = float(vm.total - vm.available)
        v["memory/percent"] = float(vm.percent)
        rss = cpu = 0.0
        for p in self._family():
            try:
                rss += p.memory_info().rss
                cpu += p.cpu_percent(None)
            except ps.Error:  # a child that just ended
                pass
        v["process/rss_bytes"] = rss
        v["process/cpu_percent"] = min(cpu, 100.0 * self.cores)
        now = self._counters()
        for k, x in now.items():
            if k in self.base:
                v[k] = self.offsets[k] + max(x - self.base[k], 0.0)
        return v


class _Nvml:
    """NVIDIA GPUs through NVML (nvidia-ml-py's `pynvml`)."""

    def __init__(self, nv: Any, handles: list[tuple[int, Any]]) -> None:
        self.nv = nv
        self.handles = handles

    @classmethod
    def open(cls, environ: Mapping[str, str], say: Callable[[str], None]) -> _Nvml | None:
        if not nvidia_expected(environ):
            return None  # no device file, no driver, no GPU assigned: NVML cannot answer
        try:
            import pynvml as nv
        except ImportError:
            say("no NVIDIA GPU metrics: nvidia-ml-py is not installed (pip install nvidia-ml-py)")
            return None
        try:
            nv.nvmlInit()
        except Exception as e:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...: no GPU here
            say(f"no NVIDIA GPU metrics: NVML did not start ({e})")
            return None
        try:
            devices, handles = [], {}
            for i in range(nv.nvmlDeviceGetCount()):
                h = nv.nvmlDeviceGetHandleByIndex(i)
                handles[i] = h
                devices.append(GpuDevice(i, _try(lambda: _text(nv.nvmlDeviceGetUUID(h))),
                                         _try(lambda: int(nv.nvmlDeviceGetMinorNumber(h)))))
            chosen = visible_gpus(devices, environ, "nvidia")
        except Exception as e:
            say(f"no NVIDIA GPU metrics: NVML could not list the GPUs ({e})")
            _try(nv.nvmlShutdown)
            return None
        if not chosen:
            _try(nv.nvmlShutdown)
            return None
        return cls(nv, [(d.index, handles[d.index]) for d in chosen])

    def sample(self) -> dict[str, float]:
        nv, v = self.nv, {}
        for i, h in self.handles:
            util = _try(lambda: nv.nvmlDeviceGetUtilizationRates(h))
            if util is not None:
                v[f"gpu/{i}/utilization"] = float(util.gpu)
            mem = _try(lambda: nv.nvmlDeviceGetMemoryInfo(h))
            if mem is not None:
                v[f"gpu/{i}/memory_used_bytes"] = float(mem.used)
                if mem.total:
                    v[f"gpu/{i}/memory_percent"] = 100.0 * mem.used / mem.total
            temp = _try(lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
            if temp is not None:
                v[f"gpu/{i}/temperature_c"] = float(temp)
            power = _try(lambda: nv.nvmlDeviceGetPowerUsage(h))  # milliwatts
            if power is not None:
                v[f"gpu/{i}/power_w"] = power / 1000.0
        return v

    def close(self) -> None:
        _try(self.nv.nvmlShutdown)


class _Amd:
    """AMD GPUs through amdsmi (ROCm), where it is installed."""

    def __init__(self, amd: Any, handles: list[tuple[int, Any]]) -> None:
        self.amd = amd
        self.handles = handles

    @classmethod
    def open(cls, environ: Mapping[str, str], say: Callable[[str], None]) -> _Amd | None:
        try:
            import amdsmi as amd
        except ImportError:
            return None  # most machines have no ROCm: not worth a line
        try:
            amd.amdsmi_init()
            hs = list(amd.amdsmi_get_processor_handles())
            devices = [GpuDevice(i, _try(lambda: str(amd.amdsmi_get_gpu_device_uuid(h))))
                       for i, h in enumerate(hs)]
            chosen = visible_gpus(devices, environ, "amd")
        except Exception as e:
            say(f"no AMD GPU metrics: amdsmi did not start ({e})")
            return None
        if not chosen:
            _try(amd.amdsmi_shut_down)
            return None
        return cls(amd, [(d.index, hs[d.index]) for d in chosen])

    def sample(self) -> dict[str, float]:
        amd, v = self.amd, {}
        for i, h in self.handles:
            act = _try(lambda: amd.amdsmi_get_gpu_activity(h))
            if isinstance(act, dict) and isinstance(act.get("gfx_activity"), (int, float)):
                v[f"gpu/{i}/utilization"] = float(act["gfx_activity"])
            vram = _try(lambda: amd.amdsmi_get_gpu_vram_usage(h))  # MB
            if isinstance(vram, dict) and isinstance(vram.get("vram_used"), (int, float)):
                v[f"gpu/{i}/memory_used_bytes"] = float(vram["vram_used"]) * 2**20
                if vram.get("vram_total"):
                    v[f"gpu/{i}/memory_percent"] = 100.0 * vram["vram_used"] / vram["vram_total"]
            temp = _try(lambda: amd.amdsmi_get_temp_metric(
                h, amd.AmdSmiTemperatureType.EDGE, amd.AmdSmiTemperatureMetric.CURRENT))
            if isinstance(temp, (int, float)):
                v[f"gpu/{i}/temperature_c"] = float(temp)
            power = _try(lambda: amd.amdsmi_get_power_info(h))
            if isinstance(power, dict):
                w = power.get("current_socket_power", power.get("average_socket_power"))
                if isinstance(w, (int, float)):
                    v[f"gpu/{i}/power_w"] = float(w)
        return v

    def close(self) -> None:
        _try(self.amd.amdsmi_shut_down)


def _try(f: Callable[[], Any]) -> Any:
    """f(), or None when the driver cannot answer (not supported on this GPU, a lost device)."""
    try:
        return f()
    except Exception:
        return None


def _text(b: Any) -> str:
    return b.decode() if isinstance(b, bytes) else str(b)


# --- the thread ------------------------------------------------------------------------------------
class Sampler:
    """One daemon thread that samples the machine every `interval` seconds until stop().

    Args:
        log_at: appends `{name: value}` at a step and time without moving the run's step
            (see start_for); it raises once the run is finished, which ends the thread.
        started: the run's first start (epoch seconds): steps are whole seconds since then.
        interval: seconds between samples (> 0).
        environ: the environment (GPU selection).
        offsets: last recorded values of the cumulative series, for a resumed run.
        prefix: the series' prefix ("system/").
        name: the thread's name.
        say: where the info lines go (default: stderr).
    """

    def __init__(self, log_at: Callable[[dict[str, float], int, float], None], *, started: float,
                 interval: float, environ: Mapping[str, str], offsets: Mapping[str, float] | None = None,
                 prefix: str = PREFIX, name: str = "labtrack-system",
                 say: Callable[[str], None] | None = None) -> None:
        self._log_at = log_at
        self._started = started
        self._interval = interval
        self._environ = dict(environ)
        self._prefix = prefix
        self._offsets = {k: v for k, v in (offsets or {}).items() if k in CUMULATIVE}
        self._say = say or _say
        self._stop = threading.Event()
        self.samples = 0
        # CPU time of this thread: opening the libraries, and all samples (benchmarks/system_cost.py)
        self.init_seconds = 0.0
        self.thread_seconds = 0.0
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        # psutil is imported here, on the caller's thread (13 ms, once per process): on the
        # sampler's thread each of the import's file reads would wait for the GIL behind a
        # busy training loop, and the first sample would come seconds late.
        try:
            import psutil
        except ImportError:
            self._psutil: Any = None
        else:
            self._psutil = psutil
        self._thread.start()

    def stop(self, timeout: float = _STOP_WAIT_SECONDS) -> None:
        """Wake the thread for its last sample and wait for it, at most `timeout` seconds."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _main(self) -> None:
        sources: list[Any] = []
        t0 = time.thread_time()
        psutil = self._psutil
        if psutil is None:
            self._say("no system metrics: psutil is not installed (pip install psutil)")
        else:
            try:
                sources.append(_Psutil(psutil, self._offsets))
            except Exception as e:  # a sandbox without /proc
                self._say(f"no CPU/memory metrics: psutil cannot read this machine ({e})")
        for gpu in (_Nvml, _Amd):
            src = gpu.open(self._environ, self._say)
            if src is not None:
                sources.append(src)
        self.init_seconds = time.thread_time() - t0
        try:
            if not sources:
                return
            # The first sample at once (CPU percents need a baseline: a short pause gives them one).
            self._stop.wait(min(0.1, self._interval))
            while self._sample(sources) and not self._stop.is_set():
                if self._stop.wait(self._interval):
                    self._sample(sources)  # the last sample, at finish
                    return
        finally:
            for s in sources:
                if hasattr(s, "close"):
                    s.close()

    def _sample(self, sources: Sequence[Any]) -> bool:
        """One point per series; False once the run no longer takes points."""
        t0 = time.thread_time()
        now = time.time()
        values: dict[str, float] = {}
        for s in sources:
            got = _try(s.sample)
            if got:
                values.update(got)
        if not values:
            return True
        step = max(int(now - self._started), 0)
        p = self._prefix
        try:
            self._log_at({p + k: v for k, v in values.items()}, step, now)
        except Exception as e:
            from .errors import RunStateError

            if not isinstance(e, RunStateError):  # the run finishing under us is the normal end
                self._say(f"system metrics stopped: {e}")
            return False
        finally:
            self.samples += 1
            self.thread_seconds += time.thread_time() - t0
        return True


def start_for(run: Any, now: float, summary: Mapping[str, Any], interval: float,
              environ: Mapping[str, str]) -> Sampler:
    """Start the sampler of a Run (`labtrack._run.Run`, which calls this when `system` is on).

    Args:
        run: the Run; its points go into its columns as log() puts them there.
        now: when the run (or this resume of it) started.
        summary: the run's summary.json (a resumed run's cumulative counters continue).
        interval: seconds between samples.
        environ: the environment (GPU selection).

    Returns:
        The started sampler; `finish()` stops it before the writer drains.
    """
    def log_at(values: dict[str, float], step: int, t: float) -> None:
        # Like Run.log, minus the automatic step: `_next_step` is never read or written, so
        # this thread cannot race the script's own log() over it. Raises RunStateError once
        # the run is finished (its columns refuse every lookup).
        busy = run._busy
        busy.append(None)  # as in log(): the writer keeps the column generation appended to
        cols = run._cols
        try:
            for k, v in values.items():
                try:
                    append = cols[k]
                except KeyError:
                    append = run._new_series(cols, k)
                append([step, v, t])
        finally:
            busy.pop()
        run._pending += len(values)

    started = now
    try:  # a resumed run continues its x axis: seconds since its first start
        started = datetime.fromisoformat(str(run._meta.get("started"))).timestamp()
    except ValueError:
        pass
    offsets = {k[len(PREFIX):]: float(s["last"]) for k, s in summary.items()
               if k.startswith(PREFIX) and isinstance(s, dict) and isinstance(s.get("last"), (int, float))}
    sampler = Sampler(log_at, started=started, interval=interval, environ=environ, offsets=offsets,
                      name=f"labtrack-system-{run.id}")
    sampler.start()
    return sampler


def _say(text: str) -> None:
    if text not in _said:
        _said.add(text)
        print(f"labtrack: {text}", file=sys.stderr)


# --- a short summary for `labtrack show` (pure) --------------------------------------------------
def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # unreachable: the loop returns at TB


def describe(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, text) lines summing up a run's system series from its summary.json.

    Args:
        summary: series name -> {"last", "min", "max", "mean", ...}.

    Returns:
        One line per part (cpu, process, memory, disk, network, each GPU), per rank where
        ranks recorded their own (`rank<N>/system/...`); [] when no system series exist.

    Example:
        >>> describe({"system/cpu/percent": {"mean": 40.0, "max": 90.0}})
        [('cpu', 'mean 40%, peak 90% of the machine')]
    """
    groups: dict[str, dict[str, Mapping[str, Any]]] = {}
    for name, s in summary.items():
        m = _SYSTEM_NAME.match(name)
        if m and isinstance(s, Mapping):
            groups.setdefault(m.group(0), {})[name[m.end():]] = s

    def num(series: Mapping[str, Mapping[str, Any]], name: str, key: str) -> float | None:
        v = series.get(name, {}).get(key)
        return float(v) if isinstance(v, (int, float)) and v == v else None

    out: list[tuple[str, str]] = []
    for prefix in sorted(groups):
        g = groups[prefix]
        rank = prefix[: -len(PREFIX)].rstrip("/")
        label = (lambda part: f"{rank} {part}") if rank else (lambda part: part)
        parts: list[tuple[str, list[str]]] = []
        cpu_mean, cpu_max = num(g, "cpu/percent", "mean"), num(g, "cpu/percent", "max")
        if cpu_mean is not None:
            parts.append(("cpu", [f"mean {cpu_mean:.0f}%" + (f", peak {cpu_max:.0f}%" if cpu_max is not None else "")
                                  + " of the machine"]))
        proc = []
        if (rss := num(g, "process/rss_bytes", "max")) is not None:
            proc.append(f"peak rss {_bytes(rss)}")
        if (pc := num(g, "process/cpu_percent", "mean")) is not None:
            proc.append(f"cpu mean {pc:.0f}% (100% = one core)")
        if proc:
            parts.append(("process", proc))
        if (used := num(g, "memory/used_bytes", "max")) is not None:
            pct = num(g, "memory/percent", "max")
            parts.append(("memory", [f"peak {_bytes(used)} used" + (f" ({pct:.0f}%)" if pct is not None else "")]))
        for part, a, b, wa, wb in (("disk", "read_bytes", "write_bytes", "read", "written"),
                                   ("network", "sent_bytes", "recv_bytes", "sent", "received")):
            got = [f"{w} {_bytes(v)}" for n, w in ((a, wa), (b, wb))
                   if (v := num(g, f"{part}/{n}", "max")) is not None]
            if got:
                parts.append((part, got))
        gpus = sorted({int(k.split("/")[1]) for k in g if k.startswith("gpu/") and k.split("/")[1].isdigit()})
        for i in gpus:
            p = f"gpu/{i}/"
            got = []
            if (u := num(g, p + "utilization", "mean")) is not None:
                got.append(f"utilization mean {u:.0f}%")
            if (mem := num(g, p + "memory_used_bytes", "max")) is not None:
                mp = num(g, p + "memory_percent", "max")
                got.append(f"memory peak {_bytes(mem)}" + (f" ({mp:.0f}%)" if mp is not None else ""))
            if (w := num(g, p + "power_w", "max")) is not None:
                got.append(f"power peak {w:.0f} W")
            if (t := num(g, p + "temperature_c", "max")) is not None:
                got.append(f"temperature peak {t:.0f} °C")
            if got:
                parts.append((f"gpu {i}", got))
        out.extend((label(part), ", ".join(texts)) for part, texts in parts)
    return out
