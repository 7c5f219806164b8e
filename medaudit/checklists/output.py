"""Filled checklists as Markdown or CSV text (``medaudit checklist --format md|csv``).

Pure string builders over :func:`medaudit.checklists.fill` results. Values come from an
untrusted snapshot, so Markdown cells are escaped (pipes, HTML-significant characters, newlines)
and CSV cells that a spreadsheet would run as a formula are quoted with a leading apostrophe.
"""

from __future__ import annotations

import csv
import io

CSV_COLUMNS = ("checklist", "number", "verified", "text", "status", "value", "missing", "section")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _md_cell(text: str) -> str:
    text = " ".join(str(text).split())  # no newline may end a table row early
    for ch, rep in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|")):
        text = text.replace(ch, rep)
    return text


def to_markdown(tables: list[dict]) -> str:
    """One ``##`` heading and one table per checklist.

    Parameters
    ----------
    tables : list of dict
        :func:`medaudit.checklists.fill` results.

    Returns
    -------
    str
        GitHub-flavoured Markdown; unverified item numbers carry a dagger and a note.
    """
    out = []
    for t in tables:
        c = t["counts"]
        out.append(f"## {_md_cell(t['title'])}\n")
        out.append(f"{_md_cell(t['source'])}. {c['filled']} filled, {c['partly']} partly, "
                   f"{c['needs the author']} needing the author. \u2020 item number not verified against the "
                   "published checklist.\n")
        out.append("| Item | Asks for | Status | Value | Missing | Section |")
        out.append("|---|---|---|---|---|---|")
        for it in t["items"]:
            num = it["number"] + ("" if it["verified"] else " \u2020")
            out.append("| " + " | ".join(_md_cell(x) for x in (num, it["text"], it["status"], it["value"] or "\u2014",
                                                              it["missing"] or "\u2014", it["section"])) + " |")
        out.append("")
    return "\n".join(out)


def _csv_cell(value: object) -> str:
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def to_csv(tables: list[dict]) -> str:
    """One row per item of every checklist, columns :data:`CSV_COLUMNS` (``verified`` as true/false)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for t in tables:
        for it in t["items"]:
            w.writerow([_csv_cell(x) for x in (t["name"], it["number"], "true" if it["verified"] else "false",
                                               it["text"], it["status"], it["value"], it["missing"], it["section"])])
    return buf.getvalue()
