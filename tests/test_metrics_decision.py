"""medaudit.metrics.decision: deployment prevalence, costs, decision curves, findings.

References are independent of the module: scikit-learn counts, the ``dcurves`` package (Vickers'
group's DCA implementation), closed forms (Bayes' theorem, treat-all net benefit, the Bayes
threshold of calibrated probabilities), hand-computed small cases, and simulations from
populations whose true values are known in closed form (coverage of the bootstrap intervals).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import accuracy_score, confusion_matrix

from medaudit.errors import MedauditError
from medaudit.metrics import decision as d

# -- simulated populations with known truth --------------------------------------------------

SHIFT, OFFSET = 1.5, 1.0  # score = sigmoid(z + SHIFT * y - OFFSET), z ~ N(0, 1)


def binormal(n: int, prevalence: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.binomial(1, prevalence, n)
    return y, 1.0 / (1.0 + np.exp(-(rng.normal(0.0, 1.0, n) + SHIFT * y - OFFSET)))


def true_rates(t) -> tuple[np.ndarray, np.ndarray]:
    """P(score >= t | disease), P(score >= t | no disease) of :func:`binormal`."""
    logit = np.log(np.asarray(t) / (1 - np.asarray(t)))
    return norm.sf(logit + OFFSET - SHIFT), norm.sf(logit + OFFSET)


def counts_at(y, s, t):
    tn, fp, fn, tp = confusion_matrix(y, (s >= t).astype(int), labels=[0, 1]).ravel()
    return tn, fp, fn, tp


# -- disease_outcome -------------------------------------------------------------------------


def test_disease_outcome_collapses_negative_classes_like_risk():
    names = ["normal", "benign", "malignant"]
    y = np.array([0, 1, 2, 0])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [1.0, 0.0, 0.0]])
    out, score, label = d.disease_outcome(y, p, names, negative_classes=["normal"])
    assert out.tolist() == [0, 1, 1, 0]
    np.testing.assert_allclose(score, [0.3, 0.9, 0.8, 0.0])
    assert label == "disease (not normal)"
    out, score, label = d.disease_outcome(y, p, names, negative_classes=["normal", "benign"])
    assert out.tolist() == [0, 0, 1, 0] and label == "disease (not normal / benign)"
    np.testing.assert_allclose(score, [0.1, 0.3, 0.6, 0.0])
    out, score, label = d.disease_outcome(y, p, names, disease_class="benign")
    assert out.tolist() == [0, 1, 0, 0] and score.tolist() == [0.2, 0.6, 0.2, 0.0] and label == "benign"
    # Rounding can leave 1 - sum slightly below 0; the score stays a probability.
    _, score, _ = d.disease_outcome([1], [[0.7 + 0.2 + 0.1, 0.0, 0.0]], names, negative_classes=["normal"])
    assert score[0] >= 0.0


def test_disease_outcome_multilabel_needs_a_label():
    y = np.array([[1, 0], [0, 1], [1, 1]])
    p = np.array([[0.9, 0.1], [0.2, 0.7], [0.6, 0.8]])
    out, score, _ = d.disease_outcome(y, p, ["effusion", "nodule"], disease_class="nodule")
    assert out.tolist() == [0, 1, 1] and score.tolist() == [0.1, 0.7, 0.8]
    with pytest.raises(MedauditError) as e:
        d.disease_outcome(y, p, ["effusion", "nodule"], negative_classes=["effusion"])
    assert e.value.param == "disease_class"


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"negative_classes": ["healthy"]}, "negative_classes"),
    ({"negative_classes": []}, "negative_classes"),
    ({"negative_classes": ["a", "b"]}, "negative_classes"),
    ({"disease_class": "c"}, "disease_class"),
])  # fmt: skip
def test_disease_outcome_rejects_unknown_or_impossible_classes(kwargs, param):
    with pytest.raises(MedauditError) as e:
        d.disease_outcome([0, 1], [[0.5, 0.5], [0.2, 0.8]], ["a", "b"], **kwargs)
    assert e.value.param == param
    assert "\n" not in str(e.value)


# -- PPV / NPV at a prevalence ---------------------------------------------------------------


def test_bayes_ppv_npv_hand_computed():
    # se 0.9, sp 0.8, pi 0.1: PPV = 0.09 / (0.09 + 0.18), NPV = 0.72 / (0.72 + 0.01).
    ppv, npv = d.bayes_ppv_npv(0.9, 0.8, 0.1)
    assert ppv == pytest.approx(1 / 3) and npv == pytest.approx(0.72 / 0.73)
    # No one called positive (se 0, sp 1): PPV undefined, not 0; everyone called: NPV undefined.
    ppv, npv = d.bayes_ppv_npv([0.0, 1.0], [1.0, 0.0], 0.3)
    assert np.isnan(ppv[0]) and npv[0] == pytest.approx(0.7)
    assert ppv[1] == pytest.approx(0.3) and np.isnan(npv[1])


def test_ppv_at_the_sample_prevalence_is_the_empirical_precision():
    rng = np.random.default_rng(3)
    y, s = binormal(400, 0.3, rng)
    tn, fp, fn, tp = counts_at(y, s, 0.4)
    out = d.ppv_npv_at_prevalence(y, s, y.mean(), threshold=0.4, n_bootstrap=0)
    assert out["ppv"]["value"] == pytest.approx(tp / (tp + fp))
    assert out["npv"]["value"] == pytest.approx(tn / (tn + fn))
    assert (out["sensitivity"]["k"], out["sensitivity"]["n"]) == (tp, tp + fn)
    assert (out["specificity"]["k"], out["specificity"]["n"]) == (tn, tn + fp)
    assert out["ppv"]["ci_low"] is None  # no bootstrap, no interval


def test_ppv_npv_at_a_deployment_prevalence_with_intervals():
    rng = np.random.default_rng(4)
    y, s = binormal(500, 0.4, rng)
    tn, fp, fn, tp = counts_at(y, s, 0.3)
    se, sp, pi = tp / (tp + fn), tn / (tn + fp), 0.02
    out = d.ppv_npv_at_prevalence(y, s, pi, threshold=0.3, n_bootstrap=400, seed=1)
    assert out["ppv"]["value"] == pytest.approx(se * pi / (se * pi + (1 - sp) * (1 - pi)))
    assert out["npv"]["value"] == pytest.approx(sp * (1 - pi) / (sp * (1 - pi) + (1 - se) * pi))
    for key in ("ppv", "npv"):
        v = out[key]
        assert v["ci_method"] == "bootstrap" and v["ci_low"] < v["value"] < v["ci_high"]
    assert out["prevalence"] == {"value": pi, "source": "deployment (given)", "test_sample": y.mean()}
    json.dumps(out)
    # The same inputs in another order give the same output (canonical order, seeded).
    perm = rng.permutation(len(y))
    assert d.ppv_npv_at_prevalence(y[perm], s[perm], pi, threshold=0.3, n_bootstrap=400, seed=1) == out


def test_ppv_npv_undefined_cases_have_reasons():
    y, s = np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])
    out = d.ppv_npv_at_prevalence(y, s, 0.1, threshold=0.9, n_bootstrap=50)  # nobody called positive
    assert out["ppv"]["value"] is None and "called positive" in out["ppv"]["reason"]
    assert out["npv"]["value"] == pytest.approx(0.9)
    out = d.ppv_npv_at_prevalence([0, 0, 0], [0.1, 0.5, 0.9], 0.1, n_bootstrap=50)  # no disease samples
    assert out["sensitivity"]["value"] is None and out["ppv"]["value"] is None
    assert "no disease samples" in out["ppv"]["reason"]


def _ppv_coverage(reps: int, n: int, n_boot: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    pi, thr = 0.05, 0.35
    tpr, fpr = true_rates(thr)
    truth = tpr * pi / (tpr * pi + fpr * (1 - pi))
    hits = 0
    for r in range(reps):
        y, s = binormal(n, 0.4, rng)
        v = d.ppv_npv_at_prevalence(y, s, pi, threshold=thr, n_bootstrap=n_boot, seed=r)["ppv"]
        hits += v["ci_low"] <= truth <= v["ci_high"]
    return hits / reps


def test_ppv_interval_covers_the_true_deployment_ppv():
    assert 0.86 <= _ppv_coverage(reps=120, n=400, n_boot=200, seed=11) <= 1.0


@pytest.mark.slow
def test_ppv_interval_coverage_is_nominal_slow():
    assert 0.92 <= _ppv_coverage(reps=800, n=400, n_boot=400, seed=12) <= 0.975


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, float("nan"), "two"])
def test_prevalence_outside_the_open_unit_interval_is_refused(bad):
    with pytest.raises(MedauditError) as e:
        d.ppv_npv_at_prevalence([0, 1], [0.2, 0.8], bad)
    assert e.value.param == "prevalence"
    with pytest.raises(MedauditError) as e:
        d.decision_curves([0, 1], {"m": [0.2, 0.8]}, prevalence=bad)
    assert e.value.param == "prevalence"


@pytest.mark.parametrize("bad", [0, 1, -0.5, 2.0])
def test_alpha_outside_the_open_unit_interval_is_refused(bad):
    for call in (lambda: d.ppv_npv_at_prevalence([0, 1], [0.2, 0.8], 0.1, alpha=bad),
                 lambda: d.expected_cost([0, 1], [0.2, 0.8], cost_fn=2, cost_fp=1, alpha=bad),
                 lambda: d.decision_curves([0, 1], {"m": [0.2, 0.8]}, alpha=bad)):
        with pytest.raises(MedauditError) as e:
            call()
        assert e.value.param == "alpha"


def test_bad_arrays_are_refused_in_one_line():
    for y, s in (([0, 1, 2], [0.1, 0.2, 0.3]), ([0, 1], [0.1]), ([0, 1], [0.1, np.nan]), ([], [])):
        with pytest.raises(MedauditError) as e:
            d.ppv_npv_at_prevalence(y, s, 0.1)
        assert "\n" not in str(e.value)
    with pytest.raises(MedauditError, match="probabilities"):
        d.decision_curves([0, 1], {"m": [0.2, 1.3]})
    with pytest.raises(MedauditError) as e:
        d.ppv_npv_at_prevalence([0, 1], [0.2, 0.8], 0.1, n_bootstrap=-1)
    assert e.value.param == "n_bootstrap"
    with pytest.raises(MedauditError) as e:
        d.ppv_npv_at_prevalence([0, 1], [0.2, 0.8], 0.1, threshold=np.nan)
    assert e.value.param == "threshold"


# -- costs (binary) --------------------------------------------------------------------------


def _brute_force_threshold(y, s, c_fn, c_fp, pi=None):
    """Reference: every distinct score (and treat none), the cost recomputed with scikit-learn counts."""
    best = None
    for t in [*np.unique(s), np.inf]:
        tn, fp, fn, tp = counts_at(y, s, t)
        if pi is None:
            cost = (c_fn * fn + c_fp * fp) / len(y)
        else:
            cost = pi * c_fn * fn / (fn + tp) + (1 - pi) * c_fp * fp / (fp + tn)
        if best is None or cost <= best[1] + 1e-12:
            best = (t, cost)
    return best


@pytest.mark.parametrize("pi", [None, 0.1])
def test_chosen_threshold_matches_a_brute_force_search(pi):
    rng = np.random.default_rng(5)
    y, s = binormal(300, 0.3, rng)
    s = np.round(s, 2)  # ties between samples
    t_ref, cost_ref = _brute_force_threshold(y, s, 7.0, 1.0, pi)
    got = d.choose_cost_threshold(y, s, cost_fn=7, cost_fp=1, prevalence=pi)
    assert got["expected_cost"] == pytest.approx(cost_ref)
    assert got["threshold"] == (None if np.isinf(t_ref) else pytest.approx(t_ref))


def test_chosen_threshold_approaches_the_bayes_threshold_of_calibrated_probabilities():
    # p ~ U(0, 1), y ~ Bernoulli(p): calibrated at sample prevalence 1/2. Optimal rule: treat when
    # pi c_FN p > (1 - pi) c_FP (1 - p), i.e. p > (1 - pi) c_FP / ((1 - pi) c_FP + pi c_FN).
    rng = np.random.default_rng(6)
    p = rng.uniform(size=40_000)
    y = rng.binomial(1, p)
    got = d.choose_cost_threshold(y, p, cost_fn=4, cost_fp=1)
    assert got["threshold"] == pytest.approx(1 / 5, abs=0.03)
    got = d.choose_cost_threshold(y, p, cost_fn=4, cost_fp=1, prevalence=0.2)  # 0.8 / (0.8 + 0.8)
    assert got["threshold"] == pytest.approx(0.5, abs=0.04)
    assert d.expected_cost(y, p, cost_fn=4, cost_fp=1, n_bootstrap=0)["bayes_threshold"] == pytest.approx(0.2)


def test_trivial_policies_are_chosen_when_cheapest():
    y, s = np.array([0, 0, 0, 1]), np.array([0.9, 0.8, 0.7, 0.1])  # a model that ranks backwards
    assert d.choose_cost_threshold(y, s, cost_fn=1, cost_fp=1)["policy"] == "treat none"
    got = d.choose_cost_threshold(y, s, cost_fn=100, cost_fp=1)
    assert got["policy"] == "treat all" and got["threshold"] == 0.1
    assert got["expected_cost"] == pytest.approx(3 / 4)


def test_expected_cost_applies_the_validation_threshold_to_test():
    rng = np.random.default_rng(7)
    yv, sv = binormal(300, 0.3, rng)
    yt, st = binormal(500, 0.3, rng)
    c_fn, c_fp = 5.0, 1.0
    out = d.expected_cost(yt, st, cost_fn=c_fn, cost_fp=c_fp, y_true_val=yv, score_val=sv, n_bootstrap=300)
    t = _brute_force_threshold(yv, sv, c_fn, c_fp)[0]
    assert out["choice"]["threshold"] == pytest.approx(t) and out["choice"]["chosen_on"] == "val"
    tn, fp, fn, tp = counts_at(yt, st, t)
    n, pi = len(yt), yt.mean()
    cost = (c_fn * fn + c_fp * fp) / n
    test = out["test"]
    assert test["expected_cost"]["value"] == pytest.approx(cost)
    assert test["treat_all_cost"]["value"] == pytest.approx(c_fp * (1 - pi))  # closed forms
    assert test["treat_none_cost"]["value"] == pytest.approx(c_fn * pi)
    assert test["normalised_cost"]["value"] == pytest.approx(cost / min(c_fp * (1 - pi), c_fn * pi))
    assert test["best_trivial"] == ("treat all" if c_fp * (1 - pi) < c_fn * pi else "treat none")
    assert test["sensitivity"]["k"] == tp and test["specificity"]["k"] == tn
    for key in ("expected_cost", "normalised_cost", "treat_all_cost"):
        assert test[key]["ci_low"] < test[key]["value"] < test[key]["ci_high"]
    assert "validation" in out["note"]
    own = d.expected_cost(yt, st, cost_fn=c_fn, cost_fp=c_fp, n_bootstrap=0)
    assert own["choice"]["chosen_on"] == "test" and "optimistic" in own["note"]
    json.dumps(out)


def test_expected_cost_at_a_deployment_prevalence():
    rng = np.random.default_rng(8)
    y, s = binormal(400, 0.5, rng)
    out = d.expected_cost(y, s, cost_fn=20, cost_fp=1, prevalence=0.03, y_true_val=y, score_val=s, n_bootstrap=200)
    t = out["choice"]["threshold"]
    tn, fp, fn, tp = counts_at(y, s, t)
    want = 0.03 * 20 * fn / (fn + tp) + 0.97 * 1 * fp / (fp + tn)
    assert out["test"]["expected_cost"]["value"] == pytest.approx(want)
    assert out["test"]["treat_all_cost"]["value"] == pytest.approx(0.97)
    assert out["test"]["treat_none_cost"]["value"] == pytest.approx(0.6)
    assert "stratified" in out["settings"]["method"]


def test_expected_cost_without_a_possible_choice_is_undefined_not_zero():
    out = d.expected_cost([0, 1, 0, 1], [0.1, 0.9, 0.3, 0.6], cost_fn=3, cost_fp=1, prevalence=0.1,
                          y_true_val=[0, 0, 0], score_val=[0.1, 0.2, 0.3], n_bootstrap=20)
    assert out["choice"]["threshold"] is None and out["choice"]["reason"]
    assert out["test"]["expected_cost"]["value"] is None and out["test"]["expected_cost"]["reason"]
    assert out["test"]["sensitivity"]["value"] is None


@pytest.mark.parametrize(("c_fn", "c_fp"), [(-1, 1), (0, 0), (np.inf, 1), ("x", 1)])
def test_bad_costs_are_refused(c_fn, c_fp):
    with pytest.raises(MedauditError) as e:
        d.expected_cost([0, 1], [0.2, 0.8], cost_fn=c_fn, cost_fp=c_fp)
    assert e.value.param == "cost"


def test_expected_cost_needs_both_validation_arrays():
    with pytest.raises(MedauditError, match="both"):
        d.expected_cost([0, 1], [0.2, 0.8], cost_fn=2, cost_fp=1, y_true_val=[0, 1])


def _cost_coverage(reps: int, n: int, n_boot: int, seed: int) -> float:
    # Fixed threshold (val = a huge sample, so the choice is ~deterministic): true expected cost
    # c_FN pi (1 - TPR) + c_FP (1 - pi) FPR at the test population's prevalence pi.
    rng = np.random.default_rng(seed)
    pi, c_fn, c_fp = 0.3, 5.0, 1.0
    yv, sv = binormal(20_000, pi, rng)
    hits = 0
    for r in range(reps):
        y, s = binormal(n, pi, rng)
        out = d.expected_cost(y, s, cost_fn=c_fn, cost_fp=c_fp, y_true_val=yv, score_val=sv, n_bootstrap=n_boot,
                              seed=r)
        tpr, fpr = true_rates(out["choice"]["threshold"])
        truth = c_fn * pi * (1 - tpr) + c_fp * (1 - pi) * fpr
        v = out["test"]["expected_cost"]
        hits += v["ci_low"] <= truth <= v["ci_high"]
    return hits / reps


def test_expected_cost_interval_covers_the_true_cost():
    assert 0.86 <= _cost_coverage(reps=120, n=300, n_boot=200, seed=13) <= 1.0


@pytest.mark.slow
def test_expected_cost_interval_coverage_is_nominal_slow():
    assert 0.92 <= _cost_coverage(reps=800, n=300, n_boot=400, seed=14) <= 0.975


# -- cost matrix -----------------------------------------------------------------------------


def test_cost_matrix_hand_computed():
    names = ["normal", "benign", "malignant"]
    cost = [[0, 1, 2], [1, 0, 1], [20, 5, 0]]
    y = np.array([0, 0, 1, 2])
    p = np.array([[0.6, 0.3, 0.1], [0.5, 0.1, 0.4], [0.2, 0.7, 0.1], [0.55, 0.05, 0.4]])
    out = d.cost_matrix_decisions(y, p, names, cost, n_bootstrap=0)
    # argmax: normal, normal, benign, normal -> costs 0, 0, 0, 20.
    assert out["policies"]["argmax"]["expected_cost"]["value"] == pytest.approx(20 / 4)
    # Expected cost of each decision under p (p @ C, columns normal / benign / malignant):
    # sample 1: [2.3, 1.1, 1.5] -> benign (true normal: cost 1); sample 2: [8.1, 2.5, 1.1] -> malignant
    # (cost 2); sample 3: [2.7, 0.7, 1.1] -> benign (0); sample 4: [8.05, 2.55, 1.15] -> malignant (0).
    assert out["policies"]["min_expected_cost"]["expected_cost"]["value"] == pytest.approx(3 / 4)
    # Constant decisions: class mix (2, 1, 1) @ C / 4.
    assert [out["constant"][c]["value"] for c in names] == pytest.approx([21 / 4, 7 / 4, 5 / 4])
    assert out["best_constant"] == "malignant"
    assert out["policies"]["argmax"]["normalised_cost"]["value"] == pytest.approx(5 / (5 / 4))


def test_zero_one_costs_give_the_error_rate():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 4, 300)
    p = rng.dirichlet(np.ones(4), 300)
    p[np.arange(300), y] += 0.3
    p /= p.sum(axis=1, keepdims=True)
    out = d.cost_matrix_decisions(y, p, list("abcd"), 1 - np.eye(4), n_bootstrap=200)
    err = 1 - accuracy_score(y, p.argmax(axis=1))
    for policy in ("argmax", "min_expected_cost"):  # the Bayes rule of 0-1 loss is the argmax
        v = out["policies"][policy]["expected_cost"]
        assert v["value"] == pytest.approx(err) and v["ci_low"] < err < v["ci_high"]
    json.dumps(out)


def test_min_expected_cost_beats_argmax_for_calibrated_probabilities():
    rng = np.random.default_rng(10)
    p = rng.dirichlet(np.ones(3) * 0.7, 5000)
    y = np.array([rng.choice(3, p=row) for row in p])  # calibrated by construction
    cost = [[0, 1, 1], [30, 0, 3], [30, 3, 0]]  # missing disease (classes 1, 2) is expensive
    out = d.cost_matrix_decisions(y, p, ["normal", "a", "b"], cost, n_bootstrap=0)
    pol = out["policies"]
    assert pol["min_expected_cost"]["expected_cost"]["value"] < 0.8 * pol["argmax"]["expected_cost"]["value"]


def test_bad_cost_matrix_is_refused():
    for bad in ([[0, 1], [1, 0]], [[0, -1, 1], [1, 0, 1], [1, 1, 0]], [[0, np.nan, 1]] * 3):
        with pytest.raises(MedauditError) as e:
            d.cost_matrix_decisions([0, 1, 2], np.eye(3), ["a", "b", "c"], bad)
        assert e.value.param == "cost"


# -- decision curves -------------------------------------------------------------------------


def test_net_benefit_hand_computed():
    y = np.array([1, 1, 0, 0, 0])
    s = np.array([0.9, 0.3, 0.6, 0.2, 0.25])
    out = d.decision_curves(y, {"m": s}, thresholds=[0.25, 0.5], n_bootstrap=0)
    # t = 0.25 (>= rule: the 0.25 sample is treated): TP 2, FP 2, NB = 2/5 - 2/5 * 1/3.
    # t = 0.5: TP 1, FP 1, NB = 1/5 - 1/5 * 1 = 0.
    assert out["models"]["m"]["net_benefit"] == pytest.approx([2 / 5 - 2 / 15, 0.0])
    # Treat all: pi - (1 - pi) t / (1 - t) with pi = 2/5.
    assert out["treat_all"]["net_benefit"] == pytest.approx([0.4 - 0.6 / 3, 0.4 - 0.6])
    nia = out["models"]["m"]["interventions_avoided_per_100"]["value"]
    assert nia == pytest.approx([(4 / 15 - 0.2) * 3 * 100, (0 + 0.2) * 1 * 100])
    assert out["models"]["m"]["ci_low"] == [None, None]  # no bootstrap, no band


def _dcurves(y, scores, thresholds, prevalence=None):
    pd = pytest.importorskip("pandas")
    dcurves = pytest.importorskip("dcurves")
    frame = pd.DataFrame({"y": y, **scores})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas FutureWarnings inside dcurves
        return dcurves.dca(data=frame, outcome="y", modelnames=list(scores), thresholds=list(thresholds),
                           prevalence=prevalence, nper=100)


@pytest.mark.parametrize("prevalence", [None, 0.05])
def test_decision_curves_match_dcurves(prevalence):
    rng = np.random.default_rng(2)
    y, s1 = binormal(400, 0.3, rng)
    s2 = np.round(rng.uniform(size=400) * 0.6 + 0.3 * y, 2)  # scores on the grid: ties with thresholds
    scores = {"resnet": s1, "coarse": s2}
    out = d.decision_curves(y, scores, prevalence=prevalence, n_bootstrap=0)
    ref = _dcurves(y, scores, out["thresholds"], prevalence)
    for name in scores:
        rows = ref[ref.model == name]
        np.testing.assert_allclose(out["models"][name]["net_benefit"], rows.net_benefit, atol=1e-12)
        np.testing.assert_allclose(out["models"][name]["interventions_avoided_per_100"]["value"],
                                   rows.net_intervention_avoided, atol=1e-9)
    np.testing.assert_allclose(out["treat_all"]["net_benefit"], ref[ref.model == "all"].net_benefit, atol=1e-12)
    np.testing.assert_allclose(ref[ref.model == "none"].net_benefit, out["treat_none"]["net_benefit"])


def test_treat_all_closed_form_and_default_grid():
    rng = np.random.default_rng(1)
    y, s = binormal(200, 0.2, rng)
    out = d.decision_curves(y, {"m": s}, n_bootstrap=0)
    t = np.array(out["thresholds"])
    assert t[0] == 0.01 and t[-1] == 0.5 and len(t) == 50
    pi = y.mean()
    np.testing.assert_allclose(out["treat_all"]["net_benefit"], pi - (1 - pi) * t / (1 - t), atol=1e-12)
    out = d.decision_curves(y, {"m": s}, prevalence=0.1, n_bootstrap=0)
    np.testing.assert_allclose(out["treat_all"]["net_benefit"], 0.1 - 0.9 * t / (1 - t), atol=1e-12)


def test_decision_curve_bands_are_paired_and_order_free():
    rng = np.random.default_rng(3)
    y, s = binormal(300, 0.3, rng)
    noisy = np.clip(s + rng.normal(0, 0.1, 300), 0, 1)
    out = d.decision_curves(y, {"a": s, "b": noisy, "a_again": s}, n_bootstrap=300, seed=4)
    a = out["models"]["a"]
    lo, hi, nb = (np.array(a[k], float) for k in ("ci_low", "ci_high", "net_benefit"))
    assert (lo <= nb + 1e-12).all() and (nb <= hi + 1e-12).all() and (hi > lo).any()
    # Same resamples for every model: a model compared with itself differs by exactly 0 in every one.
    same = next(c for c in out["comparisons"] if (c["a"], c["b"]) == ("a", "a_again"))
    assert set(same["ci_low"]) == {0.0} and set(same["ci_high"]) == {0.0}
    # Interventions avoided = difference vs treat all times 100 (1 - t) / t, band included.
    t = np.array(out["thresholds"])
    np.testing.assert_allclose(a["interventions_avoided_per_100"]["ci_low"],
                               np.array(a["vs_treat_all"]["ci_low"]) * 100 * (1 - t) / t)
    perm = rng.permutation(300)
    again = d.decision_curves(y[perm], {"a": s[perm], "b": noisy[perm], "a_again": s[perm]}, n_bootstrap=300, seed=4)
    assert again == out
    json.dumps(out)


def test_decision_curves_undefined_at_a_prevalence_without_disease_samples():
    out = d.decision_curves([0, 0, 0], {"m": [0.1, 0.4, 0.7]}, prevalence=0.1, thresholds=[0.2, 0.5], n_bootstrap=10)
    assert out["models"]["m"]["net_benefit"] == [None, None] and "no disease samples" in out["reason"]
    # At the sample's own mix the net benefit is still defined (TP / N - FP / N * odds).
    out = d.decision_curves([0, 0, 0], {"m": [0.1, 0.4, 0.7]}, thresholds=[0.2, 0.5], n_bootstrap=0)
    assert out["models"]["m"]["net_benefit"] == pytest.approx([-2 / 3 * 0.25, -1 / 3])


@pytest.mark.parametrize("bad", [[], [0.0, 0.5], [0.1, 1.0], [0.3, 0.2], [[0.1, 0.2]], [0.1, np.nan]])
def test_bad_threshold_grids_are_refused(bad):
    with pytest.raises(MedauditError) as e:
        d.decision_curves([0, 1], {"m": [0.2, 0.8]}, thresholds=bad)
    assert e.value.param == "dca_thresholds"


def _nb_coverage(reps: int, n: int, n_boot: int, seed: int, prevalence: float | None) -> np.ndarray:
    """Coverage of the NB band and of the (model - treat all) band at three thresholds."""
    rng = np.random.default_rng(seed)
    pi_pop = 0.3
    t = np.array([0.1, 0.25, 0.4])
    tpr, fpr = true_rates(t)
    pi = pi_pop if prevalence is None else prevalence
    odds = t / (1 - t)
    nb_true = pi * tpr - (1 - pi) * fpr * odds
    diff_true = nb_true - (pi - (1 - pi) * odds)
    hits = np.zeros((2, t.size))
    for r in range(reps):
        y, s = binormal(n, pi_pop, rng)
        m = d.decision_curves(y, {"m": s}, thresholds=t, prevalence=prevalence, n_bootstrap=n_boot, seed=r)["models"]["m"]
        for row, (entry, truth) in enumerate(((m, nb_true), (m["vs_treat_all"], diff_true))):
            hits[row] += (np.array(entry["ci_low"]) <= truth) & (truth <= np.array(entry["ci_high"]))
    return hits / reps


@pytest.mark.parametrize("prevalence", [None, 0.1])
def test_net_benefit_bands_cover_the_true_net_benefit(prevalence):
    cov = _nb_coverage(reps=100, n=300, n_boot=200, seed=21, prevalence=prevalence)
    assert (cov >= 0.85).all(), cov


@pytest.mark.slow
@pytest.mark.parametrize("prevalence", [None, 0.1])
def test_net_benefit_band_coverage_is_nominal_slow(prevalence):
    cov = _nb_coverage(reps=600, n=300, n_boot=400, seed=22, prevalence=prevalence)
    assert ((cov >= 0.92) & (cov <= 0.975)).all(), cov


# -- findings --------------------------------------------------------------------------------


def _curves(thresholds, models, comparisons=(), n_bootstrap=100):
    """A hand-built decision_curves-shaped dict: models = {name: (nb_low, nb_high, diff_low, diff_high)}."""
    k = len(thresholds)

    def mid(lo, hi):
        return [None if a is None or b is None else (a + b) / 2 for a, b in zip(lo, hi)]

    out = {"thresholds": thresholds, "settings": {"confidence": 0.95, "n_bootstrap": n_bootstrap},
           "models": {}, "comparisons": []}
    for name, (nl, nh, dl, dh) in models.items():
        out["models"][name] = {"net_benefit": mid(nl, nh), "ci_low": nl, "ci_high": nh,
                               "vs_treat_all": {"diff": mid(dl, dh), "ci_low": dl, "ci_high": dh}}
    for a, b, lo, hi in comparisons:
        out["comparisons"].append({"a": a, "b": b, "diff": mid(lo, hi), "ci_low": lo, "ci_high": hi})
    assert all(len(v) == k for m in models.values() for v in m)
    return out


def test_findings_claim_only_ranges_the_whole_band_supports():
    t = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
    curves = _curves(t, {
        #            NB band low / high                       (model - treat all) band low / high
        "resnet18": ([0.1, 0.1, 0.1, 0.1, 0.05, -0.01], [0.2] * 6,
                     [-0.01, 0.01, 0.02, 0.02, 0.01, 0.01], [0.1] * 6),
        "weak": ([-0.1] * 6, [0.1, 0.1, 0.1, -0.01, -0.02, None],
                 [-0.2, -0.2, -0.1, -0.1, -0.1, -0.1], [-0.01, 0.01, 0.02, 0.03, 0.04, 0.05]),
    }, comparisons=[("resnet18", "weak", [-0.1, 0.01, 0.02, -0.1, -0.1, -0.1], [0.1] * 6)])  # fmt: skip
    found = d.decision_findings(curves)
    texts = [f["text"] for f in found]
    useful = [f for f in found if f["kind"] == "useful"]
    assert [(f["model"], f["from"], f["to"]) for f in useful] == [("resnet18", 0.1, 0.25)]
    assert useful[0]["text"].startswith("Between 10 % and 25 % threshold probability, resnet18 has higher net "
                                        "benefit than treating everyone and than treating no one")
    assert "whole 95 % bootstrap band" in useful[0]["text"]
    worse = {(f["kind"], f["model"], f["from"], f["to"]) for f in found if f["kind"].startswith("worse")}
    assert worse == {("worse_than_treat_all", "weak", 0.05, 0.05), ("worse_than_treat_none", "weak", 0.2, 0.25)}
    assert any(x.startswith("At 5 % threshold probability, weak has lower net benefit than treating everyone")
               for x in texts)
    better = [f for f in found if f["kind"] == "better_than_model"]
    assert [(f["model"], f["other"], f["from"], f["to"]) for f in better] == [("resnet18", "weak", 0.1, 0.15)]


def test_findings_on_points_say_so_and_claim_more():
    t = [0.1, 0.2]
    curves = _curves(t, {"m": ([-0.1, -0.1], [0.3, 0.3], [-0.1, -0.1], [0.3, 0.3])})
    by_band = d.decision_findings(curves)
    assert [f["kind"] for f in by_band] == ["none"] and "at no threshold probability" in by_band[0]["text"]
    by_point = d.decision_findings(curves, basis="point")
    assert [(f["kind"], f["from"], f["to"]) for f in by_point] == [("useful", 0.1, 0.2)]
    assert "point estimates only" in by_point[0]["text"]
    with pytest.raises(MedauditError) as e:
        d.decision_findings(curves, basis="median")
    assert e.value.param == "basis"


def test_findings_without_a_bootstrap_claim_nothing_on_the_band():
    curves = _curves([0.1], {"m": ([None], [None], [None], [None])}, n_bootstrap=0)
    found = d.decision_findings(curves)
    assert len(found) == 1 and found[0]["kind"] == "none" and "0 resamples" in found[0]["text"]


def test_findings_from_simulated_models():
    # A strong model beats both defaults over a wide range; a score independent of the labels has
    # a true net benefit below max(treat all, treat none) everywhere, so no "useful" range may be
    # claimed for it on most data sets (pointwise bands, so not on every one).
    rng = np.random.default_rng(30)
    false_claims = 0
    reps = 20
    for r in range(reps):
        y = rng.binomial(1, 0.3, 400)
        strong = 1 / (1 + np.exp(-(rng.normal(0, 1, 400) + 3 * y - 2)))
        found = d.decision_findings(d.decision_curves(y, {"strong": strong, "coin": rng.uniform(size=400)},
                                                      n_bootstrap=200, seed=r))
        useful = {f["model"]: f for f in found if f["kind"] == "useful"}
        assert "strong" in useful and useful["strong"]["to"] - useful["strong"]["from"] >= 0.3
        false_claims += "coin" in useful
    assert false_claims <= 0.25 * reps
