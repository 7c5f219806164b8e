"""metrics/robustness.py against scikit-learn, a hand-computed case, and a coverage simulation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score, roc_auc_score

from medaudit.metrics.robustness import cell_metrics, corruption_cell, macro_auc, sweep_summary

NAMES = ["glioma", "meningioma", "notumor", "pituitary"]


def _probs(rng, y, c, noise):
    logits = rng.normal(0, noise, size=(len(y), c))
    logits[np.arange(len(y)), y] += 1.5
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def test_cell_metrics_match_scikit_learn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 300)
    p = _probs(rng, y, 4, 1.2)
    pred = p.argmax(1)
    m = cell_metrics(y, pred, p, NAMES, negative_classes=["notumor"])
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    ref = recall_score(y, pred, average=None)
    assert [m["recall"][c] for c in NAMES] == pytest.approx(list(ref))
    disease = y != 2
    assert m["missed_disease_rate"] == pytest.approx(np.mean(pred[disease] == 2))


def test_binary_auc_is_the_positive_class_and_undefined_without_both_labels():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    p = _probs(rng, y, 2, 1.0)
    assert macro_auc(y, p) == pytest.approx(roc_auc_score(y, p[:, 1]))
    assert macro_auc(np.zeros(5, int), p[:5]) is None


def test_a_hand_computed_cell():
    # 6 samples, classes a (disease), b (healthy). Clean: all right. Corrupted: two a's become b.
    y = np.array([0, 0, 0, 0, 1, 1])
    clean = y.copy()
    corrupt = np.array([0, 0, 1, 1, 1, 1])
    probs = np.eye(2)[corrupt] * 0.8 + 0.1
    cell = corruption_cell(y, clean, corrupt, probs, ["a", "b"], negative_classes=["b"], n_bootstrap=0)
    assert cell["accuracy"] == pytest.approx(4 / 6)
    assert cell["recall"] == {"a": 0.5, "b": 1.0}
    assert cell["balanced_accuracy"] == pytest.approx(0.75)
    assert cell["missed_disease_rate"] == pytest.approx(0.5)
    assert cell["flip_rate"] == pytest.approx(2 / 6)
    assert cell["drop"]["recall"]["a"]["value"] == pytest.approx(0.5)
    assert cell["drop"]["recall"]["b"]["value"] == pytest.approx(0.0)
    assert cell["drop"]["balanced_accuracy"]["value"] == pytest.approx(0.25)
    # Missed disease goes up: clean - corrupted is negative.
    assert cell["drop"]["missed_disease_rate"]["value"] == pytest.approx(-0.5)
    assert cell["drop"]["recall"]["a"]["ci_low"] is None  # bootstrap disabled: no interval, a reason
    assert "bootstrap disabled" in cell["drop"]["recall"]["a"]["reason"]


def test_drop_is_the_paired_difference_of_scikit_learn_recalls_with_an_interval_around_it():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 400)
    p0 = _probs(rng, y, 4, 1.0)
    p1 = _probs(rng, y, 4, 2.0)
    cell = corruption_cell(y, p0.argmax(1), p1.argmax(1), p1, NAMES, negative_classes=["notumor"],
                           n_bootstrap=300, seed=0)
    r0 = recall_score(y, p0.argmax(1), average=None)
    r1 = recall_score(y, p1.argmax(1), average=None)
    for k, c in enumerate(NAMES):
        d = cell["drop"]["recall"][c]
        assert d["value"] == pytest.approx(r0[k] - r1[k])
        assert d["ci_low"] <= d["value"] <= d["ci_high"]
    assert cell["flip_rate"] == pytest.approx(np.mean(p0.argmax(1) != p1.argmax(1)))


def test_summary_relative_balanced_error_and_worst_cell_by_hand():
    clean = {"balanced_accuracy": 0.8}
    def cell(c, s, ba, drop):
        return {"corruption": c, "severity": s, "balanced_accuracy": ba,
                "drop": {"recall": {"a": {"value": drop}, "b": {"value": 0.9}}}}
    cells = [cell("noise", 1, 0.7, 0.1), cell("noise", 2, 0.5, 0.3), cell("blur", 1, 0.8, None), cell("blur", 2, 0.6, 0.2)]
    s = sweep_summary(clean, cells, ["a"])  # b's larger drop is not a disease class: not the worst
    assert s["per_corruption"]["noise"]["balanced_error"] == pytest.approx(0.4)
    assert s["per_corruption"]["noise"]["relative_balanced_error"] == pytest.approx(0.4 / 0.2)
    assert s["per_corruption"]["blur"]["relative_balanced_error"] == pytest.approx(0.3 / 0.2)
    assert s["mean_relative_balanced_error"] == pytest.approx((2.0 + 1.5) / 2)
    assert s["mean_balanced_error"] == pytest.approx(np.mean([0.3, 0.5, 0.2, 0.4]))
    assert (s["worst"]["corruption"], s["worst"]["severity"], s["worst"]["class"]) == ("noise", 2, "a")
    # A perfect clean model has no ratio: undefined, never a division by zero or a 0.
    perfect = sweep_summary({"balanced_accuracy": 1.0}, cells, ["a"])
    assert perfect["mean_relative_balanced_error"] is None


def test_paired_interval_covers_the_true_drop():
    """Coverage of the 95 % paired interval of a recall drop: clean correct with p=0.8, and the
    corruption breaks 25 % of the correct calls (true drop 0.2); correlated, as on the same images."""
    rng = np.random.default_rng(7)
    n, sims, hits = 120, 150, 0
    for s in range(sims):
        y = np.zeros(n, int)
        y[n // 2:] = 1
        ok0 = rng.random(n) < 0.8
        ok1 = ok0 & (rng.random(n) >= 0.25)
        pred0 = np.where(ok0, y, 1 - y)
        pred1 = np.where(ok1, y, 1 - y)
        cell = corruption_cell(y, pred0, pred1, np.eye(2)[pred1], ["a", "b"], n_bootstrap=200, seed=s)
        d = cell["drop"]["recall"]["a"]
        hits += d["ci_low"] <= 0.2 <= d["ci_high"]
    assert 0.88 <= hits / sims <= 0.995
