"""What the framework bridges share: lazy imports, the missing-package error, readable params."""

from __future__ import annotations

import enum
import json
import subprocess
import sys
from pathlib import Path

import pytest

from labtrack.errors import LabtrackTypeError, MissingDependencyError
from labtrack.integrations._common import make_run, readable, require, scalar

SRC = Path(__file__).resolve().parents[1] / "src"


def test_import_labtrack_imports_no_framework() -> None:
    code = ("import sys, labtrack, labtrack.integrations; "
            "print([m for m in ('lightning', 'pytorch_lightning', 'transformers', 'keras', 'torch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(SRC), "PATH": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("module, package", [("lightning", "lightning"), ("transformers", "transformers"),
                                             ("keras", "keras")])
def test_a_missing_framework_says_how_to_install_it(module: str, package: str) -> None:
    # sys.modules[name] = None makes `import name` fail as if the package were not installed
    code = (f"import sys\nfor m in ('lightning', 'pytorch_lightning', 'transformers', 'keras'): sys.modules[m] = None\n"
            f"try:\n    import labtrack.integrations.{module}\nexcept Exception as e:\n"
            f"    print(type(e).__name__, '|', e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(SRC), "PATH": "", "KERAS_BACKEND": "torch"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("MissingDependencyError |"), out.stdout
    assert f"pip install {package}" in out.stdout and "labtrack[bridges]" in out.stdout


def test_require_raises_the_labtrack_error() -> None:
    with pytest.raises(MissingDependencyError, match="pip install nothere-pkg"):
        require("labtrack_no_such_module", "nothere-pkg", "a test")


class Colour(enum.Enum):
    RED = "red"


def test_readable_params_are_json_and_short() -> None:
    def schedule(step: int) -> float:
        return 0.1

    np = pytest.importorskip("numpy")
    value = {"lr": 0.1, "fn": schedule, "cls": Path, "nested": {"t": (1, 2), "s": {3, 1}},
             "arr": np.arange(3), "big": np.zeros((100, 100)), "n": np.float32(0.5), "c": Colour.RED,
             "p": Path("/x/y"), "inf": float("inf"), "obj": object(), "long": "x" * 300}
    out = readable(value)
    json.dumps(out, allow_nan=False)  # plain JSON
    assert out["fn"].endswith("test_readable_params_are_json_and_short.<locals>.schedule")
    assert out["cls"] == "pathlib.Path" and out["nested"] == {"t": [1, 2], "s": [1, 3]}
    assert out["arr"] == [0, 1, 2] and out["big"] == "ndarray of shape (100, 100)"
    assert out["n"] == 0.5 and out["c"] == "red" and out["p"] == "/x/y" and out["inf"] == "inf"
    assert out["obj"].startswith("<object object at") and out["long"] == "x" * 300
    assert readable({"s": "y" * 300})["s"] == "y" * 300  # strings are kept whole
    assert len(readable({"o": type("Big", (), {"__str__": lambda self: "z" * 500})()})["o"]) == 200


def test_scalar_takes_numbers_and_one_element_arrays_only() -> None:
    np = pytest.importorskip("numpy")
    assert [scalar(v) for v in (1, 2.5, True, np.float64(3), np.array([4.0]))] == [1.0, 2.5, 1.0, 3.0, 4.0]
    assert [scalar(v) for v in ("x", None, np.zeros(2), [1])] == [None, None, None, None]


def test_run_and_new_run_options_do_not_mix(tmp_path: Path) -> None:
    with pytest.raises(LabtrackTypeError, match=r"not both; got run= and \['experiment', 'seed'\]"):
        make_run(object(), "exp", None, None, None, None, None, {"seed": 1})
