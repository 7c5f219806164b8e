"""ECE, Brier and reliability data against direct loop implementations and scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from medaudit.metrics import compute_metrics
from medaudit.metrics.calibration import assign_bins, reliability


def ece_loop(conf, correct, n_bins):
    """Textbook ECE (Guo et al. 2017) with right-closed bins, written as plainly as possible."""
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = edges[b], edges[b + 1]
        inside = (conf > lo) & (conf <= hi) if b else (conf >= lo) & (conf <= hi)
        if inside.any():
            total += inside.sum() / len(conf) * abs(correct[inside].mean() - conf[inside].mean())
    return total


@pytest.mark.parametrize("n_bins", [5, 15])
def test_ece_multiclass_matches_loop(n_bins):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    z = rng.normal(size=(300, 4)) * 2 + np.eye(4)[y]
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    p[:5] = np.eye(4)[[0, 1, 2, 3, 0]] * 0.6 + 0.1  # confidences exactly 0.7 (a 5/15-bin edge area)
    m = compute_metrics(y, p, list("abcd"), "multiclass", n_bootstrap=0, ece_bins=n_bins)
    conf, correct = p.max(1), (p.argmax(1) == y).astype(float)
    assert m["ece"]["value"] == pytest.approx(ece_loop(conf, correct, n_bins))
    cal = m["calibration"]
    assert cal["n_bins"] == n_bins and sum(cal["bin_count"]) == 300
    for b, cnt in enumerate(cal["bin_count"]):
        assert (cal["bin_confidence"][b] is None) == (cnt == 0)


def test_bin_edges_are_right_closed():
    edges = np.linspace(0, 1, 11)
    assert assign_bins(edges, 10).tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_perfectly_calibrated_bins_give_zero_ece():
    # 10 forecasts at 0.8 with 8 correct, 10 at 0.6 with 6 correct (binary, top-class confidence).
    conf = np.array([0.8] * 10 + [0.6] * 10)
    correct = np.array([1] * 8 + [0] * 2 + [1] * 6 + [0] * 4)
    y = np.where(correct == 1, 1, 0)
    p = np.column_stack([1 - conf, conf])
    m = compute_metrics(y, p, ["neg", "pos"], "binary", n_bootstrap=0)
    assert m["ece"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert m["brier"]["value"] == pytest.approx(brier_score_loss(y, conf))
    rel = reliability(conf, correct.astype(float), 10)
    assert rel["bin_accuracy"][7] == pytest.approx(0.8) and rel["bin_count"][5] == 10


def test_multilabel_calibration_pools_label_forecasts():
    rng = np.random.default_rng(3)
    y = (rng.random((200, 3)) < 0.4).astype(int)
    p = np.clip(0.4 + 0.3 * (y - 0.4) + rng.normal(0, 0.15, (200, 3)), 0, 1)
    m = compute_metrics(y, p, ["a", "b", "c"], "multilabel", n_bootstrap=0, ece_bins=10)
    assert m["ece"]["value"] == pytest.approx(ece_loop(p.ravel(), y.ravel().astype(float), 10))
    assert sum(m["calibration"]["bin_count"]) == 600
