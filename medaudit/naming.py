"""File-safe names for per-model files (predictions, CAM tiles) inside one report folder."""

from __future__ import annotations

from collections.abc import Sequence


def safe_name(name: str) -> str:
    """``name`` with every character outside letters, digits and ``-_.`` replaced by ``_``."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def file_stems(names: Sequence[str]) -> list[str]:
    """One file stem per display name, unique even when two names sanitise alike (``a/b`` and ``a_b``)."""
    stems = [safe_name(n) for n in names]
    if len(set(stems)) != len(stems):
        stems = [f"{i}_{s}" for i, s in enumerate(stems)]
    return stems
