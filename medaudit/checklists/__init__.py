"""Reporting checklists filled from a snapshot (issue 17): CLAIM 2024, TRIPOD+AI, STARD-AI.

Each checklist module declares the items an audit can answer (``ITEMS``: number, paraphrase,
report section, the rules of :mod:`medaudit.checklists.facts`) and records in its docstring which
numbers were verified against the published checklist and where. :func:`fill` is a pure function
of the snapshot, so ``medaudit render`` and ``medaudit checklist`` redraw the tables from
``report.json`` alone. Torch- and numpy-free.
"""

from __future__ import annotations

from collections.abc import Iterable

from medaudit.checklists import claim2024, stard_ai, tripod_ai
from medaudit.checklists.items import FILLED, NEEDS_AUTHOR, PARTLY, STATUSES, evaluate
from medaudit.errors import MedauditError

CHECKLISTS = {m.NAME: m for m in (claim2024, tripod_ai, stard_ai)}
NAMES = tuple(CHECKLISTS)

__all__ = ["CHECKLISTS", "FILLED", "NAMES", "NEEDS_AUTHOR", "PARTLY", "STATUSES", "check_names", "fill",
           "fill_all", "requested"]


def check_names(names: Iterable[str], *, param: str = "checklists") -> list[str]:
    """Validate checklist names; duplicates dropped, order kept.

    Raises
    ------
    MedauditError
        One line naming the unknown name and the valid ones (``param`` names the option).
    """
    out: list[str] = []
    for name in names:
        if name not in CHECKLISTS:
            raise MedauditError(f"unknown checklist {name!r}; choose from: {', '.join(NAMES)}", param=param)
        if name not in out:
            out.append(name)
    return out


def fill(snapshot: dict, name: str) -> dict:
    """Fill one checklist from a snapshot.

    Parameters
    ----------
    snapshot : dict
        A parsed ``report.json``.
    name : str
        One of :data:`NAMES`.

    Returns
    -------
    dict
        ``{"name", "title", "source", "items": [{"number", "text", "status", "value", "missing",
        "section", "verified"}, ...], "counts": {status: n}}``.
    """
    mod = CHECKLISTS[check_names([name])[0]]
    items = [evaluate(item, snapshot) for item in mod.ITEMS]
    counts = {s: sum(1 for i in items if i["status"] == s) for s in STATUSES}
    return {"name": mod.NAME, "title": mod.TITLE, "source": mod.SOURCE, "items": items, "counts": counts}


def requested(snapshot: dict) -> list[str]:
    """The checklists a snapshot asks for (``settings.checklists``), unknown names skipped (an
    untrusted or newer snapshot must still render)."""
    names = (snapshot.get("settings") or {}).get("checklists") if isinstance(snapshot.get("settings"), dict) else None
    if not isinstance(names, list):
        return []
    return [n for n in dict.fromkeys(n for n in names if isinstance(n, str)) if n in CHECKLISTS]


def fill_all(snapshot: dict, names: Iterable[str] | None = None) -> list[dict]:
    """:func:`fill` for ``names`` (default: :func:`requested`)."""
    return [fill(snapshot, n) for n in (requested(snapshot) if names is None else check_names(names))]
