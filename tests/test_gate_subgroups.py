"""Gate checks on subgroups (issue 18): ``recall{site=B}``, ``min_group(recall, site)``, ``max_gap(recall, sex)``.

Every snapshot here carries ``models[i].subgroups`` made by the real
:func:`medaudit.metrics.subgroups.subgroup_metrics` on seeded arrays, in the shape of the issue-18
schema, and is read back through JSON. The numbers a check compares are recomputed from the raw
arrays with scikit-learn (recall per group and against the rest) and statsmodels (Wilson bounds),
so a gate reading the wrong group, bound or gap fails here. The "lowest lower bound" rule is
checked by simulation: a group whose true recall sits at the floor passes ``--on lower`` in about
2.5% of test sets, where the point estimate passes about half of them.
"""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
from sklearn.metrics import recall_score
from statsmodels.stats.proportion import proportion_confint

from medaudit.errors import MedauditError
from medaudit.gate import parse_gate, parse_max_drop, run_gates
from medaudit.gate import subgroups as gate_subgroups
from medaudit.metrics import compute_metrics
from medaudit.metrics import subgroups as metric_subgroups
from medaudit.metrics.clustered import patient_level
from medaudit.metrics.subgroups import subgroup_differences, subgroup_metrics
from medaudit.snapshot import check_snapshot
from tests.snapshot_factory import build_model, build_snapshot

BINARY = ["normal", "pneumonia"]
MIN_N = 15


def _data(seed=0, n=600):
    """Binary arrays with site A/B/C (C small), sex F/M/unknown; site B and the unknown-sex bucket recall worse."""
    rng = np.random.default_rng(seed)
    site = rng.choice(["A", "B", "C"], size=n, p=[0.5, 0.44, 0.06])
    sex = rng.choice(["F", "M", ""], size=n, p=[0.45, 0.45, 0.10])
    y = rng.integers(0, 2, size=n)
    strength = np.where(site == "B", 0.15, 0.35) + np.where(sex == "", -0.15, 0.0)
    s = np.clip(0.4 + y * strength + rng.normal(0, 0.18, n), 0.01, 0.99)
    return {"y": y, "probs": np.stack([1 - s, s], axis=1), "site": site, "sex": sex}


def _snapshot(models: dict, groups: dict, *, classes=BINARY, negatives=("normal",), n_bootstrap=200,
              min_group_n=MIN_N, intersections=(("sex", "site"),)) -> dict:
    """A schema-2.0 snapshot whose models carry the real subgroup block, read back from JSON."""
    blocks = []
    for name, (y, probs) in models.items():
        block = build_model(name, [45] * len(classes), classes=classes, negative=negatives[0])
        block["subgroups"] = subgroup_metrics(y, probs, classes, list(negatives), groups,
                                              intersections=list(intersections), min_group_n=min_group_n,
                                              n_bootstrap=n_bootstrap, seed=0)
        blocks.append(block)
    snap = build_snapshot(models=blocks, classes=classes, task="binary" if len(classes) == 2 else "multiclass")
    snap["settings"]["negative_classes"] = list(negatives)
    snap["settings"]["subgroups"] = {"group_by": sorted(groups), "bins": {}, "intersections": [list(p) for p in
                                     intersections], "patient_column": None, "min_group_n": min_group_n,
                                     "level": "image", "aggregate": "max", "salt_id": None}
    return json.loads(json.dumps(snap, allow_nan=False))


def subgroup_snapshot(seed=0, **kw) -> tuple[dict, dict]:
    """(snapshot with models m1, m2, the arrays of m1): the fixture the CLI tests share."""
    d = _data(seed)
    other = _data(seed + 1)
    models = {"m1": (d["y"], d["probs"]), "m2": (d["y"], other["probs"])}
    return _snapshot(models, {"site": d["site"], "sex": d["sex"]}, **kw), d


@pytest.fixture(scope="module")
def made():
    return subgroup_snapshot()


@pytest.fixture(scope="module")
def snap(made):
    return made[0]


@pytest.fixture(scope="module")
def arrays(made):
    return made[1]


def _one(snap, expr, model="m1", on="point", **kw):
    results = [r for r in run_gates(snap, [expr], on=on, **kw).results if r.model == model]
    assert len(results) == 1, results
    return results[0]


def _recall(d, mask):
    return recall_score(d["y"][mask], d["probs"][mask].argmax(1), pos_label=1, zero_division=np.nan)


def _wilson(d, mask):
    k = int(((d["probs"][mask].argmax(1) == 1) & (d["y"][mask] == 1)).sum())
    n = int((d["y"][mask] == 1).sum())
    return proportion_confint(k, n, alpha=0.05, method="wilson")


# -- the snapshot and the name list ---------------------------------------------------------------


def test_the_gate_names_are_the_subgroup_metrics():
    assert gate_subgroups.NAMES == metric_subgroups.METRICS
    assert gate_subgroups.GAP_NAMES == metric_subgroups.GAP_METRICS
    assert gate_subgroups.LOWER_IS_BETTER == metric_subgroups.LOWER_IS_BETTER


def test_check_snapshot_accepts_the_subgroup_blocks(snap, arrays):
    check_snapshot(snap, "report")
    # ... and the other issue-18 blocks beside them, made by the real functions, with patient ids.
    full = copy.deepcopy(snap)
    patients = np.asarray([f"p-{i // 3:016x}" for i in range(len(arrays["y"]))])
    y = np.asarray([arrays["y"][i - i % 3] for i in range(len(arrays["y"]))])  # one class per patient
    pl = patient_level(y, arrays["probs"], patients, BINARY, ["normal"], aggregate="max")
    full["models"][0]["patient_level"] = {"aggregate": "max", "n_patients": int(len(pl.y_true)),
                                          "metrics": compute_metrics(pl.y_true, pl.probs, pl.class_names, pl.task,
                                                                     n_bootstrap=50)}
    full["models"][0]["subgroups"] = subgroup_metrics(y, arrays["probs"], BINARY, ["normal"], {"site": arrays["site"]},
                                                      clusters=patients, n_bootstrap=50, min_group_n=MIN_N)
    other = _data(1)["probs"]
    full["comparisons"] = {"subgroup_differences": [{"a": "m1", "b": "m2", **subgroup_differences(
        y, arrays["probs"], other, BINARY, ["normal"], {"site": arrays["site"]}, clusters=patients, n_bootstrap=50)}]}
    check_snapshot(json.loads(json.dumps(full, allow_nan=False)), "report")
    r = run_gates(full, ["m1:min_group(recall, site)>=0"], on="lower").results[0]
    assert r.passed and r.ci_method == "cluster-bootstrap" and " patients, " in r.note
    bad = copy.deepcopy(snap)
    bad["models"][0]["subgroups"]["columns"]["site"]["groups"]["B"]["recall"]["value"] = 5.0
    with pytest.raises(MedauditError, match=r"subgroups\.columns\.site\.groups\.B\.recall\.value = 5\.0"):
        check_snapshot(bad, "report")


# -- one group ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("on, field", [("point", 0), ("lower", 1), ("upper", 2)])
def test_one_group_reads_that_groups_recall_and_bound(snap, arrays, on, field):
    mask = arrays["site"] == "B"
    lo, hi = _wilson(arrays, mask)
    expected = (_recall(arrays, mask), lo, hi)[field]
    r = _one(snap, "recall{site=B}>=0.5", on=on)
    assert r.metric == "recall{site=B}" and r.on == on
    assert r.value == pytest.approx(expected, abs=1e-9)
    assert r.passed == (expected >= 0.5)
    assert "site=B" in r.note and f"{int(mask.sum())} images" in r.note


def test_one_group_pass_and_fail_around_its_value(snap, arrays):
    v = _recall(arrays, arrays["site"] == "B")
    assert _one(snap, f"recall{{site=B}}>={v - 1e-9}").passed
    assert not _one(snap, f"recall{{site=B}}>={v + 1e-9}").passed
    # Missed disease is 1 - recall and a ceiling: the same group from the other side.
    assert _one(snap, f"missed_disease_rate{{site=B}}<={1 - v + 1e-9}").passed
    assert not _one(snap, f"missed_disease_rate{{site=B}}<={1 - v - 1e-9}").passed


def test_intersection_group_in_either_order(snap, arrays):
    mask = (arrays["sex"] == "F") & (arrays["site"] == "A")
    for expr in ("recall{sex=F, site=A}>=0", "recall{ site = A , sex = F }>=0", 'sensitivity{"sex"="F",site=A}>=0'):
        r = _one(snap, expr)
        assert r.value == pytest.approx(_recall(arrays, mask), abs=1e-9), expr


def test_the_class_of_the_one_disease_outcome_is_accepted(snap):
    a, b = _one(snap, "recall[pneumonia]{site=B}>=0.5"), _one(snap, "recall{site=B}>=0.5")
    assert (a.value, a.ci_low, a.ci_high) == (b.value, b.ci_low, b.ci_high)


def test_too_few_group_fails_closed_with_its_reason(snap, arrays):
    # Site C (about 36 images) still has a recall at min_group_n=15; its halves by sex do not.
    groups = snap["models"][0]["subgroups"]["columns"]["sex & site"]["groups"]
    small = next(lab for lab, g in groups.items() if not g["unknown"] and g["recall"]["value"] is None)
    sex, site = small.split(" & ")
    r = _one(snap, f"recall{{sex={sex}, site={site}}}>=0", on="point")
    assert not r.passed and r.value is None and "too few to estimate" in r.reason
    assert not _one(snap, f"recall{{sex={sex}, site={site}}}>=0", allow_partial=True).passed


def test_unknown_bucket_is_gated_by_name(snap, arrays):
    r = _one(snap, "recall{sex=unknown}>=0")
    assert r.value == pytest.approx(_recall(arrays, arrays["sex"] == ""), abs=1e-9)
    assert "no sex" in r.note


# -- min_group / max_group ---------------------------------------------------------------------------


@pytest.mark.parametrize("on, field", [("point", 0), ("lower", 1), ("upper", 2), ("conservative", 1)])
def test_min_group_is_the_lowest_value_or_bound_over_the_known_groups(snap, arrays, on, field):
    per_site = {s: (_recall(arrays, arrays["site"] == s), *_wilson(arrays, arrays["site"] == s)) for s in "ABC"}
    expected = min(v[field] for v in per_site.values())
    worst = min(per_site, key=lambda s: per_site[s][field])
    r = _one(snap, "min_group(recall, site)>=0.5", on=on)
    assert r.metric == "min_group(recall, site)"
    assert r.value == pytest.approx(expected, abs=1e-9)
    assert f"site={worst}" in r.note and "3 of 3 groups compared" in r.note
    assert r.passed == (expected >= 0.5)


def test_min_group_equals_every_group_checked_alone(snap):
    # min_group(M, col) >= v passes exactly when every group's M passes >= v (same bound).
    groups = [g for g, e in snap["models"][0]["subgroups"]["columns"]["site"]["groups"].items() if not e["unknown"]]
    for on in ("point", "lower", "upper"):
        for t in np.linspace(0.3, 0.95, 14):
            every = all(_one(snap, f"recall{{site={g}}}>={t}", on=on).passed for g in groups)
            assert _one(snap, f"min_group(recall, site)>={t}", on=on).passed == every, (on, t)


def test_max_group_of_a_lower_is_better_metric(snap, arrays):
    rates = {s: 1 - _recall(arrays, arrays["site"] == s) for s in "ABC"}
    r = _one(snap, "max_group(missed_disease_rate, site)<=0.9")
    assert r.value == pytest.approx(max(rates.values()), abs=1e-9)
    assert f"site={max(rates, key=rates.get)}" in r.note
    # conservative on a ceiling: the highest upper bound
    highs = {s: 1 - _wilson(arrays, arrays["site"] == s)[0] for s in "ABC"}
    assert _one(snap, "max_group(missed_disease_rate, site)<=0.9", on="conservative").value == pytest.approx(
        max(highs.values()), abs=1e-9)


def test_aggregates_leave_the_unknown_bucket_out_and_say_so(snap, arrays):
    known = {s: _recall(arrays, arrays["sex"] == s) for s in "FM"}
    unknown = _recall(arrays, arrays["sex"] == "")
    assert unknown < min(known.values())  # the data are made so; else the test shows nothing
    r = _one(snap, "min_group(recall, sex)>=0")
    assert r.value == pytest.approx(min(known.values()), abs=1e-9)
    assert "not a group: unknown" in r.note and "no sex" in r.note


def test_min_group_fails_closed_on_a_too_few_group_unless_allow_partial(snap, arrays):
    expr = "min_group(recall, sex & site)>=0"
    groups = snap["models"][0]["subgroups"]["columns"]["sex & site"]["groups"]
    small = [lab for lab, g in groups.items() if not g["unknown"] and g["recall"]["value"] is None]
    assert small  # the data are made so
    r = _one(snap, expr)
    assert not r.passed and r.value is None
    assert "too few to estimate" in r.reason and "--allow-partial leaves them out" in r.reason
    assert all(f"sex & site={lab}" in r.reason for lab in small)
    ok = _one(snap, expr, allow_partial=True)
    defined = [lab for lab, g in groups.items() if not g["unknown"] and lab not in small]
    masks = {lab: (arrays["sex"] == lab[0]) & (arrays["site"] == lab[-1]) for lab in defined}
    assert ok.passed and ok.value == pytest.approx(min(_recall(arrays, m) for m in masks.values()), abs=1e-9)
    assert "left out (no value, allowed by --allow-partial)" in ok.note
    assert f"{len(defined)} of {len(defined) + len(small)} groups compared" in ok.note


def test_report_gate_names_the_gate_command_for_allow_partial(snap):
    r = run_gates(snap, ["min_group(recall, sex & site)>=0"], option="--gate").results[0]
    assert "`medaudit gate --allow-partial` leaves them out" in r.reason


def test_every_group_undefined_fails_even_with_allow_partial(arrays):
    snap = _snapshot({"m1": (arrays["y"], arrays["probs"])}, {"site": arrays["site"]}, min_group_n=10_000,
                     intersections=())
    r = run_gates(snap, ["min_group(recall, site)>=0"], allow_partial=True).results[0]
    assert not r.passed and "3 of 3 groups of site have no value" in r.reason


# -- max_gap ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lo, hi, expected", [(-0.1, 0.05, (0.0, 0.1)), (0.02, 0.07, (0.02, 0.07)),
                                              (-0.07, -0.02, (0.02, 0.07)), (-0.03, 0.0, (0.0, 0.03))])
def test_abs_gap_interval_by_hand(lo, hi, expected):
    e = gate_subgroups._abs_gap({"diff": (lo + hi) / 2, "ci_low": lo, "ci_high": hi, "ci_method": "m"})
    assert (e["ci_low"], e["ci_high"]) == pytest.approx(expected)
    assert e["value"] == pytest.approx(abs(lo + hi) / 2)


def test_max_gap_point_is_the_largest_group_vs_rest_difference(snap, arrays):
    gaps = {s: abs(_recall(arrays, arrays["sex"] == s) - _recall(arrays, arrays["sex"] != s)) for s in "FM"}
    r = _one(snap, "max_gap(recall, sex)<=1")
    assert r.value == pytest.approx(max(gaps.values()), abs=1e-9)
    assert f"sex={max(gaps, key=gaps.get)}" in r.note and "Holm p" in r.note


@pytest.mark.parametrize("on", ["upper", "conservative", "lower"])
def test_max_gap_bounds_come_from_the_gap_intervals(snap, on):
    groups = snap["models"][0]["subgroups"]["columns"]["site"]["groups"]
    gaps = [g["gap"]["recall"] for g in groups.values() if not g["unknown"]]
    ups = [max(abs(g["ci_low"]), abs(g["ci_high"])) for g in gaps]
    lows = [0.0 if g["ci_low"] <= 0 <= g["ci_high"] else min(abs(g["ci_low"]), abs(g["ci_high"])) for g in gaps]
    r = _one(snap, "max_gap(recall, site)<=0.1", on=on)
    assert r.on == ("lower" if on == "lower" else "upper")
    assert r.value == pytest.approx(max(lows if on == "lower" else ups), abs=1e-9)
    assert r.passed == (r.value <= 0.1)


def test_max_gap_without_intervals_fails_on_a_bound_and_gates_the_point(arrays):
    snap = _snapshot({"m1": (arrays["y"], arrays["probs"])}, {"sex": arrays["sex"]}, n_bootstrap=0, intersections=())
    r = run_gates(snap, ["max_gap(recall, sex)<=1"], on="upper").results[0]
    assert not r.passed and r.value is None and "no confidence interval" in r.reason
    assert "bootstrap disabled" in r.reason
    assert run_gates(snap, ["max_gap(recall, sex)<=1"], on="point").passed
    # Wilson bounds of a group need no bootstrap
    assert run_gates(snap, ["min_group(recall, sex)>=0"], on="lower").passed


# -- models, skipped blocks, bad input ------------------------------------------------------------------


def test_one_result_per_model_and_the_model_prefix(snap):
    assert [r.model for r in run_gates(snap, ["min_group(recall, site)>=0"]).results] == ["m1", "m2"]
    res = run_gates(snap, ["m2:min_group(recall, site)>=0", "'m1':recall{site=A}>=0"]).results
    assert [r.model for r in res] == ["m2", "m1"]


def test_skipped_block_fails_with_its_reason(snap):
    s = copy.deepcopy(snap)
    s["models"][0]["subgroups"] = {"available": False, "reason": "no healthy class is known"}
    r = _one(s, "recall{site=B}>=0")
    assert not r.passed and "the subgroup analysis was skipped: no healthy class is known" in r.reason
    assert "skipped" in _one(s, "max_gap(recall, site)<=1").reason


@pytest.mark.parametrize("expr, fragment", [
    ("recall{region=B}>=0.5", "no subgroup column 'region' in the report; valid: 'site', 'sex', 'sex & site'"),
    ("recall{site=Z}>=0.5", "column 'site' has no group 'Z'; valid: 'A', 'B', 'C'"),
    ("min_group(recall, region)>=0.5", "no subgroup column 'region'"),
    ("recall{sex=F, region=A}>=0.5", "no subgroup column 'sex & region'"),
    ("recall[normal]{site=B}>=0.5", "subgroup metrics are of disease (pneumonia) against healthy (normal)"),
    ("recall[covid]{site=B}>=0.5", "'covid' is not a class of the task"),
])
def test_bad_names_are_exit_2_listing_the_valid_ones(snap, expr, fragment):
    with pytest.raises(MedauditError) as exc:
        run_gates(snap, [expr])
    assert fragment in str(exc.value)


def test_a_report_without_group_by_says_how_to_rerun(snap):
    s = copy.deepcopy(snap)
    for m in s["models"]:
        m["subgroups"] = None
    s["settings"]["subgroups"] = None
    with pytest.raises(MedauditError, match=r"made without --group-by; rerun `medaudit report` with --group-by"):
        run_gates(s, ["recall{site=B}>=0.5"])


def test_multiclass_refuses_a_class_and_gates_disease_vs_healthy():
    rng = np.random.default_rng(3)
    n = 300
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 2.0 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    site = rng.choice(["A", "B"], n)
    snap = _snapshot({"m1": (y, p)}, {"site": site}, classes=["normal", "pneumonia", "covid"], intersections=())
    with pytest.raises(MedauditError, match=r"of disease \(pneumonia, covid\) against healthy \(normal\) as a whole"):
        run_gates(snap, ["recall[pneumonia]{site=A}>=0.5"])
    mask = site == "A"
    disease = y[mask] != 0
    expected = ((p[mask].argmax(1) != 0) & disease).sum() / disease.sum()
    assert run_gates(snap, ["recall{site=A}>=0"]).results[0].value == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("expr, fragment", [
    ("bogus{site=B}>=0.5", "'bogus' is not a subgroup metric; valid: prevalence, recall"),
    ("recall[*]{site=B}>=0.5", "drop the [*]"),
    ("max_gap(prevalence, site)<=0.1", "prevalence has no gap"),
    ("min_group(recall, site)<=0.9", "passes when a single group meets it"),
    ("max_group(ece, site)>=0.1", "passes when a single group meets it"),
    ("max_gap(recall, sex)>=0.05", "passes when a single group meets it"),
    ("recall{site=B}>=95", "outside [0, 1] for recall"),
    ("max_gap(recall, sex)<=-0.1", "outside [0, 1] for an absolute difference"),
    ("recall{site=B}@0.1>=0.5", "no '@' qualifier"),
    ("recall{site}>=0.5", "'=' after the column name"),
    ("recall{site=}>=0.5", "a group name"),
    ("recall{site=B>=0.5", "expected ',' or '}'"),
    ("recall{a=1, b=2, c=3}>=0.5", "two different columns"),
    ("recall{site=A, site=B}>=0.5", "two different columns"),
    ("min_group(recall site)>=0.5", "',' and a column name"),
    ("min_group(recall, site>=0.5", "expected ')'"),
])
def test_parse_errors(expr, fragment):
    with pytest.raises(MedauditError) as exc:
        parse_gate(expr, option="--gate")
    msg = str(exc.value)
    assert fragment in msg and msg.startswith("--gate ") and "\n" not in msg


def test_parse_forms():
    g = parse_gate(" m1 : min_group( sensitivity [pneumonia] , sex & site ) >= 85% ")
    assert (g.model, g.aggregate, g.metric, g.cls, g.column, g.threshold) == (
        "m1", "min_group", "recall", "pneumonia", "sex & site", 0.85)
    assert g.subgroup and not g.clinical
    g = parse_gate('recall{site="a,b}"}>=0.9')
    assert g.groups == (("site", "a,b}"),)
    assert parse_gate("tpr{site=B}>=0.9").metric == "recall"
    # a metric named like an aggregate, without '(', is still an ordinary metric name
    assert not parse_gate("recall>=0.9").subgroup


def test_max_drop_refuses_subgroup_forms():
    for spec in ("recall{site=B}=0.02", "min_group(recall, site)=0.02"):
        with pytest.raises(MedauditError, match="--require only"):
            parse_max_drop(spec)


# -- the bound rule by simulation ------------------------------------------------------------------------


def test_lowest_lower_bound_rarely_passes_a_group_at_the_floor():
    """Site B's true recall is the floor 0.85 (60 disease images), site A's is 0.97: the gate
    ``min_group(recall, site)>=0.85`` should pass in about 2.5% of test sets with ``--on lower``
    (one-sided Wilson error), and in about half with the point estimate."""
    rng = np.random.default_rng(12)
    passed = {"point": 0, "lower": 0}
    sims = 300
    for _ in range(sims):
        site = np.repeat(["A", "B"], [240, 120])
        y = np.tile([1, 0], 180)
        hit = rng.random(360) < np.where(site == "A", 0.97, 0.85)
        called = np.where(y == 1, hit, rng.random(360) < 0.1)
        p1 = np.where(called, 0.8, 0.2)
        snap = _snapshot({"m": (y, np.stack([1 - p1, p1], 1))}, {"site": site}, n_bootstrap=0, intersections=())
        for on in passed:
            passed[on] += run_gates(snap, ["min_group(recall, site)>=0.85"], on=on).passed
    assert passed["lower"] / sims <= 0.05, passed
    assert 0.3 <= passed["point"] / sims <= 0.7, passed


def test_upper_bound_of_the_gap_rarely_passes_a_gap_at_the_ceiling():
    """Recall 0.90 for F and 0.78 for M (true gap 0.12, 150 disease images each): ``max_gap(recall,
    sex)<=0.12 --on upper`` should pass in about 2.5% of test sets, the point estimate in about half."""
    rng = np.random.default_rng(5)
    passed = {"point": 0, "upper": 0}
    sims = 120
    for _ in range(sims):
        sex = np.repeat(["F", "M"], 300)
        y = np.tile([1, 0], 300)
        hit = rng.random(600) < np.where(sex == "F", 0.90, 0.78)
        p1 = np.where(np.where(y == 1, hit, rng.random(600) < 0.1), 0.8, 0.2)
        snap = _snapshot({"m": (y, np.stack([1 - p1, p1], 1))}, {"sex": sex}, n_bootstrap=200, intersections=())
        for on in passed:
            passed[on] += run_gates(snap, ["max_gap(recall, sex)<=0.12"], on=on).passed
    assert passed["upper"] / sims <= 0.07, passed
    assert 0.25 <= passed["point"] / sims <= 0.75, passed


def test_every_subgroup_expression_in_the_docs_parses():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "gates.md").read_text(encoding="utf-8")
    section = text.split("## Subgroup checks", 1)[1].split("\n## ", 1)[0]
    shown = set(re.findall(r'-r "([^"]+)"', section)) | set(re.findall(r"`([^`\n]*[{(][^`\n]*(?:>=|<=)[^`\n]*)`",
                                                                      section))
    shown = {e.split(" --")[0] for e in shown}  # "... --on lower" in the prose
    refused = {e for e in shown if re.match(r"(min_group\(.*\) <=|max_group\(.*\) >=|max_gap\(.*\) >=)", e)}
    assert len(shown - refused) >= 8, shown
    for expr in sorted(shown - refused):
        assert parse_gate(expr).subgroup, expr
