"""The public surface: `labtrack.__all__` is exactly it, sorted; `import labtrack` stays light."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

import labtrack
import labtrack.errors

from conftest import SRC, child_env

EXPECTED = {
    "Audio", "Book", "Color", "DisabledRun", "Histogram", "Html", "Image", "ReadOnlyBook", "RemoteBook", "Run",
    "RunView", "Table", "Video", "__version__", "log_audio", "log_video",
    "current_run", "delayed_interrupt", "eprintln", "errors",
    "finish", "flush", "init", "log", "log_command", "log_figure", "log_histogram", "log_image",
    "log_markdown", "log_table", "log_text", "loop", "open", "print_step", "println", "progress",
    "save_artifact", "save_object", "section", "spinner", "table",
}


def test_all_is_sorted_and_names_the_contract() -> None:
    assert labtrack.__all__ == sorted(labtrack.__all__)
    assert set(labtrack.__all__) == EXPECTED  # a change to the public contract is a conscious one
    for name in labtrack.__all__:
        getattr(labtrack, name)


def test_open_and_the_books_are_typed_and_share_a_read_only_base() -> None:
    import typing

    # ReadOnlyBook: the book over a mirror of an object-store root (labtrack._objstore.book)
    assert typing.get_type_hints(labtrack.open)["return"] == \
        labtrack.Book | labtrack.RemoteBook | labtrack.ReadOnlyBook
    assert issubclass(labtrack.Book, labtrack.ReadOnlyBook)
    assert issubclass(labtrack.RemoteBook, labtrack.ReadOnlyBook)
    assert not issubclass(labtrack.RemoteBook, labtrack.Book)
    changing = ("remove", "move", "tag", "set_comment", "gc")
    assert all(hasattr(labtrack.Book, m) and not hasattr(labtrack.ReadOnlyBook, m) for m in changing)


def test_all_is_exactly_the_public_names() -> None:
    assert labtrack.__all__ == sorted(labtrack.__all__)
    assert len(set(labtrack.__all__)) == len(labtrack.__all__)
    public = {name for name, value in vars(labtrack).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    public |= {"errors", "__version__"}
    assert set(labtrack.__all__) == public


def test_every_public_name_exists_and_callables_have_docstrings() -> None:
    for name in labtrack.__all__:
        obj = getattr(labtrack, name)
        if callable(obj):
            assert obj.__doc__ and obj.__doc__.strip(), f"labtrack.{name} has no docstring"


def test_issue_api_methods_exist_on_run_and_disabled_run() -> None:
    methods = ["log", "log_image", "log_text", "log_markdown", "log_histogram", "log_figure",
               "log_table", "log_audio", "log_video", "log_command", "save_artifact", "save_object", "println", "eprintln",
               "flush", "finish", "__enter__", "__exit__"]
    for cls in (labtrack.Run, labtrack.DisabledRun):
        for m in methods:
            assert callable(getattr(cls, m, None)), f"{cls.__name__}.{m}"


def test_errors_module_all_and_hierarchy() -> None:
    errs = labtrack.errors
    assert errs.__all__ == sorted(errs.__all__)
    classes = [getattr(errs, n) for n in errs.__all__]
    assert all(issubclass(c, errs.LabtrackError) for c in classes)
    assert issubclass(errs.LabtrackTypeError, TypeError)
    assert issubclass(errs.LabtrackValueError, ValueError)
    assert issubclass(errs.LabtrackNameError, errs.LabtrackValueError)
    defined = {n for n, v in vars(errs).items() if isinstance(v, type) and issubclass(v, Exception)
               and v.__module__ == errs.__name__}
    assert defined == set(errs.__all__)


def test_import_labtrack_imports_nothing_heavy() -> None:
    code = (
        "import sys, json, labtrack\n"
        "heavy = ['pandas', 'pyarrow', 'matplotlib', 'torch', 'starlette', 'uvicorn', 'httpx', 'numpy',\n"
        "         'PIL', 'rich', 'click', 'sqlite3']\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(),
                       cwd=str(SRC.parent), timeout=60)
    assert p.returncode == 0, p.stderr
    loaded = json.loads(p.stdout)
    required_absent = {"pandas", "pyarrow", "matplotlib", "torch", "starlette", "uvicorn", "httpx", "numpy"}
    assert not [m for m in loaded if m.split(".")[0] in required_absent], loaded


def test_import_labtrack_has_no_side_effects() -> None:
    code = (
        "import sys, signal, threading, logging, json\n"
        "hook, term = sys.excepthook, signal.getsignal(signal.SIGTERM)\n"
        "n_threads, handlers = threading.active_count(), list(logging.getLogger().handlers)\n"
        "out, err = sys.stdout, sys.stderr\n"
        "import labtrack\n"
        "print(json.dumps([sys.excepthook is hook, signal.getsignal(signal.SIGTERM) == term,\n"
        "                  threading.active_count() == n_threads, logging.getLogger().handlers == handlers,\n"
        "                  sys.stdout is out and sys.stderr is err]))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(),
                       cwd=str(SRC.parent), timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [True, True, True, True, True]
