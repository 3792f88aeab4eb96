"""Metric directions: init(metrics=...) and Run(metrics=...) declare which way is better,
stored in run.json; wandb's define_metric feeds the same; the read API resolves them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import labtrack
import labtrack.wandb as wandb
from labtrack._directions import direction_of, from_definition, resolve
from labtrack._server.app import create_app
from labtrack.errors import LabtrackTypeError, LabtrackValueError
from test_server_api import Client, _close_apps  # noqa: F401  (closes the apps' index refresh)

QUIET: dict[str, Any] = {"capture_git": False, "capture_console": False, "system": False}


def meta(run: Any) -> dict[str, Any]:
    return json.loads((Path(run.dir) / "run.json").read_text())


def test_run_and_init_store_directions_in_run_json(tmp_path: Path) -> None:
    with labtrack.Run("e", root=tmp_path, metrics={"val/acc": "max", "loss": "min"}, **QUIET) as run:
        run.log({"loss": 1.0, "val/acc": 0.5})
    assert meta(run)["metrics"] == {"val/acc": "max", "loss": "min"}
    run2 = labtrack.init("e", root=tmp_path, metrics={"val/*": "max"}, **QUIET)
    try:
        assert meta(run2)["metrics"] == {"val/*": "max"}
    finally:
        run2.finish()
    # Without metrics= the key is absent, not an empty dict.
    with labtrack.Run("e", root=tmp_path, **QUIET) as plain:
        pass
    assert "metrics" not in meta(plain)


def test_a_resumed_run_keeps_its_directions_and_adds_new_ones(tmp_path: Path) -> None:
    with labtrack.Run("e", root=tmp_path, metrics={"loss": "min", "acc": "max"}, **QUIET) as run:
        run.log({"loss": 1.0})
    with labtrack.Run("e", root=tmp_path, resume=run.id, metrics={"acc": "min", "f1": "max"}, **QUIET):
        pass
    assert meta(run)["metrics"] == {"loss": "min", "acc": "min", "f1": "max"}


@pytest.mark.parametrize(("metrics", "error", "match"), [
    ({"val/acc": "maximize"}, LabtrackValueError, r"metrics\['val/acc'\]: direction 'maximize' is not one of 'min', 'max'"),
    ({"loss": None}, LabtrackValueError, r"direction None is not one of"),
    ({"": "min"}, LabtrackValueError, "must not be empty"),
    ({1: "min"}, LabtrackTypeError, "names must be str, got int 1"),
    (["loss"], LabtrackTypeError, "metrics must be a dict of metric name -> 'min' or 'max', got list"),
])
def test_bad_directions_are_refused_before_a_run_exists(tmp_path: Path, metrics: Any, error: type,
                                                        match: str) -> None:
    with pytest.raises(error, match=match):
        labtrack.Run("e", root=tmp_path, metrics=metrics, **QUIET)
    with pytest.raises(error, match=match):
        labtrack.init("e", root=tmp_path, metrics=metrics, disabled=True)
    assert not (tmp_path / "e").exists()


def test_resolving_exact_names_globs_and_goals() -> None:
    declared = {"val/*": "max", "val/loss": "min", "*": "min"}
    assert direction_of("val/loss", declared) == "min"  # the exact name wins
    assert direction_of("val/acc", declared) == "max"  # then the longest glob
    assert direction_of("train/acc", declared) == "min"
    assert direction_of("x", {}) is None
    assert from_definition(["max"], None) == "max"
    assert from_definition(["min", "max"], None) is None
    assert from_definition(["best"], "minimize") == "min"
    summary = {"acc": {"last": 1}, "loss": {"last": 1, "goal": "minimize"}, "f1": {"last": 1}}
    assert resolve({"metrics": {"acc": "max"}}, summary) == {"acc": "max", "loss": "min"}


def test_wandb_define_metric_declares_the_direction(tmp_path: Path) -> None:
    env = {"LABTRACK_ROOT": str(tmp_path / "root"), "LABTRACK_CAPTURE_GIT": "false",
           "LABTRACK_CAPTURE_CONSOLE": "false"}
    try:
        run = wandb.init(project="p", _environ=env)
        wandb.define_metric("val/acc", summary="max")
        wandb.define_metric("loss", summary="best", goal="minimize")
        wandb.define_metric("val/*", summary="mean")  # no direction: nothing declared
        wandb.define_metric("eval/*", goal="maximize")
        lt = run.labtrack_run
        # Declared at once (a crashed run keeps it), not only at finish.
        assert meta(lt)["metrics"] == {"val/acc": "max", "loss": "min", "eval/*": "max"}
        wandb.log({"val/acc": 0.5, "loss": 2.0, "eval/f1": 0.3})
    finally:
        wandb.finish()
    assert meta(lt)["metrics"] == {"val/acc": "max", "loss": "min", "eval/*": "max"}


def test_the_run_api_gives_each_series_direction(tmp_path: Path) -> None:
    with labtrack.Run("e", root=tmp_path, metrics={"val/*": "max", "loss": "min"}, **QUIET) as run:
        run.log({"loss": 1.0, "val/acc": 0.5, "val/err": 0.2, "lr": 0.1})
    with labtrack.Run("e", root=tmp_path, **QUIET) as plain:
        plain.log({"loss": 1.0})
    c = Client(create_app(tmp_path))
    body = c.json(f"/api/v1/runs/{run.id}")
    assert body["metrics"] == {"val/*": "max", "loss": "min"}
    assert body["directions"] == {"loss": "min", "val/acc": "max", "val/err": "max"}
    assert c.json(f"/api/v1/runs/{plain.id}")["directions"] == {}
