"""Template context of the checklist appendix (issue 17), read from the snapshot only.

The checklists a snapshot asks for (``settings.checklists``) are filled by
:func:`medaudit.checklists.fill` at render time: a pure function of the snapshot, so ``medaudit
render`` redraws them and an older snapshot without the key renders no appendix. Each item links
to the report section its value comes from when that section exists in this report.
"""

from __future__ import annotations

from collections.abc import Iterable

from medaudit.checklists import fill_all

STATUS_CLASS = {"filled": "ck-filled", "partly": "ck-partly", "needs the author": "ck-author"}


def checklist_section(snapshot: dict, section_ids: Iterable[str], *, names: Iterable[str] | None = None,
                      link_prefix: str = "") -> dict:
    """``{"tables": [...]}``, one table per requested checklist (empty when none was asked for).

    Parameters
    ----------
    snapshot : dict
        A parsed ``report.json``.
    section_ids : iterable of str
        The report's section ids (``SECTIONS``); an item whose section is not among them
        (a block another version adds) is shown without a link.
    names : iterable of str, optional
        Checklists to fill (default: the snapshot's ``settings.checklists``).
    link_prefix : str
        Put before ``#s-<section>``: ``"report.html"`` for a page that sits beside the report.
    """
    known = set(section_ids)
    tables = []
    for ck in fill_all(snapshot, names):
        rows = [{**it, "href": f"{link_prefix}#s-{it['section']}" if it["section"] in known else None,
                 "cls": STATUS_CLASS.get(it["status"], "")} for it in ck["items"]]
        tables.append({"name": ck["name"], "title": ck["title"], "source": ck["source"], "counts": ck["counts"],
                       "rows": rows, "unverified": sum(1 for r in rows if not r["verified"])})
    return {"tables": tables}

