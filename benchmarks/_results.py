"""Writing one script's section of benchmarks/RESULTS.md, leaving every other section alone."""

from __future__ import annotations

from pathlib import Path


def replace_section(results_md: Path, heading: str, section: str, new_file: str = "# Benchmark results\n") -> None:
    """Replace the section that starts at `heading` (up to the next `## ` heading) with
    `section`; a file without that heading gets it at the end; a missing file starts as `new_file`."""
    text = results_md.read_text() if results_md.exists() else new_file
    if heading not in text:
        text = text.rstrip("\n") + "\n\n" + heading + "\n"
    start = text.index(heading)
    nxt = text.find("\n## ", start + len(heading))
    end = len(text) if nxt < 0 else nxt + 1
    results_md.write_text(text[:start] + section.rstrip("\n") + "\n\n" + text[end:].lstrip("\n"))
