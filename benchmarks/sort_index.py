"""Sorted pages of the SQLite run index with and without sort indexes (issue 17).

    python benchmarks/sort_index.py                          # this checkout alone
    python benchmarks/sort_index.py --baseline /tmp/old/src  # against another checkout's src, in turns

Over a root made by `benchmarks/scale.py --large` (`benchmarks/.work/scale/runs-100000`;
`--root` for another), each source builds its own index once (in a temporary folder, so the
root's own `.labtrack/` is not touched; later sorts reuse it), drops any sort index left from an earlier run, then
times `Index.page(limit=100)` in process for three sorts: the first sort (which makes the sort
index), 5 warm sorts, 3 at offset 50,000 and 4 with a where on a param. Sources run one after
the other, sort by sort, each in its own process. Prints one line per source and sort; the
medians go in benchmarks/RESULTS.md by hand ("Speed at scale, round 3").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SORTS = ("-metrics.val/acc:max", "metrics.val/acc:max", "params.lr")

# Run in a child process with the source under test first on sys.path.
_CHILD = r"""
import json, sys, time, statistics
src, root, index_path, sort = sys.argv[1:5]
sys.path.insert(0, src)
from labtrack._index import Index

ix = Index(root, path=index_path)
ix.refresh()
con = ix._connect()
for (name,) in con.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'runs_sort_%'").fetchall():
    con.execute(f"DROP INDEX {name}")

def timed(**kw):
    t0 = time.perf_counter()
    ix.page(limit=100, **kw)
    return time.perf_counter() - t0

first = timed(sort=sort)
warm = [timed(sort=sort) for _ in range(5)]
deep = [timed(sort=sort, offset=50000) for _ in range(3)]
where = [timed(sort=sort, where=f"params.batch >= {k}") for k in range(4)]
print(json.dumps({"first": first, "warm": statistics.median(warm),
                  "offset_50000": statistics.median(deep), "where": statistics.median(where)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=str(HERE / ".work" / "scale" / "runs-100000"),
                    help="a root of runs (default: the one benchmarks/scale.py --large makes)")
    ap.add_argument("--baseline", help="another checkout's src folder, timed in turns with this one")
    args = ap.parse_args()
    root = Path(args.root)
    if not root.is_dir():
        raise SystemExit(f"no root at {root}: run `python benchmarks/scale.py --large --only-runs` "
                         "first, or pass --root")
    sources = {"this": str(HERE.parent / "src")}
    if args.baseline:
        sources["baseline"] = str(Path(args.baseline).resolve())
    with tempfile.TemporaryDirectory(prefix="sort-index-") as tmp:
        for sort in SORTS:
            for label, src in sources.items():
                index = Path(tmp) / f"{label}.sqlite"
                out = subprocess.run([sys.executable, "-c", _CHILD, src, str(root), str(index), sort],
                                     capture_output=True, text=True, check=False)
                if out.returncode:
                    raise SystemExit(f"{label} failed on {sort}:\n{out.stderr[-2000:]}")
                got = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{label:8s} {sort:22s} first {got['first']:.3f} s  warm {got['warm']:.4f} s  "
                      f"offset 50,000 {got['offset_50000']:.4f} s  with a where {got['where']:.3f} s",
                      flush=True)
    print(f"medians of 5 (warm), 3 (offset), 4 (where); load {open('/proc/loadavg').read().split()[0]}"
          if Path("/proc/loadavg").exists() else "medians of 5 (warm), 3 (offset), 4 (where)")


if __name__ == "__main__":
    main()
