"""LabtrackCallback with real Keras 3 (torch backend): batch and epoch metrics, params, status."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
if "keras" not in sys.modules:
    # Keras picks its backend once, at import; TensorFlow is not installed here.
    os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
if keras.config.backend() != "torch":
    pytest.skip(f"keras was imported with the {keras.config.backend()} backend", allow_module_level=True)

import numpy as np  # noqa: E402

import labtrack  # noqa: E402
from labtrack.errors import LabtrackTypeError  # noqa: E402
from labtrack.integrations.keras import LabtrackCallback  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    # Keras' own float(Variable) on numpy 2; nothing of ours
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]

SRC = Path(__file__).resolve().parents[1] / "src"


def digits(n: int = 120) -> tuple[Any, Any]:
    """A digits-like set: 8x8 images, 10 classes, each class a noisy fixed pattern."""
    rng = np.random.default_rng(0)
    patterns = rng.random((10, 64)).astype("float32")
    y = rng.integers(0, 10, n)
    x = patterns[y] + 0.1 * rng.standard_normal((n, 64)).astype("float32")
    return x, y


def model() -> Any:
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")], name="mlp")
    m.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    return m


def test_fit_records_batch_and_epoch_metrics_params_and_status(tmp_path: Path) -> None:
    x, y = digits()
    m = model()
    cb = LabtrackCallback("keras", name="mlp", root=tmp_path, tags=["k"], config={"data": "digits-like"},
                          capture_git=False)
    # 120 samples, 20% for validation: 96 to train in batches of 16 -> 6 batches per epoch
    history = m.fit(x, y, epochs=3, batch_size=16, validation_split=0.2, verbose=0, callbacks=[cb])
    run = labtrack.open(tmp_path).runs()[0]
    assert (run.experiment, run.name, run.tags, run.status) == ("keras", "mlp", ["k"], "finished")
    assert run.params["data"] == "digits-like"
    assert run.params["fit"]["epochs"] == 3 and run.params["fit"]["steps"] == 6
    assert run.params["optimizer"]["name"] == "adam"
    assert run.params["optimizer"]["learning_rate"] == pytest.approx(0.01)
    assert run.params["model"]["name"] == "mlp" and run.params["model"]["params"] == 64 * 16 + 16 + 16 * 10 + 10
    assert run.params["model"]["loss"] == "sparse_categorical_crossentropy"

    batch = run.scalars("batch/loss")
    assert list(batch.index) == list(range(1, 19))  # the global batch count, across epochs
    assert "batch/accuracy" in run.series()
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        epoch = run.scalars(f"epoch/{name}")
        assert list(epoch.index) == [6, 12, 18]
        assert list(epoch["value"]) == pytest.approx(history.history[name], rel=1e-6)
    assert list(run.scalars("epoch")["value"]) == [0.0, 1.0, 2.0]
    # the batch series ends where the epoch's training metrics are (Keras' running mean)
    assert batch["value"].iloc[-1] == pytest.approx(history.history["loss"][-1], rel=1e-6)


def test_every_n_batches_a_second_fit_and_a_given_run(tmp_path: Path) -> None:
    x, y = digits()
    m = model()
    cb = LabtrackCallback("keras", root=tmp_path, log_every_n_batches=4, capture_git=False)
    m.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[cb])  # 8 batches per epoch
    m.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[cb])  # the same run goes on
    run = labtrack.open(tmp_path).runs()[0]
    assert list(run.scalars("batch/loss").index) == [4, 8, 12, 16, 20, 24]
    assert list(run.scalars("epoch/loss").index) == [8, 16, 24]
    assert run.status == "finished" and len(run.meta["resumed"]) == 1
    assert "val_loss" not in " ".join(run.series())  # no validation asked for

    with labtrack.Run("mine", root=tmp_path / "own", capture_git=False) as own:
        m.fit(x, y, epochs=1, batch_size=60, verbose=0, callbacks=[LabtrackCallback(run=own, log_every_n_batches=0)])
        assert own.status == "running"
    mine = labtrack.open(tmp_path / "own").runs()[0]
    assert mine.series() == ["epoch", "epoch/accuracy", "epoch/loss"] and mine.params["fit"]["steps"] == 2


def test_an_exception_in_fit_fails_the_run_in_a_with_block(tmp_path: Path) -> None:
    x, y = digits()
    m = model()

    class Boom(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if batch == 2:
                raise RuntimeError("boom in batch 2")

    with pytest.raises(RuntimeError, match="boom"):
        with LabtrackCallback("keras", root=tmp_path, capture_git=False) as cb:
            m.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[cb, Boom()])
    run = labtrack.open(tmp_path).runs()[0]
    assert run.status == "failed" and run.meta["error"]["message"] == "boom in batch 2"
    assert list(run.scalars("batch/loss").index) == [1, 2, 3]


def test_a_script_whose_fit_raises_ends_with_the_run_failed(tmp_path: Path) -> None:
    # No `with`: the uncaught exception ends the script, and labtrack's exit hook fails the run.
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import numpy as np, keras
        from labtrack.integrations.keras import LabtrackCallback

        class Diverged(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if batch == 1:
                    raise FloatingPointError("loss diverged")

        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        m.compile(optimizer="sgd", loss="mse")
        x = np.random.default_rng(0).random((32, 4)).astype("float32")
        m.fit(x, x[:, :1], epochs=1, batch_size=8, verbose=0,
              callbacks=[LabtrackCallback("script", capture_git=False), Diverged()])
    """))
    env = {**os.environ, "KERAS_BACKEND": "torch", "LABTRACK_ROOT": str(tmp_path / "lt"),
           "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "loss diverged" in proc.stderr, proc.stderr
    run = labtrack.open(tmp_path / "lt").runs()[0]
    assert run.status == "failed" and run.meta["error"]["type"] == "FloatingPointError"
    assert list(run.scalars("batch/loss").index) == [1, 2]


def test_misuse_is_refused_by_name() -> None:
    with pytest.raises(LabtrackTypeError, match="log_every_n_batches must be a whole number >= 0"):
        LabtrackCallback(log_every_n_batches=-1)
