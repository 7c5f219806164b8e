"""Selective prediction: AURC against brute force, thresholds on validation, simulated guarantees.

References: the sorted-sum definition of AURC (Geifman et al. 2019) computed by a plain loop,
its exact expectation over every order of tied confidences (itertools), the closed form of the
optimal AURC's limit ``r + (1 - r) ln(1 - r)``, a plain-loop stratified bootstrap for the interval
width, and simulations of the coverage and risk targets on a known distribution.
"""

import itertools
import math

import numpy as np
import pytest
from scipy import special
from scipy.stats import binom

from medaudit.errors import MedauditError
from medaudit.metrics import selective
from medaudit.metrics.selective import (
    GRID_SIZE,
    aurc,
    aurc_from_groups,
    coverage_threshold,
    risk_threshold,
    selective_prediction,
    threshold_grid,
)


def _naive_aurc(conf_sorted_err):
    """(1/N) sum_k errors among the first k / k, in the given order."""
    e = np.cumsum(conf_sorted_err)
    k = np.arange(1, e.size + 1)
    return float(np.mean(e / k))


def _probs_with(conf, pred, c=3):
    """Probability rows with max ``conf`` at class ``pred`` (rest spread evenly)."""
    conf = np.asarray(conf, float)
    p = np.repeat(((1 - conf) / (c - 1))[:, None], c, axis=1)
    p[np.arange(conf.size), pred] = conf
    return p


def _model(rng, n, c=3, scale=2.0):
    """A calibrated softmax model: y ~ Categorical(p)."""
    logits = rng.normal(size=(n, c)) * scale
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = np.minimum((rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1), c - 1)
    return y, p


# -- AURC -------------------------------------------------------------------------------------


def test_aurc_without_ties_is_the_sorted_sum():
    rng = np.random.default_rng(0)
    y, p = _model(rng, 300)
    order = np.argsort(-p.max(axis=1))
    err = (p.argmax(axis=1) != y)[order]
    r = aurc(y, p)
    assert r["aurc"] == pytest.approx(_naive_aurc(err), rel=1e-12)
    best = np.sort(err)  # errors last
    assert r["aurc_optimal"] == pytest.approx(_naive_aurc(best), rel=1e-10, abs=1e-15)
    assert r["e_aurc"] == pytest.approx(_naive_aurc(err) - _naive_aurc(best), rel=1e-9)
    assert r["error_rate"] == pytest.approx(err.mean())


def test_aurc_hand_case_with_a_tie():
    # Confidences 0.9, 0.8, 0.8, 0.6 with errors 0, (1, 0 tied), 1. Orders of the tie:
    # (0,1,0,1): 0 + 1/2 + 1/3 + 2/4; (0,0,1,1): 0 + 0 + 1/3 + 2/4. Mean / 4 = 0.2708333...
    conf = [0.9, 0.8, 0.8, 0.6]
    pred = np.array([0, 1, 0, 2])
    y = np.array([0, 0, 0, 0])
    r = aurc(y, _probs_with(conf, pred))
    assert r["aurc"] == pytest.approx(((1 / 2 + 1 / 3 + 1 / 2) + (1 / 3 + 1 / 2)) / 2 / 4, rel=1e-12)
    # Optimal: errors last -> 0 + 0 + 1/3 + 2/4.
    assert r["aurc_optimal"] == pytest.approx((1 / 3 + 1 / 2) / 4, rel=1e-12)


def test_aurc_ties_equal_the_mean_over_every_order():
    rng = np.random.default_rng(1)
    conf = np.array([0.9, 0.9, 0.9, 0.7, 0.7, 0.5, 0.5, 0.5])
    err = rng.random(8) < 0.5
    err[[0, 5]] = True, False
    pred = np.where(err, 1, 0)
    r = aurc(np.zeros(8, int), _probs_with(conf, pred))
    groups = [np.flatnonzero(conf == v) for v in (0.9, 0.7, 0.5)]
    values = [
        _naive_aurc(err[np.concatenate(orders)]) for orders in itertools.product(*map(itertools.permutations, groups))
    ]
    assert r["aurc"] == pytest.approx(np.mean(values), rel=1e-12)
    # ... and does not depend on the input order.
    perm = rng.permutation(8)
    assert aurc(np.zeros(8, int), _probs_with(conf, pred)[perm])["aurc"] == pytest.approx(r["aurc"], rel=1e-14)


def test_optimal_aurc_approaches_its_closed_form():
    n, e = 100_000, 20_000
    a, ea = aurc_from_groups(np.ones((n, 1)), np.r_[np.zeros(n - e), np.ones(e)][:, None])
    r = e / n
    assert a[0] == pytest.approx(r + (1 - r) * math.log(1 - r), rel=1e-3) and ea[0] == pytest.approx(0, abs=1e-12)


def test_aurc_edges():
    p = _probs_with([0.9, 0.6], [0, 1])
    assert aurc([0, 1], p)["aurc"] == 0.0 and aurc([0, 1], p)["e_aurc"] == 0.0
    r = aurc([1, 0], p)  # every answer wrong: risk 1 at every coverage
    assert r["aurc"] == pytest.approx(1.0) and r["e_aurc"] == pytest.approx(0.0, abs=1e-15)


def test_aurc_interval_is_order_free_reproducible_and_as_wide_as_a_plain_bootstrap():
    rng = np.random.default_rng(2)
    y, p = _model(rng, 400)
    names = ["normal", "a", "b"]
    a = selective_prediction(y, p, names, n_bootstrap=400, seed=3)
    perm = rng.permutation(400)
    assert selective_prediction(y[perm], p[perm], names, n_bootstrap=400, seed=3) == a
    assert a["aurc"]["value"] == pytest.approx(aurc(y, p)["aurc"], rel=1e-12)
    assert a["aurc"]["ci_low"] < a["aurc"]["value"] < a["aurc"]["ci_high"]
    # Reference: a plain stratified bootstrap loop (resample within true classes, re-sort).
    conf, err = p.max(axis=1), p.argmax(axis=1) != y
    boot = []
    for _ in range(400):
        idx = np.concatenate([rng.choice(np.flatnonzero(y == k), (y == k).sum()) for k in range(3)])
        boot.append(aurc(y[idx], p[idx])["aurc"])
    width = np.subtract(*np.percentile(boot, [97.5, 2.5]))
    assert a["aurc"]["ci_high"] - a["aurc"]["ci_low"] == pytest.approx(width, rel=0.2)
    assert np.isfinite(conf).all() and err.any()


def _plain_aurc_from_groups(n_g, e_g):
    """The whole-array formula with digamma everywhere (the implementation before the blocked one)."""
    n_g, e_g = np.asarray(n_g, dtype=np.float64), np.asarray(e_g, dtype=np.float64)
    n_le = np.cumsum(n_g, axis=0)
    n_lt = n_le - n_g
    e_lt = np.cumsum(e_g, axis=0) - e_g
    rate = np.zeros_like(n_g)
    np.divide(e_g, n_g, out=rate, where=n_g > 0)
    harmonic = special.digamma(n_le + 1.0) - special.digamma(n_lt + 1.0)
    total = (e_lt - n_lt * rate) * harmonic + e_g
    n, e = n_le[-1], e_lt[-1] + e_g[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        a = total.sum(axis=0) / n
        optimal = (e - (n - e) * (special.digamma(n + 1.0) - special.digamma(n - e + 1.0))) / n
    return a, a - optimal


def _counts(rng, g, m, tie=3, dtype=np.float32):
    n_g = rng.poisson(1.0, (g, m)) * rng.integers(1, tie + 1, (g, 1))  # some groups hold ties
    return n_g.astype(dtype), rng.binomial(n_g, rng.random((g, 1))).astype(dtype)


def test_weighted_groups_equal_the_mean_over_every_arrangement_of_their_errors(monkeypatch):
    # A resample column repeats samples; a group of n tied cases with e errors has C(n, e)
    # equally likely error layouts. Blocks of 2 groups make the running counts cross blocks.
    monkeypatch.setattr(selective, "_BLOCK_ROWS", 2)
    n_g = np.array([[2, 0, 3, 1], [0, 0, 1, 4], [3, 2, 0, 0], [1, 0, 2, 2], [4, 0, 1, 1]], np.float32)
    e_g = np.array([[1, 0, 2, 0], [0, 0, 1, 3], [2, 1, 0, 0], [0, 0, 1, 2], [2, 0, 0, 1]], np.float32)
    got, got_e = aurc_from_groups(n_g, e_g)
    for j in range(n_g.shape[1]):
        layouts = [
            [np.isin(np.arange(int(n)), pos) for pos in itertools.combinations(range(int(n)), int(e))]
            for n, e in zip(n_g[:, j], e_g[:, j])
            if n
        ]
        errs = [np.concatenate(parts) for parts in itertools.product(*layouts)]
        expected = np.mean([_naive_aurc(x) for x in errs])
        best = _naive_aurc(np.sort(errs[0]))  # every error last
        assert got[j] == pytest.approx(expected, rel=1e-12), j
        assert got_e[j] == pytest.approx(expected - best, rel=1e-10, abs=1e-15), j
    empty = aurc_from_groups(np.zeros((3, 1)), np.zeros((3, 1)))
    assert np.isnan(empty[0]).all() and np.isnan(empty[1]).all()


@pytest.mark.parametrize("block_rows", [1, 7, 512])
@pytest.mark.parametrize(("g", "m"), [(1, 1), (300, 1), (513, 64), (1030, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_aurc_is_bit_identical_to_the_whole_array_formula(monkeypatch, block_rows, g, m, dtype):
    monkeypatch.setattr(selective, "_BLOCK_ROWS", block_rows)
    n_g, e_g = _counts(np.random.default_rng(g * m + block_rows), g, m, dtype=dtype)
    for got, expected in zip(aurc_from_groups(n_g, e_g), _plain_aurc_from_groups(n_g, e_g)):
        assert got.dtype == np.float64 and np.array_equal(got, expected, equal_nan=True)


@pytest.mark.parametrize("n_bootstrap", [129, 150])  # last chunk of 1 resample (pairwise sum) or 22
def test_bootstrap_intervals_are_bit_identical_to_the_whole_array_formula(monkeypatch, n_bootstrap):
    rng = np.random.default_rng(11)
    y, p = _model(rng, 3000, c=4)
    p = np.round(p, 2)  # many ties, mixed ones too
    p[:, 0] = 1.0 - p[:, 1:].sum(axis=1)
    names = ["normal", "a", "b", "c"]
    fast = selective_prediction(y, p, names, n_bootstrap=n_bootstrap, seed=4)
    monkeypatch.setattr(selective, "_aurc_whole", _plain_aurc_from_groups)
    plain = selective_prediction(y, p, names, n_bootstrap=n_bootstrap, seed=4)
    assert fast == plain and fast["aurc"]["ci_low"] < fast["aurc"]["ci_high"]


def test_float32_counts_past_2_to_24_are_summed_in_float64():
    # 2**24 + 1 is not a float32: a float32 running count would round it and look up the wrong H.
    n_g = np.array([[2**24 - 1], [2]], np.float32)
    e_g = np.array([[0], [1]], np.float32)
    for got, expected in zip(aurc_from_groups(n_g, e_g), _plain_aurc_from_groups(n_g, e_g)):
        assert np.array_equal(got, expected)


def test_aurc_from_groups_rejects_fractional_counts_and_mismatched_shapes():
    with pytest.raises(ValueError, match="whole numbers"):
        aurc_from_groups(np.array([[1.5], [1.0]]), np.array([[0.0], [1.0]]))
    with pytest.raises(ValueError, match="whole numbers"):
        aurc_from_groups(np.array([[2.0], [1.0]]), np.array([[0.5], [1.0]]))
    with pytest.raises(ValueError, match=r"\(G, m\)"):
        aurc_from_groups(np.ones((3, 2)), np.ones((3, 1)))


# -- curve and operating points ----------------------------------------------------------------


def test_curve_and_missed_disease_hand_case():
    names = ["normal", "pneumonia", "covid"]
    conf = [0.95, 0.9, 0.8, 0.7, 0.6]
    pred = np.array([1, 0, 0, 2, 1])
    y = np.array([1, 1, 0, 2, 0])  # errors at 0.9 (missed disease) and 0.6
    r = selective_prediction(y, _probs_with(conf, pred), names, negative_classes=["normal"], n_bootstrap=0)
    cur = r["curve"]
    assert cur["threshold"] == pytest.approx(conf)
    assert cur["coverage"] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert cur["selective_risk"] == pytest.approx([0, 1 / 2, 1 / 3, 1 / 4, 2 / 5])
    assert cur["missed_disease"] == pytest.approx([0, 1 / 3, 1 / 3, 1 / 3, 1 / 3])
    assert r["aurc"]["reason"] == "bootstrap disabled (0 resamples)" and r["aurc"]["ci_low"] is None
    assert (r["risk_at_full_coverage"]["k"], r["risk_at_full_coverage"]["n"]) == (2, 5)
    assert r["operating_points"] == [] and "validation" in r["operating_points_reason"]


def test_curve_is_thinned_with_its_ends_kept():
    rng = np.random.default_rng(5)
    y, p = _model(rng, 1000)
    cur = selective_prediction(y, p, ["a", "b", "c"], n_bootstrap=0, max_curve_points=50)["curve"]
    assert len(cur["coverage"]) == 50 and cur["coverage"][-1] == 1.0 and cur["coverage"][0] == pytest.approx(1e-3)
    assert np.all(np.diff(cur["coverage"]) > 0) and cur["missed_disease"] is None


def test_coverage_threshold_hand_case_and_application_to_test():
    conf_val = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.45, 0.4])
    assert coverage_threshold(conf_val, 0.8) == 0.5  # 8 of 10 answered
    assert coverage_threshold(conf_val, 0.75) == 0.5  # ceil(7.5) = 8
    assert coverage_threshold(conf_val, 0.7) == 0.55
    assert coverage_threshold(conf_val, 1.0) == 0.4 and coverage_threshold(conf_val, 0.01) == 0.99
    y_val = np.zeros(10, int)
    p_val = _probs_with(conf_val, np.zeros(10, int))
    conf_t = np.array([0.97, 0.52, 0.5, 0.49, 0.3])
    y_t = np.array([0, 1, 0, 0, 0])
    r = selective_prediction(
        y_t, _probs_with(conf_t, np.zeros(5, int)), ["normal", "flu", "x"], y_val=y_val, probs_val=p_val,
        target_coverages=[0.8], negative_classes=["normal"], n_bootstrap=0,
    )  # fmt: skip
    op = r["operating_points"][0]
    assert (op["threshold"], op["val_coverage"], op["chosen_on"]) == (0.5, 0.8, "val")
    assert (op["coverage"]["k"], op["referred"]["k"]) == (3, 2)
    assert (op["selective_accuracy"]["k"], op["selective_accuracy"]["n"]) == (2, 3)
    assert (op["missed_disease"]["k"], op["missed_disease"]["n"]) == (1, 1)
    assert (op["missed_disease_among_answered"]["k"], op["missed_disease_among_answered"]["n"]) == (1, 1)


def test_test_coverage_by_simulation():
    # Continuous confidences: expected test coverage at the val-chosen threshold is k/(n+1), k = ceil(c n).
    rng = np.random.default_rng(6)
    n_val, target = 60, 0.8
    got = []
    for _ in range(300):
        yv, pv = _model(rng, n_val)
        yt, pt = _model(rng, 200)
        tau = coverage_threshold(pv.max(axis=1), target)
        got.append((pt.max(axis=1) >= tau).mean())
    got = np.array(got)
    expected = math.ceil(target * n_val) / (n_val + 1)
    assert abs(got.mean() - expected) < 4 * got.std(ddof=1) / math.sqrt(got.size), (got.mean(), expected)


def test_risk_threshold_hand_cases():
    grid = threshold_grid(3)
    assert grid.size == GRID_SIZE and grid[0] == pytest.approx(1 / 3) and grid[-1] < 1 and np.all(np.diff(grid) > 0)
    conf = np.linspace(0.4, 1.0, 200, endpoint=False)
    # No errors: 0.95**200 = 3.5e-5 <= 0.05 / 50, so every case is answered (lowest grid threshold).
    r = risk_threshold(conf, np.zeros(200, bool), 3, 0.05, 0.05)
    assert r["threshold"] == pytest.approx(1 / 3) and r["p_value"] == pytest.approx(0.95**200)
    # The level is delta / GRID_SIZE (Bonferroni): e errors of 200 equally confident cases pass
    # only when P(Bin(200, 0.1) <= e) <= 0.05 / 50, not merely <= 0.05.
    cdf = binom.cdf(np.arange(200), 200, 0.1)
    e_pass, e_fail = np.flatnonzero(cdf <= 0.05 / GRID_SIZE).max(), np.flatnonzero(cdf <= 0.05).max()
    assert e_pass < e_fail
    flat = np.full(200, 0.99)
    for e, passes in ((e_pass, True), (e_fail, False)):
        got = risk_threshold(flat, np.arange(200) < e, 3, 0.1, 0.05)
        assert (got["threshold"] == pytest.approx(1 / 3)) if passes else got["threshold"] is None
    # Too few cases to show risk <= 1 %: unreached.
    assert risk_threshold(conf[:20], np.zeros(20, bool), 3, 0.01, 0.05)["threshold"] is None


def test_risk_target_unreached_is_reported_with_a_reason():
    rng = np.random.default_rng(7)
    y, p = _model(rng, 30)
    r = selective_prediction(y, p, ["a", "b", "c"], y_val=y, probs_val=p, target_risk=0.001, n_bootstrap=0)
    op = r["operating_points"][-1]
    assert op["target"] == "risk" and op["reached"] is False and op["threshold"] is None
    assert op["coverage"]["value"] is None and "relax the target" in op["reason"]


@pytest.fixture(scope="module")
def population():
    """True selective risk and coverage of the simulated model at any threshold (200k draws)."""
    y, p = _model(np.random.default_rng(123), 200_000)
    order = np.argsort(-p.max(axis=1))
    conf = p.max(axis=1)[order]
    cum_err = np.cumsum((p.argmax(axis=1) != y)[order])

    def at(tau):
        k = int(np.searchsorted(-conf, -tau, side="right"))
        return (cum_err[k - 1] / k if k else 0.0), k / conf.size

    return at


@pytest.mark.parametrize(("target", "n_val", "min_coverage"), [(0.1, 1000, 0.15), (0.2, 1000, 0.5)])
def test_risk_guarantee_by_simulation(population, target, n_val, min_coverage):
    rng = np.random.default_rng(8)
    delta, reps = 0.1, 100
    violations, coverages = 0, []
    for _ in range(reps):
        yv, pv = _model(rng, n_val)
        tau = risk_threshold(pv.max(axis=1), pv.argmax(axis=1) != yv, 3, target, delta)["threshold"]
        risk, cov = population(tau) if tau is not None else (0.0, 0.0)
        violations += risk > target
        coverages.append(cov)
    # Bonferroni LTT: P(violation) <= delta (measured: 0 of 100); 3 binomial SDs of slack.
    assert violations / reps <= delta + 3 * math.sqrt(delta * (1 - delta) / reps)
    # Not vacuous (conservative, though: the best grid threshold answers 47 % / 81 %).
    assert np.median(coverages) > min_coverage


def test_naive_choice_would_violate_the_target(population):
    # The same target chosen by the point estimate (risk on val <= target) breaks it about half
    # the time, which is why the risk target uses the test above.
    rng = np.random.default_rng(9)
    grid = threshold_grid(3)
    bad = 0
    for _ in range(100):
        yv, pv = _model(rng, 500)
        conf, err = pv.max(axis=1), pv.argmax(axis=1) != yv
        ok = [t for t in grid if (conf >= t).any() and err[conf >= t].mean() <= 0.2]
        bad += population(min(ok))[0] > 0.2
    assert bad > 25


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"target_coverages": [0.0]}, "target_coverage"),
        ({"target_coverages": [1.2]}, "target_coverage"),
        ({"target_risk": 0.0}, "target_risk"),
        ({"target_risk": 1.0}, "target_risk"),
        ({"delta": 1.0}, "delta"),
        ({"ci_alpha": 0}, "ci_alpha"),
        ({"negative_classes": ["healthy"]}, "negative_classes"),
        ({"n_bootstrap": -3}, "n_bootstrap"),
        ({"max_curve_points": 1}, "max_curve_points"),
        ({"y_val": [0, 1]}, "y_val"),
    ],
)
def test_bad_arguments_are_medaudit_errors(kwargs, param):
    rng = np.random.default_rng(0)
    y, p = _model(rng, 20)
    with pytest.raises(MedauditError) as err:
        selective_prediction(y, p, ["a", "b", "c"], **kwargs)
    assert err.value.param == param


def test_bad_validation_shapes():
    rng = np.random.default_rng(0)
    y, p = _model(rng, 20)
    with pytest.raises(MedauditError) as err:
        selective_prediction(y, p, ["a", "b", "c"], y_val=y, probs_val=p[:, :2])
    assert err.value.param == "probs_val"
