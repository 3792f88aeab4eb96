"""Generate docs/cli.md from the `--help` of every command of `labtrack`.

Run `python -m labtrack._cli.docs > docs/cli.md` after changing a command;
tests/test_cli_docs.py fails while the two differ.
"""

from __future__ import annotations

import click

#: Help is rendered at this width so the text does not depend on the terminal.
WIDTH = 100


def _walk(cmd: click.Command, ctx: click.Context) -> list[tuple[click.Context, click.Command]]:
    out = [(ctx, cmd)]
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.list_commands(ctx)):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                # A child context inherits the width and the -h/--help names, as at run time.
                child = click.Context(sub, info_name=name, parent=ctx, **sub.context_settings)
                out.extend(_walk(sub, child))
    return out


def render() -> str:
    """The text of docs/cli.md.

    Returns:
        Markdown with one section per command (and sub-command), each holding its `--help`.
    """
    from ..cli import main

    lines = [
        "# Command line reference",
        "",
        "<!-- generated from the commands' --help by `python -m labtrack._cli.docs`; "
        "a test keeps it equal -->",
        "",
        "Every command takes `--help`. Errors are printed as one line starting with `error:` "
        "and exit with status 1.",
        "",
    ]
    root_ctx = click.Context(main, info_name="labtrack", terminal_width=WIDTH,
                             max_content_width=WIDTH, **main.context_settings)
    commands = _walk(main, root_ctx)
    lines.append("| command | what it does |")
    lines.append("| --- | --- |")
    for ctx, cmd in commands[1:]:
        short = cmd.get_short_help_str(limit=WIDTH).replace("|", "\\|")
        path = ctx.command_path
        lines.append(f"| [`{path}`](#{path.replace(' ', '-')}) | {short} |")
    lines.append("")
    for ctx, cmd in commands:
        lines.append(f"## {ctx.command_path}")
        lines.append("")
        lines.append("```text")
        lines.extend(line.rstrip() for line in cmd.get_help(ctx).splitlines())
        lines.append("```")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
