"""Console capture: console.log keeps what the terminal shows; the terminal still sees everything."""

from __future__ import annotations

from pathlib import Path

import pytest

from labtrack._capture import LineAssembler

from conftest import only_run_dir, run_script, without_banner

pytestmark = pytest.mark.timeout(120)


def _feed(*chunks: str) -> str:
    asm = LineAssembler()
    return "".join(asm.feed(c) for c in chunks) + asm.rest()


@pytest.mark.parametrize("chunks,expected", [
    (["hello\n"], "hello\n"),
    (["a\nb\n"], "a\nb\n"),
    (["10%\r", "20%\r", "100%\n"], "100%\n"),
    (["[#   ] 1/4\r[##  ] 2/4\r[####] 4/4\n", "done\n"], "[####] 4/4\ndone\n"),
    (["abcdef\rXY\n"], "XYcdef\n"),  # like a terminal: later text overwrites, the rest stays
    (["line\r\n", "next\r\n"], "line\nnext\n"),  # Windows line ends are one break
    (["par", "tial", " line\n"], "partial line\n"),
    (["no newline at the end"], "no newline at the end\n"),
    (["\x1b[31mred\x1b[0m plain\n"], "red plain\n"),
    (["\x1b]0;title\x07text\n"], "text\n"),
    (["50%\r"], "50%\n"),
    (["x\r", "\n"], "x\n"),
    (["", "\n"], "\n"),
])
def test_line_assembler(chunks: list[str], expected: str) -> None:
    assert _feed(*chunks) == expected


def test_erase_line_sequence_used_by_rich_and_tqdm_is_honoured() -> None:
    # rich's live displays and many progress bars redraw with "\r" + ESC[2K (erase the line).
    assert _feed("downloading a long file name\r\x1b[2Kdone\n") == "done\n"
    assert _feed("epoch 10 loss 0.1234\r\x1b[Kepoch 11\n") == "epoch 11\n"


def test_terminal_sees_everything_and_console_log_keeps_final_states(tmp_path: Path) -> None:
    code = r"""
        import sys, threading, labtrack
        run = labtrack.init("cap")
        print("start")
        for i in range(0, 101, 10):
            sys.stdout.write(f"\rprogress {i:3d}%")
            sys.stdout.flush()
        print()
        sys.stderr.write("warning on stderr\n")
        print("\x1b[1mbold\x1b[0m text")
        t = threading.Thread(target=lambda: print("from a thread"))
        t.start(); t.join()
        run.println("println {}", 1)
        sys.stdout.write("unfinished last line")
        run.finish()
        print("after finish")
    """
    root = tmp_path / "root"
    p = run_script(code, cwd=tmp_path, env={"LABTRACK_ROOT": str(root), "LABTRACK_CAPTURE_GIT": "0"},
                   text=False)
    assert p.returncode == 0, p.stderr
    # the terminal got every byte, carriage returns and escape codes included
    progress = "".join(f"\rprogress {i:3d}%" for i in range(0, 101, 10))
    assert without_banner(p.stdout.decode()) == ("start\n" + progress + "\n\x1b[1mbold\x1b[0m text\nfrom a thread\nprintln 1\n"
                                 "unfinished last lineafter finish\n")
    assert p.stderr == b"warning on stderr\n"
    console = (only_run_dir(root) / "console.log").read_text()
    assert console == ("start\nprogress 100%\nwarning on stderr\nbold text\nfrom a thread\nprintln 1\n"
                       "unfinished last line\n")


def test_capture_console_false_writes_no_console_log(tmp_path: Path) -> None:
    root = tmp_path / "root"
    p = run_script("""
        import labtrack
        run = labtrack.init("cap", capture_console=False)
        print("hello")
        run.finish()
    """, cwd=tmp_path, env={"LABTRACK_ROOT": str(root), "LABTRACK_CAPTURE_GIT": "0"})
    assert p.returncode == 0 and without_banner(p.stdout) == "hello\n"
    assert not (only_run_dir(root) / "console.log").exists()


def test_streams_are_restored_after_finish(tmp_path: Path) -> None:
    p = run_script("""
        import sys, labtrack
        out, err = sys.stdout, sys.stderr
        run = labtrack.init("cap")
        wrapped = sys.stdout is not out
        fileno_ok = sys.stdout.fileno() == 1 and sys.stdout.isatty() == out.isatty()
        run.finish()
        print(wrapped, fileno_ok, sys.stdout is out, sys.stderr is err)
    """, cwd=tmp_path, env={"LABTRACK_ROOT": str(tmp_path / "root"), "LABTRACK_CAPTURE_GIT": "0"})
    assert p.returncode == 0, p.stderr
    assert without_banner(p.stdout).split() == ["True", "True", "True", "True"]


def test_two_captured_runs_each_keep_their_own_console(tmp_path: Path) -> None:
    p = run_script("""
        import sys, labtrack
        out = sys.stdout
        a = labtrack.init("a")
        b = labtrack.Run("b")
        print("both")
        a.finish()
        print("only b")
        b.finish()
        print("none")
        sys.__stderr__.write(f"{sys.stdout is out}\\n")
    """, cwd=tmp_path, env={"LABTRACK_ROOT": str(tmp_path / "root"), "LABTRACK_CAPTURE_GIT": "0"})
    assert p.returncode == 0, p.stderr
    assert without_banner(p.stdout) == "both\nonly b\nnone\n"
    a_dir, = (tmp_path / "root" / "a").iterdir()
    b_dir, = (tmp_path / "root" / "b").iterdir()
    # b's run id line printed while a captured: kept in a's console.log
    assert without_banner((a_dir / "console.log").read_text()) == "both\n"
    assert (b_dir / "console.log").read_text() == "both\nonly b\n"


def test_streams_are_restored_when_runs_finish_in_the_order_they_started(tmp_path: Path) -> None:
    p = run_script("""
        import sys, labtrack
        out, err = sys.stdout, sys.stderr
        a = labtrack.Run("a")
        b = labtrack.Run("b")
        a.finish()
        b.finish()
        sys.__stderr__.write(f"{sys.stdout is out} {sys.stderr is err}\\n")
    """, cwd=tmp_path, env={"LABTRACK_ROOT": str(tmp_path / "root"), "LABTRACK_CAPTURE_GIT": "0"})
    assert p.returncode == 0, p.stderr
    assert p.stderr.split() == ["True", "True"]
