"""Paired bootstrap of metric differences between two models on the same samples.

:func:`paired_bootstrap_diff` runs on the resampling engine of :mod:`medaudit.metrics.resample`:
both models' confusion counts are blocks of one :class:`~medaudit.metrics.resample.SumDesign`, so
each resample is one sparse product that both models share (the paired design). Rates and their
undefined policy come from :mod:`medaudit.metrics.classification`, the missed-disease rule from
:mod:`medaudit.metrics.risk`, and the interval rule (no interval when fewer than half the
resamples define a value) from :func:`~medaudit.metrics.intervals.percentile_ci` — the same as
for the per-model intervals of :func:`~medaudit.metrics.compute_metrics`.

AUC differences need scores: they are DeLong's (:func:`medaudit.metrics.significance.delong_test`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from medaudit.errors import MedauditError
from medaudit.metrics.classification import (
    balanced_accuracy_terms,
    confusion_block,
    confusion_from_sums,
    confusion_metrics,
    exact_match_block,
    label_counts_block,
    label_counts_from_sums,
    multilabel_metrics,
    nanmean,
    ratio,
)
from medaudit.metrics.intervals import interval_withheld, percentile_ci
from medaudit.metrics.resample import SumDesign, point_and_bootstrap
from medaudit.metrics.risk import missed_disease_counts

SCALAR_DIFFS = ("accuracy", "balanced_accuracy", "macro_f1", "missed_disease_rate")
PER_CLASS_DIFFS = ("recall", "precision", "specificity")
# Resamples per chunk: HISTORICAL_CHUNK_CELLS // N. The chunking decides how the seeded generator's
# draws are grouped, so it is kept from before the paired bootstrap moved onto the engine: the
# comparison intervals published with a seed reproduce exactly (SumDesign.chunk_size would regroup
# the draws and move every interval).
HISTORICAL_CHUNK_CELLS = 4_000_000
_TAGS = ("a", "b")  # block-name suffixes of model A and model B


def historical_chunk(n_samples: int) -> int:
    """Resamples per chunk of the paired bootstrap, ``max(1, HISTORICAL_CHUNK_CELLS // N)``.

    Parameters
    ----------
    n_samples : int
        N, the number of paired samples.

    Returns
    -------
    int
    """
    return max(1, HISTORICAL_CHUNK_CELLS // max(n_samples, 1))


def _as_labels(y: np.ndarray, n_classes: int, what: str) -> np.ndarray:
    """Class indices (N,) or 0/1 label sets (N, K) as int64, checked against the class count."""
    y = np.asarray(y)
    if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):
        raise MedauditError(f"paired_bootstrap_diff: {what} must hold integer class indices (0/1 for multilabel)",
                            param=what)
    if y.ndim == 2:
        if y.shape[1] != n_classes or not np.isin(y, (0, 1)).all():
            raise MedauditError(f"paired_bootstrap_diff: {what} must be 0/1 of shape (N, {n_classes}), got {y.shape}",
                                param=what)
    elif y.ndim != 1 or (y.size and (y.min() < 0 or y.max() >= n_classes)):
        raise MedauditError(f"paired_bootstrap_diff: {what} must hold class indices in [0, {n_classes}) of shape (N,)",
                            param=what)
    return y.astype(np.int64)


def _design(y_true: np.ndarray, preds: dict[str, np.ndarray], n_classes: int, multilabel: bool) -> SumDesign:
    """The count blocks of every model: a confusion matrix, or per-label counts and exact matches."""
    blocks = []
    for tag, pred in preds.items():
        if multilabel:
            blocks += [label_counts_block(f"counts_{tag}", y_true, pred), exact_match_block(f"exact_{tag}", y_true, pred)]
        else:
            blocks.append(confusion_block(f"cm_{tag}", y_true, pred, n_classes))
    return SumDesign(y_true.shape[0], blocks)


def _evaluator(
    n: int, n_classes: int, multilabel: bool, present: np.ndarray, negative_idx: list[int]
) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Map block sums (rows, m) to the differences A - B, scalars (m,) and per class (m, C)."""

    def model_stats(sums: dict[str, np.ndarray], tag: str) -> dict[str, np.ndarray]:
        if multilabel:
            m = sums[f"exact_{tag}"].shape[1]
            counts = label_counts_from_sums(sums[f"counts_{tag}"], n_classes)
            out = multilabel_metrics(counts, sums[f"exact_{tag}"][0], np.full(m, float(n)))
            missed_rate = np.full(m, np.nan)
        else:
            cm = confusion_from_sums(sums[f"cm_{tag}"], n_classes)
            out = confusion_metrics(cm)
            missed_rate = ratio(*missed_disease_counts(cm, negative_idx)) if negative_idx else np.full(len(cm), np.nan)
        # Averages over the classes present in y_true. They are the classes where F1 and recall
        # can be defined, so the values equal confusion_metrics' macro averages; summing only these
        # columns keeps the last bit of the published intervals (with >= 8 classes, sums that
        # include the absent classes' zeros are grouped differently by NumPy's pairwise sum).
        return {
            "accuracy": out["accuracy"],
            "balanced_accuracy": nanmean(balanced_accuracy_terms(out, multilabel)[:, present]),
            "macro_f1": nanmean(out["f1"][:, present]),
            "missed_disease_rate": missed_rate,
            **{k: out[k] for k in PER_CLASS_DIFFS},
        }

    def evaluate(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        a, b = (model_stats(sums, tag) for tag in _TAGS)
        return {k: a[k] - b[k] for k in a}

    return evaluate


def _interval(point: float, ci: np.ndarray, what: str, n_bootstrap: int, count: int, counted: str) -> dict:
    """One ``{"diff", "ci_low", "ci_high", "reason"}`` entry from a point and its (2,) interval.

    ``count`` is the statistic's governing count (``counted`` says of what): an interval from too
    few samples is withheld by the engine's one rule (:func:`~medaudit.metrics.intervals.interval_withheld`),
    as the single-model intervals are — three images gave "100 % to 100 %"."""
    if not np.isfinite(point):
        return {"diff": None, "ci_low": None, "ci_high": None, "reason": f"{what} is undefined on these samples"}
    if n_bootstrap == 0:
        return {"diff": float(point), "ci_low": None, "ci_high": None, "reason": "bootstrap disabled (0 resamples)"}
    if not np.isfinite(ci).all():
        return {"diff": float(point), "ci_low": None, "ci_high": None,
                "reason": f"{what} is undefined in most bootstrap resamples"}
    withheld = interval_withheld((float(ci[0]), float(ci[1])), count, f"{count} {counted}")
    if withheld:
        return {"diff": float(point), "ci_low": None, "ci_high": None, "reason": withheld}
    return {"diff": float(point), "ci_low": float(ci[0]), "ci_high": float(ci[1]), "reason": None}


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
    DeLong's (:func:`~medaudit.metrics.significance.delong_test`).

    Parameters
    ----------
    y_true : ndarray, shape (N,) int labels in [0, C), or (N, K) 0/1 for multilabel
    pred_a, pred_b : ndarray, same shape as ``y_true``
        Predicted labels (or 0/1 label sets) of models A and B, in the same sample order.
    class_names : sequence of str, length C (or K)
    negative_classes : sequence of str
        "Healthy" classes (single-label): adds ``missed_disease_rate``, the share of disease
        samples predicted as one of them (:func:`~medaudit.metrics.risk.missed_disease_mask`).
    n_bootstrap : int
        Number of resamples (B >= 0); vectorised in chunks of ``HISTORICAL_CHUNK_CELLS // N``.
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
        Rates follow :mod:`medaudit.metrics.classification` (e.g. the F1 of a label with no
        positives in a resample is undefined there). Macro-F1 and balanced accuracy average the
        classes present in ``y_true``; recall and precision of a class absent from ``y_true``
        are None with a reason; ``missed_disease_rate`` is None with a reason without negative
        classes. Resamples where a value is undefined (a class never predicted, for precision)
        are dropped for that value; with fewer than half of them defined there is no interval
        (:func:`~medaudit.metrics.intervals.percentile_ci`).

    Raises
    ------
    MedauditError
        Predictions whose shape differs from ``y_true``'s, labels outside the classes, an
        unknown negative class or a negative ``n_bootstrap``.
    """
    names = list(class_names)
    c = len(names)
    y_true = _as_labels(y_true, c, "y_true")
    pred_a, pred_b = (_as_labels(p, c, what) for p, what in ((pred_a, "pred_a"), (pred_b, "pred_b")))
    if not y_true.shape == pred_a.shape == pred_b.shape:
        raise MedauditError(f"paired_bootstrap_diff: y_true {y_true.shape}, pred_a {pred_a.shape} and pred_b "
                            f"{pred_b.shape} must have the same shape (one prediction per sample)")
    if n_bootstrap < 0:
        raise MedauditError(f"n_bootstrap must be >= 0, got {n_bootstrap}", param="n_bootstrap")
    unknown = [x for x in negative_classes if x not in names]
    if unknown:
        raise MedauditError(f"negative class(es) {unknown} are not among the class names {names}",
                            param="negative_classes")
    n = y_true.shape[0]
    multilabel = y_true.ndim == 2
    negative_idx = [] if multilabel else [names.index(x) for x in negative_classes]
    if multilabel:
        present = y_true.sum(axis=0) > 0
        order, strata = np.arange(n), [n]
    else:
        support = np.bincount(y_true, minlength=c)
        present = support > 0
        # Stratum by stratum in class order, stable within a class: the draws then fall on the
        # same samples as in np.flatnonzero(y_true == k) order.
        order, strata = np.argsort(y_true, kind="stable"), support.tolist()
    y_true, pred_a, pred_b = y_true[order], pred_a[order], pred_b[order]

    design = _design(y_true, dict(zip(_TAGS, (pred_a, pred_b), strict=True)), c, multilabel)
    evaluate = _evaluator(n, c, multilabel, present, negative_idx)
    keys = [*SCALAR_DIFFS, *PER_CLASS_DIFFS]
    resamples = n_bootstrap if n else 0  # no samples: every value is undefined, nothing to resample
    point, boot = point_and_bootstrap(design, evaluate, strata, resamples, seed, keys, chunk=historical_chunk(n))
    ci = {k: percentile_ci(boot[k].reshape(resamples, int(np.prod(np.shape(point[k])))), alpha) for k in keys}

    if multilabel:
        support = y_true.sum(axis=0).astype(np.int64)
        smallest = int(min(support[present].min(initial=n), n - support.max(initial=0))) if n else 0
    else:
        smallest = int(support[present].min()) if present.any() else 0
    n_disease = int((~np.isin(y_true, negative_idx)).sum()) if negative_idx else 0
    governing = {"accuracy": (n, "samples"), "balanced_accuracy": (smallest, "samples in the smallest class"),
                 "macro_f1": (smallest, "samples in the smallest class"),
                 "missed_disease_rate": (n_disease, "disease samples")}
    out = {k: _interval(point[k], ci[k][:, 0], k.replace("_", "-"), n_bootstrap, *governing[k])
           for k in SCALAR_DIFFS}
    if not negative_idx or n == 0:
        why = ("multilabel task" if multilabel else "no samples" if n == 0 and negative_idx
               else "no negative (healthy) class configured")
        out["missed_disease_rate"] = {"diff": None, "ci_low": None, "ci_high": None,
                                      "reason": f"missed-disease rate: {why}"}
    for metric in PER_CLASS_DIFFS:
        out[metric] = {}
        for k, name in enumerate(names):
            if not present[k] and metric != "specificity":
                out[metric][name] = {"diff": None, "ci_low": None, "ci_high": None,
                                     "reason": f"no samples of class '{name}' in y_true"}
            else:
                count, counted = ((n - int(support[k]), "samples outside the class") if metric == "specificity"
                                  else (int(support[k]), f"samples of class '{name}'"))
                out[metric][name] = _interval(point[metric][k], ci[metric][:, k], f"{metric} of '{name}'",
                                              n_bootstrap, count, counted)
    out["settings"] = {
        "n_bootstrap": int(n_bootstrap),
        "seed": int(seed),
        "confidence": 1 - alpha,
        "method": "paired percentile bootstrap" + ("" if multilabel else ", stratified by true class"),
    }
    return out
