"""Gate checks on the clinical-use numbers (issue 20): ``net_benefit@T``, ``ppv@prev=P``, ``coverage[CLASS]``, ...

Every snapshot here is made by medaudit's own audit path (``assemble_snapshot`` on seeded
predictions with a validation split) and read back through JSON. The numbers a check compares are
recomputed from the raw predictions by hand (net benefit, Bayes PPV/NPV, LAC/APS coverage,
brute-force AURC and cost threshold, a temperature fitted with scipy), so a gate reading the wrong
number, operating point or bound fails here.
"""

from __future__ import annotations

import copy
import json
import math
import re

import numpy as np
import pytest
from scipy import optimize, special

from medaudit.audit import AuditSettings, ModelResult, assemble_snapshot
from medaudit.clinical import ClinicalSettings
from medaudit.errors import MedauditError
from medaudit.gate import parse_gate, parse_max_drop, run_gates
from medaudit.predictions import Predictions
from medaudit.snapshot import check_snapshot
from tests.snapshot_factory import build_snapshot

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]
NEG = CLASSES.index("notumor")
PI = 0.02
COST_FN, COST_FP = 10.0, 1.0
ALPHA = 0.1  # conformal_alpha default


def _preds(name, seed, n, first_id, classes=CLASSES, strength=2.0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(classes)), n // len(classes))
    logits = rng.normal(size=(len(y), len(classes))) + strength * np.eye(len(classes))[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    task = "binary" if len(classes) == 2 else "multiclass"
    return Predictions(name, list(classes), task, [f"s{first_id + i:04d}" for i in range(len(y))], y, p)


def clinical_snapshot(*, val=400, prevalence=PI, cost=(COST_FN, COST_FP), bootstrap=200, classes=CLASSES, negatives=None,
                      per_class=None):
    """(snapshot read back from JSON, {model: (test Predictions, val Predictions or None)})."""
    results = []
    for name, seed in (("a", 0), ("b", 1)):
        v = _preds(name, seed + 10, val, 5000, classes) if val else None
        results.append(ModelResult(preds=_preds(name, seed, 240, 0, classes), checkpoint={"arch": "x"},
                                   prediction_info={"n": 240}, val_preds=v))
    clinical = ClinicalSettings(prevalence=prevalence, cost_fn=cost and cost[0], cost_fp=cost and cost[1],
                                prevalence_per_class=per_class)
    settings = AuditSettings(bootstrap=bootstrap, negative_classes=negatives, clinical=clinical)
    snap = assemble_snapshot(results, dataset={"spec": "mem"}, settings=settings, title="t")
    snap = json.loads(json.dumps(snap, allow_nan=False))  # what a gate reads: the file's JSON
    return snap, {r.preds.model_name: (r.preds, r.val_preds) for r in results}


@pytest.fixture(scope="module")
def full():
    return clinical_snapshot()


def _one(snap, expr, model="a", on="point", **kw):
    results = [r for r in run_gates(snap, [expr], on=on, **kw).results if r.model == model]
    assert len(results) == 1, results
    return results[0]


def _disease(p: Predictions):
    """(y, score): disease = any class but notumor, score = 1 - p(notumor), as the report defines it."""
    return (p.y_true != NEG).astype(int), 1.0 - p.probs[:, NEG]


def _point(snap, model, rule):
    th = next(m for m in snap["models"] if m["name"] == model)["clinical"]["thresholds"]
    return next(pt for pt in th["points"] if pt["name"].startswith(rule))["threshold"]


# -- the snapshot check accepts what the audit writes ----------------------------------------------


def test_real_clinical_snapshot_passes_the_snapshot_check_and_tampering_is_still_refused(full):
    snap, _ = full
    check_snapshot(snap, "report")  # recalibration "change" values are negative differences: accepted
    metrics = snap["models"][0]["clinical"]["recalibration"]["test"]["metrics"]
    assert min(metrics[k]["change"]["value"] for k in ("brier", "ece")) < 0  # the case the check refused before
    for key, part, value, bound in [("brier", "change", -2.5, "[-2, 2]"), ("ece", "change", 1.5, "[-1, 1]"),
                                    ("ece", "after", 1.5, "[0, 1]"), ("brier", "before", -0.1, "[0, 2]")]:
        bad = copy.deepcopy(snap)
        bad["models"][0]["clinical"]["recalibration"]["test"]["metrics"][key][part]["value"] = value
        with pytest.raises(MedauditError, match=re.escape(f"{key}.{part}.value = {value} is outside {bound}")):
            check_snapshot(bad, "report")


# -- net benefit -------------------------------------------------------------------------------------------


def _nb(y, score, t, pi):
    called = score >= t
    odds = t / (1 - t)
    if pi is None:
        n = len(y)
        return (called & (y == 1)).sum() / n - (called & (y == 0)).sum() / n * odds
    return pi * (called & (y == 1)).sum() / (y == 1).sum() - (1 - pi) * (called & (y == 0)).sum() / (y == 0).sum() * odds


@pytest.mark.parametrize("t", [0.01, 0.1, 0.3])
def test_net_benefit_against_the_hand_formula_and_treat_all_treat_none(full, t):
    snap, preds = full
    for model in ("a", "b"):
        y, score = _disease(preds[model][0])
        nb = _nb(y, score, t, PI)
        treat_all = PI - (1 - PI) * t / (1 - t)  # everyone called: TPR = FPR = 1
        r = _one(snap, f"net_benefit@{t}>=-1", model)
        assert r.value == pytest.approx(nb, abs=1e-12) and r.passed
        r = _one(snap, f"{model}:net_benefit@{t}>treat_all", model)
        assert (r.metric, r.threshold) == (f"net_benefit@{t:g}-treat_all", 0.0)
        assert r.value == pytest.approx(nb - treat_all, abs=1e-12)
        assert r.passed == (nb > treat_all + 1e-12) and "NB(model) - NB(treat all)" in r.note
        r = _one(snap, f"net_benefit@{t}>treat_none", model)
        assert r.value == pytest.approx(nb, abs=1e-12) and r.passed == (nb > 0)


def test_net_benefit_at_the_test_sample_prevalence_and_a_percent_threshold():
    snap, preds = clinical_snapshot(prevalence=None, cost=None)
    y, score = _disease(preds["a"][0])
    r = _one(snap, "net_benefit@10%>=-1")
    assert r.value == pytest.approx(_nb(y, score, 0.1, None), abs=1e-12)
    assert "test sample's prevalence 0.75" in r.note
    # Here treat all varies with the resample too; the bound compared is the paired difference's, which
    # is narrower than the difference of the two separate bounds.
    curves = snap["clinical"]["decision_curves"]
    k = curves["thresholds"].index(0.1)
    r = _one(snap, "net_benefit@0.1>treat_all", on="lower")
    assert r.value == curves["models"]["a"]["vs_treat_all"]["ci_low"][k]
    assert r.value > curves["models"]["a"]["ci_low"][k] - curves["treat_all"]["ci_high"][k]


def test_net_benefit_versus_treat_all_compares_the_paired_band(full):
    snap, _ = full
    curves = snap["clinical"]["decision_curves"]
    k = curves["thresholds"].index(0.2)
    paired = curves["models"]["a"]["vs_treat_all"]
    for on, key in (("lower", "ci_low"), ("upper", "ci_high"), ("conservative", "ci_low")):
        r = _one(snap, "net_benefit@0.2>treat_all", on=on)
        assert r.value == paired[key][k] and r.ci_method == "bootstrap"
    # At a deployment prevalence treat all's net benefit is the constant pi - (1 - pi) t / (1 - t), so the
    # paired band is the model's own band shifted by it.
    own, everyone = curves["models"]["a"], PI - (1 - PI) * 0.2 / 0.8
    assert paired["ci_low"][k] == pytest.approx(own["ci_low"][k] - everyone, abs=1e-12)


def test_a_threshold_probability_off_the_grid_is_an_error_naming_the_grid(full):
    snap, _ = full
    with pytest.raises(MedauditError, match=r"0\.105 is not a threshold probability of the report's decision "
                                            r"curves \(0\.01 to 0\.5 in steps of 0\.01\)"):
        run_gates(snap, ["net_benefit@0.105>treat_all"])
    with pytest.raises(MedauditError, match="0.6 is not a threshold probability"):
        run_gates(snap, ["net_benefit@0.6>treat_all"])


def test_net_benefit_without_a_band_fails_a_bound_but_not_the_point():
    snap, _ = clinical_snapshot(bootstrap=0)
    assert _one(snap, "net_benefit@0.01>treat_none").passed  # NB(0.01) = 0.0101 on these scores
    r = _one(snap, "net_benefit@0.01>treat_none", on="lower")
    assert not r.passed and r.value is None
    assert "no confidence interval (the report has no bootstrap band here (made with --bootstrap 0))" in r.reason


# -- PPV / NPV at the deployment prevalence ---------------------------------------------------------


@pytest.mark.parametrize("rule", ["guaranteed", "naive"])
def test_ppv_npv_at_prevalence_are_bayes_of_the_test_rates_at_the_chosen_threshold(full, rule):
    snap, preds = full
    for model in ("a", "b"):
        y, score = _disease(preds[model][0])
        called = score >= _point(snap, model, rule)
        se, sp = called[y == 1].mean(), (~called[y == 0]).mean()
        ppv = se * PI / (se * PI + (1 - sp) * (1 - PI))
        npv = sp * (1 - PI) / (sp * (1 - PI) + (1 - se) * PI)
        suffix = "" if rule == "guaranteed" else ",naive"  # the guaranteed point is the default
        r = _one(snap, f"ppv@prev=0.02{suffix}>=0.05", model)
        assert r.metric == f"ppv@prev=0.02,{rule}" and r.value == pytest.approx(ppv, rel=1e-12)
        assert r.passed == (ppv >= 0.05) and f"{rule} threshold" in r.note
        r = _one(snap, f"npv@prev=2%,{rule}>=0.999", model)
        assert r.value == pytest.approx(npv, rel=1e-12) and r.passed == (npv >= 0.999)


def test_ppv_without_prev_is_still_the_per_class_precision(full):
    snap, _ = full
    results = run_gates(snap, ["a:ppv>=0"]).results
    assert [r.metric for r in results] == [f"precision[{c}]" for c in CLASSES]


@pytest.mark.parametrize("expr, fragment", [
    ("ppv@prev=0.05>=0.3", "the report was made at prevalence 0.02; rerun `medaudit report` with --prevalence 0.05"),
    ("npv@prev=5%>=0.3", "the report was made at prevalence 0.02; rerun `medaudit report` with --prevalence 0.05"),
    ("ppv[glioma]@prev=0.02>=0.3", "made with a prevalence of disease as a whole (0.02) only, so it has no PPV/NPV "
                                   "of glioma alone; write ppv@prev=0.02 for disease as a whole, or rerun `medaudit "
                                   "report` with --prevalence glioma=0.02"),
])
def test_prevalence_errors(full, expr, fragment):
    with pytest.raises(MedauditError, match=re.escape(fragment)):
        run_gates(full[0], [expr])


def test_ppv_at_prevalence_of_a_report_made_without_one_is_an_error():
    snap, _ = clinical_snapshot(prevalence=None, cost=None, bootstrap=0)
    with pytest.raises(MedauditError, match=r"made without a deployment prevalence.*--prevalence 0\.02"):
        run_gates(snap, ["ppv@prev=0.02>=0.3"])


def test_binary_task_accepts_its_disease_class_in_brackets():
    snap, preds = clinical_snapshot(classes=["normal", "pneumonia"], bootstrap=0, cost=None)
    r = _one(snap, "ppv[pneumonia]@prev=0.02>=0")
    test = preds["a"][0]
    called = test.probs[:, 1] >= _point(snap, "a", "guaranteed")
    se, sp = called[test.y_true == 1].mean(), (~called[test.y_true == 0]).mean()
    assert r.value == pytest.approx(se * PI / (se * PI + (1 - sp) * (1 - PI)), rel=1e-12)
    with pytest.raises(MedauditError, match="'normal' is a healthy class; PPV/NPV at a prevalence are of a disease"):
        run_gates(snap, ["ppv[normal]@prev=0.02>=0"])


# -- thresholds, cost, conformal sets, referral, recalibration ------------------------------------------


def test_sensitivity_and_specificity_at_the_chosen_thresholds(full):
    snap, preds = full
    y, score = _disease(preds["a"][0])
    for rule in ("guaranteed", "naive"):
        called = score >= _point(snap, "a", rule)
        r = _one(snap, f"sensitivity_{rule}>=0.9")
        assert (r.k, r.n) == (int(called[y == 1].sum()), int((y == 1).sum()))
        r = _one(snap, f"specificity_{rule}>=0.5")
        assert (r.k, r.n) == (int((~called[y == 0]).sum()), int((y == 0).sum()))
        assert r.value == pytest.approx((~called[y == 0]).mean(), abs=1e-15)
    r = _one(snap, "sensitivity_guaranteed>=0.9", on="lower")
    assert r.value == r.ci_low < r.point  # Wilson lower bound


def _cost_choice(y, score, pi):
    """Brute force: every distinct score as threshold and 'treat none'; ties to the highest threshold."""
    best = (math.inf, None)
    for t in [*np.unique(score), math.inf]:
        called = score >= t
        cost = pi * COST_FN * (~called[y == 1]).mean() + (1 - pi) * COST_FP * called[y == 0].mean()
        if cost <= best[0] + 1e-12:
            best = (cost, t)
    return best[1]


def test_expected_and_normalised_cost_by_brute_force(full):
    snap, preds = full
    for model in ("a", "b"):
        yv, sv = _disease(preds[model][1])
        y, score = _disease(preds[model][0])
        called = score >= _cost_choice(yv, sv, PI)
        cost = PI * COST_FN * (~called[y == 1]).mean() + (1 - PI) * COST_FP * called[y == 0].mean()
        r = _one(snap, "expected_cost<=0.1", model)
        assert r.value == pytest.approx(cost, rel=1e-12) and r.passed == (cost <= 0.1)
        r = _one(snap, "normalised_cost<1", model)
        assert r.value == pytest.approx(cost / min(PI * COST_FN, (1 - PI) * COST_FP), rel=1e-12)


def _conformal_sets(val: Predictions, test: Predictions, method: str) -> np.ndarray:
    """Class-conditional split conformal sets by hand: q_c = the ceil((n_c+1)(1-alpha))-th smallest score."""

    def scores(p):
        if method == "lac":
            return 1.0 - p
        return np.stack([(p * (p >= p[:, [c]])).sum(1) for c in range(p.shape[1])], 1)  # APS, not randomised

    sv, st = scores(val.probs), scores(test.probs)
    q = []
    for c in range(len(CLASSES)):
        s = np.sort(sv[val.y_true == c, c])
        k = math.ceil((len(s) + 1) * (1 - ALPHA))
        q.append(s[k - 1] if k <= len(s) else math.inf)
    return st <= np.array(q)[None, :] + 1e-12


def test_conformal_coverage_and_set_size_by_hand(full):
    snap, preds = full
    test, val = preds["a"]
    sets = _conformal_sets(val, test, "lac")
    hit = sets[np.arange(len(test.y_true)), test.y_true]
    for c, name in enumerate(CLASSES):
        r = _one(snap, f"coverage[{name}]>=0.9")
        assert (r.k, r.n) == (int(hit[test.y_true == c].sum()), int((test.y_true == c).sum()))
    every = [r for r in run_gates(snap, ["a:coverage[*]>=0.9"]).results]
    assert [r.metric for r in every] == [f"coverage[{c}]" for c in CLASSES]
    r = _one(snap, "coverage>=0.9")
    assert (r.k, r.n) == (int(hit.sum()), len(hit)) and "LAC" in r.note
    r = _one(snap, "mean_set_size<=1.5")
    assert r.value == pytest.approx(sets.sum(1).mean(), rel=1e-12)
    aps = _conformal_sets(val, test, "aps")
    r = _one(snap, "coverage_aps>=0.9")
    assert r.k == int(aps[np.arange(len(test.y_true)), test.y_true].sum()) and "APS" in r.note
    assert _one(snap, "mean_set_size_aps<=3").value == pytest.approx(aps.sum(1).mean(), rel=1e-12)


def test_aurc_by_brute_force(full):
    snap, preds = full
    test = preds["a"][0]
    conf, err = test.probs.max(1), test.probs.argmax(1) != test.y_true
    order = np.argsort(-conf, kind="stable")  # continuous scores: no ties
    risk = np.cumsum(err[order]) / np.arange(1, len(err) + 1)
    r = _one(snap, "aurc<=0.1", on="upper")
    assert r.point == pytest.approx(risk.mean(), rel=1e-12) and r.value == r.ci_high


def _temperature(val: Predictions) -> float:
    logp = np.log(val.probs)

    def nll(log_t):
        z = logp / math.exp(log_t)
        return -(z[np.arange(len(val.y_true)), val.y_true] - special.logsumexp(z, 1)).mean()

    return math.exp(optimize.minimize_scalar(nll, bracket=(-1.0, 1.0), tol=1e-12).x)


def test_calibration_after_recalibration_by_hand(full):
    snap, preds = full
    test, val = preds["a"]
    t = _temperature(val)
    z = np.log(test.probs) / t
    after = np.exp(z - special.logsumexp(z, 1, keepdims=True))
    nll = -np.log(after[np.arange(len(test.y_true)), test.y_true]).mean()
    r = _one(snap, "nll_after_recalibration<=1")
    assert r.value == pytest.approx(nll, rel=1e-5) and "temperature" in r.note
    conf, correct = after.max(1), after.argmax(1) == test.y_true
    bins = np.clip(np.ceil(conf * 15).astype(int) - 1, 0, 14)  # right-closed equal-width bins
    ece = sum(abs(correct[bins == b].mean() - conf[bins == b].mean()) * (bins == b).mean()
              for b in range(15) if (bins == b).any())
    r = _one(snap, "ece_after_recalibration<=0.05")
    assert r.value == pytest.approx(ece, rel=1e-4) and r.passed == (r.value <= 0.05)
    brier = ((after - np.eye(len(CLASSES))[test.y_true]) ** 2).sum(1).mean()
    assert _one(snap, "brier_after_recalibration<=2").value == pytest.approx(brier, rel=1e-5)


def test_conservative_picks_the_failing_side_per_check(full):
    snap, _ = full
    for expr, key in (("coverage>=0.5", "ci_low"), ("expected_cost<=1", "ci_high"), ("aurc<0.5", "ci_high"),
                      ("ppv@prev=0.02>0", "ci_low")):
        r = _one(snap, expr, on="conservative")
        assert r.value == getattr(r, key) and r.on == ("lower" if key == "ci_low" else "upper")


# -- fail closed ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def no_val():
    return clinical_snapshot(val=0, bootstrap=50)


@pytest.mark.parametrize("expr", ["sensitivity_guaranteed>=0", "specificity_naive>=0", "ppv@prev=0.02>=0",
                                  "expected_cost<=10", "normalised_cost<=10", "coverage[glioma]>=0",
                                  "coverage>=0", "mean_set_size<=4", "ece_after_recalibration<=1",
                                  "nll_after_recalibration<=100"])
def test_without_validation_every_choice_fails_closed_with_the_reason(no_val, expr):
    results = run_gates(no_val[0], [expr]).results
    assert len(results) == 2
    for r in results:
        assert not r.passed and r.value is None
        assert "no validation split" in r.reason and "skipped" in r.reason


def test_without_validation_the_unchosen_numbers_still_gate(no_val):
    snap, preds = no_val
    y, score = _disease(preds["a"][0])
    assert _one(snap, "aurc<=1").passed
    assert _one(snap, "net_benefit@0.3>=-1").value == pytest.approx(_nb(y, score, 0.3, PI), abs=1e-12)


def test_a_guarantee_validation_cannot_give_fails_with_its_reason():
    snap, _ = clinical_snapshot(val=40, bootstrap=0)  # 30 disease samples in validation: 59 needed for 95% at delta 0.05
    for expr in ("sensitivity_guaranteed>=0", "ppv@prev=0.02>=0", "ppv@prev=0.02,guaranteed>=0"):
        r = _one(snap, expr)
        assert not r.passed and r.value is None and "needs at least 59" in r.reason, (expr, r.reason)
    assert _one(snap, "ppv@prev=0.02,naive>=0").value is not None


def test_no_healthy_class_fails_closed():
    snap, _ = clinical_snapshot(classes=["x", "y", "z"], prevalence=None, cost=None, bootstrap=0, val=300)
    for expr in ("net_benefit@0.1>treat_all", "sensitivity_guaranteed>=0"):
        r = _one(snap, expr)
        assert not r.passed and "no healthy class is known" in r.reason, r.reason
    assert _one(snap, "coverage[x]>=0").value is not None  # conformal sets need no healthy class


def test_an_unavailable_clinical_block_fails_with_its_reason(full):
    snap = copy.deepcopy(full[0])
    reason = "clinical-use analyses cover single-label tasks; a multilabel task has no single decision"
    snap["models"][0]["clinical"] = {"available": False, "reason": reason}
    snap["clinical"] = {"available": False, "reason": "decision curves cover single-label tasks"}
    for expr in ("aurc<=1", "coverage[glioma]>=0", "ppv@prev=0.02>=0"):
        r = _one(snap, expr)
        assert not r.passed and reason in r.reason
    assert "decision curves cover single-label tasks" in _one(snap, "net_benefit@0.1>treat_all").reason
    assert _one(snap, "aurc<=1", model="b").passed  # the other model's block is untouched


def test_an_undefined_value_inside_a_block_fails(full):
    snap = copy.deepcopy(full[0])
    snap["models"][0]["clinical"]["conformal"]["lac"]["coverage_per_class"]["glioma"] = {
        "value": None, "ci_low": None, "ci_high": None, "ci_method": None, "reason": "no test samples of glioma"}
    r = _one(snap, "coverage[glioma]>=0", on="conservative")
    assert not r.passed and r.reason == "no test samples of glioma"


# -- bad input: exit 2 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("expr, fragment", [
    ("aurcc<=0.1", "clinical use: net_benefit@T, ppv@prev=P, npv@prev=P, "),
    ("coverage[nope]>=0.9", "unknown class 'nope'; valid: 'glioma'"),
    ("a:coverage[nope]>=0.9", "unknown class 'nope'"),
])
def test_unknown_names_list_the_valid_ones(full, expr, fragment):
    with pytest.raises(MedauditError, match=re.escape(fragment)):
        run_gates(full[0], [expr])


def test_a_report_without_costs_has_no_cost_to_gate():
    snap, _ = clinical_snapshot(cost=None, bootstrap=0)
    with pytest.raises(MedauditError, match=r"made without costs.*--cost FN=10,FP=1"):
        run_gates(snap, ["expected_cost<=0.1"])


def test_a_snapshot_without_clinical_blocks_is_an_error():
    old = build_snapshot()  # the pre-issue-20 shape: no models[i].clinical, no top-level clinical
    for expr in ("aurc<=0.1", "net_benefit@0.1>treat_all", "coverage[glioma]>=0.9"):
        with pytest.raises(MedauditError, match="re-create it with `medaudit report`"):
            run_gates(old, [expr])


@pytest.mark.parametrize("expr, fragment", [
    ("net_benefit>treat_all", "net_benefit needs a threshold probability, e.g. net_benefit@0.1>treat_all"),
    ("net_benefit@1.5>0", "the threshold probability 1.5 must be in (0, 1)"),
    ("net_benefit@0.1>=1.5", "1.5 is outside [-inf, 1] for net_benefit"),
    ("net_benefit[glioma]@0.1>0", "drop the [CLASS]"),
    ("net_benefit@0.1>treat_some", "expected a number or treat_all / treat_none"),
    ("recall>=treat_all", "expected a number at position 8"),
    ("recall@0.1>=0.9", "only net_benefit@T"),
    ("ppv@0.1>=0.3", "ppv takes a deployment prevalence, ppv@prev=P"),
    ("ppv@prev=0>=0.3", "the prevalence 0 must be in (0, 1)"),
    ("ppv@prev=0.02,best>=0.3", "expected an operating point: guaranteed or naive"),
    ("coverage[glioma]>=90", "90 is outside [0, 1] for coverage"),
    ("aurc[glioma]<=0.1", "aurc has no per-class value"),
    ("ppv@prev=٠.٠٢>=0.3", "is not an ASCII digit"),
])
def test_parse_errors(expr, fragment):
    with pytest.raises(MedauditError, match=re.escape(fragment)):
        parse_gate(expr)


def test_parse_forms():
    g = parse_gate('"vit tiny": net_benefit @ 10% > treat_all')
    assert (g.model, g.metric, g.at, g.versus, g.op, g.threshold) == ("vit tiny", "net_benefit", 0.1, "treat_all",
                                                                      ">", 0.0)
    g = parse_gate("npv@prev=2%,Naive>=0.99")
    assert (g.metric, g.prevalence, g.rule, g.threshold, g.clinical) == ("npv", 0.02, "naive", 0.99, True)
    assert not parse_gate("npv>=0.99").clinical  # the per-class NPV, as before
    assert parse_gate("expected_cost<=2.5").threshold == 2.5  # costs are not proportions


@pytest.mark.parametrize("spec", ["aurc=0.01", "net_benefit@0.1=0.01", "ppv@prev=0.02=0.01"])
def test_max_drop_refuses_clinical_names(spec):
    with pytest.raises(MedauditError, match="checked with --require only"):
        parse_max_drop(spec)


def test_report_gate_names_its_own_option(full):
    r = _one(full[0], "coverage>=0.5", option="--gate")
    assert r.value is not None
    with pytest.raises(MedauditError, match=r"^--gate 'ppv@prev=0\.05>=0\.3': the report was made at prevalence"):
        run_gates(full[0], ["ppv@prev=0.05>=0.3"], option="--gate")


def test_report_gate_accepts_the_clinical_expressions(tmp_path):
    """``medaudit report --gate`` parses with the same parser and evaluates on the snapshot it just wrote."""
    torch = pytest.importorskip("torch")
    from click.testing import CliRunner

    from medaudit.cli import main
    from medaudit.data import make_demo_dataset
    from medaudit.models.checkpoint import save_checkpoint
    from medaudit.models.factory import create_model
    from medaudit.models.preprocess import Recipe

    data = make_demo_dataset(tmp_path / "data", n_train=3, n_val=3, n_test=4, size=32)
    torch.manual_seed(1)
    ckpt = tmp_path / "resnet18.pt"
    save_checkpoint(ckpt, create_model("resnet18", 4, img_size=32), arch="resnet18", class_names=CLASSES,
                    task="multiclass", recipe=Recipe(img_size=32), small_stem=True, selected_on="val")

    def report(out, *gates):
        args = ["report", "--models", str(ckpt), "--data", str(data), "--bootstrap", "0", "--no-bench", "--no-cam",
                "--format", "json", "--prevalence", "2%", "-o", str(tmp_path / out)]
        return CliRunner().invoke(main, [*args, *(x for g in gates for x in ("--gate", g))])

    early = report("early", "net_benefit@0.1>=-1", "net_benefit@2>0")
    assert early.exit_code == 2 and "--gate 'net_benefit@2>0': the threshold probability 2 must be in (0, 1)" \
        in early.output
    assert not (tmp_path / "early").exists()  # refused before any work
    # NB(0.1) >= -(1 - pi) t / (1 - t) > -1 always; 3 validation samples per class give conformal sets of
    # every class (threshold infinite), so glioma's coverage is 1.
    res = report("ok", "net_benefit@0.1>=-1", "coverage[glioma]>=1", "aurc<=1")
    assert res.exit_code == 0, res.output
    assert [line.split()[3] for line in res.output.splitlines() if line.startswith("PASS")] == [
        "net_benefit@0.1", "coverage[glioma]", "aurc"]
    res = report("other", "ppv@prev=0.05>=0")
    assert res.exit_code == 2 and "the report was made at prevalence 0.02; rerun" in res.output
    assert (tmp_path / "other" / "report.json").exists()  # the report is written either way


def test_the_pinned_demo_snapshot_is_gated_on_its_clinical_numbers():
    from pathlib import Path

    demo = json.loads((Path(__file__).parent / "golden" / "demo_snapshot.json").read_text(encoding="utf-8"))
    check_snapshot(demo, "demo_snapshot.json")  # refused before: a negative recalibration change
    exprs = ["net_benefit@0.1>treat_all", "coverage[glioma]>=0.9", "aurc<=0.5", "sensitivity_guaranteed>=0.9",
             "ece_after_recalibration<=0.05", "mean_set_size<=2"]
    report = run_gates(demo, exprs, on="conservative")
    assert len(report.results) == len(exprs) * len(demo["models"])
    assert all(r.reason for r in report.results if r.value is None)  # every undefined one says why
    # The demo's validation split holds 8 images: far from the 59 disease samples a 95% guarantee needs.
    guaranteed = [r for r in report.results if r.metric == "sensitivity_guaranteed"]
    assert guaranteed and all(not r.passed and "needs at least 59" in r.reason for r in guaranteed)


# -- PPV/NPV per disease class (--prevalence CLASS=P) and Platt scaling -------------------------------------

PER_CLASS_PI = {"glioma": 0.02, "pituitary": 0.005}


@pytest.fixture(scope="module")
def per_class():
    return clinical_snapshot(prevalence=0.1, cost=None, bootstrap=100, per_class=PER_CLASS_PI)


@pytest.mark.parametrize("rule", ["guaranteed", "naive"])
def test_ppv_npv_of_a_class_are_bayes_of_its_one_vs_rest_counts_at_its_own_threshold(per_class, rule):
    snap, preds = per_class
    for model in ("a", "b"):
        test, val = preds[model]
        for cls, pi in PER_CLASS_PI.items():
            k = CLASSES.index(cls)
            # The threshold the gate reads is the one chosen on validation for p(cls): re-choose it here by
            # hand, the highest validation score that keeps the validation sensitivity of cls >= 0.95.
            blk = next(m for m in snap["models"] if m["name"] == model)["clinical"]["prevalence_per_class"][cls]
            t = next(p for p in blk["thresholds"]["points"] if p["name"].startswith(rule))["threshold"]
            if rule == "naive":
                pos = np.sort(val.probs[val.y_true == k, k])[::-1]
                assert t == pos[math.ceil(0.95 * len(pos)) - 1]
            y, called = test.y_true == k, test.probs[:, k] >= t
            se, sp = called[y].mean(), (~called[~y]).mean()
            suffix = "" if rule == "guaranteed" else ",naive"
            r = _one(snap, f"ppv[{cls}]@prev={pi:g}{suffix}>=0.05", model)
            assert r.metric == f"ppv[{cls}]@prev={pi:g},{rule}" and f"{cls} one-vs-rest at the {rule}" in r.note
            assert r.value == pytest.approx(se * pi / (se * pi + (1 - sp) * (1 - pi)), rel=1e-12)
            assert r.passed == (r.value >= 0.05)
            r = _one(snap, f"npv[{cls}]@prev={100 * pi:g}%{suffix}>=0.9999", model)
            assert r.value == pytest.approx(sp * (1 - pi) / (sp * (1 - pi) + (1 - se) * pi), rel=1e-12)
            assert r.passed == (r.value >= 0.9999)
            lower = _one(snap, f"ppv[{cls}]@prev={pi:g}{suffix}>=0", model, on="lower")
            assert lower.value == lower.ci_low <= lower.point


def test_a_class_gate_passes_and_fails_on_its_own_number(per_class):
    snap, _ = per_class
    value = _one(snap, "ppv[glioma]@prev=0.02>=0").value
    assert 0 < value < 1
    assert run_gates(snap, [f"a:ppv[glioma]@prev=0.02>={value - 1e-9}"]).passed
    assert not run_gates(snap, [f"a:ppv[glioma]@prev=0.02>={value + 1e-9}"]).passed
    # The collapsed (disease as a whole) number is still there beside it, and differs.
    assert _one(snap, "ppv@prev=0.1>=0").value != value


@pytest.mark.parametrize("expr, fragment", [
    ("ppv[glioma]@prev=0.05>=0.3", "the report was made at prevalence 0.02 for glioma; rerun `medaudit report` "
                                   "with --prevalence glioma=0.05 (or gate on ppv[glioma]@prev=0.02)"),
    ("npv[pituitary]@prev=2%>=0.3", "the report was made at prevalence 0.005 for pituitary"),
    ("ppv[meningioma]@prev=0.02>=0.3", "the report was made with a prevalence per class for glioma=0.02,"
                                       "pituitary=0.005 only, so it has no PPV/NPV of meningioma alone; rerun "
                                       "`medaudit report` with --prevalence meningioma=0.02"),
    ("ppv[notumor]@prev=0.02>=0.3", "'notumor' is a healthy class"),
    ("ppv[astro]@prev=0.02>=0.3", "unknown class 'astro'"),
    ("ppv[*]@prev=0.02>=0.3", "ppv[*]@prev has no one prevalence for every class; name the class"),
    ("ppv@prev=0.02>=0.3", "the report was made at prevalence 0.1"),
])
def test_per_class_prevalence_errors_are_bad_input(per_class, expr, fragment):
    with pytest.raises(MedauditError, match=re.escape(fragment)):
        run_gates(per_class[0], [expr])


def test_a_report_with_only_per_class_prevalences_says_how_to_gate():
    snap, _ = clinical_snapshot(prevalence=None, cost=None, bootstrap=0, per_class={"glioma": 0.02})
    with pytest.raises(MedauditError, match=re.escape("made with a prevalence per class (glioma=0.02), not of "
                                                      "disease as a whole; gate on a class, e.g. "
                                                      "ppv[glioma]@prev=0.02")):
        run_gates(snap, ["ppv@prev=0.02>=0.3"])
    assert _one(snap, "ppv[glioma]@prev=0.02>=0").value is not None


def test_per_class_without_validation_fails_closed_with_the_reason():
    snap, _ = clinical_snapshot(val=0, prevalence=None, cost=None, bootstrap=0, per_class={"glioma": 0.02})
    r = _one(snap, "ppv[glioma]@prev=0.02>=0")
    assert not r.passed and "no validation split" in r.reason


def _platt(val: Predictions) -> tuple[float, float]:
    z = special.logit(val.probs[:, 1])

    def nll(ab):
        eta = ab[0] + ab[1] * z
        return np.sum(np.logaddexp(0, eta) - val.y_true * eta)

    return tuple(optimize.minimize(nll, [0.0, 1.0], method="BFGS", options={"gtol": 1e-10}).x)


def test_ece_after_platt_by_hand_for_a_binary_task():
    snap, preds = clinical_snapshot(classes=["normal", "pneumonia"], prevalence=None, cost=None, bootstrap=50)
    test, val = preds["a"]
    a, b = _platt(val)
    q = special.expit(a + b * special.logit(test.probs[:, 1]))
    after = np.column_stack([1 - q, q])
    conf, correct = after.max(1), after.argmax(1) == test.y_true
    bins = np.clip(np.ceil(conf * 15).astype(int) - 1, 0, 14)
    ece = sum(abs(correct[bins == k].mean() - conf[bins == k].mean()) * (bins == k).mean()
              for k in range(15) if (bins == k).any())
    r = _one(snap, "ece_after_platt<=0.5")
    assert r.value == pytest.approx(ece, rel=1e-4, abs=1e-6) and r.passed and "platt scaling" in r.note
    assert not _one(snap, f"ece_after_platt<={r.value - 1e-9}").passed
    nll = -np.log(after[np.arange(len(test.y_true)), test.y_true]).mean()
    assert _one(snap, "nll_after_platt<=5").value == pytest.approx(nll, rel=1e-5)
    # Temperature scaling is still what *_after_recalibration reads.
    assert "temperature" in _one(snap, "ece_after_recalibration<=1").note


def test_ece_after_platt_where_there_is_none():
    with pytest.raises(MedauditError, match=r"two-class tasks only, and this one has 4 classes; gate on "
                                            r"ece_after_recalibration"):
        run_gates(clinical_snapshot(cost=None, bootstrap=0)[0], ["ece_after_platt<=0.1"])
    snap, _ = clinical_snapshot(classes=["normal", "pneumonia"], cost=None, bootstrap=0)
    old = copy.deepcopy(snap)
    for m in old["models"]:
        del m["clinical"]["recalibration_platt"]  # a binary snapshot from before Platt scaling
    with pytest.raises(MedauditError, match="no Platt scaling block"):
        run_gates(old, ["ece_after_platt<=0.1"])
    no_val, _ = clinical_snapshot(classes=["normal", "pneumonia"], val=0, cost=None, bootstrap=0)
    r = _one(no_val, "ece_after_platt<=0.1")
    assert not r.passed and "no validation split" in r.reason
