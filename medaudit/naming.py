"""File-safe names for per-model files (predictions, CAM tiles) inside one report folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medaudit.errors import MedauditError


def safe_name(name: str) -> str:
    """``name`` with every character outside letters, digits and ``-_.`` replaced by ``_``."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def file_stems(names: Sequence[str]) -> list[str]:
    """One file stem per display name, unique even when two names sanitise alike (``a/b`` and ``a_b``)."""
    stems = [safe_name(n) for n in names]
    if len(set(stems)) != len(stems):
        stems = [f"{i}_{s}" for i, s in enumerate(stems)]
    return stems


def model_names(paths: Sequence[Path], names: Sequence[str] | None = None) -> list[str]:
    """Display names of the models loaded from ``paths``: ``names`` if given, else unique file stems.

    The one rule for every command: stems, and where two stems clash, ``parent/stem``; where
    those still clash (``a/m.pt`` given twice), ``#2``, ``#3`` ... are appended in order.

    Parameters
    ----------
    paths : sequence of Path, length M
    names : sequence of str, optional
        Names chosen by the caller: M of them, non-empty and distinct.

    Returns
    -------
    list of str, length M
        Distinct display names, in the order of ``paths``.

    Raises
    ------
    MedauditError
        (``param="names"``) when ``names`` has the wrong length, an empty or a repeated name.
    """
    if names is not None:
        names = list(names)
        if len(names) != len(paths):
            raise MedauditError(f"{len(names)} names given for {len(paths)} models; give one name per model",
                                param="names")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup or not all(n.strip() for n in names):
            raise MedauditError(f"every model needs its own non-empty name ({', '.join(dup) or 'empty name'})",
                                param="names")
        return names
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) != len(stems):
        stems = [f"{Path(p).parent.name}/{Path(p).stem}" for p in paths]
    return unique_names(stems)


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` with repeats made distinct by ``#2``, ``#3`` ... in order of appearance."""
    taken: set[str] = set()
    out = []
    for name in names:
        candidate, i = name, 2
        while candidate in taken:
            candidate, i = f"{name}#{i}", i + 1
        taken.add(candidate)
        out.append(candidate)
    return out
