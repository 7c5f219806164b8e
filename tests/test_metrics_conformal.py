"""Split conformal sets: against MAPIE on the same probabilities, hand cases, and simulations.

References: MAPIE 1.x ``SplitConformalClassifier`` (LAC; APS with its calibration randomization
switched off, ``include_last_label=True``), a brute-force APS score, and the split-conformal
guarantees ``1 - alpha <= E[coverage] = ceil((n+1)(1-alpha)) / (n+1) <= 1 - alpha + 1/(n+1)``
(tie-free scores), marginal and per class for Mondrian calibration.
"""

import math

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from medaudit.errors import MedauditError
from medaudit.metrics.conformal import (
    calibrate,
    conformal_prediction,
    conformity_scores,
    min_calibration_size,
    prediction_sets,
    quantile_rank,
)
from medaudit.metrics.intervals import wilson_interval


class Precomputed(ClassifierMixin, BaseEstimator):
    """A "prefit" classifier whose features are its own probabilities."""

    def __init__(self, n_classes=3):
        self.n_classes = n_classes

    def fit(self, X, y):
        self.classes_ = np.arange(self.n_classes)
        return self

    def predict_proba(self, X):
        return np.asarray(X, dtype=np.float64)

    def predict(self, X):
        return np.asarray(X).argmax(axis=1)


class NoRandomness(np.random.RandomState):
    """Makes MAPIE's APS calibration score deterministic (its uniform draw u is 0)."""

    def uniform(self, low=0.0, high=1.0, size=None):
        return np.zeros(size)


def _data(rng, n, c, conc=1.0):
    p = rng.dirichlet(np.full(c, conc), size=n)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)  # y ~ Categorical(p)
    return np.minimum(y, c - 1), p


def _mapie_sets(p_cal, y_cal, p_test, alpha, score, include_last_label=False):
    mapie_classification = pytest.importorskip("mapie.classification")  # dev extra: only these tests need it
    c = p_cal.shape[1]
    kw = {"random_state": NoRandomness(0)} if score == "aps" else {}
    m = mapie_classification.SplitConformalClassifier(
        estimator=Precomputed(c).fit(p_cal, y_cal),
        confidence_level=1 - alpha,
        conformity_score=score,
        prefit=True,
        **kw,
    )
    m.conformalize(p_cal, y_cal)
    params = {"include_last_label": include_last_label} if score == "aps" else None
    _, sets = m.predict_set(p_test, conformity_score_params=params)
    return sets[:, :, 0], float(m._mapie_classifier.conformity_score_function_.quantiles_[0])


# -- scores and the quantile -------------------------------------------------------------------


def test_aps_score_brute_force_with_ties():
    p = np.array([[0.4, 0.3, 0.3, 0.0], [0.25, 0.25, 0.25, 0.25], [0.1, 0.6, 0.2, 0.1], [1.0, 0.0, 0.0, 0.0]])
    expected = np.array([[p_i[p_i > v].sum() + v for v in p_i] for p_i in p])
    np.testing.assert_allclose(conformity_scores(p, "aps"), expected, atol=1e-15)
    # Hand values: tied 0.3s both get 0.4 + 0.3; a uniform row gives every class 0.25.
    assert conformity_scores(p, "aps")[0].tolist() == pytest.approx([0.4, 0.7, 0.7, 1.0])
    assert conformity_scores(p, "aps")[1].tolist() == pytest.approx([0.25] * 4)
    np.testing.assert_array_equal(conformity_scores(p, "lac"), 1 - p)


def test_aps_score_does_not_depend_on_class_order():
    rng = np.random.default_rng(3)
    p = np.round(rng.dirichlet(np.ones(5), size=200), 1)  # rounding makes many ties
    perm = rng.permutation(5)
    np.testing.assert_allclose(conformity_scores(p[:, perm], "aps"), conformity_scores(p, "aps")[:, perm], atol=1e-12)


@pytest.mark.parametrize(("n", "alpha", "k"), [(19, 0.05, 19), (9, 0.1, 9), (100, 0.1, 91), (8, 0.1, 9), (1, 0.5, 1)])
def test_quantile_rank_hand_cases(n, alpha, k):
    assert quantile_rank(n, alpha) == k


def test_min_calibration_size():
    assert min_calibration_size(0.1) == 9 and min_calibration_size(0.05) == 19 and min_calibration_size(0.2) == 4
    for a in (0.01, 0.03, 0.1, 0.25, 0.5):
        n = min_calibration_size(a)
        assert quantile_rank(n, a) <= n and quantile_rank(n - 1, a) > n - 1


# -- against MAPIE -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "n_cal", "c", "alpha"),
    [(s, *case) for s in ("lac", "aps") for case in [(200, 3, 0.1), (57, 5, 0.2), (500, 4, 0.05)]]
    + [("lac", 30, 2, 0.1)],  # MAPIE refuses APS for 2 classes
)
def test_sets_match_mapie(score, n_cal, c, alpha):
    rng = np.random.default_rng(n_cal * 10 + c)
    y_cal, p_cal = _data(rng, n_cal, c, conc=0.3)  # peaked probabilities: sets of every size
    _, p_test = _data(rng, 300, c, conc=0.3)
    names = [f"c{j}" for j in range(c)]
    cal = calibrate(y_cal, p_cal, names, alpha=alpha, method=score)
    ref_sets, ref_q = _mapie_sets(p_cal, y_cal, p_test, alpha, score)
    assert cal["thresholds"]["all"]["value"] == pytest.approx(ref_q, abs=1e-12)
    ours = prediction_sets(p_test, cal, names)
    assert 0 < ours.sum() < ours.size  # a case where membership is decided
    if score == "lac":
        np.testing.assert_array_equal(ours, ref_sets)
        return
    # MAPIE's APS (include_last_label=False) never leaves a set empty: it keeps the top class.
    empty = ~ours.any(axis=1)
    top = np.eye(c, dtype=bool)[p_test.argmax(axis=1)]
    np.testing.assert_array_equal(np.where(empty[:, None], top, ours), ref_sets)
    # Its default (include_last_label=True) adds the class that crosses the threshold.
    wider, _ = _mapie_sets(p_cal, y_cal, p_test, alpha, score, include_last_label=True)
    assert (wider >= ours).all() and wider.sum() > ours.sum()


@pytest.mark.filterwarnings("ignore:WARNING. your conformalization dataset has less labels")
def test_mondrian_matches_mapie_per_class():
    # Mondrian = split conformal per class: class k's membership comes from a MAPIE model
    # conformalized on class k's calibration samples only.
    rng = np.random.default_rng(7)
    c, alpha = 3, 0.1
    y_cal, p_cal = _data(rng, 400, c)
    _, p_test = _data(rng, 200, c)
    names = ["normal", "a", "b"]
    ours = prediction_sets(p_test, calibrate(y_cal, p_cal, names, alpha=alpha, method="lac", mondrian=True), names)
    for k in range(c):
        ref, _ = _mapie_sets(p_cal[y_cal == k], y_cal[y_cal == k], p_test, alpha, "lac")
        np.testing.assert_array_equal(ours[:, k], ref[:, k])


# -- hand case of the summary ------------------------------------------------------------------


def test_summary_hand_case():
    names = ["normal", "pneumonia", "covid"]
    # Calibration: n = 9, alpha = 0.2 -> k = ceil(10 * 0.8) = 8: the 8th smallest LAC score.
    p_true = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.3, 0.2])  # p of the true class
    y_val = np.zeros(9, int)
    probs_val = np.column_stack([p_true, 1 - p_true, np.zeros(9)])
    # LAC scores 0.1 ... 0.8 (sorted), 8th smallest = 0.7 -> set = {y : p_y >= 0.3}.
    test = np.array([
        [0.5, 0.4, 0.1],    # y=0: {normal, pneumonia}, covered
        [0.8, 0.1, 0.1],    # y=1: {normal}, not covered, disease excluded
        [0.2, 0.2, 0.6],    # y=2: {covid}, covered
        [0.25, 0.25, 0.5],  # y=1: {covid}, not covered, but a disease class is kept
        [0.34, 0.33, 0.33],  # y=0: all three
    ])  # fmt: skip
    y_test = np.array([0, 1, 2, 1, 0])
    r = conformal_prediction(y_val, probs_val, y_test, test, names, alpha=0.2, negative_classes=["normal"],
                             n_bootstrap=200, seed=1)  # fmt: skip
    t = r["calibration"]["thresholds"]["all"]
    assert (t["n"], t["rank"], t["value"]) == (9, 8, pytest.approx(0.7)) and not t["all_classes"]
    assert (r["coverage"]["k"], r["coverage"]["n"]) == (3, 5)
    assert (r["coverage"]["ci_low"], r["coverage"]["ci_high"]) == pytest.approx(wilson_interval(3, 5))
    assert r["coverage_per_class"]["normal"]["value"] == 1.0
    assert r["coverage_per_class"]["pneumonia"]["value"] == 0.0
    assert r["coverage_per_class"]["covid"]["value"] == 1.0
    assert r["set_size_counts"] == [0, 3, 1, 1]
    assert r["mean_set_size"]["value"] == pytest.approx((2 + 1 + 1 + 1 + 3) / 5)
    assert r["mean_set_size"]["ci_low"] <= 1.6 <= r["mean_set_size"]["ci_high"]
    assert (r["singleton"]["k"], r["empty"]["k"]) == (3, 0)
    assert (r["contains_disease"]["k"], r["contains_disease"]["n"]) == (4, 5)
    assert (r["disease_excluded"]["k"], r["disease_excluded"]["n"]) == (1, 3)
    assert r["coverage_upper_bound"] == pytest.approx(0.8 + 1 / 10)
    assert r["target_coverage"] == pytest.approx(0.8)


def test_too_few_calibration_samples_gives_all_classes_with_a_reason():
    rng = np.random.default_rng(0)
    y, p = _data(rng, 5, 3)
    r = conformal_prediction(y, p, y, p, ["a", "b", "c"], alpha=0.1, n_bootstrap=0)
    t = r["calibration"]["thresholds"]["all"]
    assert t["value"] is None and t["all_classes"] and "needs n >= 9" in t["reason"]
    assert r["set_size_counts"] == [0, 0, 0, 5] and r["coverage"]["value"] == 1.0
    assert r["coverage_upper_bound"] is None and t["reason"] in r["notes"]
    assert r["mean_set_size"]["value"] == 3.0 and r["mean_set_size"]["ci_low"] is None
    # Mondrian: only the class with too few samples gets "all classes".
    y2 = np.array([0] * 30 + [1] * 30 + [2] * 3)
    p2 = rng.dirichlet(np.ones(3), size=63)
    th = calibrate(y2, p2, ["a", "b", "c"], alpha=0.1, mondrian=True)["thresholds"]
    assert th["c"]["all_classes"] and not th["a"]["all_classes"] and th["a"]["value"] is not None
    assert prediction_sets(p2, {"method": "lac", "mondrian": True, "thresholds": th}, ["a", "b", "c"])[:, 2].all()


def test_without_negative_classes_the_disease_view_is_undefined():
    rng = np.random.default_rng(1)
    y, p = _data(rng, 50, 3)
    r = conformal_prediction(y, p, y, p, ["a", "b", "c"], n_bootstrap=0)
    assert r["contains_disease"]["value"] is None and r["contains_disease"]["reason"]
    assert r["disease_excluded"]["value"] is None


def test_mean_set_size_bootstrap_reproducible_and_order_free():
    rng = np.random.default_rng(2)
    y_val, p_val = _data(rng, 100, 4)
    y, p = _data(rng, 150, 4)
    names = list("abcd")
    a = conformal_prediction(y_val, p_val, y, p, names, method="aps", n_bootstrap=300, seed=5)
    perm = rng.permutation(150)
    b = conformal_prediction(y_val, p_val, y[perm], p[perm], names, method="aps", n_bootstrap=300, seed=5)
    assert a == b
    c = conformal_prediction(y_val, p_val, y, p, names, method="aps", n_bootstrap=300, seed=6)
    assert c["mean_set_size"]["ci_low"] != a["mean_set_size"]["ci_low"]
    # The bootstrap SE of a mean is close to the plug-in SE (sd / sqrt(n)) for n = 150.
    sizes = prediction_sets(p, a["calibration"], names).sum(axis=1)
    half = (a["mean_set_size"]["ci_high"] - a["mean_set_size"]["ci_low"]) / 2
    assert half == pytest.approx(1.96 * sizes.std() / math.sqrt(150), rel=0.3)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": "x"}, "alpha"),
        ({"ci_alpha": 1.0}, "ci_alpha"),
        ({"method": "raps"}, "conformal_method"),
        ({"negative_classes": ["healthy"]}, "negative_classes"),
        ({"negative_classes": ["a", "b", "c"]}, "negative_classes"),
        ({"n_bootstrap": -1}, "n_bootstrap"),
    ],
)
def test_bad_arguments_are_medaudit_errors(kwargs, param):
    rng = np.random.default_rng(0)
    y, p = _data(rng, 20, 3)
    with pytest.raises(MedauditError) as err:
        conformal_prediction(y, p, y, p, ["a", "b", "c"], **kwargs)
    assert err.value.param == param


def test_bad_shapes_and_labels():
    rng = np.random.default_rng(0)
    y, p = _data(rng, 20, 3)
    with pytest.raises(MedauditError, match="shape") as err:
        conformal_prediction(y, p, y, p[:, :2], ["a", "b", "c"])
    assert err.value.param == "probs_test"
    with pytest.raises(MedauditError, match=r"\[0, 3\)"):
        conformal_prediction(y + 3, p, y, p, ["a", "b", "c"])
    with pytest.raises(MedauditError, match="NaN"):
        conformal_prediction(y, np.full_like(p, np.nan), y, p, ["a", "b", "c"])


# -- simulations of the guarantees -------------------------------------------------------------


def _coverage_runs(rng, reps, n_cal, n_test, c, alpha, method, mondrian=False, conc=1.0):
    """Marginal and per-class test coverage of ``reps`` independent calibration/test splits."""
    names = [str(j) for j in range(c)]
    marginal, per_class = np.empty(reps), np.empty((reps, c))
    for r in range(reps):
        y_cal, p_cal = _data(rng, n_cal, c, conc)
        y_t, p_t = _data(rng, n_test, c, conc)
        cal = calibrate(y_cal, p_cal, names, alpha=alpha, method=method, mondrian=mondrian)
        hit = prediction_sets(p_t, cal, names)[np.arange(n_test), y_t]
        marginal[r] = hit.mean()
        per_class[r] = [hit[y_t == k].mean() if (y_t == k).any() else np.nan for k in range(c)]
    return marginal, per_class


def _check_marginal(marginal, n_cal, alpha, tie_free=True):
    """E[coverage] = k/(n+1) for tie-free scores (>= it with ties); 4 standard errors of slack."""
    expected = quantile_rank(n_cal, alpha) / (n_cal + 1)
    se = marginal.std(ddof=1) / math.sqrt(marginal.size)
    assert 1 - alpha <= expected <= 1 - alpha + 1 / (n_cal + 1)
    assert marginal.mean() > expected - 4 * se, (marginal.mean(), expected, se)
    if tie_free:
        assert marginal.mean() < expected + 4 * se, (marginal.mean(), expected, se)
    return marginal.mean() - expected


def test_marginal_coverage_by_simulation_lac():
    rng = np.random.default_rng(11)
    n_cal, alpha = 40, 0.1  # k = ceil(41 * 0.9) = 37: expected coverage 37/41 = 0.902
    marginal, _ = _coverage_runs(rng, 300, n_cal, 100, 4, alpha, "lac")
    _check_marginal(marginal, n_cal, alpha)


def test_marginal_coverage_by_simulation_aps_and_its_atom_at_one():
    rng = np.random.default_rng(11)
    n_cal, alpha = 40, 0.1
    # Peaked probabilities: the true class is rarely ranked last, the threshold stays below 1
    # and coverage is exact. Flat ones: the atom at 1 makes APS over-cover (documented).
    peaked, _ = _coverage_runs(rng, 300, n_cal, 100, 4, alpha, "aps", conc=0.2)
    assert abs(_check_marginal(peaked, n_cal, alpha)) < 0.01
    flat, _ = _coverage_runs(rng, 300, n_cal, 100, 4, alpha, "aps", conc=1.0)
    assert _check_marginal(flat, n_cal, alpha, tie_free=False) > 0.005


def test_upper_bound_withheld_when_scores_tie_at_the_threshold():
    rng = np.random.default_rng(4)
    y, p = _data(rng, 40, 4, conc=1.0)
    p[:, :] = 0.25  # every APS score is 1: one big tie
    r = conformal_prediction(y, p, y, p, list("abcd"), method="aps", n_bootstrap=0)
    assert r["calibration"]["thresholds"]["all"]["ties_at_threshold"] == 40
    assert r["coverage_upper_bound"] is None and any("tie" in note for note in r["notes"])


def _class_conditional_data(rng, n_per_class, c, hard):
    """Fixed class counts; class ``hard`` gets probabilities that barely favour it."""
    y = np.repeat(np.arange(c), n_per_class)
    conc = np.ones((c, c))
    conc[np.arange(c), np.arange(c)] = 6.0
    conc[hard, hard] = 1.2
    g = rng.gamma(conc[y])
    return y, g / g.sum(axis=1, keepdims=True)


def _mondrian_runs(rng, reps, n_cal, mondrian, c=3, hard=2, alpha=0.1):
    names = [str(j) for j in range(c)]
    cov = np.empty((reps, c))
    for r in range(reps):
        y_cal, p_cal = _class_conditional_data(rng, n_cal, c, hard)
        y_t, p_t = _class_conditional_data(rng, 60, c, hard)
        cal = calibrate(y_cal, p_cal, names, alpha=alpha, method="lac", mondrian=mondrian)
        hit = prediction_sets(p_t, cal, names)[np.arange(y_t.size), y_t]
        cov[r] = [hit[y_t == k].mean() for k in range(c)]
    return cov


def test_mondrian_class_conditional_coverage_by_simulation():
    rng = np.random.default_rng(12)
    n_cal, alpha = 30, 0.1  # per class: k = ceil(31 * 0.9) = 28, expected 28/31 = 0.903
    cov = _mondrian_runs(rng, 200, n_cal, mondrian=True)
    expected = quantile_rank(n_cal, alpha) / (n_cal + 1)
    se = cov.std(axis=0, ddof=1) / math.sqrt(cov.shape[0])
    assert np.all(np.abs(cov.mean(axis=0) - expected) < 4 * se), (cov.mean(axis=0), expected)
    # One marginal threshold under-covers the hard class: the reason to calibrate per class.
    marginal = _mondrian_runs(rng, 200, 3 * n_cal, mondrian=False).mean(axis=0)
    assert marginal[2] < 1 - alpha - 0.05 and marginal[:2].min() > 1 - alpha


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lac", "aps"])
@pytest.mark.parametrize(("n_cal", "alpha"), [(19, 0.05), (100, 0.1), (250, 0.2)])
def test_marginal_coverage_by_long_simulation(method, n_cal, alpha):
    rng = np.random.default_rng(n_cal)
    marginal, _ = _coverage_runs(rng, 2000, n_cal, 200, 5, alpha, method, conc=0.5)
    _check_marginal(marginal, n_cal, alpha, tie_free=method == "lac")
