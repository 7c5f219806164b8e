"""Shift tests: KS against scipy, MMD against an O(n²) loop, EM on a simulated prior shift, and the
verdict on planted covariate shift, planted label shift and no shift (false-alarm rate by simulation)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from medaudit.metrics.shift import (
    bbsd_test,
    em_prior_adjustment,
    ks_statistic,
    label_shift,
    mmd2_unbiased,
    mmd_test,
    rbf_kernel_matrix,
    reweighted_reference,
    shift_tests,
)

CLASSES = ["a", "b", "c"]
MEANS = np.array([[1.6, 0.0], [-0.8, 1.4], [-0.8, -1.4]])  # 3 classes in the first 2 of D dims


def _world(n, prior, rng, *, d=8, blur=0.0):
    """Gaussian classes; probabilities are the exact Bayes posteriors under a uniform training prior.

    ``blur`` > 0 shrinks the class signal towards 0 and adds noise (what blurring does to features):
    p(x|y) changes, the class mix does not.
    """
    y = rng.choice(3, size=n, p=prior)
    x = rng.normal(size=(n, d))
    x[:, :2] += MEANS[y] * (1.0 - blur)
    x[:, 2:] *= 1.0 + blur
    logits = -0.5 * ((x[:, None, :2] - MEANS[None]) ** 2).sum(-1)
    p = np.exp(logits - logits.max(1, keepdims=True))
    return x, p / p.sum(1, keepdims=True), y


UNIFORM = [1 / 3, 1 / 3, 1 / 3]


def test_ks_statistic_and_bbsd_p_values_match_scipy():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=57), rng.normal(0.3, 1.2, size=83)
    assert ks_statistic(x, y) == pytest.approx(stats.ks_2samp(x, y).statistic, abs=1e-12)
    # by hand: the largest gap of the two ECDFs over the pooled points
    grid = np.concatenate([x, y])
    by_hand = max(abs((x <= t).mean() - (y <= t).mean()) for t in grid)
    assert ks_statistic(x, y) == pytest.approx(by_hand, abs=1e-12)
    _, pa, _ = _world(120, UNIFORM, rng)
    _, pb, _ = _world(90, [0.6, 0.2, 0.2], rng)
    out = bbsd_test(pa, pb, CLASSES)
    ps = [stats.ks_2samp(pa[:, j], pb[:, j]).pvalue for j in range(3)]
    assert out["p_value"] == pytest.approx(min(1.0, 3 * min(ps)))
    assert [out["per_class"][c]["p_value"] for c in CLASSES] == pytest.approx(ps)
    # binary: one column tested (the other is 1 - it), no Bonferroni factor
    b2 = bbsd_test(np.c_[1 - pa[:, 0], pa[:, 0]], np.c_[1 - pb[:, 0], pb[:, 0]], ["x", "y"])
    assert list(b2["per_class"]) == ["y"]
    assert b2["p_value"] == pytest.approx(stats.ks_2samp(pa[:, 0], pb[:, 0]).pvalue)


def test_mmd_matches_a_quadratic_loop():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(23, 3))
    n = 9
    kernel, s = rbf_kernel_matrix(z)
    dists = [np.linalg.norm(z[i] - z[j]) for i in range(23) for j in range(i + 1, 23)]
    assert s == pytest.approx(np.median(dists))

    def k(a, b):
        return np.exp(-np.sum((a - b) ** 2) / (2 * s * s))

    xs, ys = z[:n], z[n:]
    m = len(ys)
    sxx = sum(k(xs[i], xs[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    syy = sum(k(ys[i], ys[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    sxy = sum(k(a, b) for a in xs for b in ys) / (n * m)
    assert mmd2_unbiased(kernel, np.arange(23) < n) == pytest.approx(sxx + syy - 2 * sxy, rel=1e-10)
    # many assignments at once = one at a time
    masks = np.stack([rng.permutation(np.arange(23) < n) for _ in range(5)], axis=1)
    assert mmd2_unbiased(kernel, masks) == pytest.approx([mmd2_unbiased(kernel, masks[:, b]) for b in range(5)])


def test_mmd_test_subsamples_and_is_seeded():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(300, 40)), rng.normal(0.4, 1.0, size=(250, 40))
    out = mmd_test(a, b, max_per_side=100, n_permutations=99, seed=5)
    assert (out["n_reference"], out["n_cohort"], out["pca_dims"]) == (100, 100, 32)
    assert out["significant"] and out["p_value"] == pytest.approx(0.01)
    assert mmd_test(a, b, max_per_side=100, n_permutations=99, seed=5) == out


def test_em_recovers_a_simulated_prior_shift():
    rng = np.random.default_rng(4)
    target = np.array([0.6, 0.3, 0.1])
    _, p, _ = _world(4000, target, rng)
    pi, _ = em_prior_adjustment(p, UNIFORM)
    assert np.abs(pi - target).max() < 0.03
    # the naive mean of the posteriors is pulled towards the training prior; EM is not
    assert np.abs(p.mean(0) - target).max() > 2 * np.abs(pi - target).max()
    # no shift: EM stays near the reference prior
    _, p0, y0 = _world(3000, UNIFORM, rng)
    ls = label_shift(p0, y0, CLASSES, y_new=y0)
    assert ls["total_variation"] < 0.04
    assert ls["observed_prevalence"]["a"] == pytest.approx((y0 == 0).mean())


def test_reweighted_reference_follows_the_target_prevalence():
    rng = np.random.default_rng(5)
    y = rng.choice(3, size=6000, p=UNIFORM)
    keep = reweighted_reference(y, [0.6, 0.3, 0.1], np.bincount(y) / y.size, seed=1)
    share = np.bincount(y[keep], minlength=3) / keep.size
    assert np.abs(share - [0.6, 0.3, 0.1]).max() < 0.03
    assert len(np.unique(keep)) == keep.size


def _run(seed, n_ref, n_new, *, prior_new=UNIFORM, blur=0.0, n_perm=200):
    rng = np.random.default_rng(seed)
    fr, pr, yr = _world(n_ref, UNIFORM, rng)
    fn, pn, yn = _world(n_new, prior_new, rng, blur=blur)
    return shift_tests(pr, pn, yr, CLASSES, features_ref=fr, features_new=fn, y_new=yn, seed=seed,
                       n_permutations=n_perm)


def test_planted_covariate_shift_is_detected_and_named():
    out = _run(10, 400, 300, blur=0.5)
    assert out["verdict"] == "covariate shift", out["explanation"]
    assert out["mmd"]["significant"] and out["bbsd"]["significant"]


def test_planted_label_shift_is_detected_and_named():
    out = _run(11, 600, 400, prior_new=[0.75, 0.15, 0.1])
    assert out["verdict"] == "label shift", out["explanation"]
    est = out["label_shift"]["prevalence"]
    assert est["a"] == pytest.approx(0.75, abs=0.06)
    assert out["reweighted"]["n"] >= 50


def test_same_distribution_is_no_shift():
    out = _run(12, 300, 300)
    assert out["verdict"] == "no shift detected", out["explanation"]
    assert out["reweighted"] is None


def _false_alarm_rate(seeds, n, n_perm):
    flagged = [_run(s, n, n, n_perm=n_perm)["verdict"] != "no shift detected" for s in seeds]
    return float(np.mean(flagged))


def test_one_distribution_is_flagged_in_about_alpha_of_seeds():
    # 60 seeds at alpha 0.05: a rate above 0.15 has binomial probability < 0.01 if the true rate is 0.05
    assert _false_alarm_rate(range(100, 160), 120, 99) <= 0.15


@pytest.mark.slow
def test_one_distribution_false_alarm_rate_large():
    # 300 seeds: the 99% binomial upper limit of a 0.05 rate is about 0.085
    assert _false_alarm_rate(range(1000, 1300), 200, 199) <= 0.085


def test_pca_projection_matches_the_svd():
    from medaudit.metrics.shift import pca_project

    rng = np.random.default_rng(7)
    for d in (6, 40):  # fewer and more dimensions than samples
        x, y = rng.normal(size=(15, d)) * np.arange(1, d + 1), rng.normal(size=(10, d))
        xp, yp, k = pca_project(x, y, dims=4)
        pooled = np.concatenate([x, y])
        _, _, vt = np.linalg.svd(pooled - pooled.mean(0), full_matrices=False)
        ref = (pooled - pooled.mean(0)) @ vt[:4].T
        # components are defined up to sign
        np.testing.assert_allclose(np.abs(np.concatenate([xp, yp])), np.abs(ref), atol=1e-8)
        assert k == 4
