"""Calibration that can be acted on: more calibration measures, and recalibration fitted on validation.

Measures (besides ECE and Brier of :mod:`medaudit.metrics.calibration`):

* **NLL** — ``mean_i -log p_i,y_i``, with ``p`` floored at machine epsilon (as scikit-learn's
  ``log_loss``), so a confident miss costs at most about 36 nats instead of infinity.
* **Adaptive ECE** — ECE over equal-mass bins of the top-label confidence (Nixon et al. 2019):
  each bin holds about ``N / n_bins`` forecasts (:func:`equal_mass_bins`).
* **Class-wise ECE** — the mean over classes ``k`` of the ECE of the forecasts ``p_ik`` against
  ``1[y_i = k]``, equal-width right-closed bins (Kull et al. 2019).
* **Calibration slope and intercept** — the logistic recalibration
  ``logit P(y = 1) = a + b logit(p)`` fitted by maximum likelihood: ``b < 1`` means
  over-confident (predictions too extreme), ``b > 1`` under-confident. ``citl`` (calibration in
  the large) is ``a`` with ``b`` fixed at 1: ``> 0`` means risks are too low on average. Their
  intervals are Wald with the robust (sandwich) variance: the model-based one assumes the
  logistic recalibration holds, which CITL (slope held at 1) on a miscalibrated model does not.
* **Spiegelhalter's z** — ``Z = sum (y - p)(1 - 2p) / sqrt(sum (1 - 2p)^2 p (1 - p))``, about
  N(0, 1) when the forecasts are calibrated (Spiegelhalter 1986).

Slope, intercept and Spiegelhalter's z are about one binary forecast per sample: ``p(disease) =
1 - sum p(negative classes)`` when negative classes are given
(:func:`medaudit.metrics.decision.disease_outcome`), ``p`` of the second class for two
classes, otherwise the top-label confidence against "the prediction is correct".

Recalibration (fitted on validation by maximum likelihood, applied to test):

* **Temperature scaling** (any number of classes): ``softmax(log p / T)``. It equals
  ``softmax(z / T)`` for logits ``z`` (``log p`` and ``z`` differ by a per-sample constant), so it
  is a function of the probabilities alone. ``T > 1`` softens over-confident predictions. The
  prediction (argmax) never changes.
* **Platt scaling** (two classes): ``p' = sigmoid(a + b logit(p))``, the same logistic fit as the
  calibration slope, on plain 0/1 targets (no Platt target smoothing).

The recalibrated probabilities are returned as an array, for the caller to keep as a *named
variant* of the model's predictions ("resnet18 (temperature-scaled)"), never in place of them.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special, stats

from medaudit.errors import MedauditError
from medaudit.metrics import calibration as cal
from medaudit.metrics.decision import disease_outcome
from medaudit.metrics.intervals import estimate, percentile_ci, recentred_ci
from medaudit.metrics.resample import Block, SumDesign, point_and_bootstrap

EPS = np.finfo(np.float64).eps
# Temperatures searched by temperature scaling: 1/100 to 100 covers any softmax network's miscalibration.
T_BOUNDS = (1e-2, 1e2)
METHODS = ("temperature", "platt")
VARIANT_SUFFIX = {"temperature": "temperature-scaled", "platt": "Platt-scaled"}
TABLE = ("nll", "brier", "ece", "adaptive_ece", "classwise_ece", "slope", "intercept", "citl")
_ECE_LIKE = ("ece", "adaptive_ece", "classwise_ece")
FITTED = ("slope", "intercept", "citl")
SUMMED = tuple(k for k in TABLE if k not in FITTED)  # functions of sums over samples: bootstrapped


# -- inputs ---------------------------------------------------------------------------------------


def _check_probs(y_true, probs, n_classes: int | None, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Single-label labels (N,) and probability rows (N, C) that sum to 1."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true)
    if p.ndim != 2 or (n_classes is not None and p.shape[1] != n_classes) or y.shape != (p.shape[0],):
        expected = f"(N, {n_classes})" if n_classes is not None else "(N, C)"
        raise MedauditError(f"{what}: labels {y.shape} and probabilities {p.shape} do not match; expected {expected}")
    if p.shape[0] == 0:
        raise MedauditError(f"{what}: no samples")
    if not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
        raise MedauditError(f"{what}: probabilities must be finite and in [0, 1]; re-run `medaudit predict`")
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-6):
        raise MedauditError(f"{what}: probability rows must sum to 1 (single-label softmax outputs); "
                            "multilabel predictions cannot be recalibrated here")
    if not np.array_equal(y, np.round(y)) or y.min() < 0 or y.max() >= p.shape[1]:
        raise MedauditError(f"{what}: y_true must hold class indices in [0, {p.shape[1]})")
    return y.astype(np.int64), p


def _check_bins(n_bins: int) -> int:
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise MedauditError(f"the number of calibration bins must be a whole number >= 1, got {n_bins!r}",
                            param="ece_bins")
    return int(n_bins)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


# -- measures -------------------------------------------------------------------------------------


def nll_per_sample(y_true: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Each sample's negative log-likelihood ``-log p_i,y_i`` (``p`` floored at machine epsilon).

    Parameters
    ----------
    y_true : ndarray of int, shape (N,)
    probs : ndarray of float, shape (N, C)

    Returns
    -------
    ndarray of float64, shape (N,)
    """
    return -np.log(np.clip(probs[np.arange(len(y_true)), y_true], EPS, 1.0))


def nll(y_true, probs) -> float:
    """Mean negative log-likelihood (log loss) of single-label probabilities.

    Parameters
    ----------
    y_true : array_like of int, shape (N,)
    probs : array_like of float, shape (N, C)

    Returns
    -------
    float
    """
    y, p = _check_probs(y_true, probs, None, "nll")
    return float(nll_per_sample(y, p).mean())


def equal_mass_bins(confidence, n_bins: int) -> np.ndarray:
    """Equal-mass (adaptive) bin of each forecast: bin ``floor(rank * n_bins / M)`` by confidence.

    Forecasts with the same confidence share a bin (the rank of a tie is its lowest), so the bins
    depend on the values only, not on the input order; without ties the bin sizes differ by at
    most one.

    Parameters
    ----------
    confidence : array_like of float, shape (M,)
    n_bins : int

    Returns
    -------
    ndarray of int64, shape (M,), values in ``[0, n_bins)``, non-decreasing in the confidence
    """
    n_bins = _check_bins(n_bins)
    c = np.asarray(confidence, dtype=np.float64)
    rank = np.searchsorted(np.sort(c), c, side="left")
    return (rank * n_bins) // max(c.size, 1)


def _gap_ece(bins: np.ndarray, gap: np.ndarray, n: int, n_rows: int) -> float:
    return float(np.abs(np.bincount(bins, weights=gap, minlength=n_rows)).sum() / n)


def adaptive_ece(y_true, probs, n_bins: int = 15) -> float:
    """ECE of the top-label confidence over equal-mass bins.

    Parameters
    ----------
    y_true : array_like of int, shape (N,)
    probs : array_like of float, shape (N, C)
    n_bins : int

    Returns
    -------
    float
        ``sum_b |sum_{i in b} (correct_i - conf_i)| / N``, bins of :func:`equal_mass_bins`.
    """
    y, p = _check_probs(y_true, probs, None, "adaptive_ece")
    conf, correct, _ = cal.forecasts(y, p, False)
    return _gap_ece(equal_mass_bins(conf, n_bins), correct - conf, len(y), n_bins)


def _classwise_rows(y: np.ndarray, p: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin row ``k * n_bins + b`` and gap ``1[y = k] - p_ik`` of every (sample, class) forecast."""
    n, c = p.shape
    rows = (np.arange(c)[None, :] * n_bins + cal.assign_bins(p.ravel(), n_bins).reshape(n, c)).ravel()
    return rows, (np.eye(c)[y] - p).ravel()


def classwise_ece(y_true, probs, n_bins: int = 15) -> dict:
    """Class-wise ECE: the mean over classes of each class's one-vs-rest ECE.

    Parameters
    ----------
    y_true : array_like of int, shape (N,)
    probs : array_like of float, shape (N, C)
    n_bins : int
        Equal-width bins on [0, 1], right-closed (as :func:`medaudit.metrics.calibration.assign_bins`).

    Returns
    -------
    dict
        ``value`` (the mean over the C classes) and ``per_class`` (list of C floats).
    """
    y, p = _check_probs(y_true, probs, None, "classwise_ece")
    n_bins = _check_bins(n_bins)
    rows, gap = _classwise_rows(y, p, n_bins)
    per = np.abs(np.bincount(rows, weights=gap, minlength=p.shape[1] * n_bins).reshape(-1, n_bins)).sum(1) / len(y)
    return {"value": float(per.mean()), "per_class": [float(v) for v in per]}


def _logistic_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, slope_fixed: bool = False,
                  max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood ``logit P(y=1) = a + b x`` for each weight column; NaN where it has no finite optimum.

    Newton's method from (0, 1), vectorised over the m weight columns; each step is halved until
    the log-likelihood does not fall (it is concave, so this always succeeds). ``slope_fixed``
    fits ``a`` with ``b = 1``.

    Parameters
    ----------
    x, y : ndarray, shape (N,)
    w : ndarray, shape (N, m)
        Sample weights of m fits (ones for the point estimate).
    slope_fixed : bool
    max_iter : int

    Returns
    -------
    a, b : ndarray of float64, shape (m,)
    """
    w = np.asarray(w, dtype=np.float64)
    m = w.shape[1]
    xx, yy = x[:, None], y[:, None]
    a, b = np.zeros(m), np.ones(m)

    def loglik(a_, b_):
        eta = a_ + b_ * xx
        return (w * (yy * eta - np.logaddexp(0.0, eta))).sum(0)

    current = loglik(a, b)
    done = np.zeros(m, dtype=bool)
    singular = np.zeros(m, dtype=bool)
    design = np.stack([np.ones_like(x), x, x * x])  # (3, N): sums of r and v times 1, x, x^2
    for _ in range(max_iter):
        p = special.expit(xx * b + a)
        r = (yy - p) * w
        v = p * (1.0 - p) * w
        if slope_fixed:
            ga, haa = r.sum(0), v.sum(0)
            with np.errstate(divide="ignore", invalid="ignore"):
                da, db = ga / haa, np.zeros(m)
        else:
            (ga, gb), (haa, hab, hbb) = design[:2] @ r, design @ v
            det = haa * hbb - hab * hab
            with np.errstate(divide="ignore", invalid="ignore"):
                da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
        singular |= ~(np.isfinite(da) & np.isfinite(db)) & ~done
        step = ~singular & ~done
        da, db = np.where(step, da, 0.0), np.where(step, db, 0.0)
        for _ in range(30):  # halve until the likelihood does not fall
            trial = loglik(a + da, b + db)
            worse = trial < current - 1e-12 * np.abs(current)
            if not worse.any():
                break
            da, db = np.where(worse, da / 2, da), np.where(worse, db / 2, db)
        current = np.maximum(current, trial)
        a, b = a + da, b + db
        done |= (np.abs(da) + np.abs(db) < 1e-10 * (1.0 + np.abs(a) + np.abs(b))) | singular
        if done.all():
            break
    # A singular information matrix (one class only, constant x) or a run-away fit (separable
    # data, where the optimum is at infinity) has no maximum-likelihood estimate.
    events = y @ w
    one_outcome = (events <= 0) | (events >= w.sum(0))
    bad = ~done | singular | one_outcome | ~np.isfinite(a + b) | (np.abs(a) > 1e4) | (np.abs(b) > 1e4)
    return np.where(bad, np.nan, a), np.where(bad, np.nan, b)


def _binary_forecast(y: np.ndarray, p: np.ndarray, class_names, negative_classes) -> tuple[np.ndarray, np.ndarray, str]:
    """The one binary forecast per sample that slope, intercept and Spiegelhalter's z are about."""
    names = [str(c) for c in class_names]
    if negative_classes:
        outcome, score, label = disease_outcome(y, p, names, negative_classes=negative_classes)
        return outcome.astype(np.float64), score, f"p({label})"
    if p.shape[1] == 2:
        return (y == 1).astype(np.float64), p[:, 1], f"p({names[1]})"
    conf, correct, _ = cal.forecasts(y, p, False)
    return correct, conf, "top-label confidence"


def _slope_reason(outcome: np.ndarray, prob: np.ndarray) -> str:
    if outcome.min() == outcome.max():
        return f"every outcome is {int(outcome[0])}, so no logistic recalibration can be fitted"
    if np.ptp(_logit(prob)) == 0:
        return "every forecast is the same, so no slope can be fitted"
    return "the outcomes are perfectly separated by the forecasts, so the fit has no finite optimum"


def calibration_slope_intercept(outcome, prob) -> dict:
    """Calibration slope ``b``, intercept ``a`` of ``logit P(y=1) = a + b logit(p)``, and ``citl``.

    Parameters
    ----------
    outcome : array_like of 0/1, shape (N,)
    prob : array_like of float in [0, 1], shape (N,)
        Forecast probabilities of ``outcome == 1`` (clipped to ``[eps, 1 - eps]`` before the logit).

    Returns
    -------
    dict
        ``slope``, ``intercept`` (joint fit), ``citl`` (intercept with the slope fixed at 1), and
        ``reason``: floats, or None with the reason when there is no maximum-likelihood fit
        (one outcome only, constant forecasts, perfect separation).
    """
    y = np.asarray(outcome, dtype=np.float64)
    p = np.asarray(prob, dtype=np.float64)
    if y.ndim != 1 or y.shape != p.shape or not np.isin(y, (0, 1)).all() or y.size == 0:
        raise MedauditError("calibration_slope_intercept: outcome must be 0/1 and prob of the same shape (N,)")
    x, w = _logit(p), np.ones((len(y), 1))
    a, b = _logistic_fit(x, y, w)
    a1, _ = _logistic_fit(x, y, w, slope_fixed=True)
    out = {"slope": _float(b[0]), "intercept": _float(a[0]), "citl": _float(a1[0]), "reason": None}
    if out["slope"] is None or out["citl"] is None:
        out["reason"] = _slope_reason(y, p)
    return out


def _float(v) -> float | None:
    return float(v) if np.isfinite(v) else None


def spiegelhalter_z(outcome, prob) -> dict:
    """Spiegelhalter's z test of calibration, two-sided.

    Parameters
    ----------
    outcome : array_like of 0/1, shape (N,)
    prob : array_like of float in [0, 1], shape (N,)

    Returns
    -------
    dict
        ``z`` = ``sum (y - p)(1 - 2p) / sqrt(sum (1 - 2p)^2 p (1 - p))``, ``p_value`` =
        ``2 (1 - Phi(|z|))``, ``reason``; None with the reason when the variance is 0 (every
        forecast is 0, 1/2 or 1).
    """
    y = np.asarray(outcome, dtype=np.float64)
    p = np.asarray(prob, dtype=np.float64)
    if y.ndim != 1 or y.shape != p.shape or not np.isin(y, (0, 1)).all():
        raise MedauditError("spiegelhalter_z: outcome must be 0/1 and prob of the same shape (N,)")
    var = float(((1 - 2 * p) ** 2 * p * (1 - p)).sum())
    if not var > 0:
        return {"z": None, "p_value": None,
                "reason": "every forecast is 0, 1/2 or 1, so the statistic has no variance"}
    z = float(((y - p) * (1 - 2 * p)).sum() / math.sqrt(var))
    return {"z": z, "p_value": float(2 * stats.norm.sf(abs(z))), "reason": None}


# -- recalibration --------------------------------------------------------------------------------


def apply_temperature(probs, temperature: float) -> np.ndarray:
    """Temperature-scaled probabilities ``softmax(log p / T)``.

    Parameters
    ----------
    probs : array_like of float, shape (N, C)
        Rows sum to 1; ``p`` is floored at machine epsilon before the log.
    temperature : float
        ``T > 0``.

    Returns
    -------
    ndarray of float64, shape (N, C)
    """
    if not (isinstance(temperature, (int, float, np.floating)) and np.isfinite(temperature) and temperature > 0):
        raise MedauditError(f"temperature must be a positive number, got {temperature!r}", param="temperature")
    logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0))
    return special.softmax(logp / float(temperature), axis=1)


def fit_temperature(y_val, probs_val) -> dict:
    """Temperature minimising the validation NLL of ``softmax(log p / T)``.

    The NLL is convex in ``1 / T`` (a log-sum-exp of a linear function minus a linear term), so a
    bounded scalar search on ``log T`` finds the one minimum.

    Parameters
    ----------
    y_val : array_like of int, shape (N,)
    probs_val : array_like of float, shape (N, C)

    Returns
    -------
    dict
        ``temperature``, ``nll_before`` and ``nll_after`` on validation, ``at_bound`` (True when the
        optimum is at an end of ``T_BOUNDS``: e.g. validation predictions all correct, where the
        NLL keeps falling as ``T -> 0``).
    """
    y, p = _check_probs(y_val, probs_val, None, "fit_temperature")
    logp = np.log(np.clip(p, EPS, 1.0))
    picked = logp[np.arange(len(y)), y]

    def objective(log_t: float) -> float:
        z = logp / math.exp(log_t)
        return float((special.logsumexp(z, axis=1) - picked / math.exp(log_t)).mean())

    lo, hi = math.log(T_BOUNDS[0]), math.log(T_BOUNDS[1])
    res = optimize.minimize_scalar(objective, bounds=(lo, hi), method="bounded", options={"xatol": 1e-9})
    log_t = float(res.x)
    for edge in (lo, hi):  # Brent stops just inside a bound; report the bound itself when it wins
        if objective(edge) <= res.fun:
            log_t = edge
    t = math.exp(log_t)
    return {"temperature": t, "nll_before": float(nll_per_sample(y, p).mean()),
            "nll_after": objective(log_t), "at_bound": bool(abs(log_t - lo) < 1e-6 or abs(log_t - hi) < 1e-6)}


def _positive_index(class_names, negative_classes) -> int:
    names = [str(c) for c in class_names]
    if len(names) != 2:
        raise MedauditError(f"Platt scaling needs two classes, got {len(names)}; use temperature scaling",
                            param="recalibration")
    if negative_classes:
        negatives = [str(c) for c in negative_classes]
        if len(negatives) != 1 or negatives[0] not in names:
            raise MedauditError(f"Platt scaling: give one of {names} as the negative class, got {negatives}",
                                param="negative_classes")
        return 1 - names.index(negatives[0])
    return 1


def fit_platt(y_val, probs_val, class_names, negative_classes=None) -> dict:
    """Platt scaling ``p' = sigmoid(a + b logit(p))`` of the positive class, fitted on validation.

    Parameters
    ----------
    y_val : array_like of int, shape (N,)
    probs_val : array_like of float, shape (N, 2)
    class_names : sequence of str, length 2
    negative_classes : sequence of str, optional
        The one "no disease" class; the other is positive. Default: the second class is positive.

    Returns
    -------
    dict
        ``intercept`` a, ``slope`` b, ``positive`` (class name); or None values and a ``reason``
        when validation admits no fit (one class only, or perfectly separated).
    """
    pos = _positive_index(class_names, negative_classes)
    y, p = _check_probs(y_val, probs_val, 2, "fit_platt")
    outcome = (y == pos).astype(np.float64)
    fit = calibration_slope_intercept(outcome, p[:, pos])
    return {"intercept": fit["intercept"], "slope": fit["slope"], "positive": str(class_names[pos]),
            "reason": fit["reason"]}


def apply_platt(probs, intercept: float, slope: float, positive: int = 1) -> np.ndarray:
    """Platt-scaled two-class probabilities.

    Parameters
    ----------
    probs : array_like of float, shape (N, 2)
    intercept, slope : float
        From :func:`fit_platt`.
    positive : int
        Column of the positive class.

    Returns
    -------
    ndarray of float64, shape (N, 2)
    """
    p = np.asarray(probs, dtype=np.float64)
    q = special.expit(intercept + slope * _logit(p[:, positive]))
    out = np.empty_like(p)
    out[:, positive], out[:, 1 - positive] = q, 1.0 - q
    return out


# -- before/after table ---------------------------------------------------------------------------


class _Fit:
    """The full-data logistic recalibration of one version (before or after): its fits and their
    per-sample influence functions.

    Parameters
    ----------
    outcome : ndarray of 0/1, shape (N,)
    x : ndarray, shape (N,)
        ``logit`` of the forecast.
    """

    def __init__(self, outcome: np.ndarray, x: np.ndarray) -> None:
        ones = np.ones((len(x), 1))
        a, b = _logistic_fit(x, outcome, ones)
        self.a, self.b = float(a[0]), float(b[0])
        self.c = float(_logistic_fit(x, outcome, ones, slope_fixed=True)[0][0])
        self.outcome, self.x = outcome, x

    def values(self) -> dict[str, float]:
        return {"intercept": self.a, "slope": self.b, "citl": self.c}

    def influence(self) -> dict[str, np.ndarray]:
        """Each sample's influence on each estimate, ``H^-1 s_i``, shape (N,) each.

        ``s_i`` is the sample's score (``r [1, x]`` with ``r = y - p``; ``r`` for the slope-1
        fit) and ``H`` the observed Fisher information at the fit (``sum v [[1, x], [x, x^2]]``
        with ``v = p (1 - p)``; ``sum v``). The estimate minus its target is ``sum_i`` of these to
        first order, so ``sum_i IF_i^2`` is the sandwich variance ``H^-1 M H^-1``. NaN where the
        fit is undefined or ``H`` singular.
        """
        y, x = self.outcome, self.x
        out = dict.fromkeys(("intercept", "slope", "citl"), np.full(len(x), np.nan))
        p = special.expit(self.a + self.b * x)
        r, v = y - p, p * (1.0 - p)
        haa, hab, hbb = v.sum(), v @ x, v @ (x * x)
        det = haa * hbb - hab * hab
        if np.isfinite(self.a + self.b) and det > 0:
            out["intercept"] = r * (hbb - hab * x) / det
            out["slope"] = r * (haa * x - hab) / det
        p1 = special.expit(self.c + x)
        h1 = (p1 * (1.0 - p1)).sum()
        if np.isfinite(self.c) and h1 > 0:
            out["citl"] = (y - p1) / h1
        return out


def _sandwich_ci(value: float, influence: np.ndarray, alpha: float) -> tuple[float, float]:
    """Wald interval ``value +- z_{1 - alpha/2} sqrt(sum IF_i^2)`` (NaN bounds when IF is NaN)."""
    se = math.sqrt(float(influence @ influence))
    z = stats.norm.ppf(1.0 - alpha / 2)
    return value - z * se, value + z * se


def _version_blocks(tag: str, y: np.ndarray, p: np.ndarray, n_bins: int) -> list[Block]:
    n, c = p.shape
    ids = np.arange(n)
    conf, correct, _ = cal.forecasts(y, p, False)
    rows, gap = _classwise_rows(y, p, n_bins)
    task = "binary" if c == 2 else "multiclass"
    zero = np.zeros(n, np.int64)
    return [
        Block(f"nll_{tag}", zero, ids, 1, nll_per_sample(y, p)),
        Block(f"brier_{tag}", zero, ids, 1, cal.brier_per_sample(y, p, task)),
        Block(f"ece_{tag}", cal.assign_bins(conf, n_bins), ids, n_bins, correct - conf),
        # Equal-mass bins are set on the full split and kept in every resample, as the equal-width ones are.
        Block(f"adaptive_ece_{tag}", equal_mass_bins(conf, n_bins), ids, n_bins, correct - conf),
        Block(f"classwise_ece_{tag}", rows, np.repeat(ids, c), c * n_bins, gap),
    ]


def _evaluator(c: int, n_bins: int):
    def evaluate(s: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        total = s["n"][0].astype(np.float64)
        out = {}
        for tag in ("before", "after"):
            out[f"nll_{tag}"] = s[f"nll_{tag}"][0] / total
            out[f"brier_{tag}"] = s[f"brier_{tag}"][0] / total
            for key in ("ece", "adaptive_ece"):
                out[f"{key}_{tag}"] = cal.ece_from_sums(s[f"{key}_{tag}"], total)
            per = np.abs(s[f"classwise_ece_{tag}"]).reshape(c, n_bins, -1).sum(1) / total
            out[f"classwise_ece_{tag}"] = per.mean(0)
        for key in SUMMED:
            out[f"{key}_change"] = out[f"{key}_after"] - out[f"{key}_before"]
        return out

    return evaluate


def recalibration_table(
    y_true,
    probs_before,
    probs_after,
    class_names,
    *,
    negative_classes=None,
    n_bins: int = 15,
    n_bootstrap: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict:
    """Calibration measures of the same test samples before and after recalibration.

    Parameters
    ----------
    y_true : array_like of int, shape (N,)
    probs_before, probs_after : array_like of float, shape (N, C)
        Rows sum to 1.
    class_names : sequence of str, length C
    negative_classes : sequence of str, optional
        "No disease" classes: slope, intercept and Spiegelhalter's z are then about ``p(disease)``.
    n_bins : int
        Bins of the ECEs.
    n_bootstrap : int
        Resamples of the stratified percentile bootstrap of NLL, Brier and the ECEs (0 = no
        intervals for them), on the engine of :mod:`medaudit.metrics.resample`; before, after and
        their difference share the resamples (a paired bootstrap). ECE-like values get the
        median-bias-corrected interval of :func:`~medaudit.metrics.intervals.recentred_ci`, as in
        ``compute_metrics``. Slope, intercept and CITL always get analytic sandwich Wald
        intervals (``ci_method`` "wald-sandwich"), their change from the difference of the two
        fits' per-sample influence functions, so it is paired too.
    seed : int
    alpha : float in (0, 1)
        1 - confidence level.

    Returns
    -------
    dict
        ``n``, ``n_bins``, ``forecast`` (what slope/intercept/z are about), ``metrics``: for each of
        ``nll``, ``brier``, ``ece``, ``adaptive_ece``, ``classwise_ece``, ``slope``, ``intercept``,
        ``citl`` a dict of value objects ``before``, ``after``, ``change`` (after - before);
        ``spiegelhalter``: ``before`` and ``after`` of :func:`spiegelhalter_z`.
    """
    names = [str(c) for c in class_names]
    y, before = _check_probs(y_true, probs_before, len(names), "recalibration_table")
    _, after = _check_probs(y_true, probs_after, len(names), "recalibration_table")
    n_bins = _check_bins(n_bins)
    if not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 0:
        raise MedauditError(f"n_bootstrap must be a whole number >= 0, got {n_bootstrap!r}", param="n_bootstrap")
    if not 0.0 < alpha < 1.0:
        raise MedauditError(f"alpha must be strictly between 0 and 1, got {alpha!r}", param="alpha")
    # Stratify by true class (contiguous strata) in a canonical order, so the input order does not matter.
    order = np.lexsort([*(after[:, j] for j in range(len(names))), *(before[:, j] for j in range(len(names))), y])
    y, before, after = y[order], before[order], after[order]
    n, c = before.shape
    # The outcome of a top-label forecast ("correct") is the version's own: recalibration may move the argmax.
    binary = {tag: _binary_forecast(y, p, names, negative_classes) for tag, p in (("before", before),
                                                                                   ("after", after))}
    blocks = [Block("n", np.zeros(n, np.int64), np.arange(n), 1)]
    for tag, p in (("before", before), ("after", after)):
        blocks += _version_blocks(tag, y, p, n_bins)
    keys = [f"{k}_{tag}" for k in SUMMED for tag in ("before", "after", "change")]
    strata = np.bincount(y, minlength=c).tolist()
    point, boot = point_and_bootstrap(SumDesign(n, blocks), _evaluator(c, n_bins), strata, n_bootstrap, seed, keys)
    metrics = {}
    for key in SUMMED:
        row = {}
        for tag in ("before", "after", "change"):
            name = f"{key}_{tag}"
            samples = boot[name].reshape(n_bootstrap, 1)
            ci, method = percentile_ci(samples, alpha), "bootstrap"
            if key in _ECE_LIKE and tag != "change":
                ci, method = recentred_ci(ci, samples, np.atleast_1d(point[name])), "bootstrap-recentred"
            row[tag] = estimate(float(point[name]), tuple(ci[:, 0]), "no samples", method)
        metrics[key] = row
    # Slope, intercept and CITL are not sums over samples: a bootstrap would refit them on every
    # resample. Their sandwich Wald intervals cost one pass over the samples, and the change
    # (after - before, the same samples) differences the two fits' influence functions, which
    # keeps their correlation. The class-stratified bootstrap would also hold the prevalence
    # fixed, which intercept and CITL depend on: in the four-class simulation of
    # tests/test_metrics_recalibration.py (600 draws of n = 500 and 2000) its 95% interval of the
    # CITL change covered 90%, the influence-function one 94-95%.
    fits = {tag: _Fit(f[0], _logit(f[1])) for tag, f in binary.items()}
    influence = {tag: fit.influence() for tag, fit in fits.items()}
    reasons = {tag: _slope_reason(f[0], f[1]) for tag, f in binary.items()}
    for key in FITTED:
        value = {tag: fits[tag].values()[key] for tag in fits}
        value["change"] = value["after"] - value["before"]
        influence_change = influence["after"][key] - influence["before"][key]
        side = "before" if not np.isfinite(value["before"]) else "after"
        row = {}
        for tag in ("before", "after", "change"):
            why = reasons[tag] if tag != "change" else f"undefined {side} recalibration: {reasons[side]}"
            ci = _sandwich_ci(value[tag], influence[tag][key] if tag != "change" else influence_change, alpha)
            row[tag] = estimate(value[tag], ci, why, "wald-sandwich")
        metrics[key] = row
    metrics = {key: metrics[key] for key in TABLE}
    return {
        "n": int(n),
        "n_bins": n_bins,
        "forecast": binary["before"][2],
        "metrics": metrics,
        "spiegelhalter": {tag: spiegelhalter_z(f[0], f[1]) for tag, f in binary.items()},
    }


def recalibrate(
    y_val,
    probs_val,
    y_test,
    probs_test,
    class_names,
    *,
    method: str = "temperature",
    negative_classes=None,
    n_bins: int = 15,
    n_bootstrap: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[dict, np.ndarray]:
    """Fit a recalibration on validation, apply it to test, and compare test before and after.

    Parameters
    ----------
    y_val, y_test : array_like of int, shape (N_val,), (N_test,)
    probs_val, probs_test : array_like of float, shape (N_val, C), (N_test, C)
    class_names : sequence of str, length C
    method : {"temperature", "platt"}
        Platt scaling needs two classes.
    negative_classes : sequence of str, optional
        "No disease" classes (see :func:`recalibration_table`; Platt: the negative class).
    n_bins, n_bootstrap, seed, alpha
        As :func:`recalibration_table`.

    Returns
    -------
    summary : dict
        ``method``, ``variant`` (suffix for the variant's display name, e.g.
        "temperature-scaled"), ``fitted_on`` ("val"), ``parameters`` (:func:`fit_temperature` or
        :func:`fit_platt`), ``test`` (:func:`recalibration_table` of the test split), ``note``.
    probs_after : ndarray of float64, shape (N_test, C)
        The recalibrated test probabilities: a separate variant of the predictions. When no fit
        exists (``parameters["reason"]``) they equal the input and ``test`` is None.
    """
    if method not in METHODS:
        raise MedauditError(f"unknown recalibration {method!r}; choose one of: {', '.join(METHODS)}",
                            param="recalibration")
    names = [str(c) for c in class_names]
    yt, pt = _check_probs(y_test, probs_test, len(names), "recalibrate (test)")
    if method == "temperature":
        params = fit_temperature(*_check_probs(y_val, probs_val, len(names), "recalibrate (validation)"))
        params["reason"] = None
        after = apply_temperature(pt, params["temperature"])
    else:
        params = fit_platt(y_val, probs_val, names, negative_classes)
        if params["reason"] is not None:
            summary = {"method": method, "variant": VARIANT_SUFFIX[method], "fitted_on": "val",
                       "parameters": params, "test": None,
                       "note": f"no Platt scaling could be fitted on validation: {params['reason']}"}
            return summary, pt.copy()
        after = apply_platt(pt, params["intercept"], params["slope"], names.index(params["positive"]))
    table = recalibration_table(yt, pt, after, names, negative_classes=negative_classes, n_bins=n_bins,
                                n_bootstrap=n_bootstrap, seed=seed, alpha=alpha)
    note = ("fitted on the validation split, measured on test; the recalibrated probabilities are a separate "
            "variant of the model's predictions")
    if method == "temperature":
        note += " (temperature scaling never changes the predicted class)"
    return {"method": method, "variant": VARIANT_SUFFIX[method], "fitted_on": "val", "parameters": params,
            "test": table, "note": note}, after
