"""Text formatting of snapshot values for the report (no metric is computed here).

Every number shown in the HTML/PDF goes through these helpers, so the policy is in
one place: a metric value prints as ``"0.912 [0.870–0.941]"``; a value that is
``null`` in the snapshot prints as ``"undefined"`` and its reason is kept for a
footnote; a whole block that is ``null`` prints as ``"not available: <reason>"``.
:func:`parse_metric_text` reads the printed form back (used by the tests and by
anyone checking a rendered report against its ``report.json``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

UNDEFINED = "undefined"
DIGITS = 3
EN_DASH = "\u2013"

_METRIC_RE = re.compile(
    r"^\s*(?P<v>-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"
    r"(?:\s*\[(?P<lo>-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)\s*\u2013\s*(?P<hi>-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)\])?\s*$"
)


def not_available(reason: str | None) -> str:
    """The one wording for a section or block whose input is ``null``."""
    return f"not available: {reason or 'no reason recorded in the snapshot'}"


def fmt_float(x: Any, digits: int = DIGITS) -> str:
    """Format a plain number with ``digits`` decimals; ``None``/NaN -> ``"undefined"``."""
    if x is None or isinstance(x, bool):
        return UNDEFINED if x is None else str(x)
    if isinstance(x, int):
        return str(x)
    try:
        xf = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(xf) or math.isinf(xf):
        return UNDEFINED
    return f"{xf:.{digits}f}"


def fmt_int(x: Any) -> str:
    """Integers with thin thousands separators (``11170000`` -> ``11,170,000``)."""
    if x is None:
        return UNDEFINED
    try:
        return f"{int(x):,}"
    except (TypeError, ValueError):
        return str(x)


def fmt_count(x: Any) -> str:
    """Parameter/FLOP counts in engineering units (``11170000`` -> ``11.17 M``)."""
    if x is None:
        return UNDEFINED
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.2f} {unit}"
    return f"{v:g}"


def fmt_metric(mv: dict | None, digits: int = DIGITS) -> str:
    """Format a snapshot metric-value object.

    Parameters
    ----------
    mv : dict or None
        ``{"value", "ci_low", "ci_high", "ci_method", "reason"}`` (see
        docs/report-schema.md). ``None`` means the whole block is absent.
    digits : int
        Decimals shown for the value and the interval bounds.

    Returns
    -------
    str
        ``"0.912 [0.870–0.941]"``, ``"0.912"`` (no interval), ``"undefined"``
        (value null) or ``"not available"`` (block null).
    """
    if mv is None:
        return "not available"
    if not isinstance(mv, dict):
        return fmt_float(mv, digits)
    value = mv.get("value")
    if value is None:
        return UNDEFINED
    text = fmt_float(value, digits)
    lo, hi = mv.get("ci_low"), mv.get("ci_high")
    if lo is not None and hi is not None:
        text += f" [{fmt_float(lo, digits)}{EN_DASH}{fmt_float(hi, digits)}]"
    return text


def parse_metric_text(text: str) -> tuple[float, float | None, float | None] | None:
    """Inverse of :func:`fmt_metric`: ``"0.912 [0.870–0.941]"`` -> ``(0.912, 0.870, 0.941)``.

    Returns ``None`` for ``"undefined"``/``"not available"``; raises ``ValueError`` for
    anything else that is not a formatted number.
    """
    text = text.strip()
    if text == UNDEFINED or text.startswith("not available"):
        return None
    m = _METRIC_RE.match(text)
    if m is None:
        raise ValueError(f"not a formatted metric: {text!r}")
    lo, hi = m.group("lo"), m.group("hi")
    return float(m.group("v")), (float(lo) if lo is not None else None), (float(hi) if hi is not None else None)


@dataclass
class Cell:
    """One table cell: the printed text, a footnote number for an undefined value,
    and ``key`` (a path into the snapshot, written as ``data-key`` so a rendered
    report can be checked against its JSON)."""

    text: str
    note: int | None = None
    key: str | None = None
    kind: str = "num"  # "num" right-aligns, "text" left-aligns, "undef" greys out


@dataclass
class Footnotes:
    """Collects the reasons for undefined values of one table, numbered from 1."""

    reasons: list[str] = field(default_factory=list)

    def add(self, reason: str | None) -> int:
        reason = reason or "no reason recorded in the snapshot"
        if reason not in self.reasons:
            self.reasons.append(reason)
        return self.reasons.index(reason) + 1

    def metric(self, mv: dict | None, key: str | None = None, digits: int = DIGITS) -> Cell:
        """A :class:`Cell` for a metric value; undefined values get a footnote."""
        text = fmt_metric(mv, digits)
        if mv is None:
            return Cell(text, None, key, "undef")
        if isinstance(mv, dict) and mv.get("value") is None:
            return Cell(text, self.add(mv.get("reason")), key, "undef")
        return Cell(text, None, key)

    def number(self, x: Any, key: str | None = None, digits: int = DIGITS, reason: str | None = None) -> Cell:
        """A :class:`Cell` for a plain number (``None`` -> undefined with ``reason``)."""
        if x is None:
            return Cell(UNDEFINED, self.add(reason) if reason else None, key, "undef")
        return Cell(fmt_float(x, digits), None, key)


def fmt_kn(mv: dict | None) -> str:
    """``"3/42"`` from a proportion's ``k`` and ``n`` (empty when absent)."""
    if not isinstance(mv, dict) or mv.get("k") is None or mv.get("n") is None:
        return ""
    return f"{mv['k']}/{mv['n']}"


def fmt_p(p: Any) -> str:
    """p-values: 3 significant decimals, ``"< 0.001"`` below that; ``None`` -> undefined."""
    if p is None:
        return UNDEFINED
    p = float(p)
    if math.isnan(p):
        return UNDEFINED
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Flatten nested dicts to ``[("a.b", value), ...]`` for generic key/value tables."""
    if not isinstance(d, dict):
        return [(prefix, d)]
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and not {"value", "reason"} <= set(v):
            out.extend(flatten(v, key))
        else:
            out.append((key, v))
    return out


def fmt_any(v: Any) -> str:
    """Best plain-text form of a value in a generic key/value table."""
    if isinstance(v, dict) and "value" in v:
        return fmt_metric(v)
    if v is None:
        return UNDEFINED
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return fmt_int(v)
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else fmt_count(v)
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt_any(x) for x in v) if len(v) <= 8 else f"[{len(v)} values]"
    return str(v)


_SPLIT_ORDER = {"train": 0, "val": 1, "test": 2, "all": 3}


def ordered_splits(splits: dict) -> list[str]:
    """Split names in reading order (train, val, test, …), not the JSON's alphabetical order."""
    return sorted(splits, key=lambda s: (_SPLIT_ORDER.get(s, 9), s))
