"""Per-sample metadata columns (patient, sex, age, site, ...): typing, binning, lookup. numpy only.

A metadata column is one array of length N: float64 for a numeric column (NaN = missing), str for a
categorical one ("" = missing, shown as :data:`UNKNOWN`). Loaders type text columns with
:func:`parse_column`; analyses group by categorical columns directly and by numeric ones through
:func:`bin_numeric`. Nothing here imports a model framework, so the numbers-only modules may use it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import numpy as np

from medaudit.errors import MedauditError

UNKNOWN = "unknown"
# Text that means "no value" in any column (spreadsheets and R write NA, pandas NaN), compared case-insensitively.
MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "null"})

# Column names (lowercase, letters and digits only) that identify a person. Only the column chosen as
# the patient column may carry one, and it is hashed on load; any other is refused, never read.
IDENTIFIER_NAMES = frozenset({
    "name", "patientname", "firstname", "lastname", "givenname", "familyname", "surname", "fullname",
    "birthdate", "dateofbirth", "patientbirthdate", "dob",
    "mrn", "medicalrecordnumber", "ssn", "socialsecuritynumber",
    "address", "patientaddress", "streetaddress", "phone", "phonenumber", "telephone", "email",
    "patientid", "patient", "subjectid", "participantid", "accessionnumber",
})  # fmt: skip


def is_identifier_name(name: str) -> bool:
    """True for a column name that identifies a person (``Patient Name``, ``birth_date``, ``MRN``, ...)."""
    return re.sub(r"[^0-9a-z]", "", name.lower()) in IDENTIFIER_NAMES


def column_kind(values: np.ndarray) -> str:
    """``"numeric"`` (float dtype) or ``"categorical"`` (str dtype) for one metadata column."""
    return "numeric" if np.asarray(values).dtype.kind == "f" else "categorical"


def _finite_float(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def parse_column(raw: Sequence[str]) -> np.ndarray:
    """Type one text column: numeric when every value present parses as a finite float, else categorical.

    A value is missing when it is empty or one of :data:`MISSING_MARKERS` (``NA``, ``N/A``, ``NaN``,
    ``null``; case-insensitive, after stripping spaces). A column with at least one value present,
    every one of which is a finite float (``45``, ``-1.5``, ``1e3``), is numeric; any other value
    (``inf``, ``F``, ``40-65``) makes the whole column categorical, values kept as written (stripped).
    A column with no value at all is categorical (all unknown).

    Parameters
    ----------
    raw : sequence of str, length N

    Returns
    -------
    ndarray, shape (N,)
        float64 with NaN for missing values, or str with "" for missing values.
    """
    text = [str(v).strip() for v in raw]
    present = [t for t in text if t.lower() not in MISSING_MARKERS]
    if present and all(_finite_float(t) is not None for t in present):
        return np.array([np.nan if t.lower() in MISSING_MARKERS else float(t) for t in text], dtype=np.float64)
    return np.array(["" if t.lower() in MISSING_MARKERS else t for t in text], dtype=str)


def resolve_column(columns: Iterable[str], name: str, *, param: str, where: str) -> str:
    """The column among ``columns`` called ``name`` (case-insensitive), as it is spelt there.

    Parameters
    ----------
    columns : iterable of str
        The metadata columns available.
    name : str
        The column asked for (e.g. ``--group-by Sex``).
    param : str
        The parameter that named it, for the error (``patient_col``, ``group_by``, ``bins``).
    where : str
        The data it was looked for in, for the error.

    Raises
    ------
    MedauditError
        No such column; the message lists the columns there are.
    """
    columns = list(columns)
    matches = [c for c in columns if c.lower() == name.strip().lower()]
    if matches:
        return matches[0]
    have = ", ".join(repr(c) for c in columns) if columns else "none"
    # Opens with the parameter's name, which the CLI replaces by its option (--group-by 'Sex': ...).
    raise MedauditError(f"{param} '{name}': {where} has no such metadata column; its metadata columns are: {have}",
                        param=param)


def _edge_text(v: float) -> str:
    return format(v, "g")


def check_edges(edges: Sequence[float], *, param: str = "bins") -> np.ndarray:
    """Bin edges as float64 (K+1,), checked: at least two, finite, strictly increasing."""
    try:
        e = np.asarray(edges, dtype=np.float64)
    except (TypeError, ValueError):
        raise MedauditError(f"bin edges {list(edges)!r} are not numbers", param=param) from None
    if e.ndim != 1 or e.size < 2:
        raise MedauditError(f"bin edges {e.tolist()}: give at least two edges (e.g. 0,40,65,120)", param=param)
    if not np.isfinite(e).all() or not np.all(np.diff(e) > 0):
        raise MedauditError(f"bin edges {e.tolist()}: need finite, strictly increasing numbers", param=param)
    return e


def bin_labels(edges: Sequence[float]) -> list[str]:
    """The K labels of the bins between K+1 edges, in order: ``["0–40", "40–65", "65–120"]``."""
    e = check_edges(edges)
    return [f"{_edge_text(lo)}–{_edge_text(hi)}" for lo, hi in zip(e[:-1], e[1:])]


def bin_numeric(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Bin a numeric column: ``lo <= v < hi`` is ``"lo–hi"``; the last bin also holds its upper edge.

    Parameters
    ----------
    values : array_like of float, shape (N,)
        NaN = missing.
    edges : sequence of float, length K+1
        Strictly increasing, finite, at least two.

    Returns
    -------
    ndarray of str, shape (N,)
        One of :func:`bin_labels` ``(edges)``, or :data:`UNKNOWN` for a missing value or one outside
        ``[edges[0], edges[-1]]``.

    Raises
    ------
    MedauditError
        Bad edges (``param="bins"``).
    """
    e = check_edges(edges)
    v = np.asarray(values, dtype=np.float64)
    labels = np.array(bin_labels(e) + [UNKNOWN], dtype=str)
    k = np.searchsorted(e, v, side="right") - 1  # bin whose lower edge is the last one <= v
    k = np.where(v == e[-1], len(e) - 2, k)  # the top edge closes the last bin
    inside = np.isfinite(v) & (v >= e[0]) & (v <= e[-1])
    return labels[np.where(inside, k, len(e) - 1)]


def parse_bins(text: str) -> tuple[str, list[float]]:
    """``"age=0,40,65,120"`` → ``("age", [0.0, 40.0, 65.0, 120.0])`` (the value of ``--bins``).

    Raises
    ------
    MedauditError
        Not ``COLUMN=E0,E1,...`` or bad edges (``param="bins"``).
    """
    col, sep, rest = text.partition("=")
    if not sep or not col.strip():
        raise MedauditError(f"bins {text!r}: write COLUMN=EDGE,EDGE,... (e.g. age=0,40,65,120)", param="bins")
    edges = []
    for part in rest.split(","):
        v = _finite_float(part.strip())
        if v is None:
            raise MedauditError(f"bins {text!r}: '{part.strip()}' is not a finite number", param="bins")
        edges.append(v)
    check_edges(edges)
    return col.strip(), edges


def category_labels(values: np.ndarray) -> np.ndarray:
    """A column's values as display labels: "" becomes :data:`UNKNOWN`; numbers as ``%g``, NaN as unknown.

    Parameters
    ----------
    values : ndarray, shape (N,)
        float64 or str.

    Returns
    -------
    ndarray of str, shape (N,)
    """
    v = np.asarray(values)
    if v.dtype.kind == "f":
        return np.array([UNKNOWN if math.isnan(x) else format(x, "g") for x in v.tolist()], dtype=str)
    return np.where(v == "", UNKNOWN, v).astype(str)
