"""Confidence intervals: Wilson score intervals, stratified bootstrap weights, value objects.

A *value object* is the JSON dict of ``docs/report-schema.md``::

    {"value": v, "ci_low": lo, "ci_high": hi, "ci_method": "wilson"|"bootstrap"|None, "reason": None}

Undefined quantities are never 0: their value is ``None`` and ``reason`` says why.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from statistics import NormalDist

import numpy as np

from medaudit.errors import MedauditError


def wilson_interval(k, n, alpha: float = 0.05):
    """Wilson (1927) score interval for a binomial proportion ``k / n``.

    Parameters
    ----------
    k, n : int or array_like of int
        Successes and trials (broadcast together). ``0 <= k <= n``.
    alpha : float
        1 - confidence level (0.05 gives a 95 % interval).

    Returns
    -------
    (low, high) : floats for scalar input, else two float64 arrays of the broadcast shape.
        ``nan`` where ``n == 0`` (the proportion is undefined).

    Notes
    -----
    ``(k + z²/2) / (n + z²) ± z / (n + z²) * sqrt(k (n - k) / n + z² / 4)``, no continuity
    correction (Newcombe 1998, method 3). Newcombe's worked example 81/263 gives 0.2553-0.3662.
    """
    if not 0.0 < alpha < 1.0:
        raise MedauditError(f"wilson_interval: alpha must be in (0, 1), got {alpha}")
    k_arr = np.asarray(k, dtype=np.float64)
    n_arr = np.asarray(n, dtype=np.float64)
    if np.any(k_arr < 0) or np.any(k_arr > n_arr):
        raise MedauditError("wilson_interval: need 0 <= k <= n for every pair")
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    z2 = z * z
    with np.errstate(invalid="ignore", divide="ignore"):
        center = (k_arr + z2 / 2.0) / (n_arr + z2)
        half = z / (n_arr + z2) * np.sqrt(k_arr * (n_arr - k_arr) / n_arr + z2 / 4.0)
        # At k = 0 (k = n) the bound is exactly 0 (1); the formula leaves ~1e-17 rounding,
        # which would put the estimate outside its own interval.
        low = np.where(k_arr == 0, 0.0, np.clip(center - half, 0.0, 1.0))
        high = np.where(k_arr == n_arr, 1.0, np.clip(center + half, 0.0, 1.0))
        low = np.where(n_arr > 0, low, np.nan)
        high = np.where(n_arr > 0, high, np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


# -- value objects ------------------------------------------------------------------------


def undefined(reason: str, *, k: int | None = None, n: int | None = None) -> dict:
    """Value object of an undefined metric (``value`` None, ``reason`` set).

    Parameters
    ----------
    reason : str
        Why the value is undefined, in plain words.
    k, n : int, optional
        Counts of a proportion, copied when ``n`` is given.

    Returns
    -------
    dict
    """
    out = {"value": None, "ci_low": None, "ci_high": None, "ci_method": None, "reason": reason}
    if n is not None:
        out["k"], out["n"] = k, n
    return out


def proportion(k: int, n: int, reason_if_empty: str, alpha: float = 0.05) -> dict:
    """Value object of ``k / n`` with its Wilson interval and ``k``/``n``; undefined when ``n == 0``.

    Parameters
    ----------
    k, n : int
        Successes and trials.
    reason_if_empty : str
        The ``reason`` when ``n == 0``.
    alpha : float
        1 - confidence level.

    Returns
    -------
    dict
    """
    k, n = int(k), int(n)
    if n == 0:
        return undefined(reason_if_empty, k=k, n=n)
    low, high = wilson_interval(k, n, alpha)
    return {"value": k / n, "ci_low": low, "ci_high": high, "ci_method": "wilson", "reason": None, "k": k, "n": n}


def _num(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def recentred_ci(ci: np.ndarray, samples: np.ndarray, point: np.ndarray, lower: float = 0.0) -> np.ndarray:
    """Shift a percentile interval by the bootstrap's median bias, ``median(samples) - point``.

    For statistics that resampling biases upward, such as ECE (a resample puts fewer distinct
    forecasts in each bin, so bin gaps grow), the plain percentile interval can lie entirely
    above the estimate. Removing the estimated bias keeps the interval's width and always
    contains the point (the median lies between the percentiles); ``lower`` clips it.

    Parameters
    ----------
    ci : ndarray, shape (2, M)
        From :func:`percentile_ci`.
    samples : ndarray, shape (B, M)
    point : ndarray, shape (M,)
    lower : float
        Floor of the shifted interval.

    Returns
    -------
    ndarray, shape (2, M)
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.shape[0] == 0:
        return ci
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns have no interval anyway
        bias = np.nanmedian(samples, axis=0) - np.asarray(point, dtype=np.float64)
    return np.maximum(ci - bias, lower)


def estimate(value: float, ci: tuple[float, float] | None, reason_if_nan: str,
             method: str = "bootstrap", *, ci_reason: str | None = None) -> dict:
    """Value object of a bootstrapped statistic; ``value`` NaN means undefined (``reason_if_nan``).

    Parameters
    ----------
    value : float
    ci : (float, float) or None
        Interval; None or non-finite bounds give a value without an interval.
    reason_if_nan : str
    method : str
        The ``ci_method`` written with an interval.
    ci_reason : str, optional
        Why the interval is withheld (see :func:`interval_withheld`): the value is kept, the
        bounds and method are None and ``ci_reason`` says why.

    Returns
    -------
    dict
    """
    if value is None or not np.isfinite(value):
        return undefined(reason_if_nan)
    if ci_reason is not None:
        return {"value": float(value), "ci_low": None, "ci_high": None, "ci_method": None, "reason": None,
                "ci_reason": ci_reason}
    if ci is None or not (np.isfinite(ci[0]) and np.isfinite(ci[1])):
        return {"value": float(value), "ci_low": None, "ci_high": None, "ci_method": None, "reason": None}
    return {
        "value": float(value),
        "ci_low": _num(ci[0]),
        "ci_high": _num(ci[1]),
        "ci_method": method,
        "reason": None,
    }


# A bootstrap interval is withheld below these counts (docs/gates.md, "Intervals from few samples").
# The count is the statistic's governing count: the samples of the smallest group it is computed
# from (a class's positives for its F1, min(positives, negatives) for its AUC, the smallest class
# for a macro average); see medaudit.metrics.summary.
MIN_BOOTSTRAP_N = 10
# A zero-width interval (every resample, bar at most 2.5% at each end, gave one value) is
# reported only from this many samples: with m samples that all came out "right" the 95% upper
# bound on the rate of wrong ones is about 3/m (rule of three), 0.1 at m = 30; below that the
# width of zero hides a gap larger than the margins gates test.
MIN_DEGENERATE_N = 30


def interval_withheld(ci: tuple[float, float] | None, count: int, what: str) -> str | None:
    """Why a bootstrap interval must not be reported (so that a gate on it fails closed), or None.

    Parameters
    ----------
    ci : (float, float) or None
        The percentile interval; None or non-finite bounds mean there is none to withhold.
    count : int
        The governing count of the statistic (see :data:`MIN_BOOTSTRAP_N`).
    what : str
        What ``count`` counts, in words, e.g. ``"3 samples of class 'covid'"``.

    Returns
    -------
    str or None
        None when the interval stands; else the reason: fewer than :data:`MIN_BOOTSTRAP_N`
        samples, or a zero-width interval from fewer than :data:`MIN_DEGENERATE_N`.

    Notes
    -----
    The percentile bootstrap resamples the observed samples only. From a handful of them it has
    few distinct resamples and no way to show values the sample did not contain: one image gives
    [v, v] whatever the model. A zero-width interval from many samples (perfect separation of
    100 per class) is kept: the data do pin the value down to within about 3/m.
    """
    if ci is None or not (np.isfinite(ci[0]) and np.isfinite(ci[1])):
        return None
    count = int(count)
    if count < MIN_BOOTSTRAP_N:
        return f"no bootstrap interval from {what} (fewer than {MIN_BOOTSTRAP_N})"
    low, high = float(ci[0]), float(ci[1])
    if high - low <= 1e-12 * max(1.0, abs(high)) and count < MIN_DEGENERATE_N:
        return (f"every resample gave {low:.4g}: a zero-width interval from {what} (fewer than "
                f"{MIN_DEGENERATE_N}) does not show the value is certain")
    return None


def percentile_ci(samples: np.ndarray, alpha: float = 0.05, min_defined: float = 0.5) -> np.ndarray:
    """Percentile bootstrap interval per column, ignoring resamples where the statistic is undefined.

    Parameters
    ----------
    samples : ndarray, shape (B, M)
        Bootstrap replicates of M statistics; NaN marks a resample where a statistic is undefined
        (e.g. a class never predicted, so its precision has no value).
    alpha : float
    min_defined : float
        A column whose share of defined replicates is below this gets no interval (NaN), because
        the remaining replicates are a biased subset.

    Returns
    -------
    ndarray, shape (2, M)
        Low and high percentiles (NaN where no interval).
    """
    samples = np.asarray(samples, dtype=np.float64)
    out = np.full((2, samples.shape[1]), np.nan)
    if samples.shape[0] == 0:
        return out
    defined = np.isfinite(samples)
    share = defined.mean(axis=0)
    ok = share >= min_defined
    if not ok.any():
        return out
    full = ok & (share == 1.0)
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    if full.any():
        out[:, full] = np.percentile(samples[:, full], q, axis=0)
    partial = ok & ~full
    if partial.any():
        out[:, partial] = np.nanpercentile(samples[:, partial], q, axis=0)
    return out


# -- stratified bootstrap -------------------------------------------------------------------


def stratified_weights(
    strata_sizes: list[int], n_bootstrap: int, rng: np.random.Generator, chunk: int
) -> Iterator[np.ndarray]:
    """Yield bootstrap count weights, ``chunk`` resamples at a time.

    Samples must be ordered so that each stratum is one contiguous block, in the order of
    ``strata_sizes``. Each resample draws ``n_t`` samples with replacement inside stratum ``t``
    (so class supports stay fixed); a sample's weight is how often it was drawn. Per chunk of
    ``m`` resamples, each non-empty stratum in order makes one call
    ``rng.integers(0, n_t, size=(m, n_t))``: the chunking is part of what a seed reproduces.

    Parameters
    ----------
    strata_sizes : list of int
        ``n_t`` of each stratum (0 = an empty stratum, which draws nothing).
    n_bootstrap : int
        Total number of resamples.
    rng : numpy.random.Generator
    chunk : int
        Resamples per yielded array.

    Yields
    ------
    ndarray of float32 (exact small integers), shape (N, m)
        Column ``j`` holds the weights of one resample; ``m <= chunk``; sums over a stratum's
        rows equal its size. Sample-major so a sparse ``S @ W`` streams contiguous rows.
    """
    n_total = int(sum(strata_sizes))
    done = 0
    while done < n_bootstrap:
        m = min(chunk, n_bootstrap - done)
        w = np.empty((n_total, m), dtype=np.float32)
        start = 0
        column = np.arange(m, dtype=np.int64)[:, None]
        for size in strata_sizes:
            if size:
                # Flat index sample * m + resample, so bincount lands in the (N, m) layout directly.
                idx = rng.integers(0, size, size=(m, size), dtype=np.int64)
                idx *= m
                idx += column
                w[start : start + size] = np.bincount(idx.ravel(), minlength=size * m).reshape(size, m)
            start += size
        done += m
        yield w
