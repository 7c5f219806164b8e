"""Paired significance tests for comparing two models on the same samples.

* :func:`mcnemar_exact` – exact (binomial) McNemar test on paired correctness, with mid-p.
* :func:`delong_auc_cov` / :func:`delong_test` – DeLong's test for two correlated AUCs,
  using the O(n log n) midrank algorithm of Sun & Xu (2014).
* :func:`paired_bootstrap_diff` – percentile CIs of metric differences, with the same
  resampled indices for both models (vectorised over resamples).
* :func:`holm` – Holm's step-down adjustment of a family of p-values.

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
import warnings
from collections.abc import Sequence

import numpy as np

# Relative tolerance under which the variance of an AUC difference counts as zero
# (identical scores give var_a + var_b - 2 cov that is 0 only up to rounding).
_VAR_RTOL = 1e-12
# Resample-by-sample weight matrices are built in chunks of at most this many cells.
_CHUNK_CELLS = 4_000_000


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
    from scipy.stats import binom, binomtest

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
    """
    from scipy.stats import rankdata

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
    from scipy.stats import rankdata

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
    from scipy.stats import norm

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


# -- paired bootstrap ----------------------------------------------------------------
def _indicators(y: np.ndarray, n_classes: int) -> np.ndarray:
    """(N,) labels -> (N, C) bool one-hot; (N, K) 0/1 is returned as bool."""
    y = np.asarray(y)
    if y.ndim == 2:
        return y.astype(bool)
    return y[:, None] == np.arange(n_classes)[None, :]


def _weights(rng: np.random.Generator, n_boot: int, strata: list[np.ndarray], n: int) -> np.ndarray:
    """(n_boot, N) counts of how often each sample is drawn; sizes of strata are kept."""
    w = np.zeros((n_boot, n), dtype=np.float64)
    rows = np.arange(n_boot)[:, None] * n
    for members in strata:
        draw = members[rng.integers(0, members.size, size=(n_boot, members.size))]
        w += np.bincount((draw + rows).ravel(), minlength=n_boot * n).reshape(n_boot, n)
    return w


SCALAR_DIFFS = ("accuracy", "balanced_accuracy", "macro_f1", "missed_disease_rate")
PER_CLASS_DIFFS = ("recall", "precision", "specificity")


def _metrics(w: np.ndarray, yt: np.ndarray, yp: np.ndarray, correct: np.ndarray, f1_cols: np.ndarray,
             missed: np.ndarray | None = None, disease: np.ndarray | None = None,
             multilabel: bool = False) -> dict[str, np.ndarray]:
    """Weighted metrics for each row of weights ``w`` (B, N).

    Scalars (B,): accuracy, balanced_accuracy (mean recall over present classes; multilabel:
    mean of (sensitivity + specificity) / 2 over labels), macro_f1 (over ``f1_cols``) and, with
    ``missed``/``disease`` (N,) 0/1, missed_disease_rate. Per class (B, C): recall, precision,
    specificity. Undefined cells are NaN.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        out: dict[str, np.ndarray] = {"accuracy": (w @ correct) / w.sum(axis=1)}
        tp = w @ (yt & yp).astype(np.float64)
        fp = w @ (~yt & yp).astype(np.float64)
        fn = w @ (yt & ~yp).astype(np.float64)
        tn = w @ (~yt & ~yp).astype(np.float64)
        f1 = 2 * tp / (2 * tp + fp + fn)
        out["recall"] = tp / (tp + fn)
        out["precision"] = tp / (tp + fp)
        out["specificity"] = tn / (tn + fp)
        nan_row = np.full(w.shape[0], np.nan)
        out["macro_f1"] = np.nanmean(f1[:, f1_cols], axis=1) if f1_cols.any() else nan_row
        per_class_ba = (out["recall"] + out["specificity"]) / 2 if multilabel else out["recall"]
        defined = np.isfinite(per_class_ba[:, f1_cols]).any(axis=1) if f1_cols.any() else np.zeros(w.shape[0], bool)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
            ba = np.nanmean(per_class_ba[:, f1_cols], axis=1) if f1_cols.any() else nan_row
        out["balanced_accuracy"] = np.where(defined, ba, np.nan)
        out["missed_disease_rate"] = (w @ missed) / (w @ disease) if missed is not None else nan_row
    return out


def paired_bootstrap_diff(
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    class_names: Sequence[str],
    *,
    negative_classes: Sequence[str] = (),
    n_bootstrap: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict:
    """Percentile bootstrap CIs of A - B for the headline metrics that predicted labels define.

    Both models are evaluated on the *same* resampled indices in every replicate, so the
    interval reflects the paired design. Single-label tasks resample within each true
    class (stratified: class supports are fixed, so every recall stays defined);
    multilabel tasks resample samples as a whole. AUC differences need scores and are
    DeLong's (:func:`delong_test`).

    Parameters
    ----------
    y_true : ndarray, shape (N,) int labels, or (N, K) 0/1 for multilabel
    pred_a, pred_b : ndarray, same shape as ``y_true``
        Predicted labels (or 0/1 label sets) of models A and B.
    class_names : sequence of str, length C (or K)
    negative_classes : sequence of str
        "Healthy" classes (single-label): adds ``missed_disease_rate``, the share of disease
        samples predicted as one of them.
    n_bootstrap : int
        Number of resamples (B); vectorised in chunks of bounded memory.
    seed : int
        Seed of the numpy Generator (deterministic output).
    alpha : float
        1 - confidence level.

    Returns
    -------
    dict
        ``{"accuracy": d, "balanced_accuracy": d, "macro_f1": d, "missed_disease_rate": d,
        "recall": {class: d}, "precision": {class: d}, "specificity": {class: d},
        "settings": {...}}`` where each ``d`` is ``{"diff", "ci_low", "ci_high", "reason"}``.
        Macro-F1 and balanced accuracy average the classes present in ``y_true``; recall of
        a class absent from ``y_true`` is None with a reason; ``missed_disease_rate`` is None
        with a reason without negative classes. Resamples where a value is undefined (a class
        never predicted, for precision) are dropped for that value.
    """
    y_true, pred_a, pred_b = (np.asarray(v) for v in (y_true, pred_a, pred_b))
    c = len(class_names)
    n = y_true.shape[0]
    multilabel = y_true.ndim == 2
    yt, ya, yb = (_indicators(v, c) for v in (y_true, pred_a, pred_b))
    ca = (ya == yt).all(axis=1).astype(np.float64)
    cb = (yb == yt).all(axis=1).astype(np.float64)
    support = yt.sum(axis=0)
    present = support > 0
    if multilabel or n == 0:
        strata = [np.arange(n)] if n else []
    else:
        strata = [np.flatnonzero(y_true == k) for k in range(c) if present[k]]
    neg_idx = [list(class_names).index(x) for x in negative_classes] if not multilabel else []
    disease = missed_a = missed_b = None
    if neg_idx and n:
        disease = (~np.isin(y_true, neg_idx)).astype(np.float64)
        missed_a, missed_b = (disease * np.isin(p, neg_idx) for p in (pred_a, pred_b))

    def diffs(w: np.ndarray) -> dict[str, np.ndarray]:
        ma = _metrics(w, yt, ya, ca, present, missed_a, disease, multilabel)
        mb = _metrics(w, yt, yb, cb, present, missed_b, disease, multilabel)
        return {k: ma[k] - mb[k] for k in ma}

    point = {k: v[0] for k, v in diffs(np.ones((1, n))).items()}
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in point}
    for start in range(0, n_bootstrap if n else 0, chunk):
        for k, v in diffs(_weights(rng, min(chunk, n_bootstrap - start), strata, n)).items():
            parts[k].append(v)
    boots = {k: np.concatenate(v, axis=0) if v else np.empty((0,) + np.shape(point[k])) for k, v in parts.items()}

    def interval(est: float, samples: np.ndarray, what: str) -> dict:
        ok = samples[np.isfinite(samples)]
        if not math.isfinite(est):
            return {"diff": None, "ci_low": None, "ci_high": None, "reason": f"{what} is undefined on these samples"}
        if n_bootstrap == 0:
            return {"diff": float(est), "ci_low": None, "ci_high": None, "reason": "bootstrap disabled (0 resamples)"}
        if ok.size < max(2, samples.size // 2):
            return {"diff": float(est), "ci_low": None, "ci_high": None,
                    "reason": f"{what} is undefined in most bootstrap resamples"}
        lo, hi = np.percentile(ok, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        return {"diff": float(est), "ci_low": float(lo), "ci_high": float(hi), "reason": None}

    out = {k: interval(point[k], boots[k], k.replace("_", "-")) for k in SCALAR_DIFFS}
    if disease is None:
        why = ("multilabel task" if multilabel else "no samples" if n == 0 and neg_idx
               else "no negative (healthy) class configured")
        out["missed_disease_rate"] = {"diff": None, "ci_low": None, "ci_high": None,
                                      "reason": f"missed-disease rate: {why}"}
    for metric in PER_CLASS_DIFFS:
        out[metric] = {}
        for k, name in enumerate(class_names):
            if not present[k] and metric != "specificity":
                out[metric][name] = {"diff": None, "ci_low": None, "ci_high": None,
                                     "reason": f"no samples of class '{name}' in y_true"}
            else:
                out[metric][name] = interval(point[metric][k], boots[metric][:, k], f"{metric} of '{name}'")
    out["settings"] = {
        "n_bootstrap": int(n_bootstrap),
        "seed": int(seed),
        "confidence": 1 - alpha,
        "method": "paired percentile bootstrap" + ("" if multilabel else ", stratified by true class"),
    }
    return out
