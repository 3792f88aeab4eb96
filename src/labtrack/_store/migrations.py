"""Upgrades of older run.json versions, in memory. Version 1 is the first; nothing to do yet."""

from __future__ import annotations

from typing import Any


def upgrade(meta: dict[str, Any]) -> dict[str, Any]:
    """Return `meta` in the current format. Each future version adds one step here."""
    meta.setdefault("format_version", 1)
    return meta
