"""Real child processes ended by SIGKILL, SIGTERM, SIGINT and uncaught exceptions.

After SIGKILL everything logged at least one flush interval before the kill is on disk, in
whole lines, and readers show the run as crashed; the other endings are recorded in run.json.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from labtrack._store.reader import read_run_meta
from labtrack._store.scalars import read_columns as read_scalars

from conftest import banner as _banner
from conftest import child_env, only_run_dir, read_line, run_script, without_banner

pytestmark = pytest.mark.timeout(120)

FLUSH = 0.2
# The writer flushes every FLUSH seconds; on a loaded shared machine its thread may start a
# flush late. This is the most we allow on top of one flush interval.
SCHEDULING_SLACK = 0.3

LOOP = """
    import sys, time, labtrack
    run = labtrack.init("crash", config={"lr": 0.1})
    i = 0
    while True:
        run.log({"i": float(i), "train/loss": 1.0 / (i + 1)}, step=i)
        if i % 20 == 0:
            print(f"{i} {time.time():.6f}", flush=True)
        i += 1
        time.sleep(0.001)
"""


class Child:
    """A logging child process whose stdout progress lines are collected by a thread."""

    def __init__(self, code: str, cwd: Path, env: dict[str, str]) -> None:
        script = cwd / "child.py"
        script.write_text(textwrap.dedent(code))
        self.proc = subprocess.Popen([sys.executable, str(script)], cwd=cwd, env=child_env(env),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._err: list[str] = []
        self._readers = [threading.Thread(target=self._read, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._readers:
            t.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not _banner(line):  # init()'s run id and params table
                self.lines.append(line.rstrip("\n"))
        self.proc.stdout.close()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self._err.append(self.proc.stderr.read())
        self.proc.stderr.close()

    def wait_for_lines(self, n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.lines) < n:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"child printed {self.lines[-3:]} and {self.stderr()}")
            time.sleep(0.02)

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        for t in self._readers:
            t.join(5)
        return "".join(self._err)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the child did not exit (a deadlock in its signal handling?)") from None
        for t in self._readers:
            t.join(5)
        return rc


def _env(root: Path) -> dict[str, str]:
    return {"LABTRACK_ROOT": str(root), "LABTRACK_FLUSH_SECONDS": str(FLUSH),
            "LABTRACK_HEARTBEAT_SECONDS": "0.5", "LABTRACK_CAPTURE_GIT": "0"}


def _assert_whole_lines(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"step,value,time\n")
    assert data.endswith(b"\n"), f"{path} ends in a partial line: {data[-40:]!r}"
    for line in data.decode().splitlines()[1:]:
        s, v, t = line.split(",")
        int(s), float(v), float(t)


def test_sigkill_loses_at_most_one_flush_interval_and_reads_as_crashed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    child = Child(LOOP, tmp_path, _env(root))
    child.wait_for_lines(3)
    time.sleep(1.5)  # several flushes
    killed_at = time.time()
    child.proc.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL

    run_dir = only_run_dir(root)
    for rel in ("scalars/i.csv", "scalars/train/loss.csv"):
        _assert_whole_lines(run_dir / rel)
    steps, values, times = read_scalars(run_dir / "scalars" / "i.csv")
    assert steps == list(range(len(steps))) and values == [float(s) for s in steps]
    loss = pd.read_csv(run_dir / "scalars" / "train" / "loss.csv")
    assert loss["step"].tolist() == list(range(len(loss)))

    # Every point the child reported logging at least one flush interval (plus slack) before
    # the kill is on disk.
    must = [(int(i), float(t)) for i, t in (line.split() for line in child.lines)
            if float(t) <= killed_at - FLUSH - SCHEDULING_SLACK]
    assert len(must) > 10, child.lines[:5]
    last_needed = max(i for i, _ in must)
    assert steps[-1] >= last_needed, (
        f"step {last_needed} was logged {killed_at - dict(must)[last_needed]:.2f}s before SIGKILL "
        f"but the file ends at step {steps[-1]}")

    meta = read_run_meta(run_dir)
    assert meta["status"] == "crashed"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"  # crashed is derived
    # even on another host (pid unknown), a stale heartbeat reads as crashed
    assert read_run_meta(run_dir, now=time.time() + 3600)["status"] == "crashed"
    console = (run_dir / "console.log").read_text()
    assert console.endswith("\n") and console.splitlines()[0] == child.lines[0]


def test_a_live_run_reads_as_running(tmp_path: Path) -> None:
    root = tmp_path / "root"
    child = Child(LOOP, tmp_path, _env(root))
    try:
        child.wait_for_lines(3)
        time.sleep(1.0)
        run_dir = only_run_dir(root)
        assert read_run_meta(run_dir)["status"] == "running"
        beat = (run_dir / "heartbeat").stat().st_mtime
        deadline = time.monotonic() + 10
        while (run_dir / "heartbeat").stat().st_mtime <= beat and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (run_dir / "heartbeat").stat().st_mtime > beat  # touched while alive (every 0.5 s)
    finally:
        child.proc.kill()
        child.wait()


def test_sigterm_finishes_as_killed_and_exits_like_the_default(tmp_path: Path) -> None:
    root = tmp_path / "root"
    child = Child(LOOP, tmp_path, _env(root))
    child.wait_for_lines(3)
    time.sleep(0.5)
    child.proc.send_signal(signal.SIGTERM)
    assert child.wait() == -signal.SIGTERM
    run_dir = only_run_dir(root)
    meta = read_run_meta(run_dir)
    assert meta["status"] == "killed" and meta["ended"] is not None
    _assert_whole_lines(run_dir / "scalars" / "i.csv")
    steps, _, _ = read_scalars(run_dir / "scalars" / "i.csv")
    # finish() drained everything: at least every reported step, and the summary agrees
    assert steps[-1] >= int(child.lines[-1].split()[0])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["i"]["count"] == len(steps) and summary["i"]["step"] == steps[-1]


def test_sigterm_calls_the_scripts_own_handler(tmp_path: Path) -> None:
    root = tmp_path / "root"
    code = textwrap.dedent("""
        import signal, sys
        def handler(signum, frame):
            open("handler-called", "w").write(str(signum))
            sys.exit(3)
        signal.signal(signal.SIGTERM, handler)
    """) + textwrap.dedent(LOOP)
    child = Child(code, tmp_path, _env(root))
    child.wait_for_lines(3)
    child.proc.send_signal(signal.SIGTERM)
    assert child.wait() == 3
    assert (tmp_path / "handler-called").read_text() == str(int(signal.SIGTERM))
    assert read_run_meta(only_run_dir(root))["status"] == "killed"


def test_sigterm_while_printing_heavily_does_not_hang(tmp_path: Path) -> None:
    # The signal handler finishes the run on the main thread, which may be inside the console
    # tee's write when the signal arrives.
    root = tmp_path / "root"
    code = """
        import time, labtrack
        run = labtrack.init("crash")
        print("ready", flush=True)
        i = 0
        while True:
            print(("\\r" + f"progress {i}") * 200, end="")  # a progress bar redrawn in place
            if i % 7 == 0:
                print()
            i += 1
    """
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(code))
    for attempt in range(3):
        out = tmp_path / f"out{attempt}.txt"  # a file, as under a job scheduler: writes never block
        with open(out, "w") as f:
            proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=child_env(_env(root)),
                                    stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not without_banner(out.read_text()).startswith("ready") and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"attempt {attempt}: the child did not exit within 15 s of SIGTERM") from None
        assert rc == -signal.SIGTERM
    statuses = [read_run_meta(d)["status"] for d in sorted((root / "crash").iterdir())]
    assert statuses == ["killed"] * 3


def test_uncaught_exception_finishes_as_failed_with_traceback(tmp_path: Path) -> None:
    root = tmp_path / "root"
    p = run_script("""
        import labtrack
        def train():
            raise RuntimeError("loss exploded")
        run = labtrack.init("crash")
        run.log({"a": 1.0})
        train()
    """, cwd=tmp_path, env=_env(root))
    assert p.returncode == 1
    assert "RuntimeError: loss exploded" in p.stderr  # the terminal still shows the traceback
    run_dir = only_run_dir(root)
    meta = read_run_meta(run_dir)
    assert meta["status"] == "failed"
    assert meta["error"]["type"] == "RuntimeError" and meta["error"]["message"] == "loss exploded"
    assert "in train" in meta["error"]["traceback"]
    assert pd.read_csv(run_dir / "scalars" / "a.csv")["value"].tolist() == [1.0]


def test_keyboard_interrupt_finishes_as_interrupted(tmp_path: Path) -> None:
    root = tmp_path / "root"
    code = """
        import time, labtrack
        run = labtrack.init("crash")
        run.log({"a": 1.0})
        print("ready", flush=True)
        while True:
            time.sleep(0.01)
    """
    child = Child(code, tmp_path, _env(root))
    child.wait_for_lines(1)
    child.proc.send_signal(signal.SIGINT)
    rc = child.wait()
    assert rc != 0
    meta = read_run_meta(only_run_dir(root))
    assert meta["status"] == "interrupted"
    assert meta["error"]["type"] == "KeyboardInterrupt"


# The child presses Ctrl-C on itself `presses` times while finish() drains the writer: the
# moment a user's second (or third) Ctrl-C lands.
CTRL_C_DURING_FINISH = """
    import os, signal, sys, time, labtrack
    from labtrack import _writer
    presses = int(sys.argv[1])
    close = _writer.Writer.close
    def pressed_while_closing(self, timeout=None):
        for _ in range(presses):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # each press is handled before the next
        close(self, timeout)
    _writer.Writer.close = pressed_while_closing
    run = labtrack.init("crash")
    for i in range(1000):
        run.log({"a": float(i)})
    print("ready", flush=True)
    while True:
        time.sleep(0.01)
"""


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_again_while_finishing_still_sets_the_status(tmp_path: Path, presses: int) -> None:
    """A second Ctrl-C during finish is held (all data written); a third cuts the writing
    short, but the run still reads "interrupted", never "running" or "crashed"."""
    root = tmp_path / "root"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CTRL_C_DURING_FINISH))
    proc = subprocess.Popen([sys.executable, str(script), str(presses)], cwd=tmp_path,
                            env=child_env(_env(root)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert read_line(proc.stdout) == "ready\n"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "press Ctrl-C again to stop now" in err
    run_dir = only_run_dir(root)
    meta = read_run_meta(run_dir)
    assert meta["status"] == "interrupted", err
    assert meta["error"]["type"] == "KeyboardInterrupt"
    if presses == 1:  # held: the drain went on and wrote everything
        assert len(pd.read_csv(run_dir / "scalars" / "a.csv")) == 1000


def test_normal_exit_without_finish_is_finished(tmp_path: Path) -> None:
    root = tmp_path / "root"
    p = run_script("""
        import labtrack
        run = labtrack.init("crash")
        for i in range(100):
            labtrack.log({"a": float(i)})
    """, cwd=tmp_path, env={**_env(root), "LABTRACK_FLUSH_SECONDS": "3600"})
    assert p.returncode == 0, p.stderr
    run_dir = only_run_dir(root)
    assert read_run_meta(run_dir)["status"] == "finished"
    assert len(pd.read_csv(run_dir / "scalars" / "a.csv")) == 100  # atexit drained the buffer


def test_the_traceback_the_terminal_shows_is_in_console_log(tmp_path: Path) -> None:
    root = tmp_path / "root"
    p = run_script("""
        import labtrack
        run = labtrack.init("crash")
        print("epoch 1")
        raise RuntimeError("loss exploded")
    """, cwd=tmp_path, env=_env(root))
    assert p.returncode == 1 and "RuntimeError: loss exploded" in p.stderr
    console = (only_run_dir(root) / "console.log").read_text()
    assert console.startswith("epoch 1\n") and "RuntimeError: loss exploded" in console


def test_sys_exit_with_an_error_code_is_failed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    p = run_script("""
        import sys, labtrack
        run = labtrack.init("crash")
        run.log({"a": 1.0})
        sys.exit("data directory missing")
    """, cwd=tmp_path, env=_env(root))
    assert p.returncode == 1 and "data directory missing" in p.stderr
    meta = read_run_meta(only_run_dir(root))
    assert meta["status"] == "failed"
    assert meta["error"]["type"] == "SystemExit" and "data directory missing" in meta["error"]["message"]


def test_sys_exit_zero_is_finished(tmp_path: Path) -> None:
    root = tmp_path / "root"
    p = run_script("""
        import sys, labtrack
        labtrack.init("crash")
        sys.exit(0)
    """, cwd=tmp_path, env=_env(root))
    assert p.returncode == 0
    assert read_run_meta(only_run_dir(root))["status"] == "finished"


def test_sys_exit_zero_inside_with_is_finished(tmp_path: Path) -> None:
    root = tmp_path / "root"
    p = run_script("""
        import sys, labtrack
        with labtrack.init("crash") as run:
            run.log({"a": 1.0})
            sys.exit(0)
    """, cwd=tmp_path, env=_env(root))
    assert p.returncode == 0, p.stderr
    assert read_run_meta(only_run_dir(root))["status"] == "finished"


def test_resume_after_sigkill_continues_the_crashed_run(tmp_path: Path) -> None:
    root = tmp_path / "root"
    child = Child(LOOP, tmp_path, _env(root))
    child.wait_for_lines(3)
    time.sleep(0.6)
    child.proc.send_signal(signal.SIGKILL)
    child.wait()
    run_dir = only_run_dir(root)
    assert read_run_meta(run_dir)["status"] == "crashed"
    before, _, _ = read_scalars(run_dir / "scalars" / "i.csv")
    p = run_script(f"""
        import labtrack
        run = labtrack.init(resume={run_dir.name!r})
        run.log({{"i": -1.0}})
        run.finish()
    """, cwd=tmp_path, env=_env(root))
    assert p.returncode == 0, p.stderr
    steps, values, _ = read_scalars(run_dir / "scalars" / "i.csv")
    assert steps[: len(before)] == before and values[-1] == -1.0
    assert steps[-1] > before[-1]  # the step continues after the last one on disk
    meta = read_run_meta(run_dir)
    assert meta["status"] == "finished" and len(meta["resumed"]) == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["i"]["count"] == len(steps)


def test_resuming_a_run_a_live_process_is_writing_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    child = Child(LOOP, tmp_path, _env(root))
    try:
        child.wait_for_lines(3)
        run_dir = only_run_dir(root)
        resume = f"""
            import labtrack
            run = labtrack.init(resume={run_dir.name!r})
            run.log({{"i": -1.0}})
            run.finish()
        """
        p = run_script(resume, cwd=tmp_path, env=_env(root))
        assert p.returncode != 0
        assert "RunStateError" in p.stderr and "still running (pid" in p.stderr, p.stderr
        assert read_run_meta(run_dir)["status"] == "running"  # the live run is untouched
    finally:
        child.proc.send_signal(signal.SIGKILL)
        child.wait()
    p = run_script(resume, cwd=tmp_path, env=_env(root))  # dead now: it reads crashed
    assert p.returncode == 0, p.stderr
    assert read_run_meta(run_dir)["status"] == "finished"
    assert read_scalars(run_dir / "scalars" / "i.csv")[1][-1] == -1.0


def test_resume_after_a_torn_last_line_keeps_the_file_readable(tmp_path: Path) -> None:
    # A crash (power loss, a full disk outside labtrack's control) can leave a series file
    # ending in a partial line; readers skip it, but appending after it must not glue new
    # lines onto it.
    root = tmp_path / "root"
    p = run_script("""
        import labtrack
        run = labtrack.init("crash")
        for i in range(3):
            run.log({"x": float(i)})
        run.finish()
    """, cwd=tmp_path, env=_env(root))
    assert p.returncode == 0, p.stderr
    run_dir = only_run_dir(root)
    with open(run_dir / "scalars" / "x.csv", "ab") as f:
        f.write(b"3,0.12")  # torn write
    p = run_script(f"""
        import labtrack
        run = labtrack.init(resume={run_dir.name!r})
        run.log({{"x": 9.0}})
        run.finish()
    """, cwd=tmp_path, env=_env(root))
    assert p.returncode == 0, p.stderr
    df = pd.read_csv(run_dir / "scalars" / "x.csv")
    assert df["value"].tolist()[:3] == [0.0, 1.0, 2.0] and df["value"].tolist()[-1] == 9.0
    assert len(df) in (4, 5) and df["step"].dtype.kind == "i"


def test_sigterm_still_ends_a_script_with_a_bare_except(tmp_path: Path) -> None:
    # Without labtrack, SIGTERM's default action ends this loop. labtrack must not turn
    # SIGTERM into something the script's own error handling can swallow.
    root = tmp_path / "root"
    code = """
        import time, labtrack
        run = labtrack.init("crash")
        print("ready", flush=True)
        i = 0
        while True:
            try:
                run.log({"i": float(i)})
                time.sleep(0.01)
            except:  # noqa: E722 - research code does this
                pass
            i += 1
    """
    child = Child(code, tmp_path, _env(root))
    child.wait_for_lines(1)
    time.sleep(0.3)
    child.proc.send_signal(signal.SIGTERM)
    try:
        rc = child.proc.wait(5)
    except subprocess.TimeoutExpired:
        child.proc.kill()
        child.wait()
        raise AssertionError("SIGTERM was swallowed: the script kept running") from None
    assert rc == -signal.SIGTERM
    assert read_run_meta(only_run_dir(root))["status"] == "killed"


def test_sigterm_with_the_scripts_handler_while_printing_heavily(tmp_path: Path) -> None:
    root = tmp_path / "root"
    code = """
        import signal, sys, labtrack
        def handler(signum, frame):
            open("handler-called", "w").write("yes")
            sys.exit(3)
        signal.signal(signal.SIGTERM, handler)
        run = labtrack.init("crash")
        print("ready", flush=True)
        i = 0
        while True:
            print(("\\r" + f"progress {i}") * 200, end="")
            if i % 7 == 0:
                print()
            run.log({"i": float(i)})
            i += 1
    """
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(code))
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=child_env(_env(root)),
                                stdout=f, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not without_banner(out.read_text()).startswith("ready") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("the child did not exit within 20 s of SIGTERM") from None
    assert rc == 3 and (tmp_path / "handler-called").read_text() == "yes"
    assert time.monotonic() - started < 8, "finishing the run stalled on a lock held by the interrupted print"
    assert read_run_meta(only_run_dir(root))["status"] == "killed"


def test_a_caught_sys_exit_does_not_mark_the_run_failed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    p = run_script("""
        import argparse, labtrack
        run = labtrack.init("crash")
        parser = argparse.ArgumentParser()
        parser.add_argument("--epochs", type=int)
        try:
            parser.parse_args(["--epochs", "many"])  # argparse calls sys.exit(2)
        except SystemExit:
            pass  # fall back to defaults and train normally
        run.log({"a": 1.0})
    """, cwd=tmp_path, env=_env(root))
    assert p.returncode == 0, p.stderr
    assert read_run_meta(only_run_dir(root))["status"] == "finished"


@pytest.mark.parametrize("activity", [
    "run.log_image('img', np.zeros((2, 2), np.uint8))",
    "run.log_text('t', 'hi')",
    "run.log_histogram('h', [1.0, 2.0])",
    "run.log_markdown('m', '# hi')",
    "run.log_table('tab', [{'a': 1}])",
])
def test_media_only_activity_after_a_caught_sys_exit_finishes_the_run(tmp_path: Path, activity: str) -> None:
    root = tmp_path / "root"
    p = run_script(f"""
        import sys, numpy as np, labtrack
        run = labtrack.init("crash")
        try:
            sys.exit(2)
        except SystemExit:
            pass  # caught: the script goes on, logging only media or text
        {activity}
    """, cwd=tmp_path, env=_env(root))
    assert p.returncode == 0, p.stderr
    assert read_run_meta(only_run_dir(root))["status"] == "finished"


def test_a_forked_child_exiting_does_not_finish_or_duplicate_the_parents_run(tmp_path: Path) -> None:
    root = tmp_path / "root"
    p = run_script("""
        import json, os, sys, labtrack
        run = labtrack.init("crash", flush_seconds=3600)
        for i in range(5):
            run.log({"a": float(i)})
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # a forked helper ends normally (atexit runs in it)
        os.waitpid(pid, 0)
        print(json.load(open(run.dir / "run.json"))["status"])
        run.log({"a": 5.0})
        run.finish()
    """, cwd=tmp_path, env=_env(root))
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == "running"  # the parent is still running
    steps, _, _ = read_scalars(only_run_dir(root) / "scalars" / "a.csv")
    assert steps == [0, 1, 2, 3, 4, 5]
