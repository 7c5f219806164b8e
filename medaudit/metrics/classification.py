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

from medaudit.metrics.resample import Block


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with NaN where ``den == 0``: the undefined policy of every rate here, without warnings.

    Parameters
    ----------
    num, den : array_like
        Broadcast together.

    Returns
    -------
    ndarray of float64, the broadcast shape
    """
    num, den = np.broadcast_arrays(np.asarray(num, float), np.asarray(den, float))
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def nanmean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean over the defined (finite) entries; NaN when none is defined. No warnings.

    Parameters
    ----------
    x : ndarray, shape (..., C)
    axis : int

    Returns
    -------
    ndarray
        ``x``'s shape without ``axis``.
    """
    ok = np.isfinite(x)
    return ratio(np.where(ok, x, 0.0).sum(axis=axis), ok.sum(axis=axis))


def weighted_nanmean(x: np.ndarray, w: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean of the defined entries of ``x`` weighted by ``w`` (weights renormalised over them).

    Parameters
    ----------
    x : ndarray, shape (..., C)
    w : ndarray, broadcastable to ``x``
    axis : int

    Returns
    -------
    ndarray
        ``x``'s shape without ``axis``; NaN where no entry is defined or their weights sum to 0.
    """
    ok = np.isfinite(x)
    w = np.broadcast_to(w, x.shape)
    return ratio(np.where(ok, x * w, 0.0).sum(axis=axis), np.where(ok, w, 0.0).sum(axis=axis))


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
    f1 = ratio(2 * tp, 2 * tp + fp + fn)
    f1 = np.where(support > 0, f1, np.nan)
    return {
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, support),
        "specificity": ratio(tn, tn + fp),
        "npv": ratio(tn, tn + fn),
        "f1": f1,
        "support": support.astype(float),
    }


def averages(per: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Macro and support-weighted averages of the per-class rates.

    Parameters
    ----------
    per : dict of ndarray (B, C)
        As returned by :func:`rates`.

    Returns
    -------
    dict of ndarray (B,)
        ``macro_{precision,recall,specificity,f1}`` (mean over the classes where the rate is
        defined) and ``weighted_{precision,recall,f1}`` (weighted by support over those classes).
    """
    support = per["support"]
    out = {f"macro_{m}": nanmean(per[m]) for m in ("precision", "recall", "specificity", "f1")}
    out.update({f"weighted_{m}": weighted_nanmean(per[m], support) for m in ("precision", "recall", "f1")})
    return out


def balanced_accuracy_terms(per: dict[str, np.ndarray], multilabel: bool) -> np.ndarray:
    """Per-class terms whose mean over the classes where they are defined is the balanced accuracy.

    Parameters
    ----------
    per : dict of ndarray (B, C)
        As returned by :func:`rates`.
    multilabel : bool
        False: the recall of each class (scikit-learn's ``balanced_accuracy_score``). True: per
        label, ``(sensitivity + specificity) / 2`` (each label is its own binary problem).

    Returns
    -------
    ndarray, shape (B, C)
        NaN where the term is undefined.
    """
    return (per["recall"] + per["specificity"]) / 2.0 if multilabel else per["recall"]


def one_vs_rest_counts(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One-vs-rest counts of every class from single-label confusion matrices.

    Parameters
    ----------
    cm : ndarray, shape (B, C, C)
        Weighted confusion matrices, rows = true class, columns = predicted class.

    Returns
    -------
    tp, fp, fn, tn : ndarray of float64, shape (B, C)
    """
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum(axis=(1, 2))
    tp = np.diagonal(cm, axis1=1, axis2=2)
    fp = cm.sum(axis=1) - tp
    fn = cm.sum(axis=2) - tp
    tn = n[:, None] - tp - fp - fn
    return tp, fp, fn, tn


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
    tp, fp, fn, tn = one_vs_rest_counts(cm)
    n = cm.sum(axis=(1, 2))
    true_tot = cm.sum(axis=2)
    pred_tot = cm.sum(axis=1)
    per = rates(tp, fp, fn, tn)
    out = dict(per)
    out.update(averages(per))
    correct = tp.sum(axis=1)
    out["accuracy"] = ratio(correct, n)
    out["balanced_accuracy"] = nanmean(balanced_accuracy_terms(per, multilabel=False))
    # Cohen's kappa: (p_o - p_e) / (1 - p_e) with p_e from the marginals.
    pe = (true_tot * pred_tot).sum(axis=1)
    out["kappa"] = ratio(correct * n - pe, n * n - pe)
    # Multiclass MCC (Gorodkin 2004), as in scikit-learn's matthews_corrcoef.
    den = np.sqrt((n * n - (pred_tot**2).sum(axis=1)) * (n * n - (true_tot**2).sum(axis=1)))
    out["mcc"] = ratio(correct * n - pe, den)
    if ordinal:
        c = cm.shape[1]
        idx = np.arange(c)
        wq = (idx[:, None] - idx[None, :]) ** 2 / max(c - 1, 1) ** 2
        expected = true_tot[:, :, None] * pred_tot[:, None, :] / np.where(n > 0, n, 1)[:, None, None]
        out["kappa_quadratic"] = 1.0 - ratio((wq * cm).sum(axis=(1, 2)), (wq * expected).sum(axis=(1, 2)))
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
    out["accuracy"] = ratio(exact, n)
    out["balanced_accuracy"] = nanmean(balanced_accuracy_terms(per, multilabel=True))
    return out


# -- sum layouts: how the resampling engine (:mod:`medaudit.metrics.resample`) gathers the counts


def confusion_block(name: str, y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> Block:
    """The weighted confusion matrix of single-label predictions as a block of sums.

    Parameters
    ----------
    name : str
    y_true, y_pred : ndarray of int, shape (N,)
        True and predicted class indices in ``[0, n_classes)``.
    n_classes : int

    Returns
    -------
    Block
        ``C * C`` rows, row ``true * C + predicted``; read back with :func:`confusion_from_sums`.
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    return Block(name, y_true * n_classes + y_pred, np.arange(y_true.shape[0]), n_classes * n_classes)


def confusion_from_sums(sums: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrices from the sums of a :func:`confusion_block`.

    Parameters
    ----------
    sums : ndarray, shape (C * C, B)
    n_classes : int

    Returns
    -------
    ndarray, shape (B, C, C)
        Rows = true class, columns = predicted class.
    """
    return sums.T.reshape(sums.shape[1], n_classes, n_classes)


def label_counts_block(name: str, y_true: np.ndarray, y_pred: np.ndarray) -> Block:
    """Per-label ``tn, fp, fn, tp`` of multilabel predictions as a block of sums.

    Parameters
    ----------
    name : str
    y_true, y_pred : ndarray of 0/1, shape (N, K)

    Returns
    -------
    Block
        ``4 K`` rows, row ``4 k + 2 y + pred``; read back with :func:`label_counts_from_sums`.
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    n, k = y_true.shape
    rows = (np.arange(k)[None, :] * 4 + 2 * y_true + y_pred).ravel()
    return Block(name, rows, np.repeat(np.arange(n), k), 4 * k)


def label_counts_from_sums(sums: np.ndarray, n_labels: int) -> np.ndarray:
    """Per-label counts from the sums of a :func:`label_counts_block`.

    Parameters
    ----------
    sums : ndarray, shape (4 K, B)
    n_labels : int

    Returns
    -------
    ndarray, shape (B, K, 4)
        ``tn, fp, fn, tp`` per label, the layout :func:`multilabel_metrics` takes.
    """
    return sums.T.reshape(sums.shape[1], n_labels, 4)


def exact_match_block(name: str, y_true: np.ndarray, y_pred: np.ndarray) -> Block:
    """One row summing the samples whose whole label set is predicted exactly (subset accuracy).

    Parameters
    ----------
    name : str
    y_true, y_pred : ndarray of 0/1, shape (N, K)

    Returns
    -------
    Block
    """
    exact = np.flatnonzero((np.asarray(y_pred) == np.asarray(y_true)).all(axis=1))
    return Block(name, np.zeros(exact.size, np.int64), exact, 1)


def _row_normalised(counts: np.ndarray) -> list:
    return [[float(v) / r.sum() for v in r] if r.sum() else None for r in counts]


def confusion_json(names: list[str], y: np.ndarray, probs: np.ndarray, multilabel: bool) -> dict:
    """The ``confusion_matrix`` block: integer counts and row-normalised rates (None for an empty row).

    Parameters
    ----------
    names : list of str, length C
    y : ndarray of int, shape (N,), or (N, C) 0/1 for multilabel
    probs : ndarray of float, shape (N, C)
    multilabel : bool

    Returns
    -------
    dict
        Single-label: ``labels`` and one C x C matrix ``counts`` (rows true, columns predicted =
        argmax) with its row-normalised ``normalized``. Multilabel: ``counts`` and ``normalized``
        are None and ``per_label`` holds one 2 x 2 matrix per label (rows/columns
        ``[negative, positive]``, prediction = ``p >= 0.5``).
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
