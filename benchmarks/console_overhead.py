"""What the console costs per iteration: labtrack.loop / section / store+write against a bare loop.

Run: .venv/bin/python benchmarks/console_overhead.py [--n 200000] [--repeat 5]

Prints, for each case, the best time per iteration over `repeat` runs and the overhead over
the bare loop in microseconds. Output of the console goes to a buffer (plain, or a forced
terminal with the live line and its refresh thread running), never to the screen.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Callable

from rich.console import Console

import labtrack
from labtrack._console._display import use_console


def best_per_iter(fn: Callable[[int], None], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - t0)
    return best / n


def bare(n: int) -> None:
    for _ in range(n):
        pass


def baseline_work(n: int) -> None:
    d: dict[str, float] = {}
    out: list[float] = []
    for i in range(n):
        d.update(x=float(i))
        out.append(float(i))


def loop_only(n: int) -> None:
    for _ in labtrack.loop(range(n), print_every=10**9):
        pass


def loop_work(n: int) -> None:
    d: dict[str, float] = {}
    out: list[float] = []
    for i in labtrack.loop(range(n), print_every=10**9):
        d.update(x=float(i))
        out.append(float(i))


def loop_default_print_every(n: int) -> None:
    for _ in labtrack.loop(range(n), print_every=100):
        pass


def sections(n: int) -> None:
    for _ in labtrack.loop(range(n), print_every=10**9):
        with labtrack.section("a"):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n, repeat = args.n, args.repeat

    rows: list[tuple[str, float, float]] = []
    base = best_per_iter(bare, n, repeat)

    def case(label: str, fn: Callable[[int], None], against: float, count: int = n) -> None:
        per = best_per_iter(fn, count, repeat)
        rows.append((label, per, against))

    with use_console(Console(file=io.StringIO(), width=120, force_terminal=False)):
        case("bare loop", bare, base)
        work = best_per_iter(baseline_work, n, repeat)
        rows.append(("bare loop + dict.update + list.append", work, base))
        case("labtrack.loop, no run, plain output", loop_only, base)
        case("labtrack.loop + the same work, no run", loop_work, work)
        case("labtrack.loop, print_every=100, plain output", loop_default_print_every, base)
        with tempfile.TemporaryDirectory() as root:
            run = labtrack.init(experiment="bench", root=root, capture_git=False,
                                capture_console=False)
            case("labtrack.loop with a run (timings/loop per iteration)", loop_only, base)
            case("labtrack.loop + section with a run", sections, base, n // 4)

            def indicators(count: int) -> None:
                for step in labtrack.loop(range(count), print_every=10**9):
                    run.store(loss=0.5)
                    run.write(step)

            case("labtrack.loop + run.store + run.write with a run", indicators, base, n // 4)
            run.finish()
    with use_console(Console(file=io.StringIO(), width=120, force_terminal=True)):
        case("labtrack.loop, terminal (live line, refresh thread)", loop_only, base)

    print(f"n={n:,} repeat={repeat} (best of)")
    print(f"{'case':58} {'per iter':>10} {'overhead':>10} {'ratio':>7}")
    for label, per, against in rows:
        print(f"{label:58} {per * 1e6:8.3f}us {(per - against) * 1e6:8.3f}us {per / against:6.1f}x")


if __name__ == "__main__":
    main()
