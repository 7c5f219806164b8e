"""Selective prediction: refer the least confident cases to a human (risk-coverage view).

The model answers when its confidence, the largest class probability, is at least a threshold
``tau``, and refers the case otherwise. *Coverage* is the share of cases it answers; *selective
risk* is its error rate on those (1 - selective accuracy). Lowering coverage should lower risk;
how fast is the risk-coverage curve, summarised by its area (AURC, Geifman et al. 2019).

AURC here is ``(1/N) sum_{k=1..N} errors among the k most confident / k``, with samples sorted
by decreasing confidence. Tied confidences have no order, so within a tie the expected value
over every order is used (the errors of a tied group spread evenly over its positions); with
distinct confidences this is the usual sorted sum. E-AURC subtracts the AURC of the same errors
ranked perfectly (every error last): ``(1/N) (e - (N - e)(H_N - H_{N-e}))``, ``H`` harmonic.

Thresholds are chosen on validation and applied to test:

* target coverage ``c``: the highest threshold that answers at least ``c`` of the validation
  cases; with continuous confidences the expected test coverage is ``ceil(c n) / (n + 1)``.
* target risk ``r``: Learn-then-Test (Angelopoulos et al. 2021) with Bonferroni over a fixed
  grid of ``GRID_SIZE`` thresholds; at each, the exact binomial test of "selective risk > r";
  the lowest rejected threshold (largest coverage) is chosen. With probability at least
  ``1 - delta`` over the validation draw, the chosen threshold's selective risk is ``<= r``.
  The price is caution: in simulation (1000 validation cases, ``delta = 0.1``) no draw broke the
  target and the median coverage was 62 % where the best grid threshold answers 81 %.

Missed disease (with negative classes): a disease case the model answers and calls a negative
class (:func:`~medaudit.metrics.risk.missed_disease_mask`), as a share of all disease cases,
counting referred ones as caught by the human reader; also as a share of answered disease cases.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from medaudit.errors import MedauditError
from medaudit.metrics.classification import ratio
from medaudit.metrics.conformal import check_alpha, check_labels_probs, negative_indices
from medaudit.metrics.intervals import estimate, percentile_ci, proportion, undefined
from medaudit.metrics.resample import Block, SumDesign, point_and_bootstrap
from medaudit.metrics.risk import missed_disease_mask

MAX_CURVE_POINTS = 200
GRID_SIZE = 50
# Groups per block of the AURC sums: a block's (512, 64) intermediates (~1.3 MB) stay in L2, where
# numpy's cumsum down a whole (G, 64) array walks it column by column from memory.
_BLOCK_ROWS = 512


# -- AURC from per-group sums ----------------------------------------------------------------


def _harmonic_diff(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """``H_hi - H_lo`` for (weighted, integer) counts, via digamma: ``H_n = digamma(n+1) + gamma``."""
    return special.digamma(hi + 1.0) - special.digamma(lo + 1.0)


def aurc_from_groups(n_g: np.ndarray, e_g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AURC and E-AURC from counts per confidence group, tied confidences averaged over orders.

    Parameters
    ----------
    n_g, e_g : ndarray, shape (G, m)
        Samples and errors in each group of equal confidence, groups in decreasing confidence,
        one column per resample. Whole numbers with ``0 <= e_g <= n_g``; float32 counts (the
        bootstrap's sums) are used as they are when the totals are below 2**24, where float32
        holds every partial sum exactly.

    Returns
    -------
    aurc, e_aurc : ndarray of float64, shape (m,)
        NaN where a column has no samples.

    Raises
    ------
    ValueError
        If a count is not a whole number (the harmonic numbers are looked up by count).

    Notes
    -----
    Positions ``k = N_< + 1 .. N_<=`` of a group hold ``E_< + (k - N_<) e_g / n_g`` errors in
    expectation, so the group adds ``(E_< - N_< e_g/n_g)(H_{N_<=} - H_{N_<}) + e_g`` to the sum.

    The groups are processed ``_BLOCK_ROWS`` at a time so that every intermediate of a block stays
    in cache, and ``H`` comes from a table of ``digamma(k + 1)``, so the values are exactly those
    of the plain whole-array formula with ``digamma`` (see the tests).
    """
    n_g, e_g = np.asarray(n_g), np.asarray(e_g)
    if n_g.shape != e_g.shape or n_g.ndim != 2:
        raise ValueError(f"aurc_from_groups: n_g and e_g must both be (G, m), got {n_g.shape}, {e_g.shape}")
    if not (np.array_equal(np.floor(n_g), n_g) and np.array_equal(np.floor(e_g), e_g)):
        raise ValueError("aurc_from_groups: counts must be whole numbers")
    return _aurc_whole(n_g, e_g)


def _aurc_whole(n_g: np.ndarray, e_g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`aurc_from_groups` without the whole-number check (the bootstrap's sums are counts)."""
    n = n_g.sum(axis=0, dtype=np.float64)  # exact: whole numbers
    small = n_g.dtype == e_g.dtype == np.float32 and (n.size == 0 or n.max() < 2**24)
    dt = np.float32 if small else np.float64
    n_g, e_g = np.ascontiguousarray(n_g, dtype=dt), np.ascontiguousarray(e_g, dtype=dt)
    g, m = n_g.shape
    # digamma(k + 1) = H_k - gamma for k = 0..max N; the constant cancels in H_hi - H_lo.
    table = special.digamma(np.arange(1.0, (n.max() if n.size else 0.0) + 2.0))
    total = np.empty((g, m))
    b = min(_BLOCK_ROWS, g)
    le_n, lt_e, harm, rate = np.empty((b, m), dt), np.empty((b, m), dt), np.empty((b, m)), np.empty((b, m))
    hi, lo = np.empty((b, m), np.intp), np.empty((b, m), np.intp)
    carry_n, carry_e = np.zeros(m, dt), np.zeros(m, dt)
    for a in range(0, g, _BLOCK_ROWS):
        z = min(_BLOCK_ROWS, g - a)
        nb, eb, out = n_g[a : a + z], e_g[a : a + z], total[a : a + z]
        cn, ce, h, lw, d, r = le_n[:z], lt_e[:z], hi[:z], lo[:z], harm[:z], rate[:z]
        # Running counts: exact in dt, so the block-wise carry gives the cumsum's values.
        np.cumsum(nb, axis=0, out=cn)
        cn += carry_n
        carry_n = cn[-1].copy()
        np.cumsum(eb, axis=0, out=ce)
        ce += carry_e
        carry_e = ce[-1].copy()
        ce -= eb  # E_<
        h[...] = cn  # N_<=
        cn -= nb  # N_<
        lw[...] = cn
        np.take(table, h, out=d)
        d -= np.take(table, lw)
        # e_g / n_g, and 0 for an empty group (whose e_g is 0), in float64.
        np.maximum(nb, 1, out=r)
        np.divide(eb, r, out=r)
        r *= cn
        np.subtract(ce, r, out=out)
        out *= d
        out += eb
    e = carry_e.astype(np.float64)
    # One sum over the whole (G, m) array, as the plain formula does (same rounding).
    aurc = ratio(total.sum(axis=0), n)
    optimal = ratio(e - (n - e) * _harmonic_diff(n, n - e), n)
    return aurc, aurc - optimal


def aurc(y_true, probs) -> dict:
    """AURC, E-AURC and the optimal AURC of argmax predictions ranked by max probability.

    Parameters
    ----------
    y_true : array_like of int, shape (N,)
    probs : array_like of float, shape (N, C)

    Returns
    -------
    dict
        ``{"aurc", "e_aurc", "aurc_optimal", "error_rate"}`` as floats (no intervals; see
        :func:`selective_prediction` for them).
    """
    p = np.asarray(probs, dtype=np.float64)
    y, p = check_labels_probs(y_true, p, p.shape[1] if p.ndim == 2 else 0, "test")
    conf, err = p.max(axis=1), p.argmax(axis=1) != y
    groups = _groups(conf)
    n_g = np.bincount(groups, minlength=groups.max() + 1)[:, None]
    e_g = np.bincount(groups, weights=err, minlength=groups.max() + 1)[:, None]
    a, ea = aurc_from_groups(n_g, e_g)
    return {
        "aurc": float(a[0]),
        "e_aurc": float(ea[0]),
        "aurc_optimal": float(a[0] - ea[0]),
        "error_rate": float(err.mean()),
    }


def _groups(conf: np.ndarray) -> np.ndarray:
    """Group index of each sample: 0 = highest confidence, ties share a group."""
    levels, inverse = np.unique(-conf, return_inverse=True)
    return inverse.astype(np.int64)


# -- thresholds chosen on validation ---------------------------------------------------------


def coverage_threshold(conf_val: np.ndarray, target: float) -> float:
    """Highest threshold answering at least ``target`` of the validation cases.

    Parameters
    ----------
    conf_val : ndarray of float, shape (N,)
    target : float
        Coverage in (0, 1].

    Returns
    -------
    float
        The ``ceil(target N)``-th largest confidence (rule: answer when ``conf >= threshold``).
    """
    n = conf_val.size
    x = target * n
    k = max(1, int(math.ceil(x - 1e-12 * max(1.0, x))))
    return float(np.sort(conf_val)[::-1][k - 1])


def threshold_grid(n_classes: int) -> np.ndarray:
    """The fixed candidate thresholds of the risk target, ascending, in ``[1/C, 1)``.

    Fixed before seeing data (the Bonferroni guarantee needs that): 20 steps evenly spaced from
    ``1/C`` and 30 that approach 1 geometrically, since confident models put most cases near 1.

    Parameters
    ----------
    n_classes : int

    Returns
    -------
    ndarray of float64, shape (GRID_SIZE,)
    """
    gap = np.concatenate([np.linspace(1.0, 0.05, 20, endpoint=False), np.geomspace(0.05, 1e-6, GRID_SIZE - 20)])
    return np.sort(1.0 - (1.0 - 1.0 / n_classes) * gap)


def risk_threshold(conf_val: np.ndarray, err_val: np.ndarray, n_classes: int, target: float, delta: float) -> dict:
    """Learn-then-Test threshold for a selective-risk target (Bonferroni over the fixed grid).

    Parameters
    ----------
    conf_val : ndarray of float, shape (N,)
    err_val : ndarray of bool, shape (N,)
        Validation errors of the argmax prediction.
    n_classes : int
    target : float
        Selective risk in (0, 1).
    delta : float
        Error level of the guarantee.

    Returns
    -------
    dict
        ``threshold`` (None when no grid threshold passes), ``p_value`` (binomial
        ``P(Bin(n_accepted, target) <= errors)`` at the chosen one), ``level`` (``delta / GRID_SIZE``).
    """
    grid = threshold_grid(n_classes)
    accepted = conf_val[None, :] >= grid[:, None]
    n_acc = accepted.sum(axis=1)
    e_acc = (accepted & err_val[None, :]).sum(axis=1)
    p = np.where(n_acc > 0, stats.binom.cdf(e_acc, np.maximum(n_acc, 1), target), 1.0)
    level = delta / grid.size
    ok = np.flatnonzero(p <= level)
    if not ok.size:
        return {"threshold": None, "p_value": None, "level": level}
    j = int(ok[0])  # the lowest passing threshold answers the most cases
    return {"threshold": float(grid[j]), "p_value": float(p[j]), "level": level}


# -- the report block ------------------------------------------------------------------------


def _at_threshold(tau, conf, err, disease, missed, n_disease_reason, ci_alpha) -> dict:
    n = conf.size
    acc = conf >= tau
    k = int(acc.sum())
    return {
        "coverage": proportion(k, n, "no test samples", ci_alpha),
        "referred": proportion(n - k, n, "no test samples", ci_alpha),
        "selective_accuracy": proportion(int((acc & ~err).sum()), k, "no test case is answered", ci_alpha),
        "selective_risk": proportion(int((acc & err).sum()), k, "no test case is answered", ci_alpha),
        "missed_disease": (
            proportion(int((acc & missed).sum()), int(disease.sum()), n_disease_reason, ci_alpha)
            if disease is not None
            else undefined(n_disease_reason)
        ),
        "missed_disease_among_answered": (
            proportion(int((acc & missed).sum()), int((acc & disease).sum()), "no disease case is answered", ci_alpha)
            if disease is not None
            else undefined(n_disease_reason)
        ),
    }


def _curve(conf, err, missed, disease, max_points) -> dict:
    groups = _groups(conf)
    g = groups.max() + 1
    n_le = np.cumsum(np.bincount(groups, minlength=g))
    e_le = np.cumsum(np.bincount(groups, weights=err, minlength=g))
    thresholds = np.sort(np.unique(conf))[::-1]
    keep = np.unique(np.round(np.linspace(0, g - 1, min(g, max_points))).astype(np.int64))
    out = {
        "threshold": thresholds[keep].tolist(),
        "coverage": (n_le[keep] / conf.size).tolist(),
        "selective_risk": (e_le[keep] / n_le[keep]).tolist(),
        "missed_disease": None,
    }
    if disease is not None and disease.any():
        m_le = np.cumsum(np.bincount(groups, weights=missed, minlength=g))
        out["missed_disease"] = (m_le[keep] / disease.sum()).tolist()
    return out


def _aurc_bootstrap(y, conf, err, n_classes, n_bootstrap, seed, ci_alpha) -> tuple[dict, dict]:
    order = np.lexsort((err, -conf, y))  # strata contiguous and an order-free layout
    y, conf, err = y[order], conf[order], err[order]
    n = y.size
    groups = _groups(conf)
    g = int(groups.max()) + 1
    ids = np.arange(n)
    design = SumDesign(n, [Block("n", groups, ids, g), Block("e", groups[err], ids[err], g)])

    def evaluate(s):
        a, ea = _aurc_whole(s["n"], s["e"])
        return {"aurc": a, "e_aurc": ea}

    strata = np.bincount(y, minlength=n_classes).tolist()
    point, boot = point_and_bootstrap(design, evaluate, strata, n_bootstrap, seed, ["aurc", "e_aurc"])
    out = {}
    for key in ("aurc", "e_aurc"):
        ci = percentile_ci(boot[key].reshape(n_bootstrap, 1), ci_alpha)[:, 0] if n_bootstrap else None
        out[key] = estimate(float(point[key]), None if ci is None else (ci[0], ci[1]), "no test samples")
        if not n_bootstrap:
            out[key]["reason"] = "bootstrap disabled (0 resamples)"
    return out["aurc"], out["e_aurc"]


def selective_prediction(
    y_test,
    probs_test,
    class_names,
    *,
    y_val=None,
    probs_val=None,
    negative_classes=(),
    target_coverages=(0.95, 0.9, 0.8),
    target_risk: float | None = None,
    delta: float = 0.05,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci_alpha: float = 0.05,
    max_curve_points: int = MAX_CURVE_POINTS,
) -> dict:
    """Risk-coverage curve, AURC and referral operating points of argmax predictions.

    Parameters
    ----------
    y_test : array_like of int, shape (N,)
        True class indices (single-label tasks).
    probs_test : array_like of float, shape (N, C)
        Probabilities; prediction = argmax, confidence = max.
    class_names : sequence of str, length C
    y_val, probs_val : array_like, shapes (M,), (M, C), optional
        Validation split where operating thresholds are chosen; without it there are no
        operating points (``operating_points_reason`` says so).
    negative_classes : sequence of str
        "No disease" classes; adds missed-disease figures.
    target_coverages : sequence of float
        Each in (0, 1]: share of validation cases the model should answer.
    target_risk : float, optional
        In (0, 1): selective error rate to guarantee (Learn-then-Test, see the module docstring).
    delta : float
        In (0, 1): the risk guarantee holds with probability ``>= 1 - delta``.
    n_bootstrap : int
        Resamples of the AURC/E-AURC intervals (test resampled within true classes).
    seed : int
    ci_alpha : float
        1 - confidence level of every interval.
    max_curve_points : int
        The curve keeps at most this many of its distinct thresholds (evenly spaced, ends kept).

    Returns
    -------
    dict
        JSON-ready: ``confidence`` (``"max_probability"``), ``rule``, ``n_test``, ``aurc``,
        ``e_aurc`` (bootstrap value objects), ``aurc_optimal`` (float), ``risk_at_full_coverage``
        (Wilson value object), ``curve`` (lists ``threshold``, ``coverage``, ``selective_risk``,
        ``missed_disease`` or None), ``operating_points`` (list; each ``target``,
        ``target_value``, ``threshold``, ``chosen_on``, the validation ``val_coverage`` and, on
        test, ``coverage``, ``referred``, ``selective_accuracy``, ``selective_risk``,
        ``missed_disease``, ``missed_disease_among_answered`` as Wilson value objects; the risk
        target adds ``reached``, ``delta``, ``guarantee`` and a ``reason`` when unreached),
        ``operating_points_reason`` (None or why there are none), ``notes``.
    """
    names = [str(c) for c in class_names]
    c = len(names)
    if c < 2:
        raise MedauditError(f"selective prediction needs at least 2 classes, got {c}", param="class_names")
    ci_alpha = check_alpha(ci_alpha, "ci_alpha")
    delta = check_alpha(delta, "delta")
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 0:
        raise MedauditError(f"n_bootstrap must be a whole number >= 0, got {n_bootstrap}", param="n_bootstrap")
    if int(max_curve_points) != max_curve_points or max_curve_points < 2:
        raise MedauditError(f"max_curve_points must be >= 2, got {max_curve_points}", param="max_curve_points")
    coverages = []
    for t in target_coverages:
        if not isinstance(t, (int, float)) or not 0.0 < t <= 1.0:
            raise MedauditError(f"target coverage must be in (0, 1], got {t!r}", param="target_coverage")
        coverages.append(float(t))
    if target_risk is not None:
        target_risk = check_alpha(target_risk, "target_risk")
    if (y_val is None) != (probs_val is None):
        raise MedauditError("give both y_val and probs_val, or neither", param="y_val")
    neg = negative_indices(names, negative_classes)

    y, p = check_labels_probs(y_test, probs_test, c, "test")
    pred, conf = p.argmax(axis=1), p.max(axis=1)
    err = pred != y
    if neg:
        disease, missed, no_dis = ~np.isin(y, neg), missed_disease_mask(y, pred, neg), "no disease samples in test"
    else:
        disease, missed, no_dis = None, None, "no negative classes given, so disease classes are unknown"

    aurc_v, e_aurc_v = _aurc_bootstrap(y, conf, err, c, int(n_bootstrap), seed, ci_alpha)
    out = {
        "confidence": "max_probability",
        "rule": "answer when confidence >= threshold, refer to a human otherwise",
        "n_test": int(y.size),
        "aurc": aurc_v,
        "e_aurc": e_aurc_v,
        "aurc_optimal": aurc_v["value"] - e_aurc_v["value"],
        "risk_at_full_coverage": proportion(int(err.sum()), int(y.size), "no test samples", ci_alpha),
        "curve": _curve(conf, err, missed, disease, int(max_curve_points)),
        "operating_points": [],
        "operating_points_reason": None,
        "notes": ["AURC averages tied confidences over their orders; intervals resample test within true classes"],
    }
    if y_val is None:
        out["operating_points_reason"] = (
            "no validation predictions: referral thresholds are chosen on validation only, "
            "so only the test curve and AURC are shown"
        )
        return out

    yv, pv = check_labels_probs(y_val, probs_val, c, "val")
    conf_v, err_v = pv.max(axis=1), pv.argmax(axis=1) != yv
    for t in coverages:
        tau = coverage_threshold(conf_v, t)
        out["operating_points"].append({
            "target": "coverage", "target_value": t, "threshold": tau, "chosen_on": "val",
            "val_coverage": float((conf_v >= tau).mean()),
            **_at_threshold(tau, conf, err, disease, missed, no_dis, ci_alpha),
        })  # fmt: skip
    if target_risk is not None:
        choice = risk_threshold(conf_v, err_v, c, target_risk, delta)
        tau = choice["threshold"]
        point = {
            "target": "risk", "target_value": target_risk, "threshold": tau, "chosen_on": "val",
            "reached": tau is not None, "delta": delta,
            "guarantee": (f"with probability >= {1 - delta:g} over the validation draw, the selective risk at "
                          f"this threshold is <= {target_risk:g} (Learn-then-Test, Bonferroni over "
                          f"{GRID_SIZE} fixed thresholds, exact binomial test)"),
            "p_value": choice["p_value"], "reason": None,
        }  # fmt: skip
        if tau is None:
            reason = (f"no threshold keeps the selective risk <= {target_risk:g} with confidence {1 - delta:g} "
                      f"on {yv.size} validation cases: refer every case, or relax the target")  # fmt: skip
            point.update(val_coverage=None, reason=reason)
            point.update({k: undefined(reason) for k in ("coverage", "referred", "selective_accuracy",
                                                         "selective_risk", "missed_disease",
                                                         "missed_disease_among_answered")})  # fmt: skip
        else:
            point["val_coverage"] = float((conf_v >= tau).mean())
            point.update(_at_threshold(tau, conf, err, disease, missed, no_dis, ci_alpha))
        out["operating_points"].append(point)
    return out
