"""Ranking metrics (ROC AUC, average precision) as weighted sums, and curve points for plots.

AUC and AP of one binary problem depend on the sample weights only through a few sums per
*group* of tied positive scores, so the bootstrap can compute them for many resamples at once
with one sparse matrix product (see :func:`ranking_design`) instead of re-sorting per resample:
each resample costs O(N), the sort happens once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

MAX_CURVE_POINTS = 200


@dataclass(frozen=True)
class RankingDesign:
    """Maps each sample of a binary problem to one row of a sum layout.

    With ``Q`` distinct positive scores sorted in decreasing order (groups ``q = 0..Q-1``):
    rows ``[0, Q)`` sum positive weights of group ``q``; rows ``[Q, 2Q+1)`` sum negative
    weights with exactly ``q`` positive groups scoring strictly higher and no tie; row
    ``2Q+1+t`` sums negative weights tied with positive group ``tie_groups[t]`` (only groups
    that have tied negatives get a row, since exact ties are rare with continuous scores).
    """

    rows: np.ndarray  # (M,) int64 row of each entry
    n_groups: int  # Q
    tie_groups: np.ndarray  # (T,) int64 positive groups with tied negatives

    @property
    def n_rows(self) -> int:
        return 2 * self.n_groups + 1 + self.tie_groups.size


def ranking_design(scores: np.ndarray, positive: np.ndarray) -> RankingDesign:
    """Build the sum layout of one binary ranking problem.

    Parameters
    ----------
    scores : ndarray of float, shape (M,)
        Score of each entry (higher = more likely positive).
    positive : ndarray of bool, shape (M,)

    Returns
    -------
    RankingDesign
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    groups = np.unique(scores[positive])  # ascending
    q_count = groups.size
    left = np.searchsorted(groups, scores, side="left")
    right = np.searchsorted(groups, scores, side="right")
    above = q_count - right  # positive groups scoring strictly higher
    tied = (right > left) & ~positive
    tie_groups, tie_index = np.unique(above[tied], return_inverse=True)
    rows = np.where(positive, above, q_count + above)
    rows[tied] = 2 * q_count + 1 + tie_index
    return RankingDesign(rows=rows.astype(np.int64), n_groups=q_count, tie_groups=tie_groups.astype(np.int64))


def auc_ap_from_sums(
    sums: np.ndarray, design: RankingDesign, with_ap: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """ROC AUC and average precision from the row sums of :func:`ranking_design`.

    Parameters
    ----------
    sums : ndarray, shape (design.n_rows, B)
        Weighted sums per row, one column per resample.
    design : RankingDesign
    with_ap : bool
        Skip average precision (returned as None) when not needed.

    Returns
    -------
    auc, ap : ndarray, shape (B,)
        AUC counts ties as 1/2 (Mann-Whitney), equal to ``sklearn.metrics.roc_auc_score``.
        AP is ``sum_q (R_q - R_{q-1}) P_q`` over decreasing thresholds, equal to
        ``sklearn.metrics.average_precision_score``. NaN when there are no positives (both) or
        no negatives (AUC only).
    """
    q, tg = design.n_groups, design.tie_groups
    sums = np.asarray(sums)
    b = sums.shape[1]
    if q == 0:
        return np.full(b, np.nan), (np.full(b, np.nan) if with_ap else None)
    # Cumulative counts stay in the input dtype (float32 bootstrap counts are exact integers);
    # products and ratios are accumulated in float64.
    tp, gap, tie = sums[:q], sums[q : 2 * q + 1], sums[2 * q + 1 :]
    tp_above = np.zeros((q + 1, b), dtype=sums.dtype)  # positives scoring above gap row q
    tp_above[1:] = cumsum_rows(tp)
    tp_cum = tp_above[1:]
    w_pos = tp_cum[-1].astype(np.float64)
    w_neg = gap.sum(axis=0, dtype=np.float64) + tie.sum(axis=0, dtype=np.float64)
    pairs = _dot(gap, tp_above) + _dot(tie, tp_above[tg] + 0.5 * tp[tg])
    den = w_pos * w_neg
    auc = np.full(b, np.nan)
    np.divide(pairs, den, out=auc, where=den > 0)
    if not with_ap:
        return auc, None
    neg_at = gap[:-1].copy()  # negatives scoring >= each positive group, once accumulated
    neg_at[tg] += tie
    called = cumsum_rows(neg_at)
    called += tp_cum
    precision = np.divide(tp_cum, called, out=np.zeros_like(called), where=called > 0)
    ap = np.full(b, np.nan)
    np.divide(_dot(tp, precision), w_pos, out=ap, where=w_pos > 0)
    return auc, ap


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Column-wise dot products ``sum_i a[i, j] * b[i, j]``, accumulated in float64."""
    return np.einsum("ij,ij->j", a, b, dtype=np.float64)


def cumsum_rows(x: np.ndarray, block: int = 64) -> np.ndarray:
    """``np.cumsum(x, axis=0)`` for a C-ordered (Q, m) array, several times faster.

    NumPy accumulates along axis 0 one strided column at a time; adding whole rows inside
    blocks, then block offsets, keeps every operation contiguous and vectorised.

    Parameters
    ----------
    x : ndarray, shape (Q, m)
    block : int
        Rows added together before the block offsets are applied.

    Returns
    -------
    ndarray, shape (Q, m), dtype of ``x``
    """
    q, m = x.shape
    if q <= 4 * block:
        return np.cumsum(x, axis=0)
    n_blocks = -(-q // block)
    out = np.zeros((n_blocks * block, m), dtype=x.dtype)
    out[:q] = x
    view = out.reshape(n_blocks, block, m)
    for j in range(1, block):
        view[:, j] += view[:, j - 1]
    offsets = np.cumsum(view[:, -1], axis=0)
    view[1:] += offsets[:-1, None, :]
    return out[:q]


def _downsample(n: int, max_points: int = MAX_CURVE_POINTS) -> np.ndarray:
    """Indices of at most ``max_points`` evenly spread points, always keeping both ends."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(np.int64))


def _floats(x: np.ndarray) -> list:
    """JSON-ready floats; non-finite values (sklearn's ``inf`` first threshold) become None."""
    return [float(v) if np.isfinite(v) else None for v in x]


def roc_points(y_binary: np.ndarray, scores: np.ndarray) -> dict | None:
    """ROC curve points (scikit-learn ``roc_curve``), at most 200 of them, ends kept.

    Parameters
    ----------
    y_binary : ndarray of bool, shape (N,)
    scores : ndarray of float, shape (N,)

    Returns
    -------
    dict or None
        ``{"fpr": [...], "tpr": [...], "thresholds": [...]}``; the first threshold (above every
        score, ``inf`` in scikit-learn) is ``None``. ``None`` when the curve is undefined (only
        one class present).
    """
    y_binary = np.asarray(y_binary).astype(bool)
    if y_binary.all() or not y_binary.any():
        return None
    fpr, tpr, thr = roc_curve(y_binary, scores)
    keep = _downsample(fpr.size)
    return {"fpr": _floats(fpr[keep]), "tpr": _floats(tpr[keep]), "thresholds": _floats(thr[keep])}


def pr_points(y_binary: np.ndarray, scores: np.ndarray) -> dict | None:
    """Precision-recall curve points (scikit-learn ``precision_recall_curve``), at most 200.

    Parameters
    ----------
    y_binary : ndarray of bool, shape (N,)
    scores : ndarray of float, shape (N,)

    Returns
    -------
    dict or None
        ``{"precision": [...], "recall": [...]}``; ``None`` when there are no positives (recall
        undefined).
    """
    y_binary = np.asarray(y_binary).astype(bool)
    if not y_binary.any():
        return None
    precision, recall, _ = precision_recall_curve(y_binary, scores)
    keep = _downsample(precision.size)
    return {"precision": _floats(precision[keep]), "recall": _floats(recall[keep])}


def curves_json(names: list[str], y: np.ndarray, probs: np.ndarray, multilabel: bool) -> dict:
    """The ``curves`` block: one-vs-rest ROC and PR points per class plus the micro (pooled) ROC.

    Parameters
    ----------
    names : list of str, length C
    y : ndarray of int, shape (N,), or (N, C) 0/1 for multilabel
    probs : ndarray of float, shape (N, C)
    multilabel : bool

    Returns
    -------
    dict
        ``{"roc": {class: points, "micro": points}, "pr": {class: points}}`` (see
        :func:`roc_points`, :func:`pr_points`); an undefined curve (class absent, or no
        negatives for ROC) is None.
    """
    positive = y.astype(bool) if multilabel else np.eye(len(names), dtype=bool)[y]
    roc = {name: roc_points(positive[:, k], probs[:, k]) for k, name in enumerate(names)}
    roc["micro"] = roc_points(positive.ravel(), probs.ravel())
    pr = {name: pr_points(positive[:, k], probs[:, k]) for k, name in enumerate(names)}
    return {"roc": roc, "pr": pr}
