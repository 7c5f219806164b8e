"""Training losses: cross-entropy (optionally class-weighted), focal, and BCE for multi-label.

Only the training path imports this module (it imports torch at top level).

Definitions (B = batch, C = classes):

* ``ce``           ``torch.nn.CrossEntropyLoss(label_smoothing=eps)``.
* ``weighted-ce``  the same with ``weight=w``; torch's weighted mean
  ``sum_i w[y_i] l_i / sum_i w[y_i]``.
* ``focal``        Lin et al. (2017), multi-class form with soft targets ``q``
  (one-hot, or label-smoothed ``(1 - eps) * onehot + eps / C``)::

      FL_i = - sum_c  alpha_c * q_ic * (1 - p_ic) ** gamma * log p_ic

  averaged over the batch (plain mean). ``gamma = 0`` and no alpha is exactly ``ce``.
  A scalar ``alpha`` is only defined for two classes: ``alpha`` for class index 1 and
  ``1 - alpha`` for class 0 (as torchvision's ``sigmoid_focal_loss`` weights positives);
  otherwise pass one alpha per class.
* ``bce``          ``BCEWithLogitsLoss(pos_weight=w)`` on (B, K) 0/1 targets; label smoothing
  maps targets to ``y * (1 - eps) + eps / 2``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medaudit.errors import MedauditError
from medaudit.train.config import LOSSES  # the loss names live with the other options' choices (torch-free)


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights ``n / (C * count_c)`` (scikit-learn's ``"balanced"``).

    Parameters
    ----------
    labels : ndarray, shape (N,) int
        Class indices of the training split.
    num_classes : int

    Returns
    -------
    ndarray, shape (C,) float64
        Mean over samples of the weight of their class is 1.

    Raises
    ------
    MedauditError
        When a class has no training sample (its weight would be infinite).
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)[:num_classes]
    if (counts == 0).any():
        missing = [int(i) for i in np.flatnonzero(counts == 0)]
        raise MedauditError(f"class_weights auto: classes {missing} have no training samples; pass weights by hand",
                            param="class_weights")
    return len(labels) / (num_classes * counts.astype(np.float64))


def multilabel_pos_weights(labels: np.ndarray) -> np.ndarray:
    """``BCEWithLogitsLoss`` ``pos_weight``: negatives / positives per label.

    Parameters
    ----------
    labels : ndarray, shape (N, K) 0/1
        Labels of the training split.

    Returns
    -------
    ndarray, shape (K,) float64

    Raises
    ------
    MedauditError
        (``param="class_weights"``) when a label is never or always positive.
    """
    y = np.asarray(labels)
    pos = y.sum(axis=0).astype(np.float64)
    if (pos == 0).any():
        missing = [int(i) for i in np.flatnonzero(pos == 0)]
        raise MedauditError(f"class_weights auto: labels {missing} have no positive training samples",
                            param="class_weights")
    if (pos == len(y)).any():
        always = [int(i) for i in np.flatnonzero(pos == len(y))]
        raise MedauditError(f"class_weights auto: labels {always} are positive in every training sample "
                            "(pos_weight 0); pass weights by hand or drop those labels", param="class_weights")
    return (len(y) - pos) / pos


class FocalLoss(nn.Module):
    """Multi-class focal loss on logits (see the module docstring for the formula).

    Parameters
    ----------
    gamma : float
        Focusing parameter, >= 0 (0 gives cross-entropy).
    alpha : sequence of float, shape (C,), optional
        Per-class weight ``alpha_c``; None means 1 for every class.
    label_smoothing : float
        ``eps`` in [0, 1).
    """

    def __init__(self, gamma: float = 2.0, alpha: Sequence[float] | None = None, label_smoothing: float = 0.0):
        super().__init__()
        if gamma < 0:
            raise MedauditError(f"focal_gamma must be >= 0 (got {gamma})", param="focal_gamma")
        self.gamma = float(gamma)
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n_classes = logits.shape[1]
        logp = F.log_softmax(logits.float(), dim=1)
        q = F.one_hot(target.long(), n_classes).to(logp.dtype)
        if self.label_smoothing > 0:
            q = q * (1.0 - self.label_smoothing) + self.label_smoothing / n_classes
        if self.gamma == 0:
            per_class = -q * logp
        else:
            # 1 - p via expm1 keeps precision near p = 1; the clamp keeps d/dp (1-p)**gamma finite for gamma < 1.
            per_class = -q * (-torch.expm1(logp)).clamp_min(1e-12).pow(self.gamma) * logp
        if self.alpha is not None:
            per_class = per_class * self.alpha.to(per_class.device)
        return per_class.sum(dim=1).mean()


def resolve_alpha(alpha: Sequence[float] | float | None, num_classes: int) -> list[float] | None:
    """Turn ``focal_alpha`` into one weight per class (see the module docstring).

    Parameters
    ----------
    alpha : float or sequence of float, optional
        One value (two classes only: the weight of class 1) or one value per class.
    num_classes : int

    Returns
    -------
    list of float, length C, or None when ``alpha`` is None
    """
    if alpha is None:
        return None
    if isinstance(alpha, (int, float)):
        alpha = [float(alpha)]
    alpha = [float(a) for a in alpha]
    if any(a < 0 for a in alpha):
        raise MedauditError(f"focal_alpha values must be >= 0 (got {alpha})", param="focal_alpha")
    if len(alpha) == 1:
        if num_classes != 2:
            raise MedauditError(
                f"focal_alpha: a single value is only defined for 2 classes; give {num_classes} comma-separated values",
                param="focal_alpha")
        if not 0 <= alpha[0] <= 1:
            raise MedauditError(f"focal_alpha: a single value must be in [0, 1] (got {alpha[0]})", param="focal_alpha")
        return [1.0 - alpha[0], alpha[0]]
    if len(alpha) != num_classes:
        raise MedauditError(f"focal_alpha needs 1 or {num_classes} values (got {len(alpha)})", param="focal_alpha")
    return alpha


def check_loss_task(loss: str, task: str) -> None:
    """Refuse loss/task combinations that make no sense, saying what to use instead.

    Parameters
    ----------
    loss : {"ce", "focal", "weighted-ce", "bce"}
    task : {"binary", "multiclass", "multilabel", "ordinal"}

    Raises
    ------
    MedauditError
        (``param="loss"``) for an unknown loss, or one that does not fit the task.
    """
    if loss not in LOSSES:
        raise MedauditError(f"loss must be one of {', '.join(LOSSES)} (got '{loss}')", param="loss")
    if task == "multilabel" and loss != "bce":
        raise MedauditError(f"loss {loss} is for single-label data; this dataset is multi-label: use bce", param="loss")
    if task != "multilabel" and loss == "bce":
        raise MedauditError(
            f"loss bce is for multi-label data; this dataset is {task} (one label per image): use ce or focal",
            param="loss")


def build_loss(
    name: str,
    task: str,
    num_classes: int,
    *,
    class_weights: Sequence[float] | None = None,
    focal_gamma: float = 2.0,
    focal_alpha: Sequence[float] | float | None = None,
    label_smoothing: float = 0.0,
) -> nn.Module:
    """The training criterion ``loss(logits (B, C), target) -> scalar``.

    Parameters
    ----------
    name : {"ce", "focal", "weighted-ce", "bce"}
    task : {"binary", "multiclass", "multilabel", "ordinal"}
    num_classes : int
        C (or K labels).
    class_weights : sequence of float, shape (C,), optional
        ``weight`` of weighted CE, per-class alpha of focal (when ``focal_alpha`` is None)
        or ``pos_weight`` of BCE. Required for ``weighted-ce``.
    focal_gamma, focal_alpha, label_smoothing : see :class:`FocalLoss`.

    Returns
    -------
    torch.nn.Module
        Takes logits (B, C) and targets (B,) class indices, or (B, K) 0/1 for ``bce``; returns a scalar.

    Raises
    ------
    MedauditError
        Naming the setting at fault (``param``): a loss that does not fit the task, or bad weights.
    """
    check_loss_task(name, task)
    if not 0.0 <= label_smoothing < 1.0:
        raise MedauditError(f"label_smoothing must be in [0, 1) (got {label_smoothing})", param="label_smoothing")
    w = None
    if class_weights is not None:
        if len(class_weights) != num_classes:
            raise MedauditError(f"class_weights needs {num_classes} values (got {len(class_weights)})",
                                param="class_weights")
        if any(not np.isfinite(x) or x <= 0 for x in class_weights):
            raise MedauditError(f"class_weights values must be positive and finite (got {list(class_weights)})",
                                param="class_weights")
        w = torch.as_tensor([float(x) for x in class_weights], dtype=torch.float32)
    if name == "bce":
        return _SmoothedBCE(w, label_smoothing)
    if name == "focal":
        if focal_alpha is not None and w is not None:
            raise MedauditError("loss focal: give either focal_alpha or class_weights, not both", param="loss")
        alpha = resolve_alpha(focal_alpha, num_classes)
        return FocalLoss(focal_gamma, alpha if alpha is not None else (None if w is None else w.tolist()),
                         label_smoothing)
    if name == "weighted-ce" and w is None:
        raise MedauditError("loss weighted-ce needs class_weights auto or w1,w2,...", param="loss")
    return nn.CrossEntropyLoss(weight=w, label_smoothing=label_smoothing)


class _SmoothedBCE(nn.Module):
    """``BCEWithLogitsLoss`` with optional ``pos_weight`` and symmetric label smoothing."""

    def __init__(self, pos_weight: torch.Tensor | None, label_smoothing: float):
        super().__init__()
        self.bce = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = target.to(torch.float32)
        if self.label_smoothing > 0:
            t = t * (1.0 - self.label_smoothing) + self.label_smoothing / 2
        return self.bce(logits.float(), t)
