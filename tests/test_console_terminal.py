"""The console in real processes: a pseudo-terminal, a pipe (CI logs), and real SIGINTs."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path

import pytest

from labtrack._store.reader import read_run_meta
from labtrack._store.scalars import read_columns as read_scalars

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

TRAINING = """
import sys, time, labtrack
with labtrack.section("Setup"):
    # init inside a section: labtrack's console capture goes on top of the live line
    run = labtrack.init(experiment="tty", root=sys.argv[1], capture_git=False)
run.indicator("reward", window=5)
for step in labtrack.loop(range(30), print_every=10):
    with labtrack.section("train"):
        time.sleep(0.01)
    run.store(loss=1.0 / (step + 1), reward=step)
    run.write(step)
    if step == 15:
        print("a user print at step 15")
labtrack.table(["Name", "Accuracy"], [["cat", 0.9], ["dog", None]])
print("after the loop")
run.finish()
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("LABTRACK_") or key in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE",
                                                  "TTY_INTERACTIVE", "COLUMNS", "LINES"):
            del env[key]
    env["TERM"] = "xterm-256color"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run_in_pty(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60.0) -> tuple[str, int]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                            close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    return b"".join(chunks).decode("utf-8", "replace"), code


_TOKENS = re.compile(r"(\r\n|\n|\r|\x1b\[[0-?]*[ -/]*[@-~])")


def _screen_lines(raw: str) -> list[str]:
    """What stays on a terminal's screen: a small model of the controls rich uses
    (carriage return, erase line, cursor up; colours and cursor visibility ignored)."""
    done: list[str] = []
    line, col = "", 0
    for tok in _TOKENS.split(raw):
        if not tok:
            continue
        if tok in ("\n", "\r\n"):
            done.append(line)
            line, col = "", 0
        elif tok == "\r":
            col = 0
        elif tok.startswith("\x1b["):
            if tok == "\x1b[2K":
                line = ""
            elif tok[-1] == "A" and done:
                for _ in range(int(tok[2:-1] or 1)):
                    line = done.pop() if done else ""
        else:
            line = line[:col].ljust(col) + tok + line[col + len(tok):]
            col += len(tok)
    if line:
        done.append(line)
    return [x.rstrip() for x in done]


def _run_dir(root: Path) -> Path:
    dirs = [p for p in root.glob("*/*") if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_pseudo_terminal_shows_a_live_line_and_keeps_lines(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAINING)
    root = tmp_path / "runs"
    raw, code = _run_in_pty([sys.executable, str(script), str(root)], _env(tmp_path), tmp_path)
    assert code == 0, raw
    # drawn in place: carriage return and erase-line, with colours
    assert "\r\x1b[2K" in raw
    assert "\x1b[1m" in raw or "\x1b[33m" in raw
    assert raw.rfind("\x1b[?25h") > raw.rfind("\x1b[?25l")  # the cursor is shown again
    lines = _screen_lines(raw)
    kept = [line for line in lines if re.match(r" +\d+:  train", line)]
    assert [int(line.split(":")[0]) for line in kept] == [0, 10, 20, 29], lines
    assert all(re.search(r"\d+/30 \[\d:\d\d<\d:\d\d, ", line) for line in kept)
    assert re.search(r"loss +0\.0333  reward +27\.000", kept[-1])  # 1/30 and mean of 25..29
    assert any(line.startswith("Setup... done") for line in lines)
    assert "a user print at step 15" in lines
    assert "after the loop" in lines
    assert "│ cat  │   0.9000 │" in lines
    # redraws are paced by rich's refresh thread, not one per iteration or value
    assert raw.count("\x1b[2K") < 120
    run_dir = _run_dir(root)
    log = (run_dir / "console.log").read_text()
    assert "\x1b" not in log
    assert "after the loop\n" in log
    assert len(read_scalars(run_dir / "scalars" / "timings" / "train.csv")[1]) == 30
    assert len(read_scalars(run_dir / "scalars" / "timings" / "loop.csv")[1]) == 30


def test_console_log_of_a_terminal_run_holds_the_kept_lines_only(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAINING)
    root = tmp_path / "runs"
    raw, code = _run_in_pty([sys.executable, str(script), str(root)], _env(tmp_path), tmp_path)
    assert code == 0, raw
    log = (_run_dir(root) / "console.log").read_text().splitlines()
    assert "a user print at step 15" in log
    kept = [line for line in log if re.match(r" +\d+:", line)]
    assert [int(line.split(":")[0]) for line in kept] == [0, 10, 20, 29]
    assert all(line.rstrip().endswith("it/s]") for line in kept), kept


def test_pipe_gets_plain_lines_and_no_redraws(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAINING)
    root = tmp_path / "runs"
    proc = subprocess.run([sys.executable, str(script), str(root)], env=_env(tmp_path),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "\x1b" not in out and "\r" not in out
    lines = out.splitlines()
    assert lines[0].startswith("labtrack: run ")  # init() names the run first
    lines = lines[1:]
    assert lines[0].startswith("Setup... done ")
    loop_lines = [line for line in lines if re.match(r" +\d+:", line)]
    assert [int(line.split(":")[0]) for line in loop_lines] == [0, 10, 20, 29]
    assert "a user print at step 15" in lines
    assert lines[-1] == "after the loop"
    assert len(lines) == 1 + 4 + 1 + 6 + 1  # section, loop lines, print, table, print
    assert proc.stderr == ""


INTERRUPTIBLE = """
import sys, time, labtrack
run = labtrack.init(experiment="sig", root=sys.argv[1], capture_git=False)
mode = sys.argv[2]
if mode == "delayed":
    with labtrack.delayed_interrupt():
        print("in block", flush=True)
        time.sleep(float(sys.argv[3]))
        print("block finished", flush=True)
    print("after block", flush=True)
else:
    for step in labtrack.loop(range(1000), print_every=5):
        run.log({"x": step})
        if step == 3:
            print("in loop", flush=True)
        time.sleep(0.05)
    print("after loop", flush=True)
run.finish()
"""


def _start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], Path]:
    script = tmp_path / "child.py"
    script.write_text(INTERRUPTIBLE)
    root = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, str(script), str(root), *args], env=_env(tmp_path),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, root


def _wait_for(proc: subprocess.Popen[str], text: str) -> list[str]:
    """Read the child's lines until one starts with `text`."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # blocks on the pipe; pytest-timeout bounds it
        seen.append(line.rstrip("\n"))
        if line.startswith(text):
            return seen
    raise AssertionError(f"child ended before printing {text!r}: {seen}")


def test_sigint_inside_delayed_interrupt_waits_for_the_block(tmp_path: Path) -> None:
    proc, root = _start(tmp_path, "delayed", "3.0")
    _wait_for(proc, "in block")
    proc.send_signal(signal.SIGINT)
    seen = _wait_for(proc, "Interrupt received")  # told at once, while the block goes on
    assert "block finished" not in seen
    out, err = proc.communicate(timeout=60)
    assert "block finished" in out
    assert "after block" not in out
    assert "KeyboardInterrupt" in err
    assert proc.returncode != 0
    meta = read_run_meta(_run_dir(root))
    assert meta["status"] == "interrupted"


def test_second_sigint_stops_at_once(tmp_path: Path) -> None:
    proc, root = _start(tmp_path, "delayed", "60")
    _wait_for(proc, "in block")
    proc.send_signal(signal.SIGINT)
    _wait_for(proc, "Interrupt received")  # the first one was held
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - started < 20  # not the 60 s the block would take
    assert "block finished" not in out
    assert "KeyboardInterrupt" in err
    assert read_run_meta(_run_dir(root))["status"] == "interrupted", err


def test_sigint_in_a_loop_interrupts_the_run_and_keeps_what_was_logged(tmp_path: Path) -> None:
    proc, root = _start(tmp_path, "loop")
    _wait_for(proc, "in loop")
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "after loop" not in out
    assert "KeyboardInterrupt" in err
    stopped = [line for line in out.splitlines() if line.endswith("stopped")]
    assert len(stopped) == 1 and re.search(r"\d+/1,000 \[", stopped[0])
    run_dir = _run_dir(root)
    assert read_run_meta(run_dir)["status"] == "interrupted"
    steps, _, _ = read_scalars(run_dir / "scalars" / "x.csv")
    assert steps[:4] == [0, 1, 2, 3]
    assert len(read_scalars(run_dir / "scalars" / "timings" / "loop.csv")[1]) >= 3


def test_import_labtrack_does_not_import_rich() -> None:
    code = textwrap.dedent("""
        import sys, labtrack
        labtrack.loop  # the console's names are there
        print(sorted(m for m in sys.modules if m == "rich" or m.startswith("rich.")))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_streams_are_restored_after_the_live_line(tmp_path: Path, stream: str) -> None:
    code = textwrap.dedent(f"""
        import sys, labtrack
        before = sys.{stream}
        for _ in labtrack.loop(range(3)):
            pass
        assert sys.{stream} is before, sys.{stream}
        print("ok")
    """)
    raw, rc = _run_in_pty([sys.executable, "-c", code], _env(tmp_path), tmp_path)
    assert rc == 0, raw
    assert "ok" in _screen_lines(raw)
