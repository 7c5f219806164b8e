"""Tampered or corrupt snapshot values are refused by the one reader (issue 19).

``check_snapshot`` refuses a number no medaudit run writes (a recall of 5.0, a negative count,
inverted bounds, ``"NaN"``, NaN, Infinity) with one line naming the file and the key, so that
neither ``medaudit gate`` nor ``medaudit render`` works from it.
"""

from __future__ import annotations

import copy
import json

import pytest
from click.testing import CliRunner

from medaudit.cli import main
from medaudit.errors import MedauditError
from medaudit.snapshot import METRIC_RANGES, check_snapshot, load_snapshot
from tests.snapshot_factory import build_snapshot, make_snapshot


def _set(snap: dict, path: tuple, value) -> dict:
    out = copy.deepcopy(snap)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


M0 = ("models", 0, "metrics")
TAMPERED = [
    # (path, value, key as the message writes it, problem)
    (M0 + ("per_class", "glioma", "recall", "value"), 5.0, "models[0].metrics.per_class.glioma.recall.value",
     "= 5.0 is outside [0, 1], the range of recall"),
    (M0 + ("per_class", "no tumor", "auc", "ci_high"), 1.5, 'models[0].metrics.per_class["no tumor"].auc.ci_high',
     "is outside [0, 1]"),
    (M0 + ("kappa", "value"), -1.5, "models[0].metrics.kappa.value", "outside [-1, 1]"),
    (M0 + ("brier", "value"), 2.5, "models[0].metrics.brier.value", "outside [0, 2]"),
    (M0 + ("ece", "ci_low"), -0.2, "models[0].metrics.ece.ci_low", "outside [0, 1]"),
    (M0 + ("per_class", "glioma", "support"), -3, "models[0].metrics.per_class.glioma.support", "is not a count"),
    (M0 + ("n",), 12.5, "models[0].metrics.n", "is not a count"),
    (M0 + ("accuracy", "k"), -1, "models[0].metrics.accuracy.k", "is not a count"),
    (M0 + ("accuracy", "k"), 201, "models[0].metrics.accuracy", "k = 201 > n = 200"),
    (M0 + ("accuracy", "value"), 0.99, "models[0].metrics.accuracy", "k / n = 190/200"),
    (M0 + ("auc_macro", "ci_low"), 0.99, "models[0].metrics.auc_macro", "ci_low 0.99 > ci_high 0.985"),
    (M0 + ("macro_f1", "value"), "NaN", "models[0].metrics.macro_f1.value", "'NaN' is not a number"),
    (M0 + ("macro_f1", "value"), float("nan"), "models[0].metrics.macro_f1.value", "is not a finite number"),
    (M0 + ("mcc", "ci_high"), float("inf"), "models[0].metrics.mcc.ci_high", "is not a finite number"),
    (M0 + ("macro_f1", "value"), True, "models[0].metrics.macro_f1.value", "is not a number"),
    (M0 + ("missed_disease_rate", "value"), 1.2, "models[0].metrics.missed_disease_rate.value", "outside [0, 1]"),
    (M0 + ("macro_f1", "classes_defined"), 5, "models[0].metrics.macro_f1",
     "classes_defined 5 > classes_total 4"),
]


def _with_partial_fields(snap: dict) -> dict:
    snap["models"][0]["metrics"]["macro_f1"].update(classes_defined=4, classes_total=4)
    return snap


@pytest.mark.parametrize("path, value, key, problem", TAMPERED)
def test_tampered_values_are_refused_naming_the_key(path, value, key, problem):
    snap = _with_partial_fields(build_snapshot())
    check_snapshot(snap, "report.json")  # the untouched snapshot is fine
    with pytest.raises(MedauditError) as exc:
        check_snapshot(_set(snap, path, value), "report.json")
    msg = str(exc.value)
    assert msg.startswith(f"report.json: {key} ") and problem in msg and "\n" not in msg


def test_values_that_runs_write_are_accepted():
    snap = build_snapshot()
    # Bounds equal to the value, the ends of each range, nulls, an unknown metric of a newer
    # snapshot (no range known: only checked to be finite and ordered).
    ok = [(M0 + ("per_class", "glioma", "auc"), {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0,
                                                 "ci_method": "bootstrap", "reason": None}),
          (M0 + ("kappa", "value"), -1.0), (M0 + ("brier", "value"), 2.0),
          (M0 + ("per_class", "glioma", "f1"), {"value": None, "ci_low": None, "ci_high": None,
                                                "ci_method": None, "reason": "no samples"}),
          (M0 + ("latency_ms",), {"value": 1234.5, "ci_low": 1000.0, "ci_high": 1500.0, "ci_method": None,
                                  "reason": None})]
    for path, value in ok:
        check_snapshot(_set(snap, path, value), "report.json")
    # A bootstrap interval need not hold its estimate (a biased statistic); only Wilson must.
    check_snapshot(_set(snap, M0 + ("auc_macro",), {"value": 0.97, "ci_low": 0.975, "ci_high": 0.99,
                                                    "ci_method": "bootstrap", "reason": None}), "r")


def test_the_report_factories_and_real_metrics_pass():
    # Snapshots built by the report tests' factory (sklearn numbers, comparisons, fn_risk,
    # operating points) are what a run writes: none may be refused.
    for n_models in (1, 2, 3):
        check_snapshot(make_snapshot(n_models), "report.json")


@pytest.mark.parametrize("path, value, key", [
    (("comparisons", "pairs", 0, "mcnemar", "p_value"), 1.2, "comparisons.pairs[0].mcnemar.p_value"),
    (("comparisons", "pairs", 0, "mcnemar", "b01"), -1, "comparisons.pairs[0].mcnemar.b01"),
    (("models", 0, "fn_risk", "overall", "value"), 3.0, "models[0].fn_risk.overall.value"),
    (("models", 0, "operating_points", "points", 0, "sensitivity", "ci_low"), -0.5,
     "models[0].operating_points.points[0].sensitivity.ci_low"),
])
def test_comparisons_and_risk_blocks_are_checked(path, value, key):
    snap = make_snapshot(2)
    with pytest.raises(MedauditError) as exc:
        check_snapshot(_set(snap, path, value), "report.json")
    assert str(exc.value).startswith(f"report.json: {key} = {value!r} ")


@pytest.mark.parametrize("path, value, fragment", [
    (("accuracy", "diff"), 1.5, 'bootstrap_diff.accuracy.diff = 1.5 is outside [-1, 1]'),
    (("recall", "normal", "ci_low"), -1.2, 'bootstrap_diff.recall.normal.ci_low = -1.2 is outside [-1, 1]'),
    (("macro_f1", "ci_low"), 0.5, "bootstrap_diff.macro_f1 has ci_low 0.5 > ci_high 0.07"),
])
def test_paired_differences_lie_in_minus_one_one(path, value, fragment):
    snap = make_snapshot(2)
    check_snapshot(snap, "report.json")
    with pytest.raises(MedauditError) as exc:
        check_snapshot(_set(snap, ("comparisons", "pairs", 0, "bootstrap_diff", *path), value), "report.json")
    assert fragment in str(exc.value)


def test_the_gate_threshold_ranges_are_the_snapshot_ranges():
    # One table: a threshold the gate accepts is a value a snapshot may hold.
    from medaudit.gate.parse import HIGHER_IS_BETTER, LOWER_IS_BETTER, parse_gate

    assert HIGHER_IS_BETTER | LOWER_IS_BETTER <= set(METRIC_RANGES)
    for metric, (_lo, hi) in METRIC_RANGES.items():
        if metric in HIGHER_IS_BETTER | LOWER_IS_BETTER:
            assert parse_gate(f"{metric}>={hi}").threshold == hi
            with pytest.raises(MedauditError, match="outside"):
                parse_gate(f"{metric}>={hi + 0.5}")


def _tampered_file(tmp_path, raw: str | None = None, name: str = "report.json"):
    snap = build_snapshot()
    snap["models"][0]["metrics"]["per_class"]["glioma"]["recall"]["value"] = 5.0
    path = tmp_path / name
    path.write_text(raw if raw is not None else json.dumps(snap), encoding="utf-8")
    return path


def test_gate_cli_refuses_a_tampered_snapshot(tmp_path):
    path = _tampered_file(tmp_path)
    res = CliRunner().invoke(main, ["gate", str(path), "-r", "accuracy>=0.5"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    (line,) = [ln for ln in res.output.splitlines() if ln.strip()]
    assert str(path) in line and "models[0].metrics.per_class.glioma.recall.value = 5.0 is outside [0, 1]" in line
    # A NaN literal in the file (Python's json reads it) is refused the same way.
    raw = json.dumps(build_snapshot()).replace('"value": 0.97', '"value": NaN', 1)
    res = CliRunner().invoke(main, ["gate", str(_tampered_file(tmp_path, raw, "nan.json")), "-r", "accuracy>=0.5"])
    assert res.exit_code == 2 and "is not a finite number" in res.output
    # The baseline is read through the same reader.
    good = tmp_path / "good.json"
    good.write_text(json.dumps(build_snapshot()), encoding="utf-8")
    res = CliRunner().invoke(main, ["gate", str(good), "--baseline", str(path), "--max-drop", "recall=0.1"])
    assert res.exit_code == 2 and f"{path}: models[0].metrics.per_class.glioma.recall.value" in res.output


def test_render_cli_refuses_a_tampered_snapshot(tmp_path):
    path = _tampered_file(tmp_path)
    res = CliRunner().invoke(main, ["render", str(path), "-o", str(tmp_path / "out"), "--format", "json"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"{path}: models[0].metrics.per_class.glioma.recall.value = 5.0" in res.output
    assert not (tmp_path / "out" / "report.json").exists()
    with pytest.raises(MedauditError, match="recall.value = 5.0"):
        load_snapshot(path, require_models=False)
