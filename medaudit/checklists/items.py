"""What a checklist item is, and how its status follows from its parts.

An item is answered by one or more *parts* (:class:`Part`): a fact read from the snapshot
(``value`` set) or a fact the snapshot cannot hold (``value`` None, ``missing`` says what is
needed). The status is "filled" only when every part is answered, "partly" when some are, and
"needs the author" when none is. Pure: no I/O, no numpy, no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

FILLED = "filled"
PARTLY = "partly"
NEEDS_AUTHOR = "needs the author"
STATUSES = (FILLED, PARTLY, NEEDS_AUTHOR)


@dataclass(frozen=True)
class Part:
    """One answerable piece of an item.

    Attributes
    ----------
    label : str
        What the piece is ("class balance per split").
    value : str or None
        The answer read from the snapshot; None when the snapshot cannot give it.
    missing : str
        When ``value`` is None: what is missing and how to get it (an option to rerun with,
        or "the author's ...").
    """

    label: str
    value: str | None
    missing: str = ""


Rule = Callable[[dict], "Part | Sequence[Part]"]


@dataclass(frozen=True)
class Item:
    """A checklist item as medaudit fills it.

    Attributes
    ----------
    number : str
        The item's number in the published checklist ("19", "12e", "40b").
    text : str
        A short paraphrase of the item (not the published wording).
    section : str
        Report section id (``medaudit.report.context.SECTIONS``) the value comes from; the HTML
        links to ``#s-<section>``.
    parts : tuple of callables
        ``snapshot -> Part | [Part, ...]``, in the order shown.
    verified : bool
        Whether the number and topic were checked against the published checklist (the module's
        ``SOURCES`` says against what); False is shown in every output.
    """

    number: str
    text: str
    section: str
    parts: tuple[Rule, ...]
    verified: bool = False


def evaluate(item: Item, snapshot: dict) -> dict:
    """Fill one item from a snapshot.

    Parameters
    ----------
    item : Item
    snapshot : dict
        A parsed ``report.json`` (untrusted: every rule reads it defensively).

    Returns
    -------
    dict
        ``{"number", "text", "status", "value", "missing", "section", "verified"}``; ``value``
        joins the answered parts ("label: value"), ``missing`` the others ("label: what is
        needed"), each ``""`` when empty.
    """
    parts: list[Part] = []
    for rule in item.parts:
        got = rule(snapshot)
        parts.extend([got] if isinstance(got, Part) else got)
    answered = [p for p in parts if p.value is not None]
    unanswered = [p for p in parts if p.value is None]
    status = FILLED if parts and not unanswered else PARTLY if answered else NEEDS_AUTHOR
    return {"number": item.number, "text": item.text, "status": status,
            "value": "; ".join(f"{p.label}: {p.value}" for p in answered),
            "missing": "; ".join(f"{p.label}: {p.missing}" for p in unanswered),
            "section": item.section, "verified": item.verified}


def author_part(label: str, what: str) -> Rule:
    """A part only the author can answer (the snapshot never holds it)."""
    part = Part(label, None, f"the author's {what}")
    return lambda snapshot: part
