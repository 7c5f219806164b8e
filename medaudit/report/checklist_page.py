"""The standalone checklist page of ``medaudit checklist --format html`` (the report's own appendix is
rendered by base.html.j2 from :func:`~medaudit.report.checklist_context.checklist_section`)."""

from __future__ import annotations

from collections.abc import Iterable

from medaudit.report.checklist_context import checklist_section
from medaudit.report.html import make_env

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="medaudit">
<title>Reporting checklists: {{ title }}</title><style>{% include "report.css" %}</style></head>
<body class="target-html"><main>{% include "section_checklists.html.j2" %}</main></body></html>
"""


def checklists_page(snapshot: dict, section_ids: Iterable[str], names: Iterable[str] | None = None) -> str:
    """A standalone HTML page of the checklist tables (``medaudit checklist --format html``); items
    link to ``report.html#s-<section>`` (the report written beside the snapshot)."""
    ctx = {"checklists": checklist_section(snapshot, section_ids, names=names, link_prefix="report.html"),
           "title": snapshot.get("title") if isinstance(snapshot.get("title"), str) else "audit"}
    return make_env().from_string(_PAGE).render(**ctx)
