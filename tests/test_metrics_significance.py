"""Paired significance tests: McNemar (exact, mid-p), DeLong (fast vs O(n^2) reference), Holm."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest, norm
from sklearn.metrics import roc_auc_score

from medaudit.metrics.significance import auc_midrank, delong_auc_cov, delong_test, holm, mcnemar_exact


def _pairs(b01: int, b10: int, both_right: int = 7, both_wrong: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Correctness vectors with the given discordant counts (b01: A wrong & B right)."""
    a = [False] * b01 + [True] * b10 + [True] * both_right + [False] * both_wrong
    b = [True] * b01 + [False] * b10 + [True] * both_right + [False] * both_wrong
    return np.array(a), np.array(b)


# -- McNemar ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "b01, b10, p, p_mid",
    [
        (0, 5, 2 / 32, 1 / 32),  # P(X=0) = 1/32 each tail
        (1, 9, 22 / 1024, 12 / 1024),  # P(X<=1) = 11/1024, P(X=1) = 10/1024
        (0, 1, 1.0, 0.5),  # the "4 vs 5 errors, superset" case
        (3, 3, 1.0, 1.0),
        (0, 0, 1.0, 1.0),  # no discordant pairs: no evidence of a difference
    ],
)
def test_mcnemar_hand_computed(b01, b10, p, p_mid):
    a, b = _pairs(b01, b10)
    r = mcnemar_exact(a, b)
    assert (r["b01"], r["b10"], r["n_discordant"]) == (b01, b10, b01 + b10)
    assert r["p_value"] == pytest.approx(p, rel=1e-12)
    assert r["p_mid"] == pytest.approx(p_mid, rel=1e-12)
    # Symmetric in the two models.
    s = mcnemar_exact(b, a)
    assert (s["b01"], s["b10"]) == (b10, b01) and s["p_value"] == pytest.approx(p)


@given(st.integers(0, 40), st.integers(0, 40))
@settings(max_examples=60, deadline=None)
def test_mcnemar_matches_scipy_and_definition(b01, b10):
    r = mcnemar_exact(*_pairs(b01, b10))
    n, k = b01 + b10, min(b01, b10)
    if n == 0:
        assert r["p_value"] == r["p_mid"] == 1.0
        return
    assert r["p_value"] == pytest.approx(binomtest(b10, n, 0.5).pvalue, rel=1e-12)
    # mid-p from its definition: outcomes strictly more extreme + half the observed one, both tails.
    pmf = [math.comb(n, i) / 2**n for i in range(n + 1)]
    mid = min(1.0, 2 * (sum(pmf[:k]) + 0.5 * pmf[k]))
    assert r["p_mid"] == pytest.approx(mid, rel=1e-9, abs=1e-15)
    assert r["p_mid"] <= r["p_value"] + 1e-15


def test_mcnemar_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        mcnemar_exact(np.ones(3, bool), np.ones(4, bool))


# -- DeLong ----------------------------------------------------------------------------
def _slow_delong(y, scores):
    """O(n^2) structural components (DeLong et al. 1988), written independently."""
    y = np.asarray(y).astype(bool)
    k = len(scores)
    m, n = int(y.sum()), int((~y).sum())
    v10 = np.zeros((k, m))
    v01 = np.zeros((k, n))
    aucs = np.zeros(k)
    for r, s in enumerate(scores):
        x, z = s[y], s[~y]
        psi = (x[:, None] > z[None, :]).astype(float) + 0.5 * (x[:, None] == z[None, :])
        aucs[r] = psi.mean()
        v10[r] = psi.mean(axis=1)
        v01[r] = psi.mean(axis=0)
    s10 = (v10 - v10.mean(1, keepdims=True)) @ (v10 - v10.mean(1, keepdims=True)).T / (m - 1)
    s01 = (v01 - v01.mean(1, keepdims=True)) @ (v01 - v01.mean(1, keepdims=True)).T / (n - 1)
    return aucs, s10 / m + s01 / n


@pytest.mark.parametrize("seed", range(5))
def test_delong_fast_matches_slow_reference_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 120))
    y = rng.integers(0, 2, n)
    y[:2], y[2:4] = 1, 0
    # Rounded scores: many ties within and across classes.
    a = np.round(rng.random(n) + 0.6 * y, 1)
    b = np.round(0.5 * a + 0.5 * rng.random(n) + 0.2 * y, 1)
    fast_aucs, fast_cov = delong_auc_cov(y, np.vstack([a, b]))
    slow_aucs, slow_cov = _slow_delong(y, [a, b])
    np.testing.assert_allclose(fast_aucs, slow_aucs, rtol=1e-12)
    np.testing.assert_allclose(fast_cov, slow_cov, rtol=1e-10, atol=1e-15)
    for s, auc in zip([a, b], fast_aucs, strict=True):
        assert auc == pytest.approx(roc_auc_score(y, s), rel=1e-12)
        assert auc_midrank(y, s) == pytest.approx(auc, rel=1e-12)
    r = delong_test(y, a, b)
    var = slow_cov[0, 0] + slow_cov[1, 1] - 2 * slow_cov[0, 1]
    z = (slow_aucs[0] - slow_aucs[1]) / math.sqrt(var)
    assert r["z"] == pytest.approx(z, rel=1e-9)
    assert r["p_value"] == pytest.approx(2 * norm.sf(abs(z)), rel=1e-9)
    half = 1.959963984540054 * math.sqrt(var)
    assert r["ci_low"] == pytest.approx(max(-1, r["diff"] - half), rel=1e-9)
    assert r["ci_high"] == pytest.approx(min(1, r["diff"] + half), rel=1e-9)
    assert r["reason"] is None


def test_delong_identical_models_p_is_one_without_warnings():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = rng.random(300) + 0.3 * y
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = delong_test(y, s, s.copy())
    assert r["p_value"] == 1.0 and r["z"] == 0.0 and r["diff"] == 0.0
    assert r["ci_low"] == r["ci_high"] == 0.0
    assert r["auc_a"] == pytest.approx(roc_auc_score(y, s))


def test_delong_zero_variance_but_different_aucs_is_undefined_not_infinite():
    y = np.array([0, 0, 0, 1, 1, 1])
    perfect = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    constant = np.full(6, 0.5)
    r = delong_test(y, perfect, constant)
    assert (r["auc_a"], r["auc_b"], r["diff"]) == pytest.approx((1.0, 0.5, 0.5))
    assert r["p_value"] is None and r["z"] is None and "variance" in r["reason"]


def test_delong_too_few_positives_keeps_aucs_and_says_why():
    y = np.array([0, 0, 0, 0, 1])
    a = np.array([0.1, 0.2, 0.3, 0.9, 0.8])
    b = np.array([0.1, 0.2, 0.3, 0.4, 0.9])
    r = delong_test(y, a, b)
    assert r["auc_a"] == pytest.approx(roc_auc_score(y, a)) and r["auc_b"] == 1.0
    assert r["p_value"] is None and "at least 2 positive" in r["reason"]
    r = delong_test(np.zeros(5), a, b)
    assert r["auc_a"] is None and r["reason"]


# -- Holm ------------------------------------------------------------------------------
def test_holm_hand_computed():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(0.06, 1*0.04)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.01, None, 0.5]) == [pytest.approx(0.02), None, pytest.approx(0.5)]
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    assert holm([]) == [] and holm([None]) == [None]


@given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
@settings(max_examples=60, deadline=None)
def test_holm_properties(ps):
    adj = holm(ps)
    m = len(ps)
    for p, q in zip(ps, adj, strict=True):
        assert p - 1e-15 <= q <= 1.0
        assert q <= min(1.0, m * p) + 1e-12  # never more conservative than Bonferroni
    order = np.argsort(ps, kind="stable")
    assert all(adj[order[i]] <= adj[order[i + 1]] + 1e-15 for i in range(m - 1))
