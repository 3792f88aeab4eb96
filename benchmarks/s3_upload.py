"""Object storage (issue 18): bytes uploaded per byte logged, and what `root="s3://..."` costs log().

    python benchmarks/s3_upload.py            # 20 series x 20,000 steps over ~20 flushes
    python benchmarks/s3_upload.py --quick    # 10 series x 5,000 steps (development)
    python benchmarks/s3_upload.py --no-write # print, leave RESULTS.md alone

A real moto S3 server (tests/s3.py: moto's ThreadedMotoServer in a child process on a free
127.0.0.1 port) holds the bucket. Each row trains one run in this process with
`labtrack.init(root="s3://bench/...")` and flushes every 0.2 s, the shipper uploading each
flush; "uploaded" is every byte the run's ObjectClient PUT (segments, whole files, manifest
deltas, compaction), "logged" the size of the spool's run directory at the end.

log() overhead: the same loop of `run.log({...20 keys})` timed on a local root and on an
s3:// root (best of `--reps`, interleaved), with S3 up and with S3 stopped.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS_MD = HERE / "RESULTS.md"
MD_HEADING = "## Object storage: bytes uploaded per byte logged (benchmarks/s3_upload.py)"
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))


def dir_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def train(root: str, series: int, steps: int, flushes: int, checkpoint: int = 0,
          s3_down: Any = None) -> tuple[Any, float]:
    import labtrack

    run = labtrack.init(experiment="bench", root=root, capture_git=False, capture_console=False,
                        system=False, flush_seconds=0.2)
    keys = [f"train/metric_{k:02d}" for k in range(series)]
    every = max(1, steps // flushes)
    t0 = time.perf_counter()
    if s3_down is not None:
        s3_down.stop()  # before the first flush: each series goes up in the catch-up rounds
    for i in range(steps):
        run.log({k: 1.0 / (i + j + 1) for j, k in enumerate(keys)}, step=i)
        if i % every == every - 1:
            run.flush()
            time.sleep(0.25)
    if checkpoint:
        blob = Path(tempfile.mkdtemp()) / "model.bin"
        blob.write_bytes(os.urandom(checkpoint))
        run.save_artifact(blob, "model.bin")
    if s3_down is not None:
        s3_down.start()  # back before finish: the catch-up rounds send big segments
    run.finish()
    return run, time.perf_counter() - t0


def upload_rows(s3: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for label, compact, gz, ckpt, down in (
            ("series only, compaction on (default)", "1", "1", 0, None),
            ("series only, compaction on, compacted as .gz (`compact_gzip`)", "gzip", "1", 0, None),
            ("series only, compaction off", "0", "1", 0, None),
            ("series only, compaction on, segments not compressed", "1", "0", 0, None),
            ("series only, compaction off, segments not compressed", "0", "0", 0, None),
            ("series + a 16 MiB artifact, compaction on", "1", "1", 16 << 20, None),
            ("series, S3 down from the first step, back before finish", "1", "1", 0, s3)):
        os.environ["LABTRACK_COMPACT"] = "1" if compact == "gzip" else compact
        os.environ["LABTRACK_COMPACT_GZIP"] = "1" if compact == "gzip" else "0"
        os.environ["LABTRACK_COMPRESS_SEGMENTS"] = gz
        run, _ = train(s3.url(f"up-{compact}-{gz}-{ckpt}-{down is not None}"), args.series, args.steps,
                       args.flushes, ckpt, down)
        client = run._shipper.object_client[-1]
        logged = dir_bytes(run.dir)
        rows.append({"label": label, "logged": logged, "uploaded": client.bytes_put,
                     "objects": sum(r.objects_put for r in client._runs.values())})
        print(f"{label}: {client.bytes_put} / {logged} = {client.bytes_put / logged:.2f}x", flush=True)
    os.environ.pop("LABTRACK_COMPACT", None)
    os.environ.pop("LABTRACK_COMPRESS_SEGMENTS", None)
    os.environ.pop("LABTRACK_COMPACT_GZIP", None)
    return rows


def loop(run: Any, n: int, start: int, keys: list[str]) -> float:
    t = time.perf_counter()
    for i in range(start, start + n):
        run.log({k: float(i) for k in keys}, step=i)
    return time.perf_counter() - t


def overhead_rows(s3: Any, args: argparse.Namespace) -> dict[str, float]:
    import labtrack

    keys = [f"m{k}" for k in range(20)]
    local = labtrack.Run(experiment="bench", root=Path(tempfile.mkdtemp()) / "local", capture_git=False,
                         capture_console=False, system=False, flush_seconds=0.2)
    remote = labtrack.Run(experiment="bench", root=s3.url("overhead"), capture_git=False,
                          capture_console=False, system=False, flush_seconds=0.2)
    out: dict[str, float] = {}
    step = 0
    try:
        for phase in ("up", "down"):
            if phase == "down":
                s3.stop()
            best_l = best_r = float("inf")
            for _ in range(args.reps):
                best_l = min(best_l, loop(local, args.loop, step, keys))
                best_r = min(best_r, loop(remote, args.loop, step, keys))
                step += args.loop
                time.sleep(0.3)
            out[f"local_us_{phase}"] = best_l / args.loop * 1e6
            out[f"s3_us_{phase}"] = best_r / args.loop * 1e6
            print(f"log() S3 {phase}: local {out[f'local_us_{phase}']:.2f} us, s3 root "
                  f"{out[f's3_us_{phase}']:.2f} us ({best_r / best_l:.2f}x)", flush=True)
        s3.start()
    finally:
        local.finish()
        remote.finish()
    return out


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [MD_HEADING, "",
             f"`{res['command']}`, {res['finished']}; {m['cpus']} CPUs (shared: noisy), Python "
             f"{m['python']}, moto {m['moto']} S3 server on 127.0.0.1. {res['series']} series x "
             f"{res['steps']:,} steps, flushed {res['flushes']} times 0.25 s apart, so each series "
             "is uploaded as that many segments.", "",
             "| run | logged (bytes) | uploaded (bytes) | uploaded / logged | PUTs |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for r in res["upload"]:
        lines.append(f"| {r['label']} | {r['logged']:,} | {r['uploaded']:,} | "
                     f"{r['uploaded'] / r['logged']:.2f}x | {r['objects']:,} |")
    o = res["overhead"]
    ratio = {r["label"]: r["uploaded"] / r["logged"] for r in res["upload"]}
    plain = ratio.get("series only, compaction on (default)")
    gz = next((v for k, v in ratio.items() if "compact_gzip" in k), None)
    if plain is not None and gz is not None:
        lines += ["", f"Target (issue 18): total bytes uploaded within 1.2x of the data, compaction "
                      f"included. Default (plain compacted objects): {plain:.2f}x, "
                      f"{'met' if plain <= 1.2 else '**not met**'}; with `compact_gzip`: {gz:.2f}x, "
                      f"{'met' if gz <= 1.2 else '**not met**'}."]
    lines += ["",
              "Compaction writes each series once more as one object at its plain path. A "
              "series that is one segment is copied server-side, and segments of 5 MiB and more "
              "are copied server-side as parts of a multipart upload, but segments uploaded at "
              "each flush (kilobytes) are far below S3's 5 MiB smallest part, so their bytes are "
              "uploaded again. Those segments go up gzip-compressed (`compress_segments`, default "
              "on; all but a file's first, which compaction can copy when it is the whole file): "
              "a third of their bytes, so series logged live cost the compressed segments plus "
              "the plain objects, against 2x uncompressed; with `compact_gzip` the compacted "
              "objects are `<path>.gz` too (a third again). Without compaction the bucket holds "
              "the segments and manifests (readable through labtrack). Whole files (checkpoints, "
              "artifacts, media) are uploaded once either way. The last row: S3 was down from "
              "the first step and back before finish, so each series went up whole in the "
              "catch-up rounds (48 MiB each), one segment that compaction copies server-side.", "",
              f"log() of 20 keys, best of {res['reps']} loops of {res['loop']:,} calls: local root "
              f"{o['local_us_up']:.2f} us, s3:// root {o['s3_us_up']:.2f} us with S3 up "
              f"({o['s3_us_up'] / o['local_us_up']:.2f}x); with S3 stopped {o['local_us_down']:.2f} "
              f"vs {o['s3_us_down']:.2f} us ({o['s3_us_down'] / o['local_us_down']:.2f}x).", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smaller run (development)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = ap.parse_args()
    args.series, args.steps, args.flushes, args.loop = (10, 5_000, 8, 20_000) if args.quick else \
        (20, 20_000, 20, 50_000)
    work = Path(tempfile.mkdtemp(prefix="labtrack-s3-bench-"))
    os.environ["LABTRACK_SPOOL"] = str(work / "spool")
    os.environ["LABTRACK_SYNC_TIMEOUT"] = "60"
    os.environ["LABTRACK_SYSTEM"] = "0"
    from s3 import MotoS3
    import moto

    s3 = MotoS3()
    os.environ.update(s3.env)
    try:
        upload = upload_rows(s3, args)
        overhead = overhead_rows(s3, args)
    finally:
        s3.close()
    res = {"command": "python benchmarks/s3_upload.py" + (" --quick" if args.quick else ""),
           "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "moto": moto.__version__},
           "series": args.series, "steps": args.steps, "flushes": args.flushes, "reps": args.reps,
           "loop": args.loop, "upload": upload, "overhead": overhead}
    section = markdown(res)
    print(section)
    if not args.no_write:
        sys.path.insert(0, str(HERE))
        from _results import replace_section

        replace_section(RESULTS_MD, MD_HEADING, section)


if __name__ == "__main__":
    main()
