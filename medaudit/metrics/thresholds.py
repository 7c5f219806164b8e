"""Decision thresholds with a statistical guarantee on sensitivity or specificity.

The naive "target sensitivity" threshold (:func:`medaudit.metrics.risk.operating_points`) is
the highest threshold whose *validation* sensitivity reaches the target. Its validation
sensitivity hits the target by construction, so its true sensitivity is below the target about
half the time, and far below it when validation has few positives. :func:`guaranteed_threshold`
instead takes the highest threshold whose one-sided Clopper-Pearson *lower confidence bound*
reaches the target, so that the true sensitivity is at least the target with probability at
least ``1 - delta`` over validation draws (Learn-then-Test, Angelopoulos et al. 2021).

Decision rule throughout: a sample is called positive (disease) when ``score >= threshold``.
Multiclass predictions are collapsed to disease vs no disease by
:func:`medaudit.metrics.decision.disease_outcome`: ``y = 1`` for a true class outside the
negative ("healthy") classes and ``score = 1 - sum(p(negative classes))``, or one disease class
one-vs-rest.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from medaudit.errors import MedauditError
from medaudit.metrics.decision import disease_outcome
from medaudit.metrics.intervals import proportion, undefined

METRICS = ("sensitivity", "specificity")
_WHO = {"sensitivity": "positives", "specificity": "negatives"}


# -- argument checks ----------------------------------------------------------------------------


def _check_unit(value: float, name: str, param: str) -> float:
    if not isinstance(value, (int, float, np.floating, np.integer)) or not 0.0 < float(value) < 1.0:
        raise MedauditError(f"{name} must be strictly between 0 and 1, got {value!r}", param=param)
    return float(value)


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise MedauditError(f"unknown guaranteed metric {metric!r}; choose one of: {', '.join(METRICS)}",
                            param="metric")
    return metric


def _target_param(metric: str) -> str:
    return f"target_{metric}"


def _binary_scores(y, score, what: str) -> tuple[np.ndarray, np.ndarray]:
    y, score = np.asarray(y), np.asarray(score, dtype=np.float64)
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise MedauditError(f"{what}: labels must be a 1-D array of 0/1 (1 = disease/positive)")
    if score.shape != y.shape:
        raise MedauditError(f"{what}: scores have shape {score.shape}, labels {y.shape}")
    if not np.isfinite(score).all():
        raise MedauditError(f"{what}: scores contain NaN or inf; re-run `medaudit predict`")
    return y.astype(bool), score


# -- Clopper-Pearson ----------------------------------------------------------------------------


def clopper_pearson_lower(k, n, delta: float):
    """One-sided ``1 - delta`` Clopper-Pearson lower confidence bound of a binomial proportion.

    Parameters
    ----------
    k, n : int or array_like of int
        Successes and trials (broadcast), ``0 <= k <= n``, ``n >= 1``.
    delta : float
        Error probability in (0, 1): ``P(p < bound) <= delta`` for every true ``p``.

    Returns
    -------
    float or ndarray of float64
        ``Beta(delta; k, n - k + 1)`` quantile, 0 where ``k == 0``. It is the ``p`` that solves
        ``P(Binomial(n, p) >= k) = delta``.
    """
    delta = _check_unit(delta, "delta (the allowed probability that the guarantee fails)", "delta")
    k_arr, n_arr = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    if np.any(n_arr < 1) or np.any(k_arr < 0) or np.any(k_arr > n_arr):
        raise MedauditError("clopper_pearson_lower: need 0 <= k <= n and n >= 1")
    with np.errstate(invalid="ignore"):
        low = np.where(k_arr > 0, stats.beta.ppf(delta, np.maximum(k_arr, 1), n_arr - k_arr + 1), 0.0)
    return float(low) if low.ndim == 0 else low


def min_samples_for_guarantee(target: float, delta: float) -> int:
    """Fewest positives (or negatives) with which any threshold can guarantee ``target``.

    With ``n`` samples the best case is all ``n`` on the right side of the threshold, whose
    lower bound is ``delta ** (1 / n)``; it reaches ``target`` once
    ``n >= log(delta) / log(target)`` (0.95 with delta = 0.05: 59).

    Parameters
    ----------
    target : float in (0, 1)
    delta : float in (0, 1)

    Returns
    -------
    int
    """
    target = _check_unit(target, "the target", "target")
    delta = _check_unit(delta, "delta", "delta")
    n = max(1, math.ceil(math.log(delta) / math.log(target)))
    # The closed form can be off by one in floating point: settle it with the bound itself.
    while n > 1 and clopper_pearson_lower(n - 1, n - 1, delta) >= target:
        n -= 1
    while clopper_pearson_lower(n, n, delta) < target:
        n += 1
    return n


# -- choosing thresholds ------------------------------------------------------------------------


def _scan(y: np.ndarray, score: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Candidate thresholds (ascending) and the count ``k`` of the metric at each, over ``n``.

    Candidates are the distinct scores plus one just above the largest (calls nothing positive),
    so every attainable split of the validation samples is a candidate.
    """
    cand = np.unique(score)
    cand = np.append(cand, np.nextafter(cand[-1], np.inf))
    if metric == "sensitivity":
        pos = np.sort(score[y])
        return cand, pos.size - np.searchsorted(pos, cand, side="left"), int(pos.size)  # positives >= t
    neg = np.sort(score[~y])
    return cand, np.searchsorted(neg, cand, side="left"), int(neg.size)  # negatives < t


def _pick(cand: np.ndarray, ok: np.ndarray, metric: str) -> float | None:
    # Sensitivity falls as the threshold rises: take the highest passing threshold (most specific);
    # specificity rises with it: take the lowest passing one (most sensitive).
    if not ok.any():
        return None
    return float(cand[ok].max() if metric == "sensitivity" else cand[ok].min())


def _choice(threshold, metric, target, delta, rule, cand, k, n, reason=None) -> dict:
    out = {"rule": rule, "metric": metric, "target": target, "delta": delta, "threshold": threshold,
           "k": None, "n": n, "estimate": None, "lower_bound": None, "reason": reason}
    if threshold is not None:
        kk = int(k[np.searchsorted(cand, threshold)])
        out.update(k=kk, estimate=kk / n,
                   lower_bound=clopper_pearson_lower(kk, n, delta) if delta is not None else None)
    return out


def naive_threshold(y_true, score, target: float, *, metric: str = "sensitivity", delta: float | None = None) -> dict:
    """The empirical threshold: its validation ``metric`` reaches ``target``, with no guarantee.

    For sensitivity this is the threshold of :func:`medaudit.metrics.risk.operating_points`
    (the highest one whose sensitivity is ``>= target``); for specificity the lowest one whose
    specificity is ``>= target``.

    Parameters
    ----------
    y_true : array_like of 0/1, shape (N,)
        1 = disease / positive.
    score : array_like of float, shape (N,)
        Score of the positive outcome.
    target : float in (0, 1)
    metric : {"sensitivity", "specificity"}
    delta : float in (0, 1), optional
        Only reported: the chosen threshold's ``1 - delta`` lower bound, to show how little the
        naive choice guarantees. It does not change the choice.

    Returns
    -------
    dict
        ``rule`` ("naive"), ``metric``, ``target``, ``delta``, ``threshold`` (None when
        undefined), ``k`` of ``n`` validation positives (negatives) on the right side,
        ``estimate`` = k / n, ``lower_bound`` (None without ``delta``), ``reason`` (None, or why
        undefined).
    """
    metric = _check_metric(metric)
    target = _check_unit(target, f"target {metric}", _target_param(metric))
    if delta is not None:
        delta = _check_unit(delta, "delta (the allowed probability that the guarantee fails)", "delta")
    y, s = _binary_scores(y_true, score, "naive_threshold")
    if not (y if metric == "sensitivity" else ~y).any():
        return _choice(None, metric, target, delta, "naive", None, None, 0,
                       f"validation has no {_WHO[metric]}, so no {metric} can be measured")
    cand, k, n = _scan(y, s, metric)
    return _choice(_pick(cand, k / n >= target, metric), metric, target, delta, "naive", cand, k, n)


def guaranteed_threshold(y_true, score, target: float, *, delta: float = 0.05, metric: str = "sensitivity") -> dict:
    """Threshold whose true ``metric`` is ``>= target`` with probability ``>= 1 - delta``.

    Chooses, on validation, the highest threshold (sensitivity; the lowest for specificity)
    whose one-sided ``1 - delta`` Clopper-Pearson lower bound of the metric reaches ``target``.
    The probability is over draws of the validation positives (negatives for specificity), for
    their number as observed; the true metric is that of the population the validation split
    was drawn from, so the guarantee carries to a test split only when it comes from the same
    population.

    Parameters
    ----------
    y_true : array_like of 0/1, shape (N,)
        Validation labels, 1 = disease / positive.
    score : array_like of float, shape (N,)
        Validation scores of the positive outcome.
    target : float in (0, 1)
    delta : float in (0, 1)
        Allowed probability that the true metric falls below ``target``.
    metric : {"sensitivity", "specificity"}

    Returns
    -------
    dict
        As :func:`naive_threshold`, with ``rule`` "guaranteed", ``delta``, the ``lower_bound``
        of the chosen threshold, and ``min_needed`` (:func:`min_samples_for_guarantee`). When
        validation has fewer positives (negatives) than ``min_needed`` no threshold qualifies:
        ``threshold`` is None and ``reason`` says how many there are and how many are needed.

    Notes
    -----
    *Why scanning is allowed.* Picking, among many thresholds, one whose bound passes would
    normally need a multiple-testing correction. Here it does not, because the metric is
    monotone in the threshold (Learn-then-Test's fixed-sequence testing): order the null
    hypotheses ``H_t: metric(t) < target`` from the most lenient threshold (the lowest for
    sensitivity, where it is 1) to the strictest, test each at level ``delta`` with the
    Clopper-Pearson bound and stop at the first that is not rejected. Fixed-sequence testing
    keeps the probability of rejecting any true ``H_t`` at ``delta`` or less, and since the count
    ``k(t)`` and so the bound are monotone in ``t``, the thresholds that pass form one unbroken
    run: the last one rejected is exactly the strictest threshold whose bound passes. The same
    holds exactly for the data-chosen candidates: the sensitivity threshold is the k-th largest
    positive score, whose true sensitivity is ``U_(k) ~ Beta(k, n - k + 1)`` for continuous
    scores, and ``P(U_(k) < target) = P(Binomial(n, target) >= k) <= delta`` exactly when the
    bound passes. Ties in the scores only make the rule ``score >= t`` more conservative.
    """
    metric = _check_metric(metric)
    target = _check_unit(target, f"target {metric}", _target_param(metric))
    delta = _check_unit(delta, "delta (the allowed probability that the guarantee fails)", "delta")
    y, s = _binary_scores(y_true, score, "guaranteed_threshold")
    need = min_samples_for_guarantee(target, delta)
    n = int((y if metric == "sensitivity" else ~y).sum())
    if n < need:
        reason = (f"validation has {n} {_WHO[metric]}; a {target:.0%} {metric} with δ={delta:g} "
                  f"needs at least {need}")
        out = _choice(None, metric, target, delta, "guaranteed", None, None, n, reason)
        out["min_needed"] = need
        return out
    cand, k, n = _scan(y, s, metric)
    out = _choice(_pick(cand, clopper_pearson_lower(k, n, delta) >= target, metric),
                  metric, target, delta, "guaranteed", cand, k, n)
    out["min_needed"] = need
    return out


# -- the report block ---------------------------------------------------------------------------


def _on_test(y: np.ndarray, s: np.ndarray, threshold: float | None, why: str | None, alpha: float) -> dict:
    if threshold is None:
        reason = f"no threshold was chosen on validation: {why}"
        return {"sensitivity": undefined(reason), "specificity": undefined(reason)}
    called = s >= threshold
    return {
        "sensitivity": proportion((called & y).sum(), y.sum(), "no positive samples in the test split", alpha),
        "specificity": proportion((~called & ~y).sum(), (~y).sum(), "no negative samples in the test split", alpha),
    }


def guaranteed_operating_points(
    y_true_val,
    probs_val,
    y_true_test,
    probs_test,
    class_names,
    negative_classes=(),
    *,
    disease_class: str | None = None,
    target: float = 0.95,
    metric: str = "sensitivity",
    delta: float = 0.05,
    alpha: float = 0.05,
) -> dict:
    """Naive and guaranteed thresholds chosen on validation, and what each achieves on test.

    Parameters
    ----------
    y_true_val, y_true_test : array_like of int, shape (N_val,), (N_test,)
        True class indices.
    probs_val, probs_test : array_like of float, shape (N_val, C), (N_test, C)
        Class probabilities.
    class_names : sequence of str, length C
    negative_classes : sequence of str
        The "no disease" classes; the score is ``1 - sum(p(negative classes))``.
    disease_class : str, optional
        Instead: one class one-vs-rest, scored by its probability
        (:func:`~medaudit.metrics.decision.disease_outcome`).
    target : float in (0, 1)
        Target sensitivity (or specificity).
    metric : {"sensitivity", "specificity"}
    delta : float in (0, 1)
        Allowed probability that the guaranteed threshold's true metric is below ``target``.
    alpha : float in (0, 1)
        1 - confidence level of the test intervals (Wilson).

    Returns
    -------
    dict
        ``metric``, ``target``, ``delta``, ``positive`` (the outcome in words), ``score``, ``rule``,
        ``validation`` (``n_positive``, ``n_negative``, ``min_needed``), ``points``: two entries
        named ``naive_<metric>_<target>`` and ``guaranteed_<metric>_<target>``, each with
        ``threshold``, ``chosen_on`` ("val"), ``on_validation`` (the choice of
        :func:`naive_threshold` / :func:`guaranteed_threshold`) and ``on_test`` (sensitivity and
        specificity as Wilson value objects; undefined with the reason when no threshold could be
        chosen), and ``note``.
    """
    metric = _check_metric(metric)
    target = _check_unit(target, f"target {metric}", _target_param(metric))
    delta = _check_unit(delta, "delta (the allowed probability that the guarantee fails)", "delta")
    alpha = _check_unit(alpha, "alpha (1 - confidence level)", "alpha")
    for y in (y_true_val, y_true_test):
        y = np.asarray(y)
        if y.ndim != 1 or (y.size and (not np.array_equal(y, np.round(y)) or y.min() < 0 or y.max() >= len(class_names))):
            raise MedauditError(f"y_true must hold class indices in [0, {len(class_names)}) of shape (N,)")
    kw = {"negative_classes": negative_classes, "disease_class": disease_class}
    yv, sv, label = disease_outcome(y_true_val, probs_val, class_names, **kw)
    yt, st, _ = disease_outcome(y_true_test, probs_test, class_names, **kw)
    yv, yt = yv.astype(bool), yt.astype(bool)
    if yv.size == 0:
        raise MedauditError("guaranteed_operating_points: the validation split has no samples")
    naive = naive_threshold(yv, sv, target, metric=metric, delta=delta)
    guaranteed = guaranteed_threshold(yv, sv, target, delta=delta, metric=metric)
    points = []
    for choice in (naive, guaranteed):
        points.append({
            "name": f"{choice['rule']}_{metric}_{target:g}",
            "threshold": choice["threshold"],
            "chosen_on": "val",
            "on_validation": choice,
            "on_test": _on_test(yt, st, choice["threshold"], choice["reason"], alpha),
        })
    return {
        "metric": metric,
        "target": target,
        "delta": delta,
        "positive": label,
        "score": f"p({disease_class})" if disease_class is not None
        else "1 - " + " - ".join(f"p({c})" for c in negative_classes),
        "rule": "disease when score >= threshold",
        "validation": {"n_positive": int(yv.sum()), "n_negative": int((~yv).sum()),
                       "min_needed": guaranteed["min_needed"]},
        "points": points,
        "note": (f"the naive threshold reaches the target {metric} on validation only, so its true {metric} "
                 f"is below the target about half the time; the guaranteed one reaches it with probability "
                 f">= {1 - delta:.0%} (Clopper-Pearson lower bound, one-sided) when test comes from the "
                 f"population validation was drawn from"),
    }
