"""Recalibration and the extra calibration measures, against scikit-learn, statsmodels, brute-force
loops, hand computations and simulations with known calibration."""

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import special, stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss

from medaudit.errors import MedauditError
from medaudit.metrics import compute_metrics
from medaudit.metrics.recalibration import (
    adaptive_ece,
    apply_platt,
    apply_temperature,
    calibration_slope_intercept,
    classwise_ece,
    equal_mass_bins,
    fit_platt,
    fit_temperature,
    nll,
    recalibrate,
    recalibration_table,
    spiegelhalter_z,
)


def simulate(n, n_classes, rng, sharpen=1.0, scale=1.5):
    """Labels drawn from softmax(z); the model reports softmax(sharpen * z) (1 = calibrated, > 1 over-confident)."""
    z = rng.normal(size=(n, n_classes)) * scale
    truth = special.softmax(z, axis=1)
    y = (truth.cumsum(1) > rng.random((n, 1))).argmax(1)
    return y, special.softmax(sharpen * z, axis=1), z


def ece_loop(conf, correct, groups):
    """ECE over given bin memberships, written plainly: sum_b n_b / n |acc_b - conf_b|."""
    total = 0.0
    for g in np.unique(groups):
        inside = groups == g
        total += inside.sum() / len(conf) * abs(correct[inside].mean() - conf[inside].mean())
    return total


def sklearn_logit_fit(x, y):
    lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=100_000).fit(x[:, None], y)
    return lr.coef_[0, 0], lr.intercept_[0]


# -- measures --------------------------------------------------------------------------------------


def test_nll_matches_sklearn_log_loss():
    rng = np.random.default_rng(0)
    y, p, _ = simulate(500, 4, rng)
    assert nll(y, p) == pytest.approx(log_loss(y, p, labels=range(4)), rel=1e-12)


def test_equal_mass_bins():
    rng = np.random.default_rng(1)
    c = rng.random(103)
    b = equal_mass_bins(c, 10)
    counts = np.bincount(b, minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 103
    assert np.all(np.diff(b[np.argsort(c)]) >= 0)  # bins follow the confidence
    # Without ties they are the rank-order chunks; ties share a bin whatever the input order.
    assert (b == (np.argsort(np.argsort(c)) * 10) // 103).all()
    tied = np.array([0.1, 0.5, 0.5, 0.5, 0.9, 0.2])
    assert equal_mass_bins(tied, 3).tolist() == [0, 1, 1, 1, 2, 0]
    assert equal_mass_bins(tied[::-1], 3).tolist() == [0, 2, 1, 1, 1, 0]


def test_adaptive_ece_hand_case():
    # Binary: top-label confidences 0.6,0.6,0.7,0.9 with 2 equal-mass bins {0.6, 0.6}, {0.7, 0.9}.
    p1 = np.array([0.6, 0.4, 0.7, 0.9])
    y = np.array([1, 1, 0, 1])  # correct: 1, 0, 0, 1
    probs = np.column_stack([1 - p1, p1])
    # bin 1: acc 0.5, conf 0.6 -> 2/4 * 0.1; bin 2: acc 0.5, conf 0.8 -> 2/4 * 0.3
    assert adaptive_ece(y, probs, 2) == pytest.approx(0.2)


def test_adaptive_ece_matches_a_loop():
    rng = np.random.default_rng(2)
    y, p, _ = simulate(700, 3, rng, sharpen=1.8)
    conf, correct = p.max(1), (p.argmax(1) == y).astype(float)
    groups = np.array_split(np.argsort(conf), 15)  # equal-mass bins by sorting (no ties here)
    member = np.empty(700, int)
    for g, idx in enumerate(groups):
        member[idx] = g
    assert adaptive_ece(y, p, 15) == pytest.approx(ece_loop(conf, correct, member))


def test_classwise_ece_matches_a_loop():
    rng = np.random.default_rng(3)
    y, p, _ = simulate(600, 4, rng, sharpen=1.5)
    out = classwise_ece(y, p, 10)
    edges = np.linspace(0, 1, 11)
    for k in range(4):
        member = np.clip(np.searchsorted(edges, p[:, k], side="left") - 1, 0, 9)  # right-closed bins
        assert out["per_class"][k] == pytest.approx(ece_loop(p[:, k], (y == k).astype(float), member))
    assert out["value"] == pytest.approx(np.mean(out["per_class"]))


@pytest.mark.parametrize("sharpen", [1.0, 2.5, 0.5])
def test_slope_intercept_match_sklearn_and_citl_matches_statsmodels(sharpen):
    rng = np.random.default_rng(4)
    y, p, _ = simulate(1500, 2, rng, sharpen=sharpen)
    out = calibration_slope_intercept(y, p[:, 1])
    x = np.log(p[:, 1] / p[:, 0])
    slope, intercept = sklearn_logit_fit(x, y)
    assert out["slope"] == pytest.approx(slope, abs=1e-6) and out["intercept"] == pytest.approx(intercept, abs=1e-6)
    glm = sm.GLM(y, np.ones((len(y), 1)), family=sm.families.Binomial(), offset=x).fit()
    assert out["citl"] == pytest.approx(glm.params[0], abs=1e-8)
    # slope ~ 1 / sharpen: over-confident forecasts (sharpen > 1) get a slope below 1.
    assert out["slope"] == pytest.approx(1 / sharpen, abs=0.12)


def test_slope_undefined_cases():
    p = np.linspace(0.1, 0.9, 20)
    for outcome, prob, words in [
        (np.ones(20), p, "every outcome is 1"),
        ((p > 0.5).astype(float), p, "perfectly separated"),
        (np.r_[np.ones(10), np.zeros(10)], np.full(20, 0.3), "every forecast is the same"),
    ]:
        out = calibration_slope_intercept(outcome, prob)
        assert out["slope"] is None and out["intercept"] is None and words in out["reason"]


def test_spiegelhalter_hand_computation():
    y = np.array([1, 0, 1, 1, 0])
    p = np.array([0.9, 0.2, 0.6, 0.3, 0.1])
    num = sum((yi - pi) * (1 - 2 * pi) for yi, pi in zip(y, p, strict=True))
    den = sum((1 - 2 * pi) ** 2 * pi * (1 - pi) for pi in p)
    out = spiegelhalter_z(y, p)
    assert out["z"] == pytest.approx(num / den**0.5)
    assert out["p_value"] == pytest.approx(2 * stats.norm.sf(abs(num / den**0.5)))
    assert spiegelhalter_z([0, 1], [0.5, 0.5])["z"] is None


def test_spiegelhalter_is_standard_normal_under_calibration():
    rng = np.random.default_rng(5)
    zs = []
    for _ in range(300):
        p = rng.beta(2, 3, 400)
        zs.append(spiegelhalter_z((rng.random(400) < p).astype(int), p)["z"])
    assert stats.kstest(zs, "norm").pvalue > 0.001
    # Over-confident forecasts are flagged.
    p = rng.beta(2, 3, 2000)
    y = (rng.random(2000) < p).astype(int)
    assert spiegelhalter_z(y, special.expit(2.5 * special.logit(p)))["p_value"] < 1e-6


# -- temperature and Platt scaling --------------------------------------------------------------


def test_temperature_on_log_probs_equals_temperature_on_logits():
    rng = np.random.default_rng(6)
    _, _, z = simulate(50, 5, rng)
    p = special.softmax(z, axis=1)
    for t in (0.5, 1.0, 3.0):
        assert apply_temperature(p, t) == pytest.approx(special.softmax(z / t, axis=1), abs=1e-12)
        assert (apply_temperature(p, t).argmax(1) == p.argmax(1)).all()


def test_fit_temperature_is_the_grid_optimum():
    rng = np.random.default_rng(7)
    y, p, _ = simulate(1000, 4, rng, sharpen=1.7)
    fit = fit_temperature(y, p)
    grid = np.arange(1.0, 2.5, 0.001)
    # NLL of softmax(log p / T) written out directly, for every T of the grid at once.
    logp = np.log(p)[None] / grid[:, None, None]
    losses = -special.log_softmax(logp, axis=2)[:, np.arange(len(y)), y].mean(1)
    assert fit["temperature"] == pytest.approx(grid[int(np.argmin(losses))], abs=1e-3)
    assert fit["nll_after"] <= losses.min() + 1e-9 and fit["nll_before"] == pytest.approx(log_loss(y, p))
    assert fit["nll_after"] == pytest.approx(log_loss(y, apply_temperature(p, fit["temperature"])))
    assert not fit["at_bound"]


def test_calibrated_data_gives_temperature_one_slope_one_intercept_zero():
    rng = np.random.default_rng(8)
    y, p, _ = simulate(3000, 3, rng)
    # Spread over 30 simulations at this size: sd(T) 0.026, sd(slope) 0.037, sd(intercept) 0.041.
    assert fit_temperature(y, p)["temperature"] == pytest.approx(1.0, abs=0.1)
    yb, pb, _ = simulate(3000, 2, rng)
    fit = calibration_slope_intercept(yb, pb[:, 1])
    assert fit["slope"] == pytest.approx(1.0, abs=0.15) and fit["intercept"] == pytest.approx(0.0, abs=0.16)


def test_over_confident_data_gets_t_above_one_and_better_test_calibration():
    rng = np.random.default_rng(9)
    yv, pv, _ = simulate(2000, 4, rng, sharpen=2.0)
    yt, pt, _ = simulate(2000, 4, rng, sharpen=2.0)
    summary, after = recalibrate(yv, pv, yt, pt, list("abcd"), n_bootstrap=100)
    t = summary["parameters"]["temperature"]
    assert t == pytest.approx(2.0, abs=0.2)  # the sharpening undone
    m = summary["test"]["metrics"]
    for key in ("nll", "ece", "adaptive_ece", "classwise_ece"):
        assert m[key]["after"]["value"] < m[key]["before"]["value"]
        assert m[key]["change"]["ci_high"] < 0  # the improvement is clear of noise at this size
    assert (after.argmax(1) == pt.argmax(1)).all() and after == pytest.approx(apply_temperature(pt, t))
    assert summary["variant"] == "temperature-scaled" and summary["fitted_on"] == "val"


def test_temperature_at_bound_when_validation_is_all_correct():
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    fit = fit_temperature([0, 1, 0], p)
    assert fit["at_bound"] and fit["temperature"] == pytest.approx(0.01)


def test_platt_matches_sklearn_and_is_applied_to_test():
    rng = np.random.default_rng(10)
    yv, pv, _ = simulate(1500, 2, rng, sharpen=2.0)
    yt, pt, _ = simulate(800, 2, rng, sharpen=2.0)
    fit = fit_platt(yv, pv, ["normal", "pneumonia"])
    slope, intercept = sklearn_logit_fit(np.log(pv[:, 1] / pv[:, 0]), yv)
    assert fit["slope"] == pytest.approx(slope, abs=1e-6) and fit["intercept"] == pytest.approx(intercept, abs=1e-6)
    summary, after = recalibrate(yv, pv, yt, pt, ["normal", "pneumonia"], method="platt", n_bootstrap=50)
    x = np.log(pt[:, 1] / pt[:, 0])
    assert after[:, 1] == pytest.approx(special.expit(intercept + slope * x), abs=1e-6)
    assert after.sum(1) == pytest.approx(1.0) and summary["variant"] == "Platt-scaled"
    # After Platt scaling the test slope is near 1 (it was ~0.5).
    m = summary["test"]["metrics"]
    assert m["slope"]["before"]["value"] < 0.65 and m["slope"]["after"]["value"] == pytest.approx(1.0, abs=0.2)


def test_platt_positive_class_follows_the_negative_class():
    rng = np.random.default_rng(11)
    y, p, _ = simulate(600, 2, rng, sharpen=2.0)
    fit = fit_platt(y, p, ["pneumonia", "normal"], ["normal"])
    assert fit["positive"] == "pneumonia"
    slope, intercept = sklearn_logit_fit(np.log(p[:, 0] / p[:, 1]), (y == 0).astype(int))
    assert fit["slope"] == pytest.approx(slope, abs=1e-6)
    q = apply_platt(p, fit["intercept"], fit["slope"], positive=0)
    assert q[:, 0] == pytest.approx(special.expit(intercept + slope * np.log(p[:, 0] / p[:, 1])), abs=1e-6)


# -- the before/after table ------------------------------------------------------------------------


def test_table_point_values_match_the_standalone_measures():
    rng = np.random.default_rng(12)
    y, p, _ = simulate(900, 3, rng, sharpen=1.6)
    q = apply_temperature(p, 1.6)
    table = recalibration_table(y, p, q, ["normal", "b", "c"], negative_classes=["normal"], n_bins=10,
                                n_bootstrap=0)
    m = table["metrics"]
    assert table["forecast"] == "p(disease (not normal))"
    for tag, probs in (("before", p), ("after", q)):
        assert m["nll"][tag]["value"] == pytest.approx(log_loss(y, probs))
        ref = compute_metrics(y, probs, ["normal", "b", "c"], "multiclass", n_bootstrap=0, ece_bins=10)
        assert m["brier"][tag]["value"] == pytest.approx(brier_score_loss(y, probs, labels=[0, 1, 2]))
        assert m["ece"][tag]["value"] == pytest.approx(ref["ece"]["value"])
        assert m["adaptive_ece"][tag]["value"] == pytest.approx(adaptive_ece(y, probs, 10))
        assert m["classwise_ece"][tag]["value"] == pytest.approx(classwise_ece(y, probs, 10)["value"])
        disease = (y != 0).astype(int)
        fit = calibration_slope_intercept(disease, 1 - probs[:, 0])
        assert m["slope"][tag]["value"] == pytest.approx(fit["slope"])
        assert m["citl"][tag]["value"] == pytest.approx(fit["citl"])
        ref_z = spiegelhalter_z(disease, 1 - probs[:, 0])
        assert table["spiegelhalter"][tag]["z"] == pytest.approx(ref_z["z"])
        assert m["nll"][tag]["ci_low"] is None  # no bootstrap asked for
    for key in m:
        assert m[key]["change"]["value"] == pytest.approx(m[key]["after"]["value"] - m[key]["before"]["value"])


def test_table_bootstrap_is_seeded_and_order_free():
    rng = np.random.default_rng(13)
    y, p, _ = simulate(1200, 2, rng, sharpen=1.5)
    q = apply_temperature(p, 1.5)
    a = recalibration_table(y, p, q, ["a", "b"], n_bootstrap=300, seed=3)
    perm = rng.permutation(len(y))
    assert recalibration_table(y[perm], p[perm], q[perm], ["a", "b"], n_bootstrap=300, seed=3) == a
    b = recalibration_table(y, p, q, ["a", "b"], n_bootstrap=300, seed=4)
    assert b["metrics"]["nll"] != a["metrics"]["nll"]
    # The fitted statistics' intervals are analytic: no seed, and no bootstrap needed.
    no_boot = recalibration_table(y, p, q, ["a", "b"], n_bootstrap=0)
    for key in ("slope", "intercept", "citl"):
        assert a["metrics"][key] == b["metrics"][key] == no_boot["metrics"][key]
        assert a["metrics"][key]["before"]["ci_method"] == "wald-sandwich"
    for row in a["metrics"].values():
        for v in row.values():
            assert v["ci_low"] <= v["value"] <= v["ci_high"]


def test_fitted_intervals_match_statsmodels_sandwich():
    # Four classes, p(disease) of over-confident forecasts: the logistic recalibration is not
    # exact here, which is where the robust (HC0) and model-based intervals differ.
    rng = np.random.default_rng(16)
    y, p, _ = simulate(3000, 4, rng, sharpen=2.0)
    q = apply_temperature(p, 1.7)
    m = recalibration_table(y, p, q, ["a", "b", "normal", "d"], negative_classes=["normal"], n_bootstrap=0,
                            alpha=0.1)["metrics"]
    disease = (y != 2).astype(float)
    for tag, probs in (("before", p), ("after", q)):
        x = special.logit(1 - probs[:, 2])
        joint = sm.GLM(disease, sm.add_constant(x), family=sm.families.Binomial()).fit(cov_type="HC0")
        citl = sm.GLM(disease, np.ones((len(x), 1)), family=sm.families.Binomial(), offset=x).fit(cov_type="HC0")
        for key, fit, j in (("intercept", joint, 0), ("slope", joint, 1), ("citl", citl, 0)):
            lo, hi = fit.conf_int(alpha=0.1)[j]
            assert m[key][tag]["ci_low"] == pytest.approx(lo, abs=1e-6)
            assert m[key][tag]["ci_high"] == pytest.approx(hi, abs=1e-6)


def _paired_refit_bootstrap(x_before, x_after, y, n_boot, rng):
    """Plain (unstratified) paired bootstrap with full Newton refits of (a, b) and the slope-1 a,
    vectorised over resamples and started from statsmodels' full-data fits: slope/intercept/CITL
    change per resample, shape (3, B)."""
    w = rng.multinomial(len(y), np.full(len(y), 1 / len(y)), size=n_boot).T.astype(float)  # (N, B)
    out = []
    for x in (x_before, x_after):
        a0, b0 = sm.GLM(y, sm.add_constant(x), family=sm.families.Binomial()).fit().params
        c0 = sm.GLM(y, np.ones((len(x), 1)), family=sm.families.Binomial(), offset=x).fit().params[0]
        a, b, c = np.full(n_boot, a0), np.full(n_boot, b0), np.full(n_boot, c0)
        for _ in range(20):
            pr = special.expit(a + b * x[:, None])
            r, v = w * (y[:, None] - pr), w * pr * (1 - pr)
            g = np.stack([r.sum(0), x @ r])
            h = np.stack([v.sum(0), x @ v, (x * x) @ v])
            det = h[0] * h[2] - h[1] ** 2
            da, db = (h[2] * g[0] - h[1] * g[1]) / det, (h[0] * g[1] - h[1] * g[0]) / det
            p1 = special.expit(c + x[:, None])
            dc = (w * (y[:, None] - p1)).sum(0) / (w * p1 * (1 - p1)).sum(0)
            a, b, c = a + da, b + db, c + dc
            if max(np.abs(da).max(), np.abs(db).max(), np.abs(dc).max()) < 1e-10:
                break
        out.append(np.stack([b, a, c]))
    return out[1] - out[0]


def test_change_interval_matches_a_paired_refit_bootstrap():
    # The change's interval differences the two fits' influence functions; its width should be
    # that of a paired bootstrap that refits both versions on each resample (Monte Carlo error
    # of a bootstrap SD from 1000 resamples: ~2.2%).
    rng = np.random.default_rng(17)
    y, p, _ = simulate(2000, 4, rng, sharpen=2.0)
    q = apply_temperature(p, 1.7)
    m = recalibration_table(y, p, q, ["a", "b", "normal", "d"], negative_classes=["normal"],
                            n_bootstrap=0)["metrics"]
    disease = (y != 2).astype(float)
    change = _paired_refit_bootstrap(special.logit(1 - p[:, 2]), special.logit(1 - q[:, 2]), disease, 1000, rng)
    for key, boot in zip(("slope", "intercept", "citl"), change, strict=True):
        v = m[key]["change"]
        assert (v["ci_high"] - v["ci_low"]) / (2 * 1.96) == pytest.approx(boot.std(), rel=0.1), key


def _coverage(draw, truth, n_draws, rng):
    """Share of ``n_draws`` 95% intervals (from ``draw(rng)``, a table's metrics) covering ``truth``."""
    hits = dict.fromkeys(truth, 0)
    for _ in range(n_draws):
        m = draw(rng)
        for name, target in truth.items():
            key, tag = name.rsplit("_", 1)
            hits[name] += m[key][tag]["ci_low"] <= target <= m[key][tag]["ci_high"]
    return hits


def _binary_draw(n):
    # Forecasts twice too sharp: the true slope is exactly 1/2 and, by symmetry, intercept and CITL
    # are 0; after temperature 2 the forecasts are calibrated (slope 1, intercept and CITL 0).
    def draw(rng):
        y, p, _ = simulate(n, 2, rng, sharpen=2.0)
        return recalibration_table(y, p, apply_temperature(p, 2.0), ["a", "b"], n_bootstrap=0)["metrics"]
    # (Temperature rescales a binary logit, so the intercept does not move at all: its change is 0
    # with no spread, and no interval coverage to check.)
    truth = {"slope_before": 0.5, "intercept_before": 0.0, "citl_before": 0.0, "slope_after": 1.0,
             "intercept_after": 0.0, "citl_after": 0.0, "slope_change": 0.5, "citl_change": 0.0}
    return draw, truth


def _disease_draw(n, rng):
    # p(disease) of four over-confident classes: the logistic recalibration is only approximate, so
    # the targets are the population fits, taken from 400k samples (their error is ~1/30 of the
    # intervals' half-width at n <= 2000).
    names, t = ["a", "b", "normal", "d"], 1.6
    y, p, _ = simulate(400_000, 4, rng, sharpen=2.0)
    disease = (y != 2).astype(float)
    truth = {}
    for tag, q in (("before", p), ("after", apply_temperature(p, t))):
        for key, v in calibration_slope_intercept(disease, 1 - q[:, 2]).items():
            if key != "reason":
                truth[f"{key}_{tag}"] = v
    for key in ("slope", "intercept", "citl"):
        truth[f"{key}_change"] = truth[f"{key}_after"] - truth[f"{key}_before"]

    def draw(rng_):
        y, p, _ = simulate(n, 4, rng_, sharpen=2.0)
        return recalibration_table(y, p, apply_temperature(p, t), names, negative_classes=["normal"],
                                   n_bootstrap=0)["metrics"]
    return draw, truth


def test_fitted_intervals_cover_the_true_values():
    # 95% intervals over 300 draws: a true coverage of 90% (as the class-stratified bootstrap gave
    # for the CITL change in the four-class case) would fail the binomial test (p ~ 1e-4).
    rng = np.random.default_rng(14)
    for draw, truth in (_binary_draw(300), _disease_draw(500, rng)):
        hits = _coverage(draw, truth, 300, rng)
        for name, h in hits.items():
            assert stats.binomtest(h, 300, 0.95).pvalue > 0.001, (name, h)


@pytest.mark.slow
@pytest.mark.parametrize("n", [150, 2000])
def test_fitted_intervals_cover_the_true_values_slow(n):
    rng = np.random.default_rng(18 + n)
    for draw, truth in (_binary_draw(n), _disease_draw(n, rng)):
        hits = _coverage(draw, truth, 2000, rng)
        for name, h in hits.items():
            assert stats.binomtest(h, 2000, 0.95).pvalue > 0.001, (name, h)


def test_fitted_rows_without_a_fit_are_undefined_with_the_reason():
    rng = np.random.default_rng(19)
    y, p, _ = simulate(200, 3, rng, sharpen=1.5)
    y = np.where(y == 0, 1, y)  # no "normal" sample left: every outcome is "disease"
    m = recalibration_table(y, p, apply_temperature(p, 1.5), ["normal", "b", "c"], negative_classes=["normal"],
                            n_bootstrap=20)["metrics"]
    for key in ("slope", "intercept", "citl"):
        for tag in ("before", "after", "change"):
            v = m[key][tag]
            assert v["value"] is None and v["ci_low"] is None and "every outcome is 1" in v["reason"]
    assert m["nll"]["before"]["value"] is not None and m["nll"]["before"]["ci_low"] is not None


def test_platt_without_a_fit_keeps_the_probabilities():
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    summary, after = recalibrate([0, 0, 0], p, [0, 1, 1], p, ["a", "b"], method="platt", n_bootstrap=0)
    assert summary["test"] is None and "every outcome is 0" in summary["note"] and (after == p).all()


@pytest.mark.parametrize(
    ("call", "param"),
    [
        (lambda y, p: recalibrate(y, p, y, p, list("abc"), method="isotonic"), "recalibration"),
        (lambda y, p: recalibrate(y, p, y, p, list("abc"), method="platt"), "recalibration"),
        (lambda y, p: recalibration_table(y, p, p, list("abc"), n_bins=0), "ece_bins"),
        (lambda y, p: recalibration_table(y, p, p, list("abc"), alpha=1.0), "alpha"),
        (lambda y, p: recalibration_table(y, p, p, list("abc"), n_bootstrap=-1), "n_bootstrap"),
        (lambda y, p: recalibration_table(y, p, p, list("abc"), negative_classes=["healthy"]), "negative_classes"),
        (lambda y, p: apply_temperature(p, 0.0), "temperature"),
    ],
)
def test_bad_arguments_are_one_line_errors(call, param):
    rng = np.random.default_rng(15)
    y, p, _ = simulate(30, 3, rng)
    with pytest.raises(MedauditError) as err:
        call(y, p)
    assert err.value.param == param and "\n" not in str(err.value)


def test_rows_that_do_not_sum_to_one_are_refused():
    with pytest.raises(MedauditError, match="sum to 1"):
        recalibration_table([0, 1], [[0.5, 0.6], [0.2, 0.8]], [[0.5, 0.5], [0.2, 0.8]], ["a", "b"])
