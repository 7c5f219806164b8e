"""Paired bootstrap of metric differences: scikit-learn per resample, the published draws, the interval rule."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)

from medaudit.errors import MedauditError
from medaudit.metrics import paired
from medaudit.metrics.intervals import stratified_weights
from medaudit.metrics.paired import paired_bootstrap_diff


def _noisy(rng, y, acc, c):
    return np.where(rng.random(y.size) < acc, y, rng.integers(0, c, y.size))


def published_resamples(y: np.ndarray, n_bootstrap: int, seed: int) -> np.ndarray:
    """(B, N) sample indices of every resample, drawn the way published comparison intervals were.

    Written from the protocol, not from the code: per chunk of ``max(1, 4_000_000 // N)``
    resamples, each true class in class order (multilabel: all samples as one stratum) draws
    ``rng.integers(0, size, size=(m, size))`` positions into its members (``np.flatnonzero``
    order).
    """
    n = y.shape[0]
    strata = [np.arange(n)] if y.ndim == 2 else [np.flatnonzero(y == k) for k in np.unique(y)]
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // n)
    rows = []
    for start in range(0, n_bootstrap, chunk):
        m = min(chunk, n_bootstrap - start)
        rows.append(np.concatenate([s[rng.integers(0, s.size, size=(m, s.size))] for s in strata], axis=1))
    return np.concatenate(rows)


# -- point estimates and single resamples against scikit-learn ----------------------------
def test_point_estimates_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    y[y == 3] = 2  # class 3 absent from y_true
    a, b = _noisy(rng, y, 0.8, 4), _noisy(rng, y, 0.7, 4)
    r = paired_bootstrap_diff(y, a, b, ["w", "x", "y", "z"], n_bootstrap=200, seed=1)
    present = [0, 1, 2]
    assert r["accuracy"]["diff"] == pytest.approx(np.mean(a == y) - np.mean(b == y))
    f1 = lambda p: f1_score(y, p, labels=present, average="macro")  # noqa: E731
    assert r["macro_f1"]["diff"] == pytest.approx(f1(a) - f1(b))
    rec = recall_score(y, a, labels=present, average=None) - recall_score(y, b, labels=present, average=None)
    for k, name in enumerate(["w", "x", "y"]):
        d = r["recall"][name]
        assert d["diff"] == pytest.approx(rec[k])
        assert d["ci_low"] <= d["diff"] <= d["ci_high"]
    assert r["recall"]["z"]["diff"] is None and "no samples" in r["recall"]["z"]["reason"]
    assert r["precision"]["z"]["diff"] is None
    assert r["specificity"]["z"]["reason"] is None  # every sample is a negative of the absent class
    assert r["accuracy"]["ci_low"] < r["accuracy"]["diff"] < r["accuracy"]["ci_high"]


def _sklearn_stats(y, p, sw, c, neg):
    """scikit-learn's values of the paired metrics for one model, with sample weights ``sw``."""
    labels = np.unique(y)  # the classes present in y_true, which the averages use
    cm = confusion_matrix(y, p, labels=range(c), sample_weight=sw)
    fp = cm.sum(0) - np.diag(cm)
    tn = cm.sum() - cm.sum(1) - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "accuracy": np.average(p == y, weights=sw),
            "macro_f1": f1_score(y, p, labels=labels, average="macro", sample_weight=sw),
            "balanced_accuracy": balanced_accuracy_score(y, p, sample_weight=sw),
            "recall": recall_score(y, p, labels=range(c), average=None, sample_weight=sw, zero_division=np.nan),
            "precision": precision_score(y, p, labels=range(c), average=None, sample_weight=sw, zero_division=np.nan),
            "specificity": tn / (tn + fp),
            "missed_disease_rate": np.average(p[y != neg] == neg, weights=sw[y != neg]),
        }


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # the absent class, by design
@pytest.mark.parametrize("c", [3, 9])
def test_each_resample_equals_sklearn_with_sample_weight(c):
    """The evaluator on a resample's count weights is scikit-learn's metrics with those weights."""
    rng = np.random.default_rng(5)
    y = np.sort(rng.integers(0, c - 1, 150))  # class c - 1 absent; sorted = stratum order
    a, b = _noisy(rng, y, 0.7, c), _noisy(rng, y, 0.5, c)
    present = np.bincount(y, minlength=c) > 0
    design = paired._design(y, {"a": a, "b": b}, c, multilabel=False)
    evaluate = paired._evaluator(y.size, c, False, present, [0])
    w = next(stratified_weights(np.bincount(y, minlength=c).tolist(), 5, np.random.default_rng(0), chunk=5))
    stats = evaluate(design.sums(w))
    for j in range(w.shape[1]):
        sw = w[:, j].astype(float)
        ref_a, ref_b = _sklearn_stats(y, a, sw, c, 0), _sklearn_stats(y, b, sw, c, 0)
        for key in paired.SCALAR_DIFFS:
            assert stats[key][j] == pytest.approx(ref_a[key] - ref_b[key], abs=1e-12), key
        for key in paired.PER_CLASS_DIFFS:
            np.testing.assert_allclose(stats[key][j], ref_a[key] - ref_b[key], atol=1e-12, err_msg=key)


def test_multilabel_f1_of_a_label_without_positives_in_a_resample_is_undefined():
    """The F1 policy of metrics.classification: a label that loses its positives in a resample has
    no F1 there (it is skipped by macro-F1), even if it is predicted; it does not count as 0."""
    y = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    a = np.array([[1, 0], [0, 0], [0, 1], [1, 1]])
    design = paired._design(y, {"a": a, "b": y}, 2, multilabel=True)
    evaluate = paired._evaluator(4, 2, True, np.array([True, True]), [])
    w = np.array([[1], [1], [0], [2]], dtype=np.float32)  # sample 2, label 1's only positive, not drawn
    stats = evaluate(design.sums(w))
    # A: label 0 has tp 1 (sample 0), fn 1 (sample 1), fp 2 (sample 3 twice): F1 = 2 / (2 + 2 + 1).
    # Label 1 has no positives (fp 2): undefined, so macro-F1(A) = 0.4; B is perfect on label 0.
    assert stats["macro_f1"][0] == pytest.approx(0.4 - 1.0)
    assert np.isnan(stats["recall"][0, 1])  # label 1 has no positives in this resample


# -- the draws: published intervals reproduce --------------------------------------------
@pytest.mark.parametrize("n", [300, 4500])  # 4500 samples: chunks of 888 resamples, so two chunks
def test_intervals_are_percentiles_of_the_published_resamples(n):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, n)  # unsorted: the function orders the samples by class itself
    a, b = _noisy(rng, y, 0.8, 3), _noisy(rng, y, 0.6, 3)
    r = paired_bootstrap_diff(y, a, b, ["n", "x", "z"], n_bootstrap=1000, seed=4)
    idx = published_resamples(y, 1000, 4)
    q = [2.5, 97.5]
    acc = (a[idx] == y[idx]).mean(axis=1) - (b[idx] == y[idx]).mean(axis=1)
    assert [r["accuracy"]["ci_low"], r["accuracy"]["ci_high"]] == list(np.percentile(acc, q))
    recall = lambda p: ((p[idx] == 2) & (y[idx] == 2)).sum(axis=1) / (y[idx] == 2).sum(axis=1)  # noqa: E731
    rec = recall(a) - recall(b)
    assert [r["recall"]["z"]["ci_low"], r["recall"]["z"]["ci_high"]] == list(np.percentile(rec, q))


def test_multilabel_resamples_whole_samples():
    rng = np.random.default_rng(6)
    y = (rng.random((120, 3)) < 0.4).astype(np.int8)
    a = np.where(rng.random((120, 3)) < 0.9, y, 1 - y)
    b = np.where(rng.random((120, 3)) < 0.7, y, 1 - y)
    r = paired_bootstrap_diff(y, a, b, ["l0", "l1", "l2"], n_bootstrap=200, seed=0)
    assert r["accuracy"]["diff"] == pytest.approx(np.all(a == y, 1).mean() - np.all(b == y, 1).mean())
    assert r["macro_f1"]["diff"] == pytest.approx(f1_score(y, a, average="macro") - f1_score(y, b, average="macro"))
    assert "stratified" not in r["settings"]["method"]
    idx = published_resamples(y, 200, 0)
    exact = lambda p: np.all(p[idx] == y[idx], axis=2).mean(axis=1)  # noqa: E731
    low, high = np.percentile(exact(a) - exact(b), [2.5, 97.5])
    assert (r["accuracy"]["ci_low"], r["accuracy"]["ci_high"]) == (low, high)
    assert r["missed_disease_rate"]["reason"] == "missed-disease rate: multilabel task"


# -- the interval rule ----------------------------------------------------------------------
def test_interval_needs_at_least_half_of_the_resamples_defined():
    """The rule of intervals.percentile_ci: an interval iff 2 * defined >= B (B odd and B < 4 included).

    Precision of class 1 for model A is defined only in resamples that draw sample 0 (its only
    class-1 prediction); B predicts every class-1 sample correctly, so its precision is always 1.
    """
    y = np.array([0, 0, 1, 1])
    a = np.array([1, 0, 0, 0])
    seen = set()
    for n_bootstrap in (1, 2, 3, 5):
        for seed in range(40):
            r = paired_bootstrap_diff(y, a, y, ["h", "d"], n_bootstrap=n_bootstrap, seed=seed)["precision"]["d"]
            defined = int((published_resamples(y, n_bootstrap, seed) == 0).any(axis=1).sum())
            assert r["diff"] == -1.0
            if 2 * defined >= n_bootstrap:
                # defined often enough, but from 2 samples of the class: withheld (the engine's min-n rule)
                assert (r["ci_low"], r["ci_high"]) == (None, None), (n_bootstrap, seed)
                assert r["reason"] == "no bootstrap interval from 2 samples of class 'd' (fewer than 10)"
            else:
                assert r["ci_low"] is None and "undefined in most bootstrap resamples" in r["reason"]
            seen.add((n_bootstrap, defined))
    # The cases where "at least half" differs from the former "at least max(2, B // 2)" rule occurred.
    assert {(1, 1), (2, 1), (5, 2)} <= seen


def test_seeded_paired_and_identical_models():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    a, b = _noisy(rng, y, 0.9, 2), _noisy(rng, y, 0.8, 2)
    r1 = paired_bootstrap_diff(y, a, b, ["n", "p"], n_bootstrap=300, seed=7)
    assert r1 == paired_bootstrap_diff(y, a, b, ["n", "p"], n_bootstrap=300, seed=7)
    assert r1 != paired_bootstrap_diff(y, a, b, ["n", "p"], n_bootstrap=300, seed=8)
    same = paired_bootstrap_diff(y, a, a, ["n", "p"], n_bootstrap=300, seed=7)
    assert same["accuracy"] == {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0, "reason": None}
    assert r1["settings"] == {"n_bootstrap": 300, "seed": 7, "confidence": 0.95,
                              "method": "paired percentile bootstrap, stratified by true class"}


def test_missed_disease_and_per_class_rates():
    rng = np.random.default_rng(8)
    y = rng.integers(0, 3, 300)
    a, b = _noisy(rng, y, 0.85, 3), _noisy(rng, y, 0.6, 3)
    names = ["normal", "cyst", "tumour"]
    r = paired_bootstrap_diff(y, a, b, names, negative_classes=["normal"], n_bootstrap=300, seed=0)
    md = lambda p: np.mean(p[y != 0] == 0)  # noqa: E731
    d = r["missed_disease_rate"]
    assert d["diff"] == pytest.approx(md(a) - md(b)) and d["ci_low"] <= d["diff"] <= d["ci_high"]
    assert r["balanced_accuracy"]["diff"] == pytest.approx(balanced_accuracy_score(y, a) - balanced_accuracy_score(y, b))
    pa, pb = (precision_score(y, p, average=None) for p in (a, b))
    for k, name in enumerate(names):
        assert r["precision"][name]["diff"] == pytest.approx(pa[k] - pb[k])
        assert r["specificity"][name]["ci_low"] <= r["specificity"][name]["diff"] <= r["specificity"][name]["ci_high"]
    plain = paired_bootstrap_diff(y, a, b, names, n_bootstrap=50)
    assert plain["missed_disease_rate"]["diff"] is None and "no negative" in plain["missed_disease_rate"]["reason"]


# -- edge cases and input errors ---------------------------------------------------------
def test_disabled_bootstrap_keeps_the_differences():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 100)
    a, b = _noisy(rng, y, 0.9, 3), _noisy(rng, y, 0.6, 3)
    off = paired_bootstrap_diff(y, a, b, list("abc"), n_bootstrap=0)
    assert off["accuracy"]["diff"] == pytest.approx(np.mean(a == y) - np.mean(b == y))
    assert off["accuracy"]["ci_low"] is None and "disabled" in off["accuracy"]["reason"]


def test_no_samples_and_one_sample():
    empty = np.array([], dtype=np.int64)
    r = paired_bootstrap_diff(empty, empty, empty, ["normal", "d"], negative_classes=["normal"], n_bootstrap=10)
    assert r["accuracy"]["diff"] is None and "undefined on these samples" in r["accuracy"]["reason"]
    assert r["missed_disease_rate"]["reason"] == "missed-disease rate: no samples"
    assert r["recall"]["d"]["reason"] == "no samples of class 'd' in y_true"
    one = paired_bootstrap_diff(np.array([1]), np.array([1]), np.array([0]), ["normal", "d"],
                                negative_classes=["normal"], n_bootstrap=10)
    # one image: the bootstrap can only repeat it, so "100 % to 100 %" would be a false certainty
    assert one["accuracy"] == {"diff": 1.0, "ci_low": None, "ci_high": None,
                               "reason": "no bootstrap interval from 1 samples (fewer than 10)"}
    assert one["missed_disease_rate"] == {"diff": -1.0, "ci_low": None, "ci_high": None,
                                          "reason": "no bootstrap interval from 1 disease samples (fewer than 10)"}
    assert "undefined on these samples" in one["specificity"]["d"]["reason"]  # no negatives of class d


def test_bad_inputs_raise_medaudit_errors_naming_the_parameter():
    y = np.array([0, 1, 1])
    with pytest.raises(MedauditError, match="same shape"):
        paired_bootstrap_diff(y, y[:2], y[:2], ["a", "b"])
    with pytest.raises(MedauditError, match=r"\[0, 2\)") as err:
        paired_bootstrap_diff(y, np.array([0, 2, 1]), y, ["a", "b"])
    assert err.value.param == "pred_a"
    with pytest.raises(MedauditError, match="'healthy'") as err:
        paired_bootstrap_diff(y, y, y, ["a", "b"], negative_classes=["healthy"])
    assert err.value.param == "negative_classes"
    with pytest.raises(MedauditError) as err:
        paired_bootstrap_diff(y, y, y, ["a", "b"], n_bootstrap=-1)
    assert err.value.param == "n_bootstrap"
    with pytest.raises(MedauditError, match="integer"):
        paired_bootstrap_diff(np.array([0.5, 1.0, 1.0]), y, y, ["a", "b"])


def test_intervals_from_few_samples_are_withheld_and_from_enough_are_kept():
    """The single-model rule (intervals.interval_withheld) applies to paired differences too."""
    rng = np.random.default_rng(3)
    for n_per_class, withheld in ((3, True), (9, True), (40, False)):
        y = np.repeat([0, 1], n_per_class)
        a, b = _noisy(rng, y, 0.8, 2), _noisy(rng, y, 0.6, 2)
        r = paired_bootstrap_diff(y, a, b, ["normal", "d"], negative_classes=["normal"], n_bootstrap=200, seed=0)
        for entry in (r["recall"]["d"], r["missed_disease_rate"], r["macro_f1"]):
            assert (entry["ci_low"] is None) == withheld, (n_per_class, entry)
            assert entry["diff"] is not None

