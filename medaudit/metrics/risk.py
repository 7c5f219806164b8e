"""Clinical risk views: missed-disease (false-negative) rates and decision thresholds."""

from __future__ import annotations

import re

import numpy as np

from medaudit.errors import MedauditError
from medaudit.metrics.intervals import proportion, undefined

# Whole names (tokens joined) and token pairs that mean "no disease".
_NEGATIVE_TOKENS = {"normal", "healthy", "negative", "notumor", "notumour", "nofinding", "nofindings", "nodisease"}
_NO_WORDS = {"tumor", "tumour", "finding", "findings", "disease", "lesion"}


def detect_negative_classes(class_names) -> list[str]:
    """Class names that denote "no disease", matched on word tokens, case-insensitive.

    A name is negative when one of its tokens (split on non-alphanumerics) is ``normal``,
    ``healthy``, ``negative``, ``notumor``, ``nofinding``..., or when ``no`` is followed by
    ``tumor``/``finding``/``disease``/``lesion`` (``"No Finding"``, ``no_tumor``). Token matching
    keeps ``abnormal`` or ``benign`` out.

    Parameters
    ----------
    class_names : sequence of str, length C

    Returns
    -------
    list of str
        The matching names in their original order; ``[]`` when none match.
    """
    found = []
    for name in class_names:
        tokens = [t for t in re.split(r"[^0-9a-z]+", str(name).lower()) if t]
        pairs = zip(tokens, tokens[1:], strict=False)
        if _NEGATIVE_TOKENS.intersection(tokens) or any(a == "no" and b in _NO_WORDS for a, b in pairs):
            found.append(str(name))
    return found


def missed_disease_mask(y_true: np.ndarray, y_pred: np.ndarray, negative_idx: list[int]) -> np.ndarray:
    """The missed-disease rule (single-label): a disease sample predicted as a negative class.

    Parameters
    ----------
    y_true, y_pred : ndarray of int, shape (N,)
        True and predicted class indices.
    negative_idx : list of int
        Indices of the classes meaning "no disease"; every other class is a disease class.

    Returns
    -------
    ndarray of bool, shape (N,)
        True where the true class is a disease class and the predicted class is negative.
    """
    return ~np.isin(y_true, negative_idx) & np.isin(y_pred, negative_idx)


def missed_disease_counts(cm: np.ndarray, negative_idx: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The counts of :func:`missed_disease_mask` read off weighted confusion matrices.

    Parameters
    ----------
    cm : ndarray, shape (B, C, C)
        Weighted confusion matrices, rows = true class, columns = predicted class.
    negative_idx : list of int

    Returns
    -------
    missed, disease : ndarray of float64, shape (B,)
        Weighted number of disease samples predicted negative, and of disease samples; their
        ratio is the missed-disease rate (undefined without disease samples).
    """
    cm = np.asarray(cm, dtype=np.float64)
    negative = np.zeros(cm.shape[1], dtype=bool)
    negative[list(negative_idx)] = True
    disease_rows = cm[:, ~negative, :]
    return disease_rows[:, :, negative].sum(axis=(1, 2)), disease_rows.sum(axis=(1, 2))


def fn_risk(y_true, y_pred, class_names, negative_classes, sample_ids) -> dict:
    """Missed-disease rates: how often each disease class is called a negative ("healthy") class.

    Parameters
    ----------
    y_true, y_pred : array_like of int, shape (N,)
        True and predicted class indices. Multilabel: (N, K) 0/1 arrays, where a disease sample
        is *missed* when its predicted label set holds no disease label.
    class_names : list of str
    negative_classes : list of str
        Names of the classes meaning "no disease"; every other class is a disease class.
    sample_ids : array_like of str, shape (N,)

    Returns
    -------
    dict
        The ``fn_risk`` block: ``negative_classes``; ``overall`` — Wilson value object with
        ``k`` missed of ``n`` disease samples (any disease called negative); ``per_class`` — per
        disease class ``rate`` (value with k/n), ``missed_ids`` (sorted) and ``missed_as``
        (count per negative class; multilabel: per predicted negative label, ``"(none)"`` for an
        empty prediction). A class without samples has an undefined rate.
    """
    names = [str(c) for c in class_names]
    negatives = [str(c) for c in negative_classes]
    unknown = [c for c in negatives if c not in names]
    if not negatives or unknown:
        raise MedauditError(
            f"negative classes {unknown or '[]'} are not among the class names {names}; pass existing class names",
            param="negative_classes",
        )
    if len(negatives) == len(names):
        raise MedauditError("every class is a negative class, so no disease can be missed", param="negative_classes")
    y, p = np.asarray(y_true), np.asarray(y_pred)
    ids = np.asarray(sample_ids).astype(str)
    if y.shape != p.shape or ids.shape[0] != y.shape[0]:
        raise MedauditError(f"fn_risk: y_true {y.shape}, y_pred {p.shape} and sample_ids {ids.shape} do not match")
    neg_idx = [names.index(c) for c in negatives]
    disease_idx = [j for j in range(len(names)) if j not in neg_idx]
    if y.ndim == 2:
        members = {j: y[:, j].astype(bool) for j in disease_idx}
        any_disease = y[:, disease_idx].astype(bool).any(axis=1)
        missed_any = any_disease & ~p[:, disease_idx].astype(bool).any(axis=1)  # no disease label predicted
    else:
        members = {j: y == j for j in disease_idx}
        any_disease = ~np.isin(y, neg_idx)
        missed_any = missed_disease_mask(y, p, neg_idx)

    per_class = {}
    for j in disease_idx:
        name = names[j]
        missed = members[j] & missed_any  # a member of a disease class is a disease sample
        per_class[name] = {
            "rate": proportion(missed.sum(), members[j].sum(), f"no samples of class '{name}' in y_true"),
            "missed_ids": sorted(ids[missed].tolist()),
            "missed_as": _missed_as(p[missed], neg_idx, names),
        }
    return {
        "negative_classes": negatives,
        "overall": proportion(missed_any.sum(), any_disease.sum(), "no disease samples in y_true"),
        "per_class": per_class,
    }


def _missed_as(pred: np.ndarray, neg_idx: list[int], names: list[str]) -> dict[str, int]:
    if pred.ndim == 1:
        return {names[j]: int((pred == j).sum()) for j in neg_idx}
    out = {names[j]: int(pred[:, j].sum()) for j in neg_idx}
    out["(none)"] = int((~pred.astype(bool).any(axis=1)).sum())
    return out


# -- operating points ---------------------------------------------------------------------


def _binary(y, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise MedauditError(f"operating_points: {name} must be a 1-D array of 0/1 (1 = disease/positive)")
    return y.astype(bool)


def _sens_spec(y: np.ndarray, score: np.ndarray, threshold: float | None) -> dict:
    """Sensitivity and specificity of ``score >= threshold`` with Wilson intervals."""
    if threshold is None:
        reason = "no threshold could be chosen (the choice split lacks positives or negatives)"
        return {"sensitivity": undefined(reason), "specificity": undefined(reason)}
    called = score >= threshold
    return {
        "sensitivity": proportion((called & y).sum(), y.sum(), "no positive samples in the test split"),
        "specificity": proportion((~called & ~y).sum(), (~y).sum(), "no negative samples in the test split"),
    }


def _choose(y: np.ndarray, score: np.ndarray, target: float) -> tuple[float | None, float | None]:
    """Youden threshold and the highest threshold reaching ``target`` sensitivity (rule: score >= t).

    Candidates are the distinct scores. Youden ties go to the highest threshold (fewest positive
    calls). Returns None for a threshold that cannot be chosen.
    """
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0:
        return None, None
    cand = np.unique(score)[::-1]  # descending
    order = np.argsort(-score, kind="stable")
    s_sorted, y_sorted = score[order], y[order]
    # Number of samples with score >= cand[i]: position after the last equal score.
    upto = np.searchsorted(-s_sorted, -cand, side="right")
    tp = np.concatenate([[0], np.cumsum(y_sorted)])[upto]
    sens = tp / n_pos
    reach = np.flatnonzero(sens >= target)
    target_thr = float(cand[reach[0]]) if reach.size else None
    if n_neg == 0:
        return None, target_thr
    fp = upto - tp
    youden = sens - fp / n_neg
    return float(cand[int(np.argmax(youden))]), target_thr


def operating_points(
    y_true_test,
    score_test,
    *,
    y_true_val=None,
    score_val=None,
    target_sensitivity: float = 0.95,
    positive: str = "disease",
) -> dict:
    """Sensitivity/specificity on test at three decision thresholds.

    Parameters
    ----------
    y_true_test : array_like of 0/1, shape (N,)
        1 = disease / positive.
    score_test : array_like of float, shape (N,)
        Score of the positive outcome (e.g. ``p(disease) = 1 - sum p(negative classes)``).
    y_true_val, score_val : array_like, optional
        Validation labels and scores: when both are given the thresholds are chosen there and
        applied to test; otherwise they are chosen on test itself (optimistic) and ``note`` says so.
    target_sensitivity : float
        For the ``target_sensitivity_<t>`` point: the highest threshold whose sensitivity on the
        choice split is >= this.
    positive : str
        Name of the positive outcome, copied to the output.

    Returns
    -------
    dict
        The ``operating_points`` block: ``positive``, ``score``, ``points`` (``default_0.5``,
        ``youden``, ``target_sensitivity_<t>``; each with ``threshold``, ``chosen_on``,
        ``sensitivity``, ``specificity`` as Wilson value objects; the target point adds ``target``
        and ``reached_on_choice_split``), ``note``. Decision rule: positive when ``score >= threshold``.
    """
    if not 0.0 < target_sensitivity <= 1.0:
        raise MedauditError(f"target sensitivity must be in (0, 1], got {target_sensitivity}")
    y_test = _binary(y_true_test, "y_true_test")
    s_test = np.asarray(score_test, dtype=np.float64)
    if s_test.shape != y_test.shape:
        raise MedauditError(
            f"operating_points: score_test shape {s_test.shape} does not match y_true_test {y_test.shape}"
        )
    if (y_true_val is None) != (score_val is None):
        raise MedauditError("operating_points: give both y_true_val and score_val, or neither")
    if y_true_val is not None:
        y_choice, s_choice, chosen_on = _binary(y_true_val, "y_true_val"), np.asarray(score_val, np.float64), "val"
        if s_choice.shape != y_choice.shape:
            raise MedauditError("operating_points: score_val and y_true_val have different shapes")
        note = "thresholds chosen on the validation split and applied to test"
    else:
        y_choice, s_choice, chosen_on = y_test, s_test, "test"
        note = ("no validation predictions: thresholds chosen on the test split itself, so test "
                "sensitivity/specificity at youden and target points are optimistic")  # fmt: skip
    youden_thr, target_thr = _choose(y_choice, s_choice, target_sensitivity)
    points = [
        {"name": "default_0.5", "threshold": 0.5, "chosen_on": "fixed", **_sens_spec(y_test, s_test, 0.5)},
        {"name": "youden", "threshold": youden_thr, "chosen_on": chosen_on, **_sens_spec(y_test, s_test, youden_thr)},
        {
            "name": f"target_sensitivity_{target_sensitivity:g}",
            "threshold": target_thr,
            "chosen_on": chosen_on,
            "target": float(target_sensitivity),
            "reached_on_choice_split": target_thr is not None,
            **_sens_spec(y_test, s_test, target_thr),
        },
    ]
    return {"positive": positive, "score": "p(positive)", "points": points, "note": note}
