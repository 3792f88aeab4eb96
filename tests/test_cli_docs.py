"""docs/cli.md is generated from the commands' --help and must stay equal to it."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from labtrack._cli import docs
from labtrack.cli import main

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def test_cli_md_equals_the_generated_text() -> None:
    expected = docs.render()
    actual = DOC.read_text(encoding="utf-8")
    assert actual == expected, (
        "docs/cli.md is out of date with the commands' --help; regenerate it with "
        "`.venv/bin/python -m labtrack._cli.docs > docs/cli.md`"
    )


def _all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None
        out.append(prefix + (name,))
        if isinstance(cmd, click.Group):
            out.extend(_all_commands(cmd, prefix + (name,)))
    return out


def test_every_command_has_a_section_with_its_real_help() -> None:
    text = docs.render()
    commands = _all_commands(main)
    assert ("ls",) in commands and ("annotate",) in commands
    runner = CliRunner()
    for path in commands:
        assert f"\n## labtrack {' '.join(path)}\n" in text, path
        result = runner.invoke(main, [*path, "--help"], prog_name="labtrack",
                               terminal_width=docs.WIDTH)
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"Usage: labtrack {' '.join(path)}")
        # The whole help a user sees is the documented block.
        shown = "\n".join(line.rstrip() for line in result.output.splitlines())
        assert f"```text\n{shown}\n```" in text, path


def test_render_does_not_depend_on_the_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    wide = docs.render()
    monkeypatch.setenv("COLUMNS", "40")
    assert docs.render() == wide
