"""Which samples a Grad-CAM gallery shows.

Order of interest: missed disease (a disease sample predicted as a negative class — the
costly error), then other errors, then the most confident correct samples of each class
(what "looking at the right thing" should look like). With several models the gallery
shows the SAME samples for every model, chosen on the union of their errors with samples
all models get wrong first, so reviewers compare like with like.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medaudit.errors import MedauditError
from medaudit.predictions import Predictions, align

GROUPS = ("missed_disease", "error", "correct")


def _outcomes(p: Predictions, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: missed-disease flag and error flag, both (N,) bool."""
    y, yp = p.y_true, p.y_pred
    wrong = yp != y
    missed = wrong & ~negative[y] & negative[yp]
    return missed, wrong


def _take(order: np.ndarray, taken: set[int], k: int) -> list[int]:
    out: list[int] = []
    for i in order.tolist():
        if len(out) >= k:
            break
        if i not in taken:
            out.append(i)
            taken.add(i)
    return out


def _correct_round_robin(
    y: np.ndarray, all_correct: np.ndarray, conf: np.ndarray, taken: set[int], k: int, n_classes: int
) -> list[int]:
    """Most confident correct samples, alternating over classes so each class is shown."""
    queues = []
    for c in range(n_classes):
        idx = np.flatnonzero(all_correct & (y == c))
        queues.append([i for i in idx[np.argsort(-conf[idx], kind="stable")].tolist() if i not in taken])
    out: list[int] = []
    while len(out) < k and any(queues):
        for q in queues:
            if q and len(out) < k:
                out.append(q.pop(0))
    taken.update(out)
    return out


def select_gallery(
    preds_list: Sequence[Predictions], *, negative_classes: Sequence[str], per_group: int = 8
) -> list[dict]:
    """Choose gallery samples for one or more models evaluated on the same samples.

    Parameters
    ----------
    preds_list : sequence of Predictions
        Single-label predictions over the same sample ids (reordered to the first model's order).
    negative_classes : sequence of str
        "No disease" classes; a disease sample predicted as one of these is a missed disease.
        May be empty (then there is no missed-disease group).
    per_group : int
        At most this many samples per group (missed_disease, error, correct).

    Returns
    -------
    list of dict
        One per model, in input order: ``{"model": name, "items": [...]}``; every model's
        items list the same samples in the same order, each
        ``{"sample_id", "index", "selected_as", "hard", "group", "true", "pred", "prob", "target"}``:
        ``index`` is the row in the first model's predictions, ``selected_as`` the shared
        group the sample was picked for, ``group`` this model's own outcome on it,
        ``hard`` whether every model gets it wrong, ``prob`` the probability of the
        predicted class and ``target`` the class index to explain (the prediction).
    """
    if not preds_list:
        return []
    if per_group < 0:
        raise MedauditError(f"per_group must be >= 0 (got {per_group})")
    preds, missed, wrong = _prepare(preds_list, negative_classes)
    ref, names = preds[0], preds[0].class_names
    y = ref.y_true.astype(np.int64)
    # Confidence of the (wrong) prediction, averaged over the models that made it.
    pred_conf = np.stack([p.probs[np.arange(p.n_samples), p.y_pred] for p in preds])
    true_conf = np.stack([p.probs[np.arange(p.n_samples), y] for p in preds])

    def rank(flags: np.ndarray) -> np.ndarray:
        # Most models wrong first (hard samples), then most confidently wrong; id breaks ties.
        count = flags.sum(0)
        conf = np.where(flags, pred_conf, 0.0).sum(0) / np.maximum(count, 1)
        idx = np.flatnonzero(count > 0)
        return idx[np.lexsort((ref.sample_ids[idx], -conf[idx], -count[idx]))]

    taken: set[int] = set()
    chosen = [(i, "missed_disease") for i in _take(rank(missed), taken, per_group)]
    chosen += [(i, "error") for i in _take(rank(wrong), taken, per_group)]
    all_correct = ~wrong.any(0)
    chosen += [
        (i, "correct")
        for i in _correct_round_robin(y, all_correct, true_conf.min(0), taken, per_group, len(names))
    ]
    return _items(preds, chosen, missed, wrong)


def describe_samples(preds_list: Sequence[Predictions], *, negative_classes: Sequence[str]) -> list[dict]:
    """Gallery items for every sample, in order (for user-chosen ids); same format as :func:`select_gallery`."""
    if not preds_list:
        return []
    preds, missed, wrong = _prepare(preds_list, negative_classes)
    return _items(preds, [(i, "requested") for i in range(preds[0].n_samples)], missed, wrong)


def _prepare(preds_list: Sequence[Predictions], negative_classes: Sequence[str]):
    preds = align(list(preds_list))
    ref = preds[0]
    if ref.multilabel:
        raise MedauditError("Grad-CAM galleries support single-label tasks only (this task is multilabel)")
    names = ref.class_names
    unknown = [c for c in negative_classes if c not in names]
    if unknown:
        raise MedauditError(f"negative_classes {unknown} are not class names ({', '.join(names)})",
                            param="negative_classes")
    negative = np.array([c in negative_classes for c in names], dtype=bool)
    missed = np.stack([_outcomes(p, negative)[0] for p in preds])  # (M, N)
    wrong = np.stack([_outcomes(p, negative)[1] for p in preds])
    return preds, missed, wrong


def _items(preds: list[Predictions], chosen: list[tuple[int, str]], missed: np.ndarray, wrong: np.ndarray) -> list[dict]:
    ref, names = preds[0], preds[0].class_names
    y = ref.y_true.astype(np.int64)
    hard = wrong.all(0)
    out = []
    for m, p in enumerate(preds):
        yp = p.y_pred
        items = []
        for i, sel in chosen:
            group = "missed_disease" if missed[m, i] else "error" if wrong[m, i] else "correct"
            items.append(
                {
                    "sample_id": str(ref.sample_ids[i]),
                    "index": int(i),
                    "selected_as": sel,
                    "hard": bool(hard[i]),
                    "group": group,
                    "true": names[int(y[i])],
                    "pred": names[int(yp[i])],
                    "prob": float(p.probs[i, yp[i]]),
                    "target": int(yp[i]),
                }
            )
        out.append({"model": p.model_name, "items": items})
    return out
