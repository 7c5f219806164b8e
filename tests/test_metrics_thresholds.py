"""Guaranteed thresholds: Clopper-Pearson bounds against statsmodels/scipy, brute-force choices,
and the guarantee itself by simulation from known score distributions."""

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from medaudit.errors import MedauditError
from medaudit.metrics.risk import _choose
from medaudit.metrics.thresholds import (
    clopper_pearson_lower,
    guaranteed_operating_points,
    guaranteed_threshold,
    min_samples_for_guarantee,
    naive_threshold,
)


def cp_lower_ref(k, n, delta):
    """One-sided 1 - delta lower bound = lower end of the two-sided 1 - 2 delta exact interval."""
    return proportion_confint(k, n, alpha=2 * delta, method="beta")[0] if k else 0.0


def brute_force(y, s, target, delta, metric):
    """Loop over every candidate threshold with the statsmodels bound (None = naive criterion)."""
    y = np.asarray(y, bool)
    cands = sorted(set(s.tolist()) | {np.nextafter(s.max(), np.inf)})
    passing = []
    for t in cands:
        if metric == "sensitivity":
            k, n = int((s[y] >= t).sum()), int(y.sum())
        else:
            k, n = int((s[~y] < t).sum()), int((~y).sum())
        ok = k / n >= target if delta is None else cp_lower_ref(k, n, delta) >= target
        if ok:
            passing.append(t)
    if not passing:
        return None
    return max(passing) if metric == "sensitivity" else min(passing)


@pytest.mark.parametrize(("k", "n"), [(1, 1), (0, 10), (3, 10), (59, 59), (95, 100), (400, 1000)])
@pytest.mark.parametrize("delta", [0.05, 0.2])
def test_clopper_pearson_lower_matches_statsmodels_and_scipy(k, n, delta):
    low = clopper_pearson_lower(k, n, delta)
    assert low == pytest.approx(cp_lower_ref(k, n, delta), abs=1e-10)
    assert low == pytest.approx(stats.binomtest(k, n, alternative="greater").proportion_ci(1 - delta).low, abs=1e-10)
    if k:  # the defining property: P(Binomial(n, low) >= k) = delta
        assert stats.binom.sf(k - 1, n, low) == pytest.approx(delta, rel=1e-7)


def test_min_samples_for_guarantee():
    assert min_samples_for_guarantee(0.95, 0.05) == 59  # the example
    for target in (0.8, 0.9, 0.95, 0.99):
        for delta in (0.01, 0.05, 0.1):
            n = 1
            while cp_lower_ref(n, n, delta) < target:
                n += 1
            assert min_samples_for_guarantee(target, delta) == n


def test_naive_threshold_is_the_operating_points_one():
    rng = np.random.default_rng(1)
    for _ in range(20):
        y = rng.random(150) < 0.4
        s = np.round(np.where(y, rng.normal(1, 1, 150), rng.normal(0, 1, 150)), 1)  # ties
        target = rng.uniform(0.5, 0.99)
        assert naive_threshold(y, s, target)["threshold"] == _choose(y, s, target)[1]


@pytest.mark.parametrize("metric", ["sensitivity", "specificity"])
def test_choices_match_a_brute_force_loop(metric):
    rng = np.random.default_rng(2)
    for rep in range(12):
        y = rng.random(400) < 0.5
        s = np.where(y, rng.normal(1.5, 1, 400), rng.normal(0, 1, 400))
        if rep % 2:
            s = np.round(s, 1)
        target, delta = rng.uniform(0.8, 0.95), rng.choice([0.05, 0.1])
        g = guaranteed_threshold(y, s, target, delta=delta, metric=metric)
        nv = naive_threshold(y, s, target, metric=metric, delta=delta)
        assert g["threshold"] == brute_force(y, s, target, delta, metric)
        assert nv["threshold"] == brute_force(y, s, target, None, metric)
        # The guaranteed threshold is the more cautious one, and its bound passes.
        assert g["lower_bound"] >= target and nv["estimate"] >= target
        if metric == "sensitivity":
            assert g["threshold"] <= nv["threshold"] and g["k"] == (s[y] >= g["threshold"]).sum()
        else:
            assert g["threshold"] >= nv["threshold"] and g["k"] == (s[~y] < g["threshold"]).sum()


def test_hand_case_sixty_positives():
    # 60 positives scored 1..60: only "all 60 detected" has a 95% bound >= 0.95 (0.05 ** (1/60) = 0.9513).
    y = np.r_[np.ones(60, bool), np.zeros(5, bool)]
    s = np.r_[np.arange(1.0, 61.0), [0.5, 2.5, 10.5, 70, 80]]
    g = guaranteed_threshold(y, s, 0.95, delta=0.05)
    assert (g["threshold"], g["k"], g["n"]) == (1.0, 60, 60)
    assert g["lower_bound"] == pytest.approx(0.05 ** (1 / 60))
    nv = naive_threshold(y, s, 0.95)
    assert (nv["threshold"], nv["k"]) == (4.0, 57)  # 57/60 = 0.95 exactly
    # Specificity: 5 negatives never guarantee 95%.
    sp = guaranteed_threshold(y, s, 0.95, metric="specificity")
    assert sp["threshold"] is None and sp["min_needed"] == 59


def test_too_few_positives_is_undefined_with_the_needed_count():
    y = np.r_[np.ones(7, bool), np.zeros(100, bool)]
    s = np.linspace(0, 1, 107)
    g = guaranteed_threshold(y, s, 0.95, delta=0.05)
    assert g["threshold"] is None and g["estimate"] is None
    assert g["reason"] == "validation has 7 positives; a 95% sensitivity with δ=0.05 needs at least 59"
    # 59 positives (all found at the lowest threshold) are enough.
    y2 = np.r_[np.ones(59, bool), np.zeros(10, bool)]
    assert guaranteed_threshold(y2, np.linspace(0, 1, 69), 0.95)["threshold"] is not None


def _simulate(metric, n_draws, seed, n_pos=100, n_neg=100, target=0.9, delta=0.05):
    """True metric of the naive and guaranteed thresholds over validation draws.

    Positives ~ N(1, 1), negatives ~ N(0, 1): sensitivity(t) = 1 - Phi(t - 1), specificity(t) = Phi(t).
    """
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos, bool), np.zeros(n_neg, bool)]
    true = (lambda t: stats.norm.sf(t - 1)) if metric == "sensitivity" else stats.norm.cdf
    fails = {"naive": 0, "guaranteed": 0}
    for _ in range(n_draws):
        s = np.r_[rng.normal(1, 1, n_pos), rng.normal(0, 1, n_neg)]
        for name, fn in (("naive", naive_threshold), ("guaranteed", guaranteed_threshold)):
            kw = {"delta": delta} if name == "guaranteed" else {}
            fails[name] += true(fn(y, s, target, metric=metric, **kw)["threshold"]) < target
    n = n_pos if metric == "sensitivity" else n_neg
    # Exact failure probabilities: the chosen threshold is an order statistic of the n relevant
    # scores whose true metric is U_(k) ~ Beta(k, n - k + 1): P(U_(k) < target) = P(Bin(n, target) >= k).
    k_naive = int(np.ceil(target * n - 1e-9))
    k_g = int(np.flatnonzero(clopper_pearson_lower(np.arange(n + 1), n, delta) >= target)[0])
    exact = {"naive": stats.binom.sf(k_naive - 1, n, target), "guaranteed": stats.binom.sf(k_g - 1, n, target)}
    return fails, exact


@pytest.mark.parametrize("metric", ["sensitivity", "specificity"])
def test_guarantee_holds_by_simulation(metric):
    n_draws, delta = 200, 0.05
    fails, exact = _simulate(metric, n_draws, seed=10 if metric == "sensitivity" else 11, delta=delta)
    # Guaranteed: at most delta of the draws fail, allowing binomial slack.
    assert fails["guaranteed"] <= stats.binom.ppf(0.999, n_draws, delta)
    # Naive: about half fail (exactly 0.583 here), far more than delta.
    assert fails["naive"] >= 0.35 * n_draws
    _check_against_exact(metric, fails, exact, n_draws)


def _check_against_exact(metric, fails, exact, n_draws):
    # Sensitivity thresholds are order statistics of the positive scores, so the failure rates
    # are exact; a specificity threshold sits at the next validation score above one, which is
    # conservative, so there the exact rates are upper bounds.
    alternative = "two-sided" if metric == "sensitivity" else "greater"
    for name in fails:
        p = stats.binomtest(int(fails[name]), n_draws, exact[name], alternative=alternative).pvalue
        assert p > 0.001, (name, fails, exact)


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["sensitivity", "specificity"])
def test_guarantee_failure_rate_is_the_exact_one_slow(metric):
    n_draws = 3000
    fails, exact = _simulate(metric, n_draws, seed=20, n_pos=60, n_neg=80, target=0.9, delta=0.1)
    assert fails["guaranteed"] / n_draws <= 0.1 + 3 * np.sqrt(0.1 * 0.9 / n_draws)
    _check_against_exact(metric, fails, exact, n_draws)


def _multiclass(n, rng):
    y = rng.integers(0, 3, n)
    z = rng.normal(size=(n, 3)) + 2.0 * np.eye(3)[y]
    return y, np.exp(z) / np.exp(z).sum(1, keepdims=True)


def test_operating_points_block_applies_validation_thresholds_to_test():
    rng = np.random.default_rng(5)
    names = ["normal", "pneumonia", "covid"]
    yv, pv = _multiclass(600, rng)
    yt, pt = _multiclass(300, rng)
    block = guaranteed_operating_points(yv, pv, yt, pt, names, ["normal"], target=0.9, delta=0.05)
    assert block["score"] == "1 - p(normal)" and block["validation"]["n_positive"] == int((yv != 0).sum())
    assert block["positive"] == "disease (not normal)"
    naive, guaranteed = block["points"]
    assert naive["name"] == "naive_sensitivity_0.9" and guaranteed["name"] == "guaranteed_sensitivity_0.9"
    dv, sv = (yv != 0), 1 - pv[:, 0]
    assert guaranteed["threshold"] == guaranteed_threshold(dv, sv, 0.9, delta=0.05)["threshold"]
    assert naive["on_validation"]["lower_bound"] < 0.9 <= guaranteed["on_validation"]["lower_bound"]
    dt, st = (yt != 0), 1 - pt[:, 0]
    for point in block["points"]:
        called = st >= point["threshold"]
        sens = point["on_test"]["sensitivity"]
        assert (sens["k"], sens["n"]) == ((called & dt).sum(), dt.sum()) and sens["ci_method"] == "wilson"
        spec = point["on_test"]["specificity"]
        assert (spec["k"], spec["n"]) == ((~called & ~dt).sum(), (~dt).sum())
    assert guaranteed["on_test"]["sensitivity"]["value"] >= naive["on_test"]["sensitivity"]["value"]
    # One disease class one-vs-rest instead: scored by its own probability.
    one = guaranteed_operating_points(yv, pv, yt, pt, names, disease_class="covid", target=0.9)
    assert one["score"] == "p(covid)" and one["validation"]["n_positive"] == int((yv == 2).sum())
    assert one["points"][1]["threshold"] == guaranteed_threshold(yv == 2, pv[:, 2], 0.9)["threshold"]


def test_operating_points_block_undefined_when_validation_is_small():
    rng = np.random.default_rng(6)
    yv, pv = _multiclass(30, rng)
    yt, pt = _multiclass(50, rng)
    block = guaranteed_operating_points(yv, pv, yt, pt, ["normal", "a", "b"], ["normal"])
    g = block["points"][1]
    assert g["threshold"] is None
    sens = g["on_test"]["sensitivity"]
    assert sens["value"] is None and "needs at least 59" in sens["reason"]
    assert block["points"][0]["threshold"] is not None  # the naive one always exists


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"delta": 0.0}, "delta"),
        ({"delta": 1.5}, "delta"),
        ({"alpha": 1.0}, "alpha"),
        ({"target": 1.0}, "target_sensitivity"),
        ({"target": 0.0, "metric": "specificity"}, "target_specificity"),
        ({"metric": "ppv"}, "metric"),
        ({"negative_classes": ["healthy"]}, "negative_classes"),
        ({"negative_classes": ["normal", "a"]}, "negative_classes"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs, param):
    rng = np.random.default_rng(7)
    y, p = rng.integers(0, 2, 20), rng.dirichlet([1, 1], 20)
    args = {"negative_classes": ["normal"], **kwargs}
    neg = args.pop("negative_classes")
    with pytest.raises(MedauditError) as err:
        guaranteed_operating_points(y, p, y, p, ["normal", "a"], neg, **args)
    assert err.value.param == param and "\n" not in str(err.value)
