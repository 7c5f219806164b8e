"""Split conformal prediction sets (LAC, APS; marginal or class-conditional "Mondrian").

A conformal predictor turns probabilities into a *set* of classes that holds the true class
with a chosen probability ``1 - alpha``. The threshold is learnt on a calibration split (the
validation predictions) and applied unchanged to test, where this module reports what a
clinician would see: coverage (overall and per class), set sizes, empty and singleton sets,
and how often a set keeps a disease class.

Scores (higher = less conforming), from probabilities ``p`` of shape (N, C):

* ``lac`` (Sadinle, Lei & Wasserman 2019): ``s(x, y) = 1 - p_y``.
* ``aps`` (Romano, Sesia & Candès 2020), deterministic: ``s(x, y) = p_y + sum_{j: p_j > p_y} p_j``,
  the probability mass of the classes ranked at or above ``y``. Tied classes get the same
  score, so they enter a set together and the result does not depend on class order. The
  randomized variant (a uniform ``u`` removes ``u * p_y``) is not used: a report must give the
  same sets on every run. The deterministic score has the same lower guarantee, but not the
  upper bound below: a true class ranked last always scores the row's total mass, 1, so the
  scores have an atom at 1; when the threshold lands there every set holds every class and
  coverage exceeds ``1 - alpha + 1/(n+1)``. Randomization removes that atom. MAPIE (1.x)
  always randomizes its APS calibration scores; with that switched off it finds the same
  threshold, and its ``include_last_label=False`` sets are these sets plus the top class when
  they are empty. Its default ``include_last_label=True`` also adds the class whose cumulative
  mass crosses the threshold: larger sets and coverage above the ``1/(n+1)`` bound. Here a set
  is exactly ``{y : s(x, y) <= q}`` and may be empty (counted in ``empty``).

Threshold: the ``k``-th smallest calibration score with ``k = ceil((n + 1)(1 - alpha))``, the
finite-sample corrected quantile ``k / n``. The set of a test sample is ``{y : s(x, y) <= q}``
(``SCORE_TOL`` absorbs rounding).
Exchangeable calibration and test samples give ``P(Y in C(X)) >= 1 - alpha``; with continuous
(tie-free) scores also ``<= 1 - alpha + 1 / (n + 1)``; that upper bound is reported only when no
other calibration score ties with the threshold (ties, such as APS's atom at 1 or saturated
probabilities, void it). When ``k > n`` (``n < (1 - alpha) / alpha``)
no finite threshold is valid: the threshold is infinite, every set holds every class, and the
output says so. Mondrian (class-conditional) calibration computes one threshold per class from
that class's calibration samples, so each class gets ``P(Y in C(X) | Y = k) >= 1 - alpha``.
"""

from __future__ import annotations

import math

import numpy as np

from medaudit.errors import MedauditError
from medaudit.metrics.intervals import estimate, percentile_ci, proportion, undefined
from medaudit.metrics.resample import Block, SumDesign, point_and_bootstrap

METHODS = ("lac", "aps")
# Scores within this of the threshold count as equal to it (MAPIE's EPSILON too). The APS score
# of the least likely class is the row's total mass, 1 only up to rounding (1 - 1e-16 in one
# row, 1 + 2e-16 in the next); without a tolerance that rounding would decide its membership
# whenever the threshold is 1.
SCORE_TOL = 1e-8


# -- inputs ----------------------------------------------------------------------------------


def check_alpha(alpha: float, param: str = "alpha") -> float:
    """``alpha`` as a float in (0, 1), else a :class:`MedauditError` naming ``param``.

    Parameters
    ----------
    alpha : float
    param : str
        Library parameter the message is about.

    Returns
    -------
    float
    """
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise MedauditError(f"{param} must be a number in (0, 1), got {alpha!r}", param=param) from None
    if not 0.0 < a < 1.0:
        raise MedauditError(f"{param} must be in (0, 1), got {alpha!r}", param=param)
    return a


def check_labels_probs(y, probs, n_classes: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Class indices (N,) and probabilities (N, C) checked against each other.

    Parameters
    ----------
    y : array_like of int, shape (N,)
    probs : array_like of float, shape (N, C)
    n_classes : int
        C, the number of class names.
    what : str
        Name of the split in messages (``"val"``, ``"test"``); parameters are ``y_<what>``.

    Returns
    -------
    y : ndarray of int64, shape (N,)
    probs : ndarray of float64, shape (N, C)
    """
    p = np.asarray(probs, dtype=np.float64)
    yy = np.asarray(y)
    if yy.ndim != 1 or p.ndim != 2 or p.shape != (yy.shape[0], n_classes):
        raise MedauditError(
            f"probs_{what} has shape {p.shape} and y_{what} {yy.shape}; expected ({yy.shape[0] if yy.ndim else 0}, "
            f"{n_classes}) and (N,) (single-label tasks only)", param=f"probs_{what}")  # fmt: skip
    if yy.shape[0] == 0:
        raise MedauditError(f"no samples in the {what} split", param=f"y_{what}")
    if not np.isfinite(p).all():
        raise MedauditError(f"probs_{what} contain NaN or inf; re-run `medaudit predict`", param=f"probs_{what}")
    if yy.dtype.kind not in "iu" and not (yy.dtype.kind == "f" and np.array_equal(yy, np.round(yy))):
        raise MedauditError(f"y_{what} must hold integer class indices", param=f"y_{what}")
    yy = yy.astype(np.int64)
    if yy.min() < 0 or yy.max() >= n_classes:
        raise MedauditError(f"y_{what} must hold class indices in [0, {n_classes})", param=f"y_{what}")
    return yy, p


def negative_indices(class_names, negative_classes) -> list[int]:
    """Indices of the "no disease" classes (names as in :func:`~medaudit.metrics.risk.fn_risk`).

    Parameters
    ----------
    class_names : sequence of str, length C
    negative_classes : sequence of str
        May be empty (no disease view).

    Returns
    -------
    list of int
    """
    names = [str(c) for c in class_names]
    negatives = [str(c) for c in negative_classes]
    unknown = [c for c in negatives if c not in names]
    if unknown:
        raise MedauditError(
            f"negative classes {unknown} are not among the class names {names}", param="negative_classes"
        )
    if negatives and len(set(negatives)) == len(names):
        raise MedauditError("every class is a negative class, so no disease can be missed", param="negative_classes")
    return [names.index(c) for c in negatives]


# -- scores, thresholds, sets ----------------------------------------------------------------


def conformity_scores(probs, method: str = "lac") -> np.ndarray:
    """Non-conformity score of every (sample, class) pair.

    Parameters
    ----------
    probs : array_like of float, shape (N, C)
    method : {"lac", "aps"}

    Returns
    -------
    ndarray of float64, shape (N, C)
        ``1 - p`` (LAC) or the mass of the classes with probability >= the class's (APS, ties
        counted once each way: ``p_y + sum_{p_j > p_y} p_j``).
    """
    if method not in METHODS:
        raise MedauditError(
            f"unknown conformal method {method!r}; choose one of {', '.join(METHODS)}", param="conformal_method"
        )
    p = np.asarray(probs, dtype=np.float64)
    if method == "lac":
        return 1.0 - p
    # Sum of strictly larger probabilities per (sample, class), by a sort per row: O(N C log C).
    order = np.argsort(-p, axis=1, kind="stable")
    sorted_p = np.take_along_axis(p, order, axis=1)
    before = np.cumsum(sorted_p, axis=1) - sorted_p  # mass strictly before each position
    # Ties: every member of a tied run gets the mass before the run's first position.
    first = np.empty_like(sorted_p, dtype=bool)
    first[:, 0] = True
    first[:, 1:] = sorted_p[:, 1:] != sorted_p[:, :-1]
    run_start = np.maximum.accumulate(np.where(first, np.arange(p.shape[1]), 0), axis=1)
    above_sorted = np.take_along_axis(before, run_start, axis=1)
    above = np.empty_like(p)
    np.put_along_axis(above, order, above_sorted, axis=1)
    return above + p


def quantile_rank(n: int, alpha: float) -> int:
    """``k = ceil((n + 1)(1 - alpha))``, the rank of the conformal quantile among ``n`` scores.

    A relative tolerance of 1e-12 keeps a product that is an integer in exact arithmetic
    (``n = 19, alpha = 0.05``) from rounding up by one in floating point.

    Parameters
    ----------
    n : int
    alpha : float

    Returns
    -------
    int
        ``k``; ``k > n`` means no finite threshold is valid.
    """
    x = (n + 1) * (1.0 - alpha)
    return int(math.ceil(x - 1e-12 * max(1.0, x)))


def min_calibration_size(alpha: float) -> int:
    """Smallest ``n`` whose conformal quantile rank is finite (``quantile_rank(n, alpha) <= n``).

    Parameters
    ----------
    alpha : float

    Returns
    -------
    int
        About ``(1 - alpha) / alpha``: 9 for alpha 0.1, 19 for 0.05.
    """
    n = max(1, int(math.floor((1.0 - alpha) / alpha)) - 1)
    while quantile_rank(n, alpha) > n:
        n += 1
    return n


def _threshold(scores: np.ndarray, alpha: float, who: str) -> dict:
    n = int(scores.size)
    k = quantile_rank(n, alpha)
    out = {"n": n, "rank": k, "value": None, "all_classes": False, "ties_at_threshold": None, "reason": None}
    if k > n:
        need = min_calibration_size(alpha)
        out["all_classes"] = True
        out["reason"] = (f"{who}: {n} calibration samples are too few for alpha={alpha:g} "
                         f"(ceil((n+1)(1-alpha)) = {k} > n; needs n >= {need}): the threshold is "
                         "infinite and every set holds every class")  # fmt: skip
        return out
    q = float(np.partition(scores, k - 1)[k - 1])
    out["value"] = q
    out["ties_at_threshold"] = int((np.abs(scores - q) <= SCORE_TOL).sum())  # 1 = q itself only
    return out


def calibrate(
    y_val, probs_val, class_names, *, alpha: float = 0.1, method: str = "lac", mondrian: bool = False
) -> dict:
    """Conformal thresholds from the calibration (validation) split.

    Parameters
    ----------
    y_val : array_like of int, shape (N,)
    probs_val : array_like of float, shape (N, C)
    class_names : sequence of str, length C
    alpha : float
        Miscoverage level in (0, 1); sets target coverage ``1 - alpha``.
    method : {"lac", "aps"}
    mondrian : bool
        One threshold per true class (class-conditional coverage) instead of one for all.

    Returns
    -------
    dict
        ``method``, ``alpha``, ``mondrian``, ``n``, and ``thresholds``: ``{"all": t}`` or
        ``{class name: t}``, each ``t = {"n", "rank", "value", "all_classes",
        "ties_at_threshold", "reason"}``; ``value`` None with ``all_classes`` True when the
        threshold is infinite; ``ties_at_threshold`` counts calibration scores equal to it.
    """
    names = [str(c) for c in class_names]
    alpha = check_alpha(alpha)
    y, p = check_labels_probs(y_val, probs_val, len(names), "val")
    true_scores = np.take_along_axis(conformity_scores(p, method), y[:, None], axis=1)[:, 0]
    if mondrian:
        thresholds = {nm: _threshold(true_scores[y == j], alpha, f"class '{nm}'") for j, nm in enumerate(names)}
    else:
        thresholds = {"all": _threshold(true_scores, alpha, "calibration split")}
    return {"method": method, "alpha": alpha, "mondrian": bool(mondrian), "n": int(y.size), "thresholds": thresholds}


def prediction_sets(probs, calibration: dict, class_names) -> np.ndarray:
    """Apply calibrated thresholds: the conformal set of every sample.

    Parameters
    ----------
    probs : array_like of float, shape (N, C)
    calibration : dict
        From :func:`calibrate`.
    class_names : sequence of str, length C

    Returns
    -------
    ndarray of bool, shape (N, C)
        ``sets[i, y]`` is True when class ``y`` is in sample ``i``'s set (``s(x, y) <= q_y``,
        up to ``SCORE_TOL``).
    """
    names = [str(c) for c in class_names]
    scores = conformity_scores(probs, calibration["method"])
    th = calibration["thresholds"]
    per = [th[nm] for nm in names] if calibration["mondrian"] else [th["all"]] * len(names)
    q = np.array([np.inf if t["all_classes"] else t["value"] for t in per])
    return scores <= q[None, :] + SCORE_TOL


# -- the test-split summary ------------------------------------------------------------------


def _mean_set_size(
    y: np.ndarray, size: np.ndarray, n_classes: int, n_bootstrap: int, seed: int, ci_alpha: float
) -> dict:
    """Mean set size with a percentile bootstrap interval (test resampled within true classes)."""
    order = np.lexsort((size, y))  # strata contiguous; sizes sorted so input order does not matter
    y, size = y[order], size[order]
    n = y.size
    design = SumDesign(n, [Block("size", np.zeros(n, np.int64), np.arange(n), 1, size.astype(np.float64))])

    def evaluate(s):
        return {"mean": s["size"][0] / n}

    strata = np.bincount(y, minlength=n_classes).tolist()
    point, boot = point_and_bootstrap(design, evaluate, strata, n_bootstrap, seed, ["mean"])
    ci = percentile_ci(boot["mean"].reshape(n_bootstrap, 1), ci_alpha)[:, 0] if n_bootstrap else None
    out = estimate(float(point["mean"]), None if ci is None else (ci[0], ci[1]), "no test samples")
    if not n_bootstrap:
        out["reason"] = "bootstrap disabled (0 resamples)"
    return out


def _upper_bound(t: dict, alpha: float) -> float | None:
    """``1 - alpha + 1/(n+1)``, which holds for tie-free scores: None with an infinite or tied threshold."""
    if t["all_classes"] or t["ties_at_threshold"] > 1:
        return None
    return min(1.0, 1.0 - alpha + 1.0 / (t["n"] + 1))


def conformal_prediction(
    y_val,
    probs_val,
    y_test,
    probs_test,
    class_names,
    *,
    alpha: float = 0.1,
    method: str = "lac",
    mondrian: bool = False,
    negative_classes=(),
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci_alpha: float = 0.05,
) -> dict:
    """Calibrate conformal sets on validation, apply them to test, and summarise test.

    Parameters
    ----------
    y_val, y_test : array_like of int, shape (N_val,), (N_test,)
        True class indices (single-label tasks).
    probs_val, probs_test : array_like of float, shape (N_val, C), (N_test, C)
    class_names : sequence of str, length C
    alpha : float
        Miscoverage level in (0, 1); target coverage ``1 - alpha``.
    method : {"lac", "aps"}
        Score; APS is the deterministic variant (see the module docstring).
    mondrian : bool
        Class-conditional thresholds (each class's coverage >= ``1 - alpha``).
    negative_classes : sequence of str
        "No disease" classes; adds ``contains_disease`` and ``disease_excluded``.
    n_bootstrap : int
        Resamples for the mean set size interval (test resampled within true classes; the
        threshold is held fixed, so the interval is conditional on the calibration split).
    seed : int
        Seed of the bootstrap generator.
    ci_alpha : float
        1 - confidence level of every interval.

    Returns
    -------
    dict
        JSON-ready: ``method``, ``alpha``, ``target_coverage``, ``mondrian``, ``calibration``
        (from :func:`calibrate`), ``n_test``; ``coverage`` (Wilson value object, k of n test
        sets hold the true class), ``coverage_per_class`` (class name -> value object; None
        with a reason for a class absent from test), ``coverage_upper_bound`` (``1 - alpha +
        1/(n+1)``, the expected coverage's ceiling for tie-free scores; a dict per class for
        Mondrian; None when a threshold is infinite or ties with other calibration scores),
        ``mean_set_size`` (bootstrap value object), ``set_size_counts`` (list,
        index = set size 0..C), ``singleton``, ``empty`` (value objects over test samples),
        ``contains_disease`` (share of sets holding a disease class) and ``disease_excluded``
        (share of disease samples whose set holds no disease class: the set itself would send
        the patient home), both None with a reason without negative classes; ``notes``.
    """
    names = [str(c) for c in class_names]
    c = len(names)
    if c < 2:
        raise MedauditError(f"conformal prediction needs at least 2 classes, got {c}", param="class_names")
    ci_alpha = check_alpha(ci_alpha, "ci_alpha")
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 0:
        raise MedauditError(f"n_bootstrap must be a whole number >= 0, got {n_bootstrap}", param="n_bootstrap")
    neg = negative_indices(names, negative_classes)
    cal = calibrate(y_val, probs_val, names, alpha=alpha, method=method, mondrian=mondrian)
    alpha = cal["alpha"]
    y, p = check_labels_probs(y_test, probs_test, c, "test")
    sets = prediction_sets(p, cal, names)
    covered = sets[np.arange(y.size), y]
    size = sets.sum(axis=1)
    n = int(y.size)

    per_class = {
        nm: proportion(int(covered[y == j].sum()), int((y == j).sum()), f"no samples of class '{nm}' in test", ci_alpha)
        for j, nm in enumerate(names)
    }
    th = cal["thresholds"]
    upper = {nm: _upper_bound(t, alpha) for nm, t in th.items()}
    if not mondrian:
        upper = upper["all"]

    if neg:
        disease = np.ones(c, dtype=bool)
        disease[neg] = False
        has_disease = sets[:, disease].any(axis=1)
        is_disease = disease[y]
        contains = proportion(int(has_disease.sum()), n, "no test samples", ci_alpha)
        excluded = proportion(
            int((is_disease & ~has_disease).sum()), int(is_disease.sum()), "no disease samples in test", ci_alpha
        )
    else:
        contains = undefined("no negative classes given, so disease classes are unknown")
        excluded = undefined("no negative classes given, so disease classes are unknown")

    notes = [f"thresholds calibrated on {cal['n']} validation samples and applied to {n} test samples"]
    notes += [t["reason"] for t in th.values() if t["all_classes"]]
    tied = [nm for nm, t in th.items() if not t["all_classes"] and t["ties_at_threshold"] > 1]
    if tied:
        notes.append("calibration scores tie with the threshold (" + ", ".join(tied) + "): coverage can "
                     "exceed 1 - alpha + 1/(n+1)")  # fmt: skip
    if method == "aps":
        notes.append("APS without randomization: the same sets on every run, at the price of slightly larger sets")
    return {
        "method": method,
        "alpha": alpha,
        "target_coverage": 1.0 - alpha,
        "mondrian": bool(mondrian),
        "calibration": cal,
        "n_test": n,
        "coverage": proportion(int(covered.sum()), n, "no test samples", ci_alpha),
        "coverage_per_class": per_class,
        "coverage_upper_bound": upper,
        "mean_set_size": _mean_set_size(y, size, c, int(n_bootstrap), seed, ci_alpha),
        "set_size_counts": np.bincount(size, minlength=c + 1).astype(int).tolist(),
        "singleton": proportion(int((size == 1).sum()), n, "no test samples", ci_alpha),
        "empty": proportion(int((size == 0).sum()), n, "no test samples", ci_alpha),
        "contains_disease": contains,
        "disease_excluded": excluded,
        "notes": notes,
    }
