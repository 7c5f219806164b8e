"""Losses against hand computations, torch's own CE and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medaudit.errors import MedauditError
from medaudit.train.losses import (
    FocalLoss,
    balanced_class_weights,
    build_loss,
    check_loss_task,
    multilabel_pos_weights,
    resolve_alpha,
)


def _hand_focal(logits: np.ndarray, y: np.ndarray, gamma: float, alpha=None) -> float:
    """Lin et al. 2017, one-hot targets, written out sample by sample."""
    total = 0.0
    for z, t in zip(logits, y):
        p = np.exp(z - z.max())
        p /= p.sum()
        a = 1.0 if alpha is None else alpha[t]
        total += -a * (1 - p[t]) ** gamma * np.log(p[t])
    return total / len(y)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return rng.normal(size=(7, 3)) * 2, rng.integers(0, 3, size=7)


def test_focal_matches_hand_computation(batch):
    z, y = batch
    got = FocalLoss(gamma=2.0)(torch.tensor(z), torch.tensor(y)).item()
    assert got == pytest.approx(_hand_focal(z, y, 2.0), rel=1e-6)


def test_focal_with_per_class_alpha(batch):
    z, y = batch
    alpha = [0.2, 0.5, 1.5]
    got = FocalLoss(gamma=1.5, alpha=alpha)(torch.tensor(z), torch.tensor(y)).item()
    assert got == pytest.approx(_hand_focal(z, y, 1.5, alpha), rel=1e-6)


def test_focal_gamma0_is_cross_entropy(batch):
    z, y = torch.tensor(batch[0]), torch.tensor(batch[1])
    assert FocalLoss(gamma=0.0)(z, y).item() == pytest.approx(F.cross_entropy(z, y).item(), rel=1e-6)
    smoothed = FocalLoss(gamma=0.0, label_smoothing=0.1)(z, y).item()
    assert smoothed == pytest.approx(F.cross_entropy(z, y, label_smoothing=0.1).item(), rel=1e-6)


def test_focal_down_weights_easy_examples():
    easy = torch.tensor([[5.0, -5.0]])
    y = torch.tensor([0])
    ce = F.cross_entropy(easy, y).item()
    assert FocalLoss(gamma=2.0)(easy, y).item() < ce * 1e-3


def test_scalar_alpha_binary_convention():
    assert resolve_alpha(0.25, 2) == [0.75, 0.25]
    z = torch.tensor([[0.3, -0.2], [1.0, 2.0]], dtype=torch.float64)
    y = torch.tensor([1, 0])
    loss = build_loss("focal", "binary", 2, focal_gamma=2.0, focal_alpha=0.25)
    assert loss(z, y).item() == pytest.approx(_hand_focal(z.numpy(), y.numpy(), 2.0, [0.75, 0.25]), rel=1e-6)
    with pytest.raises(MedauditError, match="only defined for 2 classes"):
        resolve_alpha(0.25, 3)
    with pytest.raises(MedauditError, match="needs 1 or 3"):
        resolve_alpha([1.0, 2.0], 3)


def test_weighted_ce_is_torch_weighted_mean(batch):
    z, y = torch.tensor(batch[0], dtype=torch.float32), torch.tensor(batch[1])
    w = [0.5, 1.0, 3.0]
    got = build_loss("weighted-ce", "multiclass", 3, class_weights=w)(z, y).item()
    logp = F.log_softmax(z, 1).numpy()
    wi = np.array(w)[y.numpy()]
    hand = -(wi * logp[np.arange(len(y)), y.numpy()]).sum() / wi.sum()
    assert got == pytest.approx(hand, rel=1e-5)
    with pytest.raises(MedauditError, match="^loss weighted-ce needs class_weights auto"):
        build_loss("weighted-ce", "multiclass", 3)


def test_balanced_weights_match_sklearn():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0] * 10 + [1] * 3 + [2] * 7)
    ref = compute_class_weight("balanced", classes=np.arange(3), y=y)
    np.testing.assert_allclose(balanced_class_weights(y, 3), ref)
    with pytest.raises(MedauditError, match="no training samples"):
        balanced_class_weights(np.array([0, 0, 2]), 3)


def test_bce_pos_weight_and_smoothing():
    y = np.array([[1, 0], [0, 0], [1, 1], [0, 1]], dtype=np.int8)
    np.testing.assert_allclose(multilabel_pos_weights(y), [1.0, 1.0])
    z = torch.tensor([[0.5, -1.0], [0.2, 0.3], [-0.4, 2.0], [1.0, 0.0]])
    pw = [2.0, 0.5]
    got = build_loss("bce", "multilabel", 2, class_weights=pw, label_smoothing=0.2)(z, torch.tensor(y)).item()
    t = y * 0.8 + 0.1
    p = 1 / (1 + np.exp(-z.numpy().astype(np.float64)))
    hand = -(np.array(pw) * t * np.log(p) + (1 - t) * np.log(1 - p)).mean()
    assert got == pytest.approx(hand, rel=1e-5)


@pytest.mark.parametrize(
    ("loss", "task", "hint"),
    [("focal", "multilabel", "^loss focal is for single-label data; this dataset is multi-label: use bce"),
     ("ce", "multilabel", "use bce"),
     ("bce", "binary", "^loss bce is for multi-label data; this dataset is binary .*: use ce or focal"),
     ("bce", "multiclass", "use ce or focal"),
     ("hinge", "binary", "must be one of")],
)
def test_loss_task_mismatch(loss, task, hint):
    with pytest.raises(MedauditError, match=hint) as exc:
        check_loss_task(loss, task)
    assert exc.value.param == "loss"  # the CLI shows --loss


def test_focal_gradients_finite_at_certainty():
    z = torch.tensor([[60.0, -60.0]], requires_grad=True)
    FocalLoss(gamma=0.5)(z, torch.tensor([0])).backward()
    assert torch.isfinite(z.grad).all()
