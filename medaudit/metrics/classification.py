"""Count-based classification metrics, vectorised over bootstrap resamples.

Every function takes (weighted) confusion counts with a leading resample axis ``B`` and
returns float64 arrays in which NaN marks an undefined value. Undefined policy (the
``zero_division`` choice), identical to scikit-learn's ``zero_division=np.nan``:

* precision ``tp / (tp + fp)``: undefined when the class is never predicted;
* recall (sensitivity) ``tp / (tp + fn)``: undefined when the class has no samples;
* specificity ``tn / (tn + fp)``: undefined when every sample belongs to the class;
* NPV ``tn / (tn + fn)``: undefined when every sample is predicted as the class;
* F1 ``2 tp / (2 tp + fp + fn)``: undefined when the class has no samples (its recall is
  undefined); a present class that is never predicted has F1 = 0 (as in scikit-learn);
* macro averages are means over the classes where the value is defined; weighted averages
  weight by support over those classes (scikit-learn ``zero_division=np.nan``);
* Cohen's kappa and MCC: undefined when their denominator is 0 (e.g. a single class in both
  labels and predictions); scikit-learn returns 0 there instead.
"""

from __future__ import annotations

import numpy as np


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with NaN where ``den == 0``."""
    num, den = np.broadcast_arrays(np.asarray(num, float), np.asarray(den, float))
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def nanmean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean over the defined (finite) entries; NaN when none is defined. No warnings."""
    ok = np.isfinite(x)
    return _div(np.where(ok, x, 0.0).sum(axis=axis), ok.sum(axis=axis))


def weighted_nanmean(x: np.ndarray, w: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean of the defined entries of ``x`` weighted by ``w`` (weights renormalised over them)."""
    ok = np.isfinite(x)
    w = np.broadcast_to(w, x.shape)
    return _div(np.where(ok, x * w, 0.0).sum(axis=axis), np.where(ok, w, 0.0).sum(axis=axis))


def rates(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class rates from one-vs-rest counts.

    Parameters
    ----------
    tp, fp, fn, tn : ndarray, shape (B, C)
        Weighted counts per resample and class.

    Returns
    -------
    dict of ndarray (B, C)
        ``precision``, ``recall``, ``specificity``, ``npv``, ``f1``, ``support`` (NaN = undefined).
    """
    support = tp + fn
    f1 = _div(2 * tp, 2 * tp + fp + fn)
    f1 = np.where(support > 0, f1, np.nan)
    return {
        "precision": _div(tp, tp + fp),
        "recall": _div(tp, support),
        "specificity": _div(tn, tn + fp),
        "npv": _div(tn, tn + fn),
        "f1": f1,
        "support": support.astype(float),
    }


def averages(per: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Macro and support-weighted averages of the per-class rates, shape (B,) each."""
    support = per["support"]
    out = {f"macro_{m}": nanmean(per[m]) for m in ("precision", "recall", "specificity", "f1")}
    out.update({f"weighted_{m}": weighted_nanmean(per[m], support) for m in ("precision", "recall", "f1")})
    return out


def confusion_metrics(cm: np.ndarray, ordinal: bool = False) -> dict[str, np.ndarray]:
    """All count-based metrics of single-label confusion matrices.

    Parameters
    ----------
    cm : ndarray, shape (B, C, C)
        Weighted confusion matrices, rows = true class, columns = predicted class.
    ordinal : bool
        Also compute the quadratic-weighted kappa (classes in ordinal order).

    Returns
    -------
    dict of ndarray
        Per class (B, C): see :func:`rates`. Scalars (B,): ``accuracy``, ``balanced_accuracy``
        (mean recall over classes with samples, as scikit-learn), the averages of
        :func:`averages`, ``kappa``, ``mcc`` and (ordinal) ``kappa_quadratic``.
    """
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum(axis=(1, 2))
    tp = np.diagonal(cm, axis1=1, axis2=2)
    true_tot = cm.sum(axis=2)
    pred_tot = cm.sum(axis=1)
    fp = pred_tot - tp
    fn = true_tot - tp
    tn = n[:, None] - tp - fp - fn
    per = rates(tp, fp, fn, tn)
    out = dict(per)
    out.update(averages(per))
    correct = tp.sum(axis=1)
    out["accuracy"] = _div(correct, n)
    out["balanced_accuracy"] = nanmean(per["recall"])
    # Cohen's kappa: (p_o - p_e) / (1 - p_e) with p_e from the marginals.
    pe = (true_tot * pred_tot).sum(axis=1)
    out["kappa"] = _div(correct * n - pe, n * n - pe)
    # Multiclass MCC (Gorodkin 2004), as in scikit-learn's matthews_corrcoef.
    den = np.sqrt((n * n - (pred_tot**2).sum(axis=1)) * (n * n - (true_tot**2).sum(axis=1)))
    out["mcc"] = _div(correct * n - pe, den)
    if ordinal:
        c = cm.shape[1]
        idx = np.arange(c)
        wq = (idx[:, None] - idx[None, :]) ** 2 / max(c - 1, 1) ** 2
        expected = true_tot[:, :, None] * pred_tot[:, None, :] / np.where(n > 0, n, 1)[:, None, None]
        out["kappa_quadratic"] = 1.0 - _div((wq * cm).sum(axis=(1, 2)), (wq * expected).sum(axis=(1, 2)))
    return out


def multilabel_metrics(counts: np.ndarray, exact: np.ndarray, n: np.ndarray) -> dict[str, np.ndarray]:
    """Count-based metrics of a multi-label problem (each label a binary problem).

    Parameters
    ----------
    counts : ndarray, shape (B, K, 4)
        Weighted ``tn, fp, fn, tp`` per label (prediction = probability >= 0.5).
    exact : ndarray, shape (B,)
        Weighted number of samples whose whole label set is predicted exactly.
    n : ndarray, shape (B,)
        Weighted number of samples.

    Returns
    -------
    dict of ndarray
        Per label (B, K) as :func:`rates`; ``accuracy`` = subset accuracy; ``balanced_accuracy``
        = mean over labels of (sensitivity + specificity) / 2; macro/weighted averages.
    """
    counts = np.asarray(counts, dtype=np.float64)
    tn, fp, fn, tp = (counts[..., i] for i in range(4))
    per = rates(tp, fp, fn, tn)
    out = dict(per)
    out.update(averages(per))
    out["accuracy"] = _div(exact, n)
    out["balanced_accuracy"] = nanmean((per["recall"] + per["specificity"]) / 2.0)
    return out


def _row_normalised(counts: np.ndarray) -> list:
    return [[float(v) / r.sum() for v in r] if r.sum() else None for r in counts]


def confusion_json(names: list[str], y: np.ndarray, probs: np.ndarray, multilabel: bool) -> dict:
    """The ``confusion_matrix`` block: integer counts and row-normalised rates (None for an empty row).

    Single-label: one C x C matrix (rows true, columns predicted = argmax). Multilabel: ``counts``
    and ``normalized`` are None and ``per_label`` holds one 2 x 2 matrix per label
    (rows/columns ``[negative, positive]``, prediction = ``p >= 0.5``).
    """
    c = len(names)
    if not multilabel:
        cm = np.zeros((c, c), np.int64)
        np.add.at(cm, (y, probs.argmax(axis=1)), 1)
        return {"labels": list(names), "counts": cm.tolist(), "normalized": _row_normalised(cm)}
    per_label = {}
    pred = probs >= 0.5
    for k, name in enumerate(names):
        cm = np.zeros((2, 2), np.int64)
        np.add.at(cm, (y[:, k], pred[:, k].astype(np.int64)), 1)
        per_label[name] = {"counts": cm.tolist(), "normalized": _row_normalised(cm)}
    return {"labels": list(names), "counts": None, "normalized": None, "per_label": per_label}
