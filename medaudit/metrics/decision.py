"""From scores to clinical decisions: deployment prevalence, costs, decision curves (issue 20).

Pure functions of labels and scores (numpy + scipy through the engine; never torch). A disease is
scored as in :mod:`medaudit.metrics.risk`: ``p(disease) = 1 - sum p(negative classes)`` for the
disease-vs-healthy collapse, ``p(class)`` one-vs-rest for one disease class, and one label's
probability for multilabel tasks (:func:`disease_outcome`). The decision rule is always
"treat / call positive when ``score >= threshold``", as in :func:`~medaudit.metrics.risk.operating_points`.

Intervals come from the one bootstrap engine (:mod:`medaudit.metrics.resample`,
:func:`~medaudit.metrics.intervals.percentile_ci`): every statistic here is a function of
confusion counts at fixed thresholds, so each resample is one sparse product.

Which resampling:

* a **deployment prevalence** given by the user is fixed, so the bootstrap resamples within each
  true class (stratified: sensitivity and specificity vary, the prevalence does not);
* without one, the prevalence is the test sample's own, estimated from the same data, so the
  bootstrap resamples samples as a whole and its uncertainty is part of the interval.

Anything *chosen* (the cost-optimal threshold) is chosen on the validation arrays and applied to
the test arrays; without validation arrays it is chosen on test and the output says it is optimistic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np

from medaudit.errors import MedauditError
from medaudit.metrics.classification import confusion_block, confusion_from_sums, ratio
from medaudit.metrics.intervals import estimate, percentile_ci, proportion, undefined
from medaudit.metrics.resample import Block, SumDesign, point_and_bootstrap

# Default decision-curve grid: 1 % to 50 % in steps of 1 %. A threshold probability above 50 %
# says a false positive is worse than a missed disease, which is rare for a diagnostic
# work-up; callers with such a use pass their own grid.
DEFAULT_THRESHOLDS = tuple(np.arange(1, 51) / 100)


# -- checks -------------------------------------------------------------------------------


def _check_common(alpha: float, n_bootstrap: int) -> None:
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha < 1.0):
        raise MedauditError(f"alpha must be in (0, 1) (0.05 = 95 % intervals), got {alpha!r}", param="alpha")
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 0:
        raise MedauditError(f"n_bootstrap must be a whole number >= 0, got {n_bootstrap!r}", param="n_bootstrap")


def _check_prevalence(prevalence) -> float | None:
    if prevalence is None:
        return None
    try:
        value = float(prevalence)
    except (TypeError, ValueError):
        raise MedauditError(f"prevalence must be a number in (0, 1), got {prevalence!r}", param="prevalence") from None
    if not 0.0 < value < 1.0:
        raise MedauditError(f"prevalence must be in (0, 1) (e.g. 0.02 for 2 %), got {prevalence!r}", param="prevalence")
    return value


def _binary(y, score, what: str, *, probability: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Checked 0/1 labels (N,) int64 and finite scores (N,) float64."""
    y, s = np.asarray(y), np.asarray(score, dtype=np.float64)
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise MedauditError(f"{what}: y_true must be a 1-D array of 0/1 (1 = disease)")
    if s.shape != y.shape:
        raise MedauditError(f"{what}: scores have shape {s.shape}, labels {y.shape}; give one score per sample")
    if y.size == 0:
        raise MedauditError(f"{what}: no samples")
    if not np.isfinite(s).all():
        raise MedauditError(f"{what}: scores contain NaN or inf")
    if probability and (s.min() < 0.0 or s.max() > 1.0):
        raise MedauditError(f"{what}: scores must be probabilities in [0, 1] (a threshold probability is compared to them)")
    return y.astype(np.int64), s


def _prevalence_json(pi: float | None, y: np.ndarray) -> dict:
    if pi is None:
        return {"value": float(y.mean()), "source": "test sample"}
    return {"value": pi, "source": "deployment (given)", "test_sample": float(y.mean())}


def _settings(n_bootstrap: int, seed: int, alpha: float, stratified: bool) -> dict:
    how = ("stratified by true class (the given prevalence is fixed)" if stratified
           else "samples resampled as a whole (the prevalence is estimated from them)")
    return {"n_bootstrap": int(n_bootstrap), "seed": int(seed), "confidence": 1 - alpha,
            "method": f"percentile bootstrap, {how}"}


def _run(y: np.ndarray, blocks: list[Block], evaluate, keys, stratified: bool, n_bootstrap: int, seed: int,
         alpha: float) -> tuple[dict, dict]:
    """Point values and (2, ...) percentile intervals of ``keys``; samples must be sorted by ``y``."""
    strata = np.bincount(y, minlength=2).tolist() if stratified else [len(y)]
    point, boot = point_and_bootstrap(SumDesign(len(y), blocks), evaluate, strata, n_bootstrap, seed, list(keys))
    ci = {}
    for k in keys:
        shape = np.shape(point[k])
        flat = percentile_ci(boot[k].reshape(n_bootstrap, int(np.prod(shape))), alpha)
        ci[k] = flat.reshape((2, *shape))
    return point, ci


def _order(y: np.ndarray, scores: list[np.ndarray]) -> np.ndarray:
    """Canonical order, by true class then scores: strata contiguous, output independent of input order."""
    return np.lexsort([*reversed(scores), y])


# -- the disease score ----------------------------------------------------------------------


def disease_outcome(y_true, probs, class_names, *, negative_classes: Sequence[str] = (),
                    disease_class: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Collapse a classifier's output to one binary disease outcome and its score.

    Parameters
    ----------
    y_true : array_like of int, shape (N,), or (N, K) 0/1 for multilabel tasks
    probs : array_like of float, shape (N, C)
    class_names : sequence of str, length C
    negative_classes : sequence of str
        The "healthy" classes. Without ``disease_class``: disease = any other class, score
        ``p(disease) = 1 - sum p(negative classes)`` (clipped to [0, 1]).
    disease_class : str, optional
        One class (or label) one-vs-rest: disease = that class, score = its probability.
        Required for multilabel tasks.

    Returns
    -------
    y : ndarray of int64, shape (N,)
        1 = disease.
    score : ndarray of float64, shape (N,)
    label : str
        What the outcome is, in words ("disease (not normal)", or the class name).

    Raises
    ------
    MedauditError
        Unknown class names (``param="negative_classes"`` / ``"disease_class"``), every class
        negative, neither option given, or shapes that do not match.
    """
    names = [str(c) for c in class_names]
    y, p = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(names) or p.shape[0] != y.shape[0]:
        raise MedauditError(f"disease_outcome: probabilities have shape {p.shape}, expected ({y.shape[0]}, {len(names)})")
    if disease_class is not None:
        if disease_class not in names:
            raise MedauditError(f"{disease_class!r} is not a class; classes are: {', '.join(names)}",
                                param="disease_class")
        k = names.index(disease_class)
        yk = y[:, k] if y.ndim == 2 else (y == k)
        return np.asarray(yk).astype(np.int64), p[:, k].copy(), disease_class
    if y.ndim == 2:
        raise MedauditError("multilabel task: name the label to score (one outcome per label)", param="disease_class")
    negatives = [str(c) for c in negative_classes]
    unknown = [c for c in negatives if c not in names]
    if unknown or not negatives:
        raise MedauditError(f"negative classes {unknown or '[]'} are not among the class names {names}; "
                            "pass existing class names (or a disease class)", param="negative_classes")
    neg_idx = sorted({names.index(c) for c in negatives})
    if len(neg_idx) == len(names):
        raise MedauditError("every class is a negative class, so there is no disease to score", param="negative_classes")
    outcome = (~np.isin(y, neg_idx)).astype(np.int64)
    score = np.clip(1.0 - p[:, neg_idx].sum(axis=1), 0.0, 1.0)  # rounding can leave 1 - sum slightly < 0
    return outcome, score, "disease (not " + " / ".join(names[j] for j in neg_idx) + ")"


# -- PPV and NPV at a deployment prevalence -------------------------------------------------


def bayes_ppv_npv(sensitivity, specificity, prevalence: float) -> tuple[np.ndarray, np.ndarray]:
    """PPV and NPV at a prevalence from sensitivity and specificity (Bayes' theorem).

    Parameters
    ----------
    sensitivity, specificity : array_like of float, broadcast together
        NaN where undefined.
    prevalence : float
        In (0, 1).

    Returns
    -------
    ppv, npv : ndarray of float64, the broadcast shape
        ``ppv = se pi / (se pi + (1 - sp)(1 - pi))``, ``npv = sp (1 - pi) / (sp (1 - pi) + (1 - se) pi)``;
        NaN when an input is NaN or the denominator is 0 (no one, or everyone, called positive).
    """
    pi = _check_prevalence(prevalence)
    se, sp = np.asarray(sensitivity, np.float64), np.asarray(specificity, np.float64)
    true_pos, false_pos = se * pi, (1.0 - sp) * (1.0 - pi)
    true_neg, false_neg = sp * (1.0 - pi), (1.0 - se) * pi
    return ratio(true_pos, true_pos + false_pos), ratio(true_neg, true_neg + false_neg)


def _binary_counts(sums: np.ndarray) -> tuple[np.ndarray, ...]:
    """``tn, fp, fn, tp`` (m,) each from a 2-class confusion block (row true * 2 + called)."""
    cm = confusion_from_sums(sums, 2).astype(np.float64)
    return cm[:, 0, 0], cm[:, 0, 1], cm[:, 1, 0], cm[:, 1, 1]


def ppv_npv_at_prevalence(y_true, score, prevalence: float, *, threshold: float = 0.5, n_bootstrap: int = 1000,
                          seed: int = 0, alpha: float = 0.05) -> dict:
    """PPV and NPV at a deployment prevalence, from test sensitivity and specificity at a threshold.

    Parameters
    ----------
    y_true : array_like of 0/1, shape (N,)
        Test labels, 1 = disease (see :func:`disease_outcome`).
    score : array_like of float, shape (N,)
        Test scores; positive call when ``score >= threshold``.
    prevalence : float
        The share of disease where the model will be used, in (0, 1).
    threshold : float
        Decision threshold, fixed beforehand (e.g. an operating point chosen on validation).
    n_bootstrap : int
        Resamples, stratified by true class (0 = no intervals for PPV/NPV).
    seed : int
    alpha : float
        1 - confidence level.

    Returns
    -------
    dict
        ``prevalence``, ``threshold``, ``sensitivity`` and ``specificity`` (Wilson value objects
        with k/n), ``ppv`` and ``npv`` (bootstrap value objects: the Bayes formula applied to each
        resample's sensitivity and specificity, so their uncertainty propagates), ``settings``.
        Undefined values are None with a ``reason``.
    """
    pi = _check_prevalence(prevalence)
    if pi is None:
        raise MedauditError("a deployment prevalence is required for PPV/NPV at deployment", param="prevalence")
    _check_common(alpha, n_bootstrap)
    y, s = _binary(y_true, score, "ppv_npv_at_prevalence")
    if not np.isfinite(threshold):
        raise MedauditError(f"threshold must be a finite number, got {threshold!r}", param="threshold")
    order = _order(y, [s])
    y, s = y[order], s[order]
    called = (s >= threshold).astype(np.int64)

    def evaluate(sums):
        tn, fp, fn, tp = _binary_counts(sums["cm"])
        ppv, npv = bayes_ppv_npv(ratio(tp, tp + fn), ratio(tn, tn + fp), pi)
        return {"ppv": ppv, "npv": npv}

    point, ci = _run(y, [confusion_block("cm", y, called, 2)], evaluate, ("ppv", "npv"), True, n_bootstrap, seed, alpha)
    tp, fn = int((called & y).sum()), int(((1 - called) & y).sum())
    tn, fp = int(((1 - called) & (1 - y)).sum()), int((called & (1 - y)).sum())
    why = _ppv_npv_reasons(tp + fn, tn + fp, tp + fp, tn + fn)
    return {
        "prevalence": _prevalence_json(pi, y),
        "threshold": float(threshold),
        "rule": "score >= threshold",
        "sensitivity": proportion(tp, tp + fn, "no disease samples in the test split", alpha),
        "specificity": proportion(tn, tn + fp, "no samples without disease in the test split", alpha),
        "ppv": estimate(point["ppv"], tuple(ci["ppv"]), why["ppv"]),
        "npv": estimate(point["npv"], tuple(ci["npv"]), why["npv"]),
        "settings": _settings(n_bootstrap, seed, alpha, True),
    }


def _ppv_npv_reasons(n_pos: int, n_neg: int, n_called: int, n_cleared: int) -> dict:
    if n_pos == 0 or n_neg == 0:
        missing = "disease samples" if n_pos == 0 else "samples without disease"
        reason = f"sensitivity or specificity is undefined: no {missing} in the test split"
        return {"ppv": reason, "npv": reason}
    return {"ppv": "no test sample is called positive at this threshold (sensitivity 0, specificity 1)",
            "npv": "every test sample is called positive at this threshold (sensitivity 1, specificity 0)"}


# -- expected cost (binary) -----------------------------------------------------------------


def _check_costs(cost_fn, cost_fp) -> tuple[float, float]:
    try:
        c_fn, c_fp = float(cost_fn), float(cost_fp)
    except (TypeError, ValueError):
        raise MedauditError(f"costs must be numbers, got FN={cost_fn!r}, FP={cost_fp!r}", param="cost") from None
    if not (np.isfinite(c_fn) and np.isfinite(c_fp)) or c_fn < 0 or c_fp < 0 or c_fn + c_fp == 0:
        raise MedauditError(f"costs must be finite and >= 0, not both 0; got FN={cost_fn!r}, FP={cost_fp!r}",
                            param="cost")
    return c_fn, c_fp


def _policy_costs(tn, fp, fn, tp, c_fn: float, c_fp: float, pi: float | None) -> dict[str, np.ndarray]:
    """Expected cost per patient of the model and of both trivial policies, from counts (m,)."""
    n_pos, n_neg = tp + fn, tn + fp
    if pi is None:
        n = n_pos + n_neg
        model = ratio(c_fn * fn + c_fp * fp, n)
        all_, none = ratio(c_fp * n_neg, n), ratio(c_fn * n_pos, n)
    else:
        model = pi * c_fn * ratio(fn, n_pos) + (1 - pi) * c_fp * ratio(fp, n_neg)
        all_ = np.full(np.shape(tp), (1 - pi) * c_fp)
        none = np.full(np.shape(tp), pi * c_fn)
    best = np.minimum(all_, none)
    return {"cost": model, "treat_all": all_, "treat_none": none, "normalised": ratio(model, best)}


def choose_cost_threshold(y_true, score, *, cost_fn: float, cost_fp: float, prevalence: float | None = None) -> dict:
    """The threshold that minimises expected cost per patient on the given (validation) split.

    Parameters
    ----------
    y_true : array_like of 0/1, shape (N,)
    score : array_like of float, shape (N,)
    cost_fn, cost_fp : float
        Cost of a missed disease and of a false alarm (same units; only their ratio matters
        for the choice).
    prevalence : float, optional
        Deployment prevalence: cost ``pi c_FN (1 - se) + (1 - pi) c_FP (1 - sp)``; None: the
        split's own mix, ``(c_FN FN + c_FP FP) / N``.

    Returns
    -------
    dict
        ``threshold`` (a distinct score, or None when treating no one is cheapest), ``policy``
        ("model", "treat all", "treat none"), ``expected_cost`` on this split, and ``reason``
        (None, or why no threshold could be chosen). Candidates are the distinct scores (the
        lowest treats everyone) and "treat none"; ties go to the highest threshold (fewest
        positive calls), as Youden ties in :func:`~medaudit.metrics.risk.operating_points`.
    """
    c_fn, c_fp = _check_costs(cost_fn, cost_fp)
    pi = _check_prevalence(prevalence)
    y, s = _binary(y_true, score, "choose_cost_threshold")
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if pi is not None and (n_pos == 0 or n_neg == 0):
        return {"threshold": None, "policy": None, "expected_cost": None,
                "reason": "the choice split needs disease samples and samples without disease to weigh them "
                          "at the deployment prevalence"}
    cand = np.unique(s)  # ascending; cand[0] calls everyone
    # Samples with score >= cand[k]: those not strictly below it.
    tp = n_pos - np.searchsorted(np.sort(s[y == 1]), cand, side="left")
    fp = n_neg - np.searchsorted(np.sort(s[y == 0]), cand, side="left")
    tp, fp = np.append(tp, 0).astype(float), np.append(fp, 0).astype(float)  # last = treat none
    costs = _policy_costs(n_neg - fp, fp, n_pos - tp, tp, c_fn, c_fp, pi)["cost"]
    best = np.flatnonzero(costs <= costs.min() + 1e-12 * max(1.0, abs(costs.min())))[-1]
    if best == len(cand):
        return {"threshold": None, "policy": "treat none", "expected_cost": float(costs[best]), "reason": None}
    policy = "treat all" if best == 0 else "model"
    return {"threshold": float(cand[best]), "policy": policy, "expected_cost": float(costs[best]), "reason": None}


def expected_cost(y_true_test, score_test, *, cost_fn: float, cost_fp: float, y_true_val=None, score_val=None,
                  prevalence: float | None = None, n_bootstrap: int = 1000, seed: int = 0,
                  alpha: float = 0.05) -> dict:
    """Expected cost per patient at the cost-optimal threshold, chosen on validation and applied to test.

    Parameters
    ----------
    y_true_test : array_like of 0/1, shape (N,)
    score_test : array_like of float, shape (N,)
    cost_fn, cost_fp : float
        Cost of a missed disease (FN) and of a false alarm (FP); correct calls cost 0.
    y_true_val, score_val : array_like, shape (M,), optional
        The split the threshold is chosen on (:func:`choose_cost_threshold`). Without them the
        threshold is chosen on test and ``note`` says the test cost is optimistic.
    prevalence : float, optional
        Deployment prevalence in (0, 1); None: the test sample's mix.
    n_bootstrap : int
    seed : int
    alpha : float

    Returns
    -------
    dict
        ``costs``, ``prevalence``, ``bayes_threshold`` (``c_FP / (c_FP + c_FN)``: the optimal
        threshold for probabilities calibrated to the prevalence used), ``choice`` (from
        :func:`choose_cost_threshold`, with ``chosen_on``), and ``test``: ``expected_cost``,
        ``treat_all_cost``, ``treat_none_cost``, ``normalised_cost`` (model cost / cheaper
        trivial policy, per resample: below 1 = better than the best of treat all / treat
        none) as bootstrap value objects, ``best_trivial``, ``sensitivity`` and ``specificity``
        (Wilson). ``note``, ``settings``.
    """
    c_fn, c_fp = _check_costs(cost_fn, cost_fp)
    pi = _check_prevalence(prevalence)
    _check_common(alpha, n_bootstrap)
    y, s = _binary(y_true_test, score_test, "expected_cost")
    if (y_true_val is None) != (score_val is None):
        raise MedauditError("expected_cost: give both y_true_val and score_val, or neither")
    if y_true_val is not None:
        choice = choose_cost_threshold(y_true_val, score_val, cost_fn=c_fn, cost_fp=c_fp, prevalence=pi)
        choice["chosen_on"] = "val"
        note = "threshold chosen on the validation split and applied to test"
    else:
        choice = choose_cost_threshold(y, s, cost_fn=c_fn, cost_fp=c_fp, prevalence=pi)
        choice["chosen_on"] = "test"
        note = "no validation predictions: threshold chosen on the test split itself, so the test cost is optimistic"
    order = _order(y, [s])
    y, s = y[order], s[order]
    chosen = choice["policy"] is not None
    t = choice["threshold"]
    called = (s >= t) if t is not None else np.zeros(len(s), bool)
    called = called.astype(np.int64)

    def evaluate(sums):
        return _policy_costs(*_binary_counts(sums["cm"]), c_fn, c_fp, pi)

    keys = ("cost", "treat_all", "treat_none", "normalised")
    point, ci = _run(y, [confusion_block("cm", y, called, 2)], evaluate, keys, pi is not None, n_bootstrap, seed,
                     alpha)
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    tp, tn = int((called & y).sum()), int(((1 - called) & (1 - y)).sum())
    no_choice = choice["reason"] or ""
    cost_reason = no_choice or "sensitivity or specificity is undefined on test (one class is missing)"
    trivial = (point["treat_all"], point["treat_none"])
    test = {
        "expected_cost": estimate(point["cost"], tuple(ci["cost"]), cost_reason) if chosen else undefined(no_choice),
        "treat_all_cost": estimate(point["treat_all"], tuple(ci["treat_all"]), "no samples"),
        "treat_none_cost": estimate(point["treat_none"], tuple(ci["treat_none"]), "no samples"),
        "normalised_cost": (estimate(point["normalised"], tuple(ci["normalised"]),
                                     "the cheaper trivial policy costs nothing here (one class missing or a cost 0)")
                            if chosen else undefined(no_choice)),
        "best_trivial": "treat all" if trivial[0] < trivial[1] else "treat none" if trivial[1] < trivial[0] else "tie",
        "sensitivity": (proportion(tp, n_pos, "no disease samples in the test split", alpha)
                        if chosen else undefined(no_choice)),
        "specificity": (proportion(tn, n_neg, "no samples without disease in the test split", alpha)
                        if chosen else undefined(no_choice)),
    }
    return {
        "costs": {"FN": c_fn, "FP": c_fp},
        "prevalence": _prevalence_json(pi, y),
        "bayes_threshold": c_fp / (c_fp + c_fn),
        "rule": "score >= threshold",
        "choice": choice,
        "test": test,
        "note": note,
        "settings": _settings(n_bootstrap, seed, alpha, pi is not None),
    }


# -- expected cost (cost matrix) -------------------------------------------------------------


def cost_matrix_decisions(y_true, probs, class_names, cost_matrix, *, n_bootstrap: int = 1000, seed: int = 0,
                          alpha: float = 0.05) -> dict:
    """Expected cost per patient of single-label decisions under a full cost matrix.

    Parameters
    ----------
    y_true : array_like of int, shape (N,)
        Test class indices.
    probs : array_like of float, shape (N, C)
    class_names : sequence of str, length C
    cost_matrix : array_like of float, shape (C, C)
        ``cost_matrix[i][j]`` = cost of deciding class ``j`` for a patient of class ``i``
        (rows = true class, as a confusion matrix); finite, >= 0.
    n_bootstrap : int
        Resamples of whole samples (the class mix is the test sample's, estimated from it).
    seed : int
    alpha : float

    Returns
    -------
    dict
        ``policies``: ``argmax`` (the most probable class) and ``min_expected_cost`` (the class
        ``j`` minimising ``sum_i p_i C[i, j]`` under the model's probabilities: the Bayes rule,
        cost-optimal when they are calibrated; nothing is fitted, so nothing is chosen on
        validation), each with ``expected_cost`` and ``normalised_cost`` (over the cheapest
        constant decision, per resample) as bootstrap value objects; ``constant``: the cost of
        always deciding each class; ``best_constant`` (chosen on test: it flatters the
        reference, so a normalised cost below 1 is conservative); ``settings``.
    """
    names = [str(c) for c in class_names]
    _check_common(alpha, n_bootstrap)
    c = len(names)
    cm = np.asarray(cost_matrix, dtype=np.float64)
    if cm.shape != (c, c) or not np.isfinite(cm).all() or (cm < 0).any():
        raise MedauditError(f"the cost matrix must be {c}x{c} (true class x decided class, classes "
                            f"{', '.join(names)}) of finite costs >= 0, got shape {cm.shape}", param="cost")
    y, p = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    if y.ndim != 1 or p.shape != (y.shape[0], c) or y.size == 0:
        raise MedauditError(f"cost_matrix_decisions: y_true (N,) and probs (N, {c}) expected, got {y.shape}, {p.shape}")
    if not np.isfinite(p).all() or not np.isin(y, np.arange(c)).all():
        raise MedauditError(f"cost_matrix_decisions: y_true must be class indices in [0, {c}) and probs finite")
    y = y.astype(np.int64)
    order = _order(y, [p[:, j] for j in range(c)])
    y, p = y[order], p[order]
    decisions = {"argmax": p.argmax(axis=1), "min_expected_cost": (p @ cm).argmin(axis=1)}
    blocks = [confusion_block(k, y, d, c) for k, d in decisions.items()]

    def evaluate(sums):
        conf = confusion_from_sums(sums["argmax"], c).astype(np.float64)
        n = conf.sum(axis=(1, 2))
        mix = conf.sum(axis=2)  # (m, C) patients per true class
        constant = ratio(mix @ cm, n[:, None])  # (m, C): always deciding class j
        best = constant.min(axis=1)
        out = {"constant": constant}
        for k in decisions:
            conf_k = confusion_from_sums(sums[k], c).astype(np.float64)
            out[k] = ratio((conf_k * cm).sum(axis=(1, 2)), n)
            out[f"{k}_normalised"] = ratio(out[k], best)
        return out

    keys = ("constant", *decisions, *(f"{k}_normalised" for k in decisions))
    point, ci = _run(y, blocks, evaluate, keys, False, n_bootstrap, seed, alpha)
    best = int(np.argmin(point["constant"]))
    policies = {
        k: {"expected_cost": estimate(point[k], tuple(ci[k]), "no samples"),
            "normalised_cost": estimate(point[f"{k}_normalised"], tuple(ci[f"{k}_normalised"]),
                                        "the cheapest constant decision costs nothing on this sample")}
        for k in decisions
    }
    return {
        "cost_matrix": {"classes": names, "rows": "true class", "columns": "decided class", "values": cm.tolist()},
        "policies": policies,
        "constant": {nm: estimate(point["constant"][j], tuple(ci["constant"][:, j]), "no samples")
                     for j, nm in enumerate(names)},
        "best_constant": names[best],
        "settings": _settings(n_bootstrap, seed, alpha, False),
    }


# -- decision curves -------------------------------------------------------------------------


def _thresholds(thresholds) -> np.ndarray:
    t = np.asarray(DEFAULT_THRESHOLDS if thresholds is None else thresholds, dtype=np.float64)
    if t.ndim != 1 or t.size == 0 or not np.isfinite(t).all() or (t <= 0).any() or (t >= 1).any():
        raise MedauditError("threshold probabilities must be a non-empty list of numbers in (0, 1)",
                            param="dca_thresholds")
    if (np.diff(t) <= 0).any():
        raise MedauditError("threshold probabilities must be strictly increasing", param="dca_thresholds")
    return t


def net_benefit(tp, fp, n_pos, n_neg, thresholds, prevalence: float | None = None) -> np.ndarray:
    """Net benefit (Vickers & Elkin 2006) from counts at each threshold probability.

    Parameters
    ----------
    tp, fp : array_like, shape (..., K)
        Disease samples and samples without disease with ``score >= thresholds[k]``.
    n_pos, n_neg : array_like, broadcast against ``tp[..., 0]``
        Disease samples and samples without disease.
    thresholds : array_like, shape (K,)
        Threshold probabilities ``t`` in (0, 1).
    prevalence : float, optional
        Deployment prevalence ``pi``: ``pi TPR - (1 - pi) FPR t / (1 - t)``. None:
        ``TP / N - FP / N t / (1 - t)`` with the sample's own mix.

    Returns
    -------
    ndarray of float64, shape (..., K)
        NaN where a rate is undefined (deployment prevalence and a class missing).
    """
    t = np.asarray(thresholds, np.float64)
    odds = t / (1.0 - t)
    tp, fp = np.asarray(tp, np.float64), np.asarray(fp, np.float64)
    n_pos, n_neg = np.asarray(n_pos, np.float64)[..., None], np.asarray(n_neg, np.float64)[..., None]
    if prevalence is None:
        n = n_pos + n_neg
        return ratio(tp, n) - ratio(fp, n) * odds
    return prevalence * ratio(tp, n_pos) - (1.0 - prevalence) * ratio(fp, n_neg) * odds


def _dca_block(name: str, y: np.ndarray, s: np.ndarray, t: np.ndarray) -> Block:
    """Row ``y * (K + 1) + b``, ``b`` = number of thresholds <= score: one row per (class, bin)."""
    b = np.searchsorted(t, s, side="right")
    return Block(name, y * (t.size + 1) + b, np.arange(y.size), 2 * (t.size + 1))


def _called_counts(sums: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """``tp, fp`` (m, K) and ``n_pos, n_neg`` (m,) from a :func:`_dca_block`'s sums."""
    bins = sums.astype(np.float64).reshape(2, k + 1, -1)  # (class, bin, m)
    above = np.cumsum(bins[:, ::-1], axis=1)[:, ::-1]  # above[c, b] = samples of class c in bins >= b
    # score >= t_k  <=>  bin > k
    return above[1, 1:].T, above[0, 1:].T, above[1, 0], above[0, 0]


def decision_curves(y_true, scores: Mapping[str, np.ndarray], *, thresholds=None, prevalence: float | None = None,
                    n_bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Decision curves: net benefit of each model, treat all and treat none, with bootstrap bands.

    Parameters
    ----------
    y_true : array_like of 0/1, shape (N,)
        Test labels, 1 = disease (see :func:`disease_outcome`).
    scores : mapping of str to array_like of float, each shape (N,)
        Model name -> predicted probability of disease, same samples in the same order.
    thresholds : array_like of float, shape (K,), optional
        Threshold probabilities, strictly increasing in (0, 1); default :data:`DEFAULT_THRESHOLDS`
        (1 % to 50 % by 1 %).
    prevalence : float, optional
        Deployment prevalence: NB(t) = pi TPR(t) - (1 - pi) FPR(t) t / (1 - t), resampled within
        each true class. None: the test sample's own mix, resampled as a whole.
    n_bootstrap : int
        Resamples, shared by all models (paired), 0 = no bands.
    seed : int
    alpha : float
        1 - confidence level of the pointwise bands.

    Returns
    -------
    dict
        ``thresholds`` (K,), ``prevalence``, ``treat_all`` and ``treat_none`` (``net_benefit``,
        ``ci_low``, ``ci_high`` lists), ``models``: per model ``net_benefit`` with its band,
        ``vs_treat_all`` (the paired difference NB(model) - NB(treat all) with its band) and
        ``interventions_avoided_per_100`` (that difference times ``100 (1 - t) / t``, with its
        band); ``comparisons``: paired differences between every pair of models; ``settings``.
        Lists hold None where undefined (``reason`` then says why). Rule: treat when
        ``score >= t``, as in ``dcurves``. Bands are pointwise percentile intervals.
    """
    pi = _check_prevalence(prevalence)
    _check_common(alpha, n_bootstrap)
    t = _thresholds(thresholds)
    if not scores:
        raise MedauditError("decision_curves: no models given")
    names = [str(m) for m in scores]
    y = None
    checked = []
    for nm in names:
        y, s = _binary(y_true, scores[nm], f"decision_curves ({nm})", probability=True)
        checked.append(s)
    order = _order(y, checked)
    y = y[order]
    checked = [s[order] for s in checked]
    k = t.size
    odds = t / (1.0 - t)
    blocks = [_dca_block(f"m{j}", y, s, t) for j, s in enumerate(checked)]

    def evaluate(sums):
        out = {}
        for j in range(len(names)):
            tp, fp, n_pos, n_neg = _called_counts(sums[f"m{j}"], k)
            out[f"nb{j}"] = net_benefit(tp, fp, n_pos, n_neg, t, pi)
        everyone = np.ones(k)  # treat all: every sample is called at every threshold
        out["all"] = net_benefit(n_pos[:, None] * everyone, n_neg[:, None] * everyone, n_pos, n_neg, t, pi)
        for j in range(len(names)):
            out[f"d{j}"] = out[f"nb{j}"] - out["all"]
            out[f"nia{j}"] = out[f"d{j}"] / odds * 100.0
        for a, b in combinations(range(len(names)), 2):
            out[f"c{a}_{b}"] = out[f"nb{a}"] - out[f"nb{b}"]
        return out

    point, ci = _run(y, blocks, evaluate, _dca_keys(len(names)), pi is not None, n_bootstrap, seed, alpha)
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    reason = None
    if pi is not None and (n_pos == 0 or n_neg == 0):
        reason = ("net benefit at a deployment prevalence needs sensitivity and specificity: no "
                  + ("disease samples" if n_pos == 0 else "samples without disease") + " in the test split")

    def curve(key: str, value_key: str = "net_benefit") -> dict:
        return {value_key: _list(point[key]), "ci_low": _list(ci[key][0]), "ci_high": _list(ci[key][1])}

    models = {}
    for j, nm in enumerate(names):
        models[nm] = {**curve(f"nb{j}"), "vs_treat_all": curve(f"d{j}", "diff"),
                      "interventions_avoided_per_100": curve(f"nia{j}", "value")}
    comparisons = [{"a": names[a], "b": names[b], **curve(f"c{a}_{b}", "diff")}
                   for a, b in combinations(range(len(names)), 2)]
    return {
        "thresholds": t.tolist(),
        "prevalence": _prevalence_json(pi, y),
        "rule": "treat when score >= threshold probability",
        "treat_all": curve("all"),
        "treat_none": {"net_benefit": [0.0] * k, "ci_low": [0.0] * k, "ci_high": [0.0] * k},
        "models": models,
        "comparisons": comparisons,
        "band": "pointwise percentile bootstrap" if n_bootstrap else None,
        "reason": reason,
        "settings": _settings(n_bootstrap, seed, alpha, pi is not None),
    }


def _dca_keys(n_models: int) -> list[str]:
    keys = ["all"] + [f"{p}{j}" for j in range(n_models) for p in ("nb", "d", "nia")]
    return keys + [f"c{a}_{b}" for a, b in combinations(range(n_models), 2)]


def _list(x: np.ndarray) -> list:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(x, np.float64)]


# -- findings in plain words -----------------------------------------------------------------


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True as (first, last) index pairs."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) - 1).tolist()))


def _pct(t: float) -> str:
    return f"{100 * t:.3g} %"


def _span(t: list[float], first: int, last: int) -> str:
    if first == last:
        return f"at {_pct(t[first])} threshold probability"
    return f"between {_pct(t[first])} and {_pct(t[last])} threshold probability"


def _support(entry: dict, key: str, basis: str, sign: int) -> np.ndarray:
    """Where ``entry`` supports ``sign * value > 0``: the whole band (basis "band") or the point."""
    if basis == "point":
        v = np.array([np.nan if x is None else x for x in entry[key]], np.float64)
        return np.nan_to_num(sign * v, nan=-1.0) > 0
    bound = entry["ci_low"] if sign > 0 else entry["ci_high"]
    b = np.array([np.nan if x is None else x for x in bound], np.float64)
    return np.nan_to_num(sign * b, nan=-1.0) > 0


def decision_findings(curves: dict, *, basis: str = "band") -> list[dict]:
    """Plain-language findings from :func:`decision_curves`, claiming only supported ranges.

    Parameters
    ----------
    curves : dict
        The output of :func:`decision_curves`.
    basis : {"band", "point"}
        "band": a threshold counts only when the whole bootstrap band of the paired difference
        excludes 0 (e.g. the lower end of NB(model) - NB(treat all) is above 0); "point": the
        point estimate alone decides, and every sentence says so.

    Returns
    -------
    list of dict
        ``{"text", "kind", "model", "other", "from", "to"}`` per finding, in model order. Kinds:
        ``"useful"`` (higher net benefit than treating everyone *and* than treating no one),
        ``"worse_than_treat_all"``, ``"worse_than_treat_none"``, ``"better_than_model"``, and
        ``"none"`` (no supported range; ``from``/``to`` None). Ranges are runs of consecutive
        grid thresholds; nothing is claimed between grid points beyond that run.
    """
    if basis not in ("band", "point"):
        raise MedauditError(f"basis must be 'band' or 'point', got {basis!r}", param="basis")
    t = curves["thresholds"]
    conf = curves["settings"]["confidence"]
    how = (f"the whole {100 * conf:.3g} % bootstrap band" if basis == "band"
           else "point estimates only, without the bootstrap band")
    tail = f" ({how}; grid {_pct(t[0])}–{_pct(t[-1])})"
    if basis == "band" and not curves["settings"]["n_bootstrap"]:
        return [{"text": "No decision-curve finding: the bootstrap was off (0 resamples), so no band supports "
                         "a claim" + tail, "kind": "none", "model": None, "other": None, "from": None, "to": None}]
    out = []

    def add(kind, model, other, first, last, words):
        out.append({"text": f"{_span(t, first, last).capitalize()}, {words}{tail}.", "kind": kind, "model": model,
                    "other": other, "from": t[first], "to": t[last]})

    for name, m in curves["models"].items():
        start = len(out)
        beats_all = _support(m["vs_treat_all"], "diff", basis, +1)
        beats_none = _support(m, "net_benefit", basis, +1)
        for a, b in _runs(beats_all & beats_none):
            add("useful", name, None, a, b, f"{name} has higher net benefit than treating everyone and than "
                                            "treating no one")
        for a, b in _runs(_support(m["vs_treat_all"], "diff", basis, -1)):
            add("worse_than_treat_all", name, "treat all", a, b,
                f"{name} has lower net benefit than treating everyone")
        for a, b in _runs(_support(m, "net_benefit", basis, -1)):
            add("worse_than_treat_none", name, "treat none", a, b,
                f"{name} has lower net benefit than treating no one (it does harm)")
        if len(out) == start:
            out.append({"text": f"{name}: at no threshold probability is its net benefit shown to be higher than "
                                f"both treating everyone and treating no one, or lower than either{tail}.",
                        "kind": "none", "model": name, "other": None, "from": None, "to": None})
    for c in curves["comparisons"]:
        for sign, (hi, lo) in ((+1, (c["a"], c["b"])), (-1, (c["b"], c["a"]))):
            for a, b in _runs(_support(c, "diff", basis, sign)):
                add("better_than_model", hi, lo, a, b, f"{hi} has higher net benefit than {lo}")
    return out
