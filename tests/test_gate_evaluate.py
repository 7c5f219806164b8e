"""Gates evaluated on a snapshot: bounds, aliases, class expansion, undefined values, baseline drops."""

from __future__ import annotations

import copy
import json

import pytest

from medaudit.errors import MedauditError
from medaudit.gate import run_gates
from tests.snapshot_factory import GATE_CLASSES, GATE_NEGATIVE, build_model, build_snapshot, mv, wilson


@pytest.fixture
def snap():
    return build_snapshot()


def by(report, model=None, metric=None):
    return [r for r in report.results if (model is None or r.model == model) and (metric is None or r.metric == metric)]


# ---------------------------------------------------------------- evaluation


def test_point_vs_lower_bound(snap):
    # resnet18 glioma recall 48/50 = 0.96 (Wilson 95% CI 0.865..0.989): the point passes
    # 0.95, the lower bound does not -- the reason to gate on the bound on small test sets.
    point = run_gates(snap, ["resnet18:recall[glioma]>=0.95"])
    lower = run_gates(snap, ["resnet18:recall[glioma]>=0.95"], on="lower")
    upper = run_gates(snap, ["resnet18:recall[glioma]>=0.95"], on="upper")
    assert point.passed and not lower.passed and upper.passed
    r = lower.results[0]
    assert (r.on, r.k, r.n, r.point) == ("lower", 48, 50, 0.96)
    from scipy.stats import binomtest

    ci = binomtest(48, 50).proportion_ci(confidence_level=0.95, method="wilson")
    assert r.value == pytest.approx(ci.low, abs=1e-9) and r.ci_high == pytest.approx(ci.high, abs=1e-9)
    assert r.value == snap["models"][0]["metrics"]["per_class"]["glioma"]["recall"]["ci_low"]
    assert run_gates(snap, ["resnet18:recall[glioma]>=0.86"], on="lower").passed


def test_conservative_picks_the_unfavourable_bound(snap):
    rep = run_gates(snap, ["resnet18:ece<=0.05", "resnet18:auc>=0.96"], on="conservative")
    ece, auc = rep.results
    assert (ece.on, ece.value, ece.passed) == ("upper", 0.06, False)
    assert (auc.on, auc.value, auc.passed) == ("lower", 0.95, False)


def test_no_model_prefix_gives_one_result_per_model(snap):
    rep = run_gates(snap, ["accuracy>=0.9"])
    assert [r.model for r in rep.results] == ["resnet18", "vit_tiny"]
    assert [r.value for r in rep.results] == [190 / 200, 184 / 200]
    assert rep.passed


def test_aliases_and_class_expansion(snap):
    rep = run_gates(snap, ["resnet18:auc>=0.9", "resnet18:f1>=0.9", "resnet18:sensitivity[glioma]>=0.9",
                           "resnet18:recall>=0.9"])
    labels = [r.metric for r in rep.results]
    assert labels[:3] == ["auc_macro", "macro_f1", "recall[glioma]"]
    # a per-class metric without a class expands over every class
    assert labels[3:] == [f"recall[{c}]" for c in GATE_CLASSES]
    assert [r.passed for r in rep.results[3:]] == [True, True, True, True]
    fail = run_gates(snap, ["resnet18:recall[*]>0.9"])
    assert [r.passed for r in fail.results] == [True, False, True, True]  # meningioma 45/50 == 0.9 is not > 0.9


def test_boundary_is_exact(snap):
    assert run_gates(snap, ["resnet18:recall[meningioma]>=0.9"]).passed
    assert not run_gates(snap, ["resnet18:recall[meningioma]>0.9"]).passed
    assert run_gates(snap, ["resnet18:recall[meningioma]<=0.9"]).passed
    assert not run_gates(snap, ["resnet18:recall[meningioma]<0.9"]).passed


def test_missed_disease_rate_global_and_per_class(snap):
    # resnet18 misses (2//2 + 5//2 + 3//2) = 4 of 150 disease samples as "no tumor"
    rep = run_gates(snap, ["resnet18:missed_disease_rate<=0.03", "resnet18:missed_disease_rate[*]<=0.05"])
    assert rep.results[0].value == pytest.approx(4 / 150) and rep.results[0].passed
    # the negative class has no missed-disease rate (null entry): skipped when expanding
    assert [r.metric for r in rep.results[1:]] == [f"missed_disease_rate[{c}]" for c in GATE_CLASSES if c != GATE_NEGATIVE]
    assert [r.value for r in rep.results[1:]] == [1 / 50, 2 / 50, 1 / 50]


def test_null_fails_closed_with_reason(snap):
    rep = run_gates(snap, ["vit_tiny:auc[pituitary]>=0.5", "vit_tiny:auc_micro>=0.5",
                           "kappa_quadratic>=0.1", 'missed_disease_rate["no tumor"]<=1'])
    assert not rep.passed and rep.n_failed == len(rep.results) == 6  # kappa_quadratic, mdr: 2 models
    assert rep.results[0].reason == "no negatives for class 'pituitary'" and rep.results[0].value is None
    assert rep.results[1].reason == "only one class in y_true"
    assert "null in the snapshot" in rep.results[2].reason
    assert rep.results[4].metric == "missed_disease_rate[no tumor]" and "null" in rep.results[4].reason


def test_missing_interval_fails_closed_only_for_bounds(snap):
    assert run_gates(snap, ["resnet18:brier<=0.2"]).passed
    rep = run_gates(snap, ["resnet18:brier<=0.2"], on="upper")
    assert not rep.passed and "no confidence interval" in rep.results[0].reason


def test_nan_in_snapshot_is_refused(snap):
    # medaudit writes null for an undefined value; a NaN (which Python's JSON reader accepts)
    # means the file was edited or corrupted, so it is bad input, never a pass (issue 19).
    snap["models"][0]["metrics"]["mcc"] = mv(float("nan"))
    with pytest.raises(MedauditError, match=r"models\[0\]\.metrics\.mcc\.value = nan is not a finite number"):
        run_gates(snap, ["resnet18:mcc>=0"])


@pytest.mark.parametrize("expr, fragment", [
    ("densenet:auc>=0.9", "unknown model 'densenet'; valid: 'resnet18', 'vit_tiny'"),
    ("recall[astrocytoma]>=0.9", "valid: 'glioma', 'meningioma', 'no tumor', 'pituitary'"),
    ("bogus>=0.5", "unknown metric 'bogus'; valid: "),
    ("bogus[glioma]>=0.5", "unknown per-class metric 'bogus'"),
    ("support[glioma]>=0.5", "unknown per-class metric"),
])
def test_unknown_names_are_bad_input(snap, expr, fragment):
    with pytest.raises(MedauditError, match=None) as exc:
        run_gates(snap, [expr])
    assert fragment in str(exc.value)


def test_bad_input_combinations(snap):
    with pytest.raises(MedauditError, match="nothing to check"):
        run_gates(snap, [])
    with pytest.raises(MedauditError, match="--max-drop needs --baseline"):
        run_gates(snap, [], max_drops=["recall=0.02"])
    with pytest.raises(MedauditError, match="--baseline needs"):
        run_gates(snap, ["auc>=0.5"], baseline=build_snapshot())
    with pytest.raises(MedauditError, match="schema_version .3.0. is not supported"):
        run_gates({**snap, "schema_version": "3.0"}, ["auc>=0.5"])
    assert run_gates({**snap, "schema_version": "1.0"}, ["auc>=0.5"]).results  # 1.0 differs only outside metrics
    broken = copy.deepcopy(snap)
    broken["models"][0]["metrics"]["per_class"]["glioma"] = [0.9]
    with pytest.raises(MedauditError, match=r"models\[0\] needs"):
        run_gates(broken, ["auc>=0.5"])
    broken["models"][0]["metrics"] = None
    with pytest.raises(MedauditError, match=r"models\[0\] needs"):
        run_gates(broken, ["auc>=0.5"])
    broken = copy.deepcopy(snap)
    broken["models"][0]["metrics"]["auc_macro"]["value"] = "0.9"
    with pytest.raises(MedauditError, match="auc_macro.value = '0.9' is not a number"):
        run_gates(broken, ["resnet18:auc>=0.5"])
    with pytest.raises(MedauditError, match="not unique"):
        run_gates({**snap, "models": [snap["models"][0]] * 2}, ["auc>=0.5"])


# ---------------------------------------------------------------- baseline


def test_max_drop_per_class_and_global(snap):
    old = build_snapshot()
    new = copy.deepcopy(old)
    # resnet18 glioma recall drops 0.96 -> 0.92 (0.04); vit_tiny meningioma 0.88 -> 0.86 (0.02)
    new["models"][0]["metrics"]["per_class"]["glioma"]["recall"] = wilson(46, 50)
    new["models"][1]["metrics"]["per_class"]["meningioma"]["recall"] = wilson(43, 50)
    rep = run_gates(new, [], baseline=old, max_drops=["recall=0.02", "auc=0.01"])
    assert len(rep.results) == 2 * 4 + 2
    failed = [(r.model, r.metric) for r in rep.results if not r.passed]
    assert failed == [("resnet18", "recall[glioma]")]
    f = by(rep, "resnet18", "recall[glioma]")[0]
    assert (f.baseline, f.value, f.op) == (0.96, 0.92, ">=") and f.threshold == pytest.approx(0.94)
    edge = by(rep, "vit_tiny", "recall[meningioma]")[0]
    assert edge.passed  # a drop of exactly the allowance passes despite float subtraction
    assert [r.metric for r in rep.results[-2:]] == ["auc_macro", "auc_macro"]


def test_max_drop_lower_is_better_means_increase():
    old = build_snapshot()
    new = copy.deepcopy(old)
    new["models"][0]["metrics"]["ece"] = mv(0.07, 0.05, 0.09, "bootstrap")  # +0.03
    new["models"][1]["metrics"]["ece"] = mv(0.01, 0.0, 0.03, "bootstrap")  # improved
    rep = run_gates(new, [], baseline=old, max_drops=["ece=0.02"])
    assert [(r.passed, r.op) for r in rep.results] == [(False, "<="), (True, "<=")]
    assert rep.results[0].threshold == pytest.approx(0.06)


def test_max_drop_null_fails_closed_and_fingerprint_note():
    old = build_snapshot(fingerprint="cd" * 32)
    new = build_snapshot()
    old["models"][0]["metrics"]["per_class"]["glioma"]["recall"] = mv(None, reason="no samples")
    rep = run_gates(new, [], baseline=old, max_drops=["resnet18:recall[glioma]=0.02", "vit_tiny:auc_micro=0.1"])
    assert [r.passed for r in rep.results] == [False, False]
    assert rep.results[0].reason == "baseline no samples" and rep.results[0].value == 0.96
    assert rep.results[1].reason == "only one class in y_true"
    assert any("fingerprint differs" in n for n in rep.notes)


def test_baseline_mismatch_is_bad_input(snap):
    other_models = build_snapshot(models=[build_model("resnet18", [48, 45, 50, 47])])
    with pytest.raises(MedauditError, match="model names differ"):
        run_gates(snap, [], baseline=other_models, max_drops=["recall=0.02"])
    renamed = ["glioma", "meningioma", "normal", "pituitary"]
    other_classes = build_snapshot(models=[build_model(n, [48, 45, 50, 47], classes=renamed, negative="normal")
                                           for n in ("resnet18", "vit_tiny")], classes=renamed)
    with pytest.raises(MedauditError, match=r"only in report: \['no tumor'\], only in baseline: \['normal'\]"):
        run_gates(snap, [], baseline=other_classes, max_drops=["auc=0.01"])
    with pytest.raises(MedauditError, match="task differs"):
        run_gates(snap, [], baseline=build_snapshot(task="binary"), max_drops=["auc=0.01"])
    custom = build_snapshot()
    for m in custom["models"]:
        m["metrics"]["sharpness"] = mv(0.5)  # a metric this medaudit does not know
    with pytest.raises(MedauditError, match="no known direction for 'sharpness'"):
        run_gates(custom, [], baseline=copy.deepcopy(custom), max_drops=["sharpness=0.1"])
    assert run_gates(custom, ["sharpness>=0.5"]).passed  # requirements work on any metric


# ---------------------------------------------------------------- with the real metrics code


def test_end_to_end_with_compute_metrics():
    np = pytest.importorskip("numpy")
    try:
        from medaudit.metrics import compute_metrics
    except ImportError as exc:
        pytest.skip(f"medaudit.metrics.compute_metrics not available yet ({exc})")
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    logits = rng.normal(0, 1, (120, 3))
    logits[np.arange(120), y] += 2.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    names = ["glioma", "no tumor", "pituitary"]
    metrics = json.loads(json.dumps(compute_metrics(y, probs, names, "multiclass", n_bootstrap=50, seed=0)))
    snap = build_snapshot(models=[{"name": "m", "metrics": metrics}], classes=names)
    pred = probs.argmax(1)
    recall = float((pred[y == 0] == 0).mean())
    rep = run_gates(snap, ["recall[glioma]>=0", "auc>=0.5", "accuracy>=0"], on="lower")
    r = rep.results[0]
    assert r.point == pytest.approx(recall) and r.value <= r.point and r.ci_method == "wilson"
    assert rep.passed and rep.results[1].metric == "auc_macro"
    strict = run_gates(snap, [f"recall[glioma]>={recall}"], on="lower")
    assert not strict.passed  # the lower bound is below the point estimate


def test_a_withheld_interval_fails_bounds_with_its_reason(snap):
    # medaudit report withholds a bootstrap interval from too few samples (ci_reason); every
    # bound check then fails closed and says why, while the point estimate can still be gated.
    why = "no bootstrap interval from 3 samples of class 'glioma' (fewer than 10)"
    snap["models"][0]["metrics"]["per_class"]["glioma"]["auc"] = mv(0.99, reason=None, ci_reason=why)
    for on in ("lower", "upper", "conservative"):
        (r,) = run_gates(snap, ["resnet18:auc[glioma]>=0.5"], on=on).results
        assert not r.passed and r.value is None and r.point == 0.99
        assert r.reason == (f"auc[glioma] has no confidence interval ({why}), so its {r.on} bound cannot be "
                            "checked; use --on point to gate the estimate alone")
    assert run_gates(snap, ["resnet18:auc[glioma]>=0.5"]).passed
