"""Training-side cost of a change: `make bench`'s S1 and S2 (labtrack only) and a long
series, with this checkout's code and another's, alternating in one run (issue 17: the
writer's series envelopes must leave training as fast as it was).

    python benchmarks/training_ab.py --baseline /tmp/speed-base/src [--reps 7]

Each repetition runs, per source, in fresh processes with a fresh root: S1 (100,000
`run.log({"loss": x})` calls, then finish), S2 (10,000 steps of 20 scalars, then finish) as
`benchmarks/peers/bench_labtrack.py` runs them, and "long" (S1's loop with 2,000,000 steps:
one series long enough that every block of its envelope is written). Reported: medians per
source and their ratios (new / baseline; below 1 is faster).
"""

from __future__ import annotations

import argparse
import json
import os
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
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=d, check=False)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if out.returncode or not lines:
            raise SystemExit(f"{cmd}: exit {out.returncode}\n{out.stderr[-2000:]}")
        return dict(json.loads(lines[-1][len("RESULT "):]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", required=True, help="the other checkout's src/")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--long-steps", type=int, default=2_000_000)
    args = ap.parse_args()
    sources = {"new": SRC, "base": Path(args.baseline).resolve()}
    got: dict[str, dict[str, list[float]]] = {k: {} for k in sources}
    for rep in range(args.reps):
        for key, src in sources.items():
            for scen, steps, values in (("s1", FULL["steps"], FULL["steps"]),
                                        ("s2", FULL["steps"], FULL["wide_steps"] * FULL["width"]),
                                        ("long", args.long_steps, args.long_steps)):
                r = one(src, "s1" if scen == "long" else scen, steps)
                total = r["loop_s"] + r["finish_s"]
                row = got[key]
                row.setdefault(f"{scen}_loop_s", []).append(r["loop_s"])
                row.setdefault(f"{scen}_finish_s", []).append(r["finish_s"])
                row.setdefault(f"{scen}_values_per_s", []).append(values / total)
        print(f"repetition {rep + 1}/{args.reps} done", file=sys.stderr, flush=True)
    print(f"| figure (median of {args.reps}) | this checkout | baseline | new / baseline |")
    print("| --- | --- | --- | --- |")
    for k in got["new"]:
        a, b = statistics.median(got["new"][k]), statistics.median(got["base"][k])
        print(f"| {k} | {a:,.4g} | {b:,.4g} | {a / b:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
