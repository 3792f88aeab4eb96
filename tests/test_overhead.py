"""The hot path: `run.log({one scalar})` against a `dict.update` + `list.append` loop.

Both loops run in this process, interleaved, several times; the fastest repetition of each is
compared. Times are the measuring thread's CPU time (`time.thread_time`), so other processes
on a busy shared machine (and the run's own writer thread) do not count against either loop.
"""

from __future__ import annotations

import time
import pytest

import labtrack
from labtrack import _run

pytestmark = pytest.mark.timeout(120)

N = 100_000
REPS = 5


def _baseline(n: int) -> float:
    d: dict[str, float] = {}
    lst: list[int] = []
    x = 0.5
    t0 = time.thread_time()
    for i in range(n):
        d.update({"loss": x})
        lst.append(i)
    return time.thread_time() - t0


def _logging(run: labtrack.Run, n: int) -> float:
    log = run.log
    x = 0.5
    t0 = time.thread_time()
    for _ in range(n):
        log({"loss": x})
    return time.thread_time() - t0


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[float, list[float], list[float]]:
    """(ratio of the fastest repetitions, baseline times, log times), measured once per module."""
    run = labtrack.Run("overhead", root=tmp_path_factory.mktemp("overhead") / "root", capture_git=False, capture_console=False,
                       _environ={})
    try:
        base, logged = [], []
        for _ in range(REPS):
            base.append(_baseline(N))
            logged.append(_logging(run, N))
    finally:
        run.finish()
    lines = (run.dir / "scalars" / "loss.csv").read_bytes().count(b"\n") - 1
    assert lines == REPS * N  # the measured calls really recorded every point
    return min(logged) / min(base), base, logged


def test_log_one_scalar_costs_at_most_3x_a_dict_update_and_list_append(
        measured: tuple[float, list[float], list[float]]) -> None:
    # The target. The C path (labtrack._hot) measures ~2.1x here; the pure Python
    # path (LABTRACK_NO_C=1, or no compiler at install) measures 3.2-3.6x and is held to a
    # regression bound instead (time.time() alone is a third of a baseline iteration).
    ratio, base, logged = measured
    bound = 3.0 if _run.HOT else 4.2
    assert ratio <= bound, (
        f"run.log costs {ratio:.2f}x the baseline ({min(logged) / N * 1e9:.0f} ns per call; "
        f"baseline {min(base) / N * 1e9:.0f} ns per iteration)")
