"""The settings registry: precedence, parsing errors, and docs/settings.md kept equal to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from labtrack import _settings
from labtrack._settings import SETTINGS, get, render_docs
from labtrack.errors import SettingError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def test_docs_equal_the_registry() -> None:
    assert DOCS.read_text(encoding="utf-8") == render_docs(), (
        "docs/settings.md is stale; regenerate it: .venv/bin/python -m labtrack._settings > docs/settings.md")


def test_every_setting_is_documented_with_its_env_var_default_and_help() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for s in SETTINGS:
        row = next((line for line in text.splitlines() if f"`{s.env}`" in line), None)
        assert row is not None, f"{s.env} is missing from docs/settings.md"
        assert f"`{s.name}`" in row and f"`{s.default!r}`" in row and s.help in row


def test_registry_is_consistent() -> None:
    names = [s.name for s in SETTINGS]
    envs = [s.env for s in SETTINGS]
    assert len(set(names)) == len(names) and len(set(envs)) == len(envs)
    assert all(e == "LABTRACK_" + n.upper() for n, e in zip(names, envs))
    for required in ("LABTRACK_ROOT", "LABTRACK_FLUSH_SECONDS", "LABTRACK_DISABLED",
                     "LABTRACK_UNTRACKED_MAX_BYTES", "LABTRACK_STALE_SECONDS"):
        assert required in envs
    assert get("root", environ={}, cwd=Path("/nonexistent")) == "./labtrack"
    assert get("flush_seconds", environ={}, cwd=Path("/nonexistent")) == 1.0


def test_precedence_argument_environment_config_default(tmp_path: Path) -> None:
    (tmp_path / "labtrack.toml").write_text('[labtrack]\nflush_seconds = 2.5\ndisabled = true\nroot = "cfg"\n')
    env = {"LABTRACK_FLUSH_SECONDS": "0.5"}
    assert get("flush_seconds", 0.1, environ=env, cwd=tmp_path) == 0.1
    assert get("flush_seconds", environ=env, cwd=tmp_path) == 0.5
    assert get("flush_seconds", environ={}, cwd=tmp_path) == 2.5
    assert get("disabled", environ={}, cwd=tmp_path) is True
    assert get("root", environ={}, cwd=tmp_path) == "cfg"
    assert get("heartbeat_seconds", environ={}, cwd=tmp_path) == 5.0
    # an empty environment variable counts as unset
    assert get("flush_seconds", environ={"LABTRACK_FLUSH_SECONDS": ""}, cwd=tmp_path) == 2.5


def test_top_level_config_and_labtrack_config_path(tmp_path: Path) -> None:
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text("queue_size = 7\n")
    assert get("queue_size", environ={"LABTRACK_CONFIG": str(cfg)}, cwd=tmp_path) == 7


@pytest.mark.parametrize("name,env,raw", [
    ("flush_seconds", "LABTRACK_FLUSH_SECONDS", "soon"),
    ("flush_seconds", "LABTRACK_FLUSH_SECONDS", "0"),
    ("flush_seconds", "LABTRACK_FLUSH_SECONDS", "-1"),
    ("flush_seconds", "LABTRACK_FLUSH_SECONDS", "inf"),
    ("flush_seconds", "LABTRACK_FLUSH_SECONDS", "nan"),
    ("disabled", "LABTRACK_DISABLED", "maybe"),
    ("queue_size", "LABTRACK_QUEUE_SIZE", "0"),
    ("untracked_max_bytes", "LABTRACK_UNTRACKED_MAX_BYTES", "-5"),
    ("untracked_max_bytes", "LABTRACK_UNTRACKED_MAX_BYTES", "1.5"),
])
def test_unparseable_values_raise_naming_the_variable(name: str, env: str, raw: str, tmp_path: Path) -> None:
    with pytest.raises(SettingError) as info:
        get(name, environ={env: raw}, cwd=tmp_path)
    assert env in str(info.value) and repr(raw) in str(info.value)


@pytest.mark.parametrize("raw,value", [("1", True), ("true", True), ("YES", True), ("on", True),
                                       ("0", False), ("false", False), ("No", False), ("off", False)])
def test_bool_spellings(raw: str, value: bool, tmp_path: Path) -> None:
    assert get("disabled", environ={"LABTRACK_DISABLED": raw}, cwd=tmp_path) is value


def test_broken_config_file_raises(tmp_path: Path) -> None:
    (tmp_path / "labtrack.toml").write_text("flush_seconds = = 1\n")
    with pytest.raises(SettingError, match="labtrack.toml"):
        get("flush_seconds", environ={}, cwd=tmp_path)
    (tmp_path / "labtrack.toml").write_text("flush_seconds = 'x'\n")
    with pytest.raises(SettingError, match="config file key 'flush_seconds'"):
        get("flush_seconds", environ={}, cwd=tmp_path)


def test_nothing_is_resolved_at_import_time() -> None:
    # no module-level constant caches a setting's value (the private hand-offs' names are names)
    assert not [k for k, v in vars(_settings).items() if k.isupper() and k not in ("SETTINGS",)
                and not k.startswith("_") and not k.endswith("_ENV")]


def test_a_run_resolves_its_settings_once_into_a_frozen_object(tmp_path: Path) -> None:
    import dataclasses

    from labtrack._settings import SETTINGS, RunSettings, resolve_run

    (tmp_path / "labtrack.toml").write_text("[labtrack]\nflush_seconds = 0.25\nqueue_size = 7\n")
    cfg = resolve_run({"queue_size": 3}, environ={"LABTRACK_HEARTBEAT_SECONDS": "2"}, cwd=tmp_path)
    assert isinstance(cfg, RunSettings)
    assert (cfg.flush_seconds, cfg.queue_size, cfg.heartbeat_seconds) == (0.25, 3, 2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.queue_size = 5  # type: ignore[misc]
    # rerun's hand-offs are private variables, not settings a user sees in docs/settings.md
    assert not {"resume", "parent"} & {s.name for s in SETTINGS}
    handed = resolve_run({}, environ={"_LABTRACK_RESUME": "r1", "_LABTRACK_PARENT": "p1"}, cwd=tmp_path)
    assert (handed.resume, handed.parent) == ("r1", "p1")
    assert resolve_run({"resume": "mine"}, environ={"_LABTRACK_RESUME": "r1"}, cwd=tmp_path).resume == "mine"
    assert resolve_run({}, environ={"LABTRACK_RESUME": "old"}, cwd=tmp_path).resume is None
