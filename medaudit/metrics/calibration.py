"""Calibration: expected calibration error, Brier score and reliability-diagram data.

Definitions (documented because papers differ):

* **Confidence** — single-label: the top probability ``max_k p_ik`` and *correct* means
  ``argmax == y`` (Guo et al. 2017). Multilabel: every (sample, label) pair is one binary
  forecast with confidence ``p_ik`` and outcome ``y_ik``.
* **Bins** — ``n_bins`` equal-width bins on [0, 1], right-closed ``(lo, hi]`` (the first also
  holds 0).
* **ECE** — ``sum_b (n_b / n) |acc_b - conf_b| = sum_b |sum_{i in b} (correct_i - conf_i)| / n``.
* **Brier** — as ``sklearn.metrics.brier_score_loss`` (``scale_by_half="auto"``): two classes
  ``mean_i (p_i1 - y_i)^2`` (range [0, 1]); three or more ``mean_i sum_k (p_ik - 1[y_i=k])^2``
  (Brier 1950, range [0, 2]); multilabel ``mean_{i,k} (p_ik - y_ik)^2``.
"""

from __future__ import annotations

import numpy as np


def bin_edges(n_bins: int) -> np.ndarray:
    """Edges of ``n_bins`` equal-width bins on [0, 1].

    Parameters
    ----------
    n_bins : int

    Returns
    -------
    ndarray of float, shape (n_bins + 1,)
    """
    return np.linspace(0.0, 1.0, n_bins + 1)


def assign_bins(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index of each confidence, right-closed bins ``(lo, hi]`` (0 goes to bin 0).

    Parameters
    ----------
    confidence : ndarray of float in [0, 1], shape (M,)
    n_bins : int

    Returns
    -------
    ndarray of int, shape (M,), values in ``[0, n_bins)``
    """
    idx = np.searchsorted(bin_edges(n_bins), confidence, side="left") - 1
    return np.clip(idx, 0, n_bins - 1)


def forecasts(y_true: np.ndarray, probs: np.ndarray, multilabel: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confidence, outcome (0/1) and owning sample of every forecast.

    Parameters
    ----------
    y_true : ndarray of int, shape (N,), or (N, K) 0/1 for multilabel
    probs : ndarray of float, shape (N, C) (or (N, K))
    multilabel : bool
        Every (sample, label) pair is one forecast; otherwise each sample's top probability is.

    Returns
    -------
    confidence, outcome, sample : ndarray, shape (N,) single-label or (N*K,) multilabel
    """
    n = probs.shape[0]
    if multilabel:
        k = probs.shape[1]
        return probs.ravel(), y_true.astype(np.float64).ravel(), np.repeat(np.arange(n), k)
    return probs.max(axis=1), (probs.argmax(axis=1) == y_true).astype(np.float64), np.arange(n)


def brier_per_sample(y_true: np.ndarray, probs: np.ndarray, task: str) -> np.ndarray:
    """Each sample's Brier contribution; the Brier score is its mean (definitions: module doc).

    Parameters
    ----------
    y_true : ndarray of int, shape (N,), or (N, K) 0/1 for multilabel
    probs : ndarray of float, shape (N, C)
    task : {"binary", "multiclass", "multilabel", "ordinal"}

    Returns
    -------
    ndarray of float, shape (N,)
    """
    if task == "multilabel":
        return ((probs - y_true) ** 2).mean(axis=1)
    if probs.shape[1] == 2:
        return (probs[:, 1] - (y_true == 1)) ** 2
    onehot = np.zeros_like(probs)
    onehot[np.arange(probs.shape[0]), y_true] = 1.0
    return ((probs - onehot) ** 2).sum(axis=1)


def ece_from_sums(bin_diff: np.ndarray, n_forecasts: np.ndarray) -> np.ndarray:
    """ECE from per-bin sums of ``correct - confidence``.

    Parameters
    ----------
    bin_diff : ndarray, shape (n_bins, B)
    n_forecasts : ndarray, shape (B,)
        Weighted number of forecasts.

    Returns
    -------
    ndarray, shape (B,); NaN when there are no forecasts.
    """
    total = np.abs(bin_diff).sum(axis=0)
    out = np.full(total.shape, np.nan)
    np.divide(total, n_forecasts, out=out, where=n_forecasts > 0)
    return out


def reliability(confidence: np.ndarray, outcome: np.ndarray, n_bins: int) -> dict:
    """Reliability-diagram data (the ``calibration`` block of the report schema).

    Parameters
    ----------
    confidence, outcome : ndarray of float, shape (M,)
        As returned by :func:`forecasts`.
    n_bins : int

    Returns
    -------
    dict
        ``n_bins``, ``bin_edges`` (n_bins + 1), ``bin_confidence`` and ``bin_accuracy`` (mean
        confidence / outcome per bin, None for an empty bin), ``bin_count`` (ints).
    """
    idx = assign_bins(confidence, n_bins)
    count = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=outcome, minlength=n_bins)
    return {
        "n_bins": int(n_bins),
        "bin_edges": [float(e) for e in bin_edges(n_bins)],
        "bin_confidence": [float(s / c) if c else None for s, c in zip(conf_sum, count, strict=True)],
        "bin_accuracy": [float(s / c) if c else None for s, c in zip(acc_sum, count, strict=True)],
        "bin_count": [int(c) for c in count],
    }
