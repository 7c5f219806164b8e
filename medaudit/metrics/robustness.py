"""Robustness metrics of a corruption sweep: each (corruption, severity) cell against the clean images.

Everything is a pure function of predicted labels and probabilities on the *same* images, clean
and corrupted. The decision rule is the one the report's headline metrics use
(:attr:`medaudit.predictions.Predictions.y_pred`: the most probable class), so the recall of a
cell is comparable with the recall in the Performance section. Point values come from
:func:`medaudit.metrics.classification.confusion_metrics` and
:func:`medaudit.metrics.risk.missed_disease_counts`; the paired drop (clean - corrupted, same
images) and its interval from :func:`medaudit.metrics.paired.paired_bootstrap_diff`, the one
paired bootstrap on the engine of :mod:`medaudit.metrics.resample`. Single-label tasks only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medaudit.errors import MedauditError
from medaudit.metrics.classification import confusion_metrics, nanmean
from medaudit.metrics.paired import paired_bootstrap_diff
from medaudit.metrics.risk import missed_disease_counts
from medaudit.metrics.significance import auc_midrank


def _float(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def macro_auc(y_true: np.ndarray, probs: np.ndarray) -> float | None:
    """One-vs-rest ROC AUC averaged over the classes with positives and negatives.

    Parameters
    ----------
    y_true : ndarray of int, shape (N,)
    probs : ndarray of float, shape (N, C)

    Returns
    -------
    float or None
        Binary tasks: the AUC of class 1 (equal to class 0's). None when no class has both.
    """
    c = probs.shape[1]
    classes = [1] if c == 2 else range(c)
    aucs = [auc_midrank(y_true == k, probs[:, k]) for k in classes if 0 < int((y_true == k).sum()) < len(y_true)]
    return float(np.mean(aucs)) if aucs else None


def cell_metrics(y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray, class_names: Sequence[str],
                 negative_classes: Sequence[str] = ()) -> dict:
    """The headline numbers of one set of predictions.

    Parameters
    ----------
    y_true, y_pred : ndarray of int, shape (N,)
    probs : ndarray of float, shape (N, C)
    class_names : sequence of str, length C
    negative_classes : sequence of str
        Healthy classes; without them ``missed_disease_rate`` is None.

    Returns
    -------
    dict
        ``accuracy``, ``balanced_accuracy``, ``missed_disease_rate``, ``auc`` (floats or None when
        undefined) and ``recall`` ``{class: float or None}``.
    """
    names = list(class_names)
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape:
        raise MedauditError("robustness metrics need single-label predictions of shape (N,)", param="robustness")
    cm = np.zeros((1, len(names), len(names)))
    np.add.at(cm[0], (y_true, y_pred), 1.0)
    m = confusion_metrics(cm)
    neg = [names.index(c) for c in negative_classes]
    missed = None
    if neg:
        k, n = missed_disease_counts(cm, neg)
        missed = _float(k[0] / n[0]) if n[0] > 0 else None
    return {
        "accuracy": _float(m["accuracy"][0]),
        "balanced_accuracy": _float(m["balanced_accuracy"][0]),
        "missed_disease_rate": missed,
        "auc": macro_auc(y_true, np.asarray(probs, np.float64)),
        "recall": {c: _float(m["recall"][0, k]) for k, c in enumerate(names)},
    }


def _value(d: dict) -> dict:
    """``paired_bootstrap_diff``'s ``{"diff", ...}`` as the snapshot's value object."""
    return {"value": d["diff"], "ci_low": d["ci_low"], "ci_high": d["ci_high"], "reason": d["reason"]}


def corruption_cell(y_true: np.ndarray, pred_clean: np.ndarray, pred_corrupt: np.ndarray, probs_corrupt: np.ndarray,
                    class_names: Sequence[str], *, negative_classes: Sequence[str] = (), n_bootstrap: int = 1000,
                    seed: int = 0, alpha: float = 0.05) -> dict:
    """One (corruption, severity) cell: its metrics, the flip rate and the paired drop from clean.

    Parameters
    ----------
    y_true : ndarray of int, shape (N,)
    pred_clean, pred_corrupt : ndarray of int, shape (N,)
        Predicted classes on the clean and on the corrupted images, same samples in the same order.
    probs_corrupt : ndarray of float, shape (N, C)
    class_names : sequence of str, length C
    negative_classes : sequence of str
    n_bootstrap : int
    seed : int
    alpha : float

    Returns
    -------
    dict
        :func:`cell_metrics` of the corrupted predictions plus ``flip_rate`` (share of samples whose
        predicted class changed) and ``drop``: ``{"recall": {class: v}, "balanced_accuracy": v,
        "accuracy": v, "missed_disease_rate": v}`` with ``v = {"value", "ci_low", "ci_high",
        "reason"}`` of clean - corrupted (positive: worse when corrupted; for the missed-disease
        rate, negative is worse). Intervals: the stratified paired percentile bootstrap.
    """
    out = cell_metrics(y_true, pred_corrupt, probs_corrupt, class_names, negative_classes)
    pred_clean = np.asarray(pred_clean, np.int64)
    out["flip_rate"] = float(np.mean(pred_clean != np.asarray(pred_corrupt))) if len(pred_clean) else None
    d = paired_bootstrap_diff(y_true, pred_clean, pred_corrupt, class_names, negative_classes=negative_classes,
                              n_bootstrap=n_bootstrap, seed=seed, alpha=alpha)
    out["drop"] = {"recall": {c: _value(v) for c, v in d["recall"].items()},
                   "balanced_accuracy": _value(d["balanced_accuracy"]), "accuracy": _value(d["accuracy"]),
                   "missed_disease_rate": _value(d["missed_disease_rate"])}
    return out


def sweep_summary(clean: dict, cells: list[dict], disease_classes: Sequence[str]) -> dict:
    """MedMNIST-C style summary of a model's sweep, and its worst cell.

    Parameters
    ----------
    clean : dict
        :func:`cell_metrics` of the clean images.
    cells : list of dict
        :func:`corruption_cell` results with ``corruption`` and ``severity`` keys.
    disease_classes : sequence of str
        The classes whose recall drop names the worst cell (all classes when none is healthy).

    Returns
    -------
    dict
        ``mean_balanced_error``: mean over every cell of 1 - balanced accuracy;
        ``mean_relative_balanced_error``: mean over corruptions of (mean over severities of the
        balanced error) / clean balanced error (None when the clean balanced error is 0 or
        undefined: no ratio to a perfect model); ``per_corruption``: ``{name: {"balanced_error",
        "relative_balanced_error"}}``; ``worst``: the cell and class with the largest recall drop
        (``{"corruption", "severity", "class", "drop": value object}``), None when no drop is defined.
    """
    ba0 = clean.get("balanced_accuracy")
    be0 = None if ba0 is None else 1.0 - ba0
    per: dict[str, dict] = {}
    for name in dict.fromkeys(c["corruption"] for c in cells):
        be = [1.0 - c["balanced_accuracy"] for c in cells if c["corruption"] == name
              and c["balanced_accuracy"] is not None]
        mean_be = float(np.mean(be)) if be else None
        rel = mean_be / be0 if mean_be is not None and be0 else None
        per[name] = {"balanced_error": mean_be, "relative_balanced_error": rel}
    all_be = [1.0 - c["balanced_accuracy"] for c in cells if c["balanced_accuracy"] is not None]
    rels = np.array([v["relative_balanced_error"] for v in per.values()], dtype=float)
    worst = None
    for c in cells:
        for cls in disease_classes:
            d = c["drop"]["recall"].get(cls) or {}
            if d.get("value") is not None and (worst is None or d["value"] > worst["drop"]["value"]):
                worst = {"corruption": c["corruption"], "severity": c["severity"], "class": cls, "drop": d}
    return {
        "mean_balanced_error": float(np.mean(all_be)) if all_be else None,
        "mean_relative_balanced_error": _float(nanmean(rels[None])[0]) if rels.size else None,
        "per_corruption": per,
        "worst": worst,
    }
