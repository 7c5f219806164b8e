"""Paired significance tests for comparing two models on the same samples.

* :func:`mcnemar_exact` – exact (binomial) McNemar test on paired correctness, with mid-p.
* :func:`delong_auc_cov` / :func:`delong_test` – DeLong's test for two correlated AUCs,
  using the O(n log n) midrank algorithm of Sun & Xu (2014).
* :func:`holm` – Holm's step-down adjustment of a family of p-values.

Percentile intervals of metric differences (same resamples for both models) are
:func:`medaudit.metrics.paired.paired_bootstrap_diff`, on the one resampling engine.

All functions are pure functions of arrays. Undefined results are ``None`` plus a
``reason`` string; nothing returns NaN.

References
----------
E. R. DeLong, D. M. DeLong, D. L. Clarke-Pearson (1988). Comparing the areas under two
or more correlated receiver operating characteristic curves: a nonparametric approach.
Biometrics 44(3), 837-845.
X. Sun, W. Xu (2014). Fast implementation of DeLong's algorithm for comparing the areas
under correlated receiver operating characteristic curves. IEEE Signal Process. Lett.
21(11), 1389-1393.
M. W. Fagerland, S. Lydersen, P. Laake (2013). The McNemar test for binary matched-pairs
data: mid-p and asymptotic are better than exact conditional. BMC Med. Res. Methodol. 13:91.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import binom, binomtest, norm, rankdata

# Relative tolerance under which the variance of an AUC difference counts as zero
# (identical scores give var_a + var_b - 2 cov that is 0 only up to rounding).
_VAR_RTOL = 1e-12


def _f(x: float | None) -> float | None:
    """Plain Python float (JSON-safe), or None for None/NaN/inf."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


# -- McNemar -------------------------------------------------------------------------
def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """Exact two-sided McNemar test on paired correctness, with the mid-p value.

    Parameters
    ----------
    correct_a, correct_b : ndarray of bool, shape (N,)
        Whether model A / model B classified each sample correctly (same sample order).

    Returns
    -------
    dict
        ``b01``: samples A got wrong and B got right; ``b10``: A right and B wrong;
        ``n_discordant``; ``p_value``: two-sided exact binomial test of b10 out of
        ``b01 + b10`` against 0.5 (:func:`scipy.stats.binomtest`); ``p_mid``: mid-p
        (exact p minus the probability of the observed count, Fagerland et al. 2013).
        With no discordant pairs both p-values are 1.0 (the models agree on every sample's
        correctness; there is no evidence of a difference).
    """
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"correct_a and correct_b must be 1-D of equal length, got {a.shape} and {b.shape}")
    b01 = int(np.sum(~a & b))
    b10 = int(np.sum(a & ~b))
    n = b01 + b10
    if n == 0:
        p, p_mid = 1.0, 1.0
    else:
        p = float(binomtest(b10, n, 0.5, alternative="two-sided").pvalue)
        k = min(b01, b10)
        # Two-sided mid-p for the symmetric null: 2 * (P(X < k) + P(X = k) / 2).
        p_mid = float(min(1.0, 2.0 * binom.cdf(k - 1, n, 0.5) + binom.pmf(k, n, 0.5)))
    return {"b01": b01, "b10": b10, "n_discordant": n, "p_value": p, "p_mid": p_mid}


# -- DeLong --------------------------------------------------------------------------
def auc_midrank(y_true: np.ndarray, score: np.ndarray) -> float:
    """AUC (Mann-Whitney, ties count one half) of one scorer; needs >= 1 positive and negative.

    Parameters
    ----------
    y_true : ndarray, shape (N,), 1 = positive
    score : ndarray of float, shape (N,)

    Returns
    -------
    float
        The AUC in [0, 1] (midranks; equal to ``sklearn.metrics.roc_auc_score``).

    Raises
    ------
    ValueError
        If there are no positives or no negatives.
    """
    y = np.asarray(y_true).astype(bool)
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        raise ValueError(f"AUC needs positives and negatives (got {m} and {n})")
    r = rankdata(np.asarray(score, dtype=np.float64))
    return float((r[y].sum() - m * (m + 1) / 2.0) / (m * n))


def delong_auc_cov(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of k scorers on the same samples and their DeLong covariance matrix.

    Fast midrank algorithm of Sun & Xu (2014): O(k N log N). Ties count one half.

    Parameters
    ----------
    y_true : ndarray, shape (N,)
        1 (or True) for positives, 0 for negatives.
    scores : ndarray of float, shape (k, N) or (N,)
        Higher score = more likely positive.

    Returns
    -------
    aucs : ndarray, shape (k,)
    cov : ndarray, shape (k, k)
        DeLong estimate of the covariance of the AUC estimates,
        ``S10 / m + S01 / n`` for m positives and n negatives.

    Raises
    ------
    ValueError
        If there are fewer than 2 positives or 2 negatives (the variance needs both).
    """
    y = np.asarray(y_true).astype(bool)
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if s.shape[1] != y.shape[0]:
        raise ValueError(f"scores have {s.shape[1]} samples, y_true has {y.shape[0]}")
    pos, neg = s[:, y], s[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        raise ValueError(f"DeLong needs at least 2 positives and 2 negatives (got {m} and {n})")
    tx = rankdata(pos, axis=1)  # midranks within positives
    ty = rankdata(neg, axis=1)  # midranks within negatives
    tz = rankdata(np.concatenate([pos, neg], axis=1), axis=1)  # midranks overall
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    v10 = (tz[:, :m] - tx) / n  # per positive: share of negatives it outranks
    v01 = 1.0 - (tz[:, m:] - ty) / m  # per negative: share of positives that outrank it
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def delong_test(y_true: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, *, alpha: float = 0.05) -> dict:
    """DeLong's test of AUC(A) = AUC(B) on the same samples, with a CI of the difference.

    Parameters
    ----------
    y_true : ndarray, shape (N,)
        Binary truth (1 = positive).
    score_a, score_b : ndarray of float, shape (N,)
        Scores of the two models for the positive class.
    alpha : float
        1 - confidence level of the interval of ``diff = auc_a - auc_b``.

    Returns
    -------
    dict
        ``auc_a``, ``auc_b``, ``diff``, ``se``, ``ci_low``, ``ci_high`` (normal interval,
        clipped to [-1, 1]), ``z``, ``p_value`` (two-sided), ``reason`` (None unless a value
        is undefined). When the variance of the difference is zero and the AUCs are equal
        (e.g. identical models) the result is ``z = 0, p = 1`` with a zero-width interval;
        when it is zero but the AUCs differ (e.g. two perfectly separating or constant
        scorers), ``z`` and ``p_value`` are None with a reason.
    """
    out = {"auc_a": None, "auc_b": None, "diff": None, "se": None, "ci_low": None, "ci_high": None,
           "z": None, "p_value": None, "reason": None}
    y = np.asarray(y_true).astype(bool)
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        if m >= 1 and n >= 1:  # the AUCs exist, only their variance does not
            a, b = auc_midrank(y, score_a), auc_midrank(y, score_b)
            out.update(auc_a=a, auc_b=b, diff=a - b)
        out["reason"] = f"DeLong needs at least 2 positive and 2 negative samples (got {m} and {n})"
        return out
    aucs, cov = delong_auc_cov(y, np.vstack([score_a, score_b]))
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    out.update(auc_a=_f(aucs[0]), auc_b=_f(aucs[1]), diff=_f(diff))
    if var <= _VAR_RTOL * float(cov[0, 0] + cov[1, 1]) or var <= 0.0:
        if abs(diff) <= 1e-12:
            out.update(se=0.0, ci_low=0.0, ci_high=0.0, z=0.0, p_value=1.0, diff=0.0)
        else:
            out["se"] = 0.0
            out["reason"] = "variance of the AUC difference is zero (scores separate or tie perfectly); no test"
        return out
    se = math.sqrt(var)
    z = diff / se
    q = float(norm.ppf(1.0 - alpha / 2.0))
    out.update(se=se, z=z, p_value=float(min(1.0, 2.0 * norm.sf(abs(z)))),
               ci_low=max(-1.0, diff - q * se), ci_high=min(1.0, diff + q * se))
    return out


# -- Holm ----------------------------------------------------------------------------
def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm step-down adjusted p-values (family-wise error control).

    Parameters
    ----------
    p_values : sequence of float or None
        None entries (undefined tests) are skipped and stay None; the family size m is
        the number of defined p-values.

    Returns
    -------
    list of float or None, same length and order as the input.
    """
    idx = [i for i, p in enumerate(p_values) if p is not None]
    m = len(idx)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda j: p_values[j])):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        out[i] = running
    return out
