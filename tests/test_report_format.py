"""Formatting helpers of the report: printed form, undefined policy, round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medaudit.report.format import (
    Footnotes,
    fmt_count,
    fmt_metric,
    fmt_p,
    parse_metric_text,
)


def test_metric_with_interval():
    mv = {"value": 0.91234, "ci_low": 0.8701, "ci_high": 0.94149, "ci_method": "wilson", "reason": None}
    assert fmt_metric(mv) == "0.912 [0.870\u20130.941]"
    assert parse_metric_text(fmt_metric(mv)) == (0.912, 0.870, 0.941)


def test_metric_without_interval_and_undefined():
    assert fmt_metric({"value": 0.5, "ci_low": None, "ci_high": None, "ci_method": None, "reason": None}) == "0.500"
    undef = {"value": None, "ci_low": None, "ci_high": None, "ci_method": None, "reason": "no samples of class 'x'"}
    assert fmt_metric(undef) == "undefined"
    assert fmt_metric(None) == "not available"
    assert parse_metric_text("undefined") is None
    with pytest.raises(ValueError):
        parse_metric_text("0.9 (0.8-1.0)")


def test_footnotes_number_reasons_once():
    notes = Footnotes()
    a = notes.metric({"value": None, "reason": "r1"}, "k1")
    b = notes.metric({"value": None, "reason": "r2"}, "k2")
    c = notes.metric({"value": None, "reason": "r1"}, "k3")
    ok = notes.metric({"value": 0.25, "ci_low": 0.1, "ci_high": 0.4}, "k4")
    assert (a.note, b.note, c.note, ok.note) == (1, 2, 1, None)
    assert notes.reasons == ["r1", "r2"]
    assert a.text == "undefined" and a.kind == "undef" and ok.text == "0.250 [0.100\u20130.400]"


def test_counts_and_p_values():
    assert fmt_count(11_170_000) == "11.17 M"
    assert fmt_count(1.82e9) == "1.82 G"
    assert fmt_p(0.0004) == "< 0.001"
    assert fmt_p(0.04567) == "0.046"
    assert fmt_p(None) == "undefined"


@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1))
def test_round_trip_is_rounding(v, lo, hi):
    lo, v, hi = sorted((v, lo, hi))
    parsed = parse_metric_text(fmt_metric({"value": v, "ci_low": lo, "ci_high": hi}))
    assert parsed == (round(v, 3), round(lo, 3), round(hi, 3)) or all(
        abs(p - q) <= 0.0005 + 1e-12 for p, q in zip(parsed, (v, lo, hi), strict=False))


def test_splits_in_reading_order():
    from medaudit.report.format import ordered_splits

    assert ordered_splits({"test": 1, "train": 1, "val": 1}) == ["train", "val", "test"]
    assert ordered_splits({"zeta": 1, "all": 1, "test": 1}) == ["test", "all", "zeta"]
