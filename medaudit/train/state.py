"""Pieces of the training loop that are not the loop: splits, freezing, validation metrics, selection.

Only the training path imports this module (it imports torch and scikit-learn at top level).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from medaudit.errors import MedauditError, MedauditWarning


class SubsetSplit:
    """A row subset of a data split with the same interface (labels, array, load_image...)."""

    def __init__(self, base: Any, indices: np.ndarray):
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.asarray(base.labels)[self.indices]
        self.sample_ids = np.asarray(base.sample_ids)[self.indices]
        # Index the in-memory array lazily per batch would cost a gather each time; one copy is small (uint8).
        self.array = None if base.array is None else base.array[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def load_image(self, i: int, **decode):
        return self.base.load_image(int(self.indices[i]), **decode)


def stratify_key(labels: np.ndarray) -> np.ndarray:
    """Single-label: the class; multi-label: the first positive label (or -1 for none)."""
    y = np.asarray(labels)
    if y.ndim == 1:
        return y.astype(np.int64)
    return np.where(y.any(axis=1), y.argmax(axis=1), -1)


def carve_val(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of row indices into (train, val); each stratum gives ``round(fraction * n)``.

    A stratum with >= 2 rows gives at least one to val and keeps at least one; deterministic in ``seed``.
    """
    rng = np.random.default_rng(seed)
    key = stratify_key(labels)
    val_parts = []
    for k in np.unique(key):
        rows = np.flatnonzero(key == k)
        rng.shuffle(rows)
        n_val = int(round(fraction * len(rows)))
        if len(rows) >= 2:
            n_val = min(max(n_val, 1), len(rows) - 1)
        val_parts.append(rows[:n_val])
    val_idx = np.sort(np.concatenate(val_parts)) if val_parts else np.array([], dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(key)), val_idx)
    return train_idx, val_idx


@dataclass
class Splits:
    train: Any
    val: Any
    val_source: str  # "val" (the dataset's split) or a description of the carve
    train_name: str


def resolve_splits(ds: Any, val_fraction: float, seed: int) -> Splits:
    """Train and validation splits; never touches the test split.

    Without a ``val`` split, a stratified ``val_fraction`` of train is carved off, with a
    :class:`~medaudit.errors.MedauditWarning` (selection then rests on a carve of train).

    Parameters
    ----------
    ds : medaudit.data.Dataset
        Its ``train`` (or ``all``) and, when present, ``val`` splits are read.
    val_fraction : float
        Share of each class of train carved off as val, in (0, 1).
    seed : int
        Seeds the carve.

    Returns
    -------
    Splits
    """
    names = list(ds.splits)
    train_name = "train" if "train" in names else ("all" if "all" in names else None)
    if train_name is None:
        raise MedauditError(f"the dataset has no 'train' (or 'all') split (found: {', '.join(names)})", param="data")
    train = ds.split(train_name)
    if "val" in names:
        return Splits(train, ds.split("val"), "val", train_name)
    if train_name == "all":
        warnings.warn("the dataset has no train/val/test splits; training on 'all' minus a validation carve — "
                      "there is no held-out test split for an honest audit", MedauditWarning, stacklevel=3)
    tr_idx, va_idx = carve_val(train.labels, val_fraction, seed)
    if len(va_idx) == 0 or len(tr_idx) == 0:
        raise MedauditError(f"val_fraction {val_fraction}: too few training samples ({len(train)}) to carve a val "
                            "split", param="val_fraction")
    source = f"carved: stratified {val_fraction:g} of '{train_name}' (seed {seed}), {len(va_idx)} samples"
    warnings.warn(f"no 'val' split in the data; {source} used for model selection", MedauditWarning, stacklevel=3)
    return Splits(SubsetSplit(train, tr_idx), SubsetSplit(train, va_idx), source, train_name)


def classifier_module(model: nn.Module) -> nn.Module:
    """The final classification layer (timm ``get_classifier()``; torchvision fc/heads/classifier)."""
    if hasattr(model, "get_classifier"):
        head = model.get_classifier()
        if isinstance(head, nn.Module) and any(True for _ in head.parameters()):
            return head
    for path in ("fc", "heads", "head", "classifier"):
        head = getattr(model, path, None)
        if isinstance(head, nn.Module) and any(True for _ in head.parameters()):
            return head
    raise MedauditError(f"finetune head: cannot find the classifier layer of {type(model).__name__}; use full",
                        param="finetune")


def freeze_backbone(model: nn.Module) -> nn.Module:
    """Freeze every parameter except the classifier's; returns the classifier module."""
    head = classifier_module(model)
    head_params = {id(p) for p in head.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in head_params)
    return head


def set_train_mode(model: nn.Module, head: nn.Module | None) -> None:
    """``model.train()``; with a frozen backbone everything but the head stays in eval (BN stats fixed)."""
    if head is None:
        model.train()
    else:
        model.eval()
        head.train()


def _safe_auc(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    if len(np.unique(y_true)) < 2:
        return None
    return float(roc_auc_score(y_true, scores))


def val_metrics(y: np.ndarray, probs: np.ndarray, class_names: list[str], multilabel: bool) -> dict:
    """Validation accuracy, AUC and per-class recall from probabilities.

    Parameters
    ----------
    y : ndarray, shape (N,) int or (N, K) 0/1
    probs : ndarray, shape (N, C)
        Softmax (single-label) or sigmoid (multi-label) outputs.

    Returns
    -------
    dict
        ``val_acc`` (subset accuracy for multi-label), ``val_auc`` (binary: AUC of class 1;
        multiclass: one-vs-rest macro; multi-label: macro over labels with both values
        present; None with ``val_auc_reason`` when undefined) and ``val_recall``
        ({class: recall or None when the class is absent}).
    """
    out: dict = {"val_auc_reason": None}
    if multilabel:
        pred = (probs >= 0.5).astype(np.int64)
        out["val_acc"] = float((pred == y).all(axis=1).mean())
        aucs = [_safe_auc(y[:, k], probs[:, k]) for k in range(y.shape[1])]
        defined = [a for a in aucs if a is not None]
        out["val_auc"] = float(np.mean(defined)) if defined else None
        pos = y.sum(axis=0)
        out["val_recall"] = {
            c: (float((pred[:, k] & y[:, k]).sum() / pos[k]) if pos[k] else None) for k, c in enumerate(class_names)
        }
    else:
        pred = probs.argmax(axis=1)
        out["val_acc"] = float((pred == y).mean())
        present = np.unique(y)
        if len(present) < 2:
            out["val_auc"] = None
        elif probs.shape[1] == 2:
            out["val_auc"] = _safe_auc(y, probs[:, 1])
        elif len(present) < probs.shape[1]:
            out["val_auc"] = None
        else:
            out["val_auc"] = float(roc_auc_score(y, probs, multi_class="ovr", average="macro"))
        out["val_recall"] = {
            c: (float((pred[y == k] == k).mean()) if (y == k).any() else None) for k, c in enumerate(class_names)
        }
    if out["val_auc"] is None:
        out["val_auc_reason"] = "a class is absent from the validation split"
    return out


def selection_score(select_by: str, recall_class: str | None, entry: dict) -> float | None:
    """Higher is better; None when the criterion is undefined this epoch."""
    if select_by == "val_loss":
        return -entry["val_loss"]
    if recall_class is not None:
        return entry["val_recall"][recall_class]
    return entry[select_by]


def is_better(score: float | None, loss: float, best_score: float | None, best_loss: float | None) -> bool:
    """Higher score wins; a tie (e.g. a saturated val AUC of 1.0) goes to the lower val loss."""
    if score is None:
        return False
    if best_score is None or score > best_score:
        return True
    return score == best_score and best_loss is not None and loss < best_loss


def n_correct(logits: torch.Tensor, y: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Correct predictions in a batch (multi-label: all labels right), a 0-d tensor on the logits' device."""
    if multilabel:
        return ((logits > 0) == (y > 0.5)).all(dim=1).sum()
    return (logits.argmax(dim=1) == y).sum()


def score_text(select_by: str, score: float | None) -> str:
    """The selection score as users read it, ``"val_auc 0.9930"``; ``val_loss`` shows the loss (its score is -loss)."""
    return f"{select_by} {'n/a' if score is None else f'{abs(score):.4f}'}"


def epoch_summary(entry: dict, cfg, improved: bool) -> str:
    """The one log line of an epoch: losses, accuracies, val AUC, lr, wall time, and ``*best`` on improvement."""

    def f(v):
        return "n/a" if v is None else f"{v:.4f}"

    mark = " *best" if improved else ""
    return (f"epoch {entry['epoch']}/{cfg.epochs}  train_loss {f(entry['train_loss'])}  acc {f(entry['train_acc'])}  "
            f"val_loss {f(entry['val_loss'])}  acc {f(entry['val_acc'])}  auc {f(entry['val_auc'])}  "
            f"lr {entry['lr']:.2e}  {entry['epoch_time_s']:.1f}s{mark}")
