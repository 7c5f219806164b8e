"""Bootstrap intervals from too few samples, or of zero width from few, are withheld (issue 19).

The rule lives in :func:`medaudit.metrics.intervals.interval_withheld`; ``compute_metrics``
gives it each statistic's governing count. The simulations at the end show why: without the
rule, the lower bound of a percentile bootstrap interval lies above the true AUC far more often
than the nominal 2.5%, which lets a ``--on lower`` gate pass a model it should not.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

import medaudit.metrics.intervals as intervals
from medaudit.metrics.intervals import MIN_BOOTSTRAP_N, MIN_DEGENERATE_N, interval_withheld
from medaudit.metrics.summary import compute_metrics


def test_interval_withheld_rule():
    assert MIN_BOOTSTRAP_N == 10 and MIN_DEGENERATE_N == 30  # docs/gates.md states these numbers
    assert interval_withheld((0.2, 0.6), 9, "9 samples") == "no bootstrap interval from 9 samples (fewer than 10)"
    assert interval_withheld((0.2, 0.6), 10, "10 samples") is None
    assert "zero-width interval from 29 samples" in interval_withheld((1.0, 1.0), 29, "29 samples")
    assert interval_withheld((1.0, 1.0), 30, "30 samples") is None
    assert interval_withheld((0.5, 0.5 + 1e-9), 29, "29 samples") is None  # a narrow interval is not zero-width
    # No interval to withhold: the value object says so by ci_method None already.
    assert interval_withheld(None, 3, "3") is None and interval_withheld((np.nan, np.nan), 3, "3") is None


def _multiclass(sizes, seed=0, sep=1.5):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(sizes)), sizes)
    logits = rng.normal(0, 1, (y.size, len(sizes)))
    logits[np.arange(y.size), y] += sep
    p = np.exp(logits)
    return y, p / p.sum(1, keepdims=True)


def test_a_small_class_loses_its_intervals_and_the_averages_over_it():
    sizes = [60, 50, 5]
    y, p = _multiclass(sizes)
    m = compute_metrics(y, p, ["a", "b", "rare"], "multiclass", n_bootstrap=200)
    rare = m["per_class"]["rare"]
    for key in ("f1", "auc", "ap"):
        assert rare[key]["value"] is not None and rare[key]["ci_low"] is None and rare[key]["ci_high"] is None
        assert rare[key]["ci_reason"] == "no bootstrap interval from 5 samples of class 'rare' (fewer than 10)"
        assert m["per_class"]["a"][key]["ci_low"] is not None and "ci_reason" not in m["per_class"]["a"][key]
    # Proportions keep their Wilson intervals: those are valid at any n (5 of 5: 0.566-1).
    assert rare["recall"]["ci_method"] == "wilson" and rare["recall"]["ci_low"] is not None
    # A macro average is only as well resampled as its smallest class ...
    for key in ("balanced_accuracy", "macro_f1", "macro_recall", "auc_macro", "ap_macro", "kappa", "mcc"):
        assert m[key]["ci_low"] is None and "5 samples of class 'rare'" in m[key]["ci_reason"], key
    # ... a support-weighted one, or a mean over samples, by all of them.
    for key in ("weighted_f1", "weighted_recall", "brier", "ece", "auc_micro"):
        assert m[key]["ci_low"] is not None and "ci_reason" not in m[key], key


def test_min_n_uses_the_smaller_of_positives_and_negatives_for_auc():
    # 95 samples of the class, 5 of the other: the AUC of either class rests on 5 samples.
    y, p = _multiclass([5, 95])
    m = compute_metrics(y, p, ["few", "many"], "binary", n_bootstrap=200)
    assert "5 samples outside class 'many'" in m["per_class"]["many"]["auc"]["ci_reason"]
    assert "5 samples outside class 'many'" in m["auc_macro"]["ci_reason"]
    assert m["per_class"]["many"]["f1"]["ci_low"] is not None  # F1 of 'many' rests on its 95


@pytest.mark.parametrize("m, kept", [(15, False), (100, True)])
def test_perfect_separation(m, kept):
    # Every resample gives AUC 1: withheld from 15 per class, kept from 100 (rule of three: the
    # data then bound the misranking rate by about 3/100).
    rng = np.random.default_rng(3)
    s = np.r_[rng.uniform(0, 0.4, m), rng.uniform(0.6, 1, m)]
    out = compute_metrics(np.repeat([0, 1], m), np.c_[1 - s, s], ["h", "d"], "binary", n_bootstrap=200)
    auc = out["auc_macro"]
    assert auc["value"] == 1.0
    if kept:
        assert (auc["ci_low"], auc["ci_high"]) == (1.0, 1.0) and "ci_reason" not in auc
    else:
        assert auc["ci_low"] is None and "every resample gave 1: a zero-width interval" in auc["ci_reason"]


def test_one_image():
    out = compute_metrics([1], [[0.2, 0.8]], ["h", "d"], "binary", n_bootstrap=200)
    for key in ("balanced_accuracy", "macro_f1", "brier", "ece"):
        assert out[key]["value"] is not None and out[key]["ci_low"] is None and "from 1 samples" in out[key]["ci_reason"]
    assert out["accuracy"]["ci_method"] == "wilson"  # 1 of 1: Wilson 0.207-1, an honest interval


# ---------------------------------------------------------------- why: simulation


def _lower_bound_above_truth(m: int, d: float, reps: int, seed: int) -> tuple[float, int]:
    """Share of simulated test sets whose reported lower 95% AUC bound exceeds the true AUC.

    Binormal scores, ``m`` healthy and ``m`` diseased, separation ``d``: true AUC = Phi(d / sqrt 2).
    Returns (share among test sets with an interval, number of test sets with an interval).
    """
    rng = np.random.default_rng(seed)
    truth = NormalDist().cdf(d / np.sqrt(2))
    above = defined = 0
    for r in range(reps):
        s = np.r_[rng.normal(0, 1, m), rng.normal(d, 1, m)]
        p1 = 1 / (1 + np.exp(-s))
        auc = compute_metrics(np.repeat([0, 1], m), np.c_[1 - p1, p1], ["h", "d"], "binary",
                              n_bootstrap=100, seed=r)["auc_macro"]
        if auc["ci_low"] is not None:
            defined += 1
            above += auc["ci_low"] > truth
    return above / max(defined, 1), defined


@pytest.mark.parametrize("m, d", [(3, 1.0), (12, 2.9)])
def test_simulation_the_guard_closes_false_passes(monkeypatch, m, d):
    # (3, 1.0): AUC 0.76 from 3 per class -- the min-n rule. (12, 2.9): AUC 0.98 from 12 per
    # class, where about a third of the test sets separate perfectly and give [1, 1] -- the
    # zero-width rule. A lower bound above the truth is what lets `auc>=truth --on lower` pass.
    guarded, n_guarded = _lower_bound_above_truth(m, d, reps=100, seed=11)
    monkeypatch.setattr(intervals, "MIN_BOOTSTRAP_N", 0)
    monkeypatch.setattr(intervals, "MIN_DEGENERATE_N", 0)
    raw, n_raw = _lower_bound_above_truth(m, d, reps=100, seed=11)
    assert n_raw == 100
    # Measured: 0.18 at (3, 1.0), 0.35 at (12, 2.9), against the nominal 0.025.
    assert raw >= 0.15
    if m < MIN_BOOTSTRAP_N:
        assert n_guarded == 0
    else:
        # Measured 0 of 65; 0.06 allows binomial noise around a nominal 0.025.
        assert 40 <= n_guarded < 100 and guarded <= 0.06
