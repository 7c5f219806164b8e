"""medaudit.metadata: typing text columns, binning numeric ones, column lookup, identifier names."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medaudit.errors import MedauditError
from medaudit.metadata import (
    UNKNOWN,
    bin_labels,
    bin_numeric,
    category_labels,
    column_kind,
    is_identifier_name,
    parse_bins,
    parse_column,
    resolve_column,
)


def test_a_column_of_finite_numbers_with_gaps_is_numeric():
    col = parse_column(["45", " 61.5 ", "", "NA", "n/a", "NaN", "null", "-2", "1e3"])
    assert col.dtype == np.float64 and column_kind(col) == "numeric"
    assert col[[0, 1, 7, 8]].tolist() == [45.0, 61.5, -2.0, 1000.0]
    assert np.isnan(col[2:7]).all()  # every missing marker is NaN, never 0


@pytest.mark.parametrize("values", [["45", "F"], ["1", "inf"], ["40-65", "70"], ["", ""], []])
def test_anything_else_is_categorical(values):
    col = parse_column(values)
    assert col.dtype.kind == "U" and column_kind(col) == "categorical"
    assert col.tolist() == ["" if v == "" else v for v in values]


def test_categorical_values_are_stripped_and_missing_markers_are_empty():
    assert parse_column([" F ", "M", "NA", "", "unknown site"]).tolist() == ["F", "M", "", "", "unknown site"]


def _bin_by_hand(v: float, edges: list[float]) -> str:
    """An independent statement of the rule: [lo, hi) per bin, the top edge in the last bin."""
    if math.isnan(v):
        return UNKNOWN
    for k in range(len(edges) - 1):
        lo, hi = edges[k], edges[k + 1]
        last = k == len(edges) - 2
        if lo <= v < hi or (last and v == hi):
            return f"{lo:g}–{hi:g}"
    return UNKNOWN


def test_bin_numeric_hand_cases():
    edges = [0, 40, 65, 120]
    values = np.array([0, 39.9, 40, 64.99, 65, 120, 120.1, -1, np.nan])
    assert bin_numeric(values, edges).tolist() == [
        "0–40", "0–40", "40–65", "40–65", "65–120", "65–120", UNKNOWN, UNKNOWN, UNKNOWN]
    assert bin_labels(edges) == ["0–40", "40–65", "65–120"]


def test_bin_numeric_agrees_with_the_rule_on_random_values_and_edges():
    rng = np.random.default_rng(3)
    for _ in range(50):
        edges = sorted(set(np.round(rng.uniform(-5, 5, rng.integers(2, 6)), 1).tolist()))
        if len(edges) < 2:
            continue
        values = np.concatenate([rng.uniform(-6, 6, 40).round(1), edges, [np.nan, np.inf, -np.inf]])
        got = bin_numeric(values, edges).tolist()
        assert got == [_bin_by_hand(v, edges) for v in values.tolist()]


@pytest.mark.parametrize("edges", [[1], [], [0, 0, 1], [5, 1], [0, np.inf], ["a", "b"]])
def test_bad_edges_are_one_line_errors(edges):
    with pytest.raises(MedauditError) as err:
        bin_numeric(np.array([1.0]), edges)
    assert err.value.param == "bins" and "\n" not in str(err.value)


def test_parse_bins():
    assert parse_bins("age=0,40,65,120") == ("age", [0.0, 40.0, 65.0, 120.0])
    assert parse_bins(" Age = 0, 2.5 ") == ("Age", [0.0, 2.5])
    for bad, message in [("age", "COLUMN=EDGE"), ("=1,2", "COLUMN=EDGE"), ("age=1,x", "'x' is not a finite"),
                         ("age=3,1", "strictly increasing"), ("age=1", "at least two")]:
        with pytest.raises(MedauditError, match=message) as err:
            parse_bins(bad)
        assert err.value.param == "bins"


def test_resolve_column_is_case_insensitive_and_lists_the_columns():
    assert resolve_column(["Sex", "age"], "sex", param="group_by", where="m.csv") == "Sex"
    with pytest.raises(MedauditError, match=r"group_by 'site': m.csv has no such metadata column; .*'Sex', 'age'") \
            as err:
        resolve_column(["Sex", "age"], "site", param="group_by", where="m.csv")
    assert err.value.param == "group_by"
    with pytest.raises(MedauditError, match="columns are: none"):
        resolve_column([], "site", param="group_by", where="m.csv")


@pytest.mark.parametrize("name", ["name", "Patient Name", "patient_name", "birth_date", "BirthDate", "DOB", "mrn",
                                  "SSN", "address", "phone", "e-mail", "Patient-ID", "subject_id"])
def test_identifier_names(name):
    assert is_identifier_name(name)


@pytest.mark.parametrize("name", ["age", "sex", "site", "scanner", "view", "name_of_site", "patient_age"])
def test_context_columns_are_not_identifiers(name):
    assert not is_identifier_name(name)


def test_category_labels():
    assert category_labels(np.array(["F", "", "M"])).tolist() == ["F", UNKNOWN, "M"]
    assert category_labels(np.array([1.0, np.nan, 2.5])).tolist() == ["1", UNKNOWN, "2.5"]
