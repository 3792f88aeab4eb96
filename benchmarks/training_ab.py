"""Training-side cost of a change: `make bench`'s S1 and S2 (labtrack only) and a long
series, with this checkout's code and another's, alternating in one run (issue 17: the
writer's series envelopes must leave training as fast as it was).

    python benchmarks/training_ab.py --baseline /tmp/speed-base/src [--reps 7]
    python benchmarks/training_ab.py --without-envelopes /tmp/ab-noenv [--reps 7]

Each repetition runs, per source, in fresh processes with a fresh root: S1 (100,000
`run.log({"loss": x})` calls, then finish), S2 (10,000 steps of 20 scalars, then finish) as
`benchmarks/peers/bench_labtrack.py` runs them, and "long" (S1's loop with 2,000,000 steps:
one series long enough that every block of its envelope is written). Reported: medians per
source and their ratios (new / baseline; below 1 is faster), wall times as the scenario
timed them and each process's CPU time (user + sys of all its threads, the writer's
included: on a shared machine far steadier than the wall times).

The baseline for "what does the envelope writing cost" is this checkout with the writer's
envelopes turned off, made by `--without-envelopes DIR` (a copy of src/ into DIR with
`_envelope_of` answering None, and the C module copied along).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
SRC = HERE.parent / "src"
FULL = {"steps": 100_000, "wide_steps": 10_000, "width": 20, "runs": 1, "run_steps": 1}


def one(src: Path, scenario: str, steps: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="labtrack-ab-") as d:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABTRACK_")}
        env.update({"PYTHONPATH": f"{src}{os.pathsep}{PEERS}", "HOME": d, "PYTHONUNBUFFERED": "1"})
        sizes = {**FULL, "steps": steps}
        cmd = [sys.executable, str(PEERS / "bench_labtrack.py"), scenario, "--dir", d,
               *[a for k, v in sizes.items() for a in (f"--{k.replace('_', '-')}", str(v))], "--budget", "0"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=d, check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if out.returncode or not lines:
            raise SystemExit(f"{cmd}: exit {out.returncode}\n{out.stderr[-2000:]}")
        # the whole process's CPU time (every thread: the writer's envelope work included),
        # far steadier than wall times on a shared machine
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return {**json.loads(lines[-1][len("RESULT "):]), "cpu_s": cpu}


_WRITER_HOOK = "        self._envelopes[name] = env\n        return env\n"


def without_envelopes(folder: Path) -> Path:
    """A copy of this checkout's src/ in `folder` whose writer keeps no envelopes (every
    series' `_envelope_of` is None: no cuts, no records, no `.lod/`); its src/."""
    dest = folder / "src"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(SRC, dest, ignore=shutil.ignore_patterns("__pycache__"))
    writer = dest / "labtrack" / "_writer.py"
    text = writer.read_text()
    if text.count(_WRITER_HOOK) != 1:
        raise SystemExit(f"{writer}: the envelope hook of `_envelope_of` has changed; update "
                         "training_ab.without_envelopes")
    writer.write_text(text.replace(_WRITER_HOOK, "        env = None  # training_ab: no envelopes\n"
                                   + _WRITER_HOOK))
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--baseline", help="the other checkout's src/")
    what.add_argument("--without-envelopes", metavar="DIR", help="the baseline is this checkout "
                      "with the writer's envelopes off (a copy of src/ made in DIR)")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--long-steps", type=int, default=2_000_000)
    args = ap.parse_args()
    base = without_envelopes(Path(args.without_envelopes)) if args.without_envelopes else Path(args.baseline)
    for src in (SRC, base):
        if not list((src / "labtrack").glob("_hot*.so")):
            print(f"warning: {src} has no compiled labtrack._hot (pure Python log(): ~3x slower); "
                  "compile it first (see hatch_build.compile_hot)", file=sys.stderr)
    sources = {"new": SRC, "base": base.resolve()}
    for src in sources.values():
        # bytecode written once, so no measured process compiles (PYTHONDONTWRITEBYTECODE
        # would otherwise make a fresh copy compile every module in every process)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(src / "labtrack")],
                       check=False, stdout=subprocess.DEVNULL)
    got: dict[str, dict[str, list[float]]] = {k: {} for k in sources}
    for rep in range(args.reps):
        # which source goes first alternates: a burst of load, or the previous process's
        # files still being written back, falls on both alike
        for key, src in (list(sources.items()) if rep % 2 == 0 else list(sources.items())[::-1]):
            for scen, steps, values in (("s1", FULL["steps"], FULL["steps"]),
                                        ("s2", FULL["steps"], FULL["wide_steps"] * FULL["width"]),
                                        ("long", args.long_steps, args.long_steps)):
                r = one(src, "s1" if scen == "long" else scen, steps)
                total = r["loop_s"] + r["finish_s"]
                row = got[key]
                row.setdefault(f"{scen}_loop_s", []).append(r["loop_s"])
                row.setdefault(f"{scen}_finish_s", []).append(r["finish_s"])
                row.setdefault(f"{scen}_values_per_s", []).append(values / total)
                row.setdefault(f"{scen}_process_cpu_s", []).append(r["cpu_s"])
        print(f"repetition {rep + 1}/{args.reps} done", file=sys.stderr, flush=True)
    # the paired ratio: each repetition's two processes ran back to back, so a burst of the
    # machine's load shifts both; its median is steadier than the ratio of the medians
    print(f"| figure (median of {args.reps}) | this checkout | baseline | new / baseline | "
          "median of the paired ratios |")
    print("| --- | --- | --- | --- | --- |")
    for k in got["new"]:
        a, b = statistics.median(got["new"][k]), statistics.median(got["base"][k])
        paired = statistics.median(x / y for x, y in zip(got["new"][k], got["base"][k]) if y)
        print(f"| {k} | {a:,.4g} | {b:,.4g} | {a / b:.3f} | {paired:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
