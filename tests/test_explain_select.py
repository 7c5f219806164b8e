"""Gallery selection: missed disease first, then errors, then confident correct; same ids for all models."""

from __future__ import annotations

import numpy as np
import pytest

from medaudit.errors import MedauditError
from medaudit.explain import select_gallery
from medaudit.explain.select import describe_samples
from medaudit.predictions import Predictions

NAMES = ["normal", "benign", "malignant"]


def _preds(name, y_true, y_pred, conf, ids=None):
    n = len(y_true)
    probs = np.full((n, 3), 0.0)
    for i, (p, c) in enumerate(zip(y_pred, conf, strict=True)):
        probs[i] = (1 - c) / 2
        probs[i, p] = c
    ids = ids or [f"test/{i}" for i in range(n)]
    return Predictions(name, NAMES, "multiclass", ids, np.array(y_true), probs)


# sample:         0  1  2  3  4  5  6  7  8
Y = [2, 2, 1, 0, 0, 1, 2, 0, 1]
A = [0, 0, 2, 1, 0, 1, 2, 0, 1]  # misses 0,1 (disease→normal), errors 2,3
B = [0, 2, 0, 0, 0, 1, 2, 2, 1]  # misses 0, 2; error 7
CA = [0.9, 0.6, 0.8, 0.7, 0.95, 0.9, 0.99, 0.6, 0.7]
CB = [0.8, 0.9, 0.9, 0.9, 0.90, 0.8, 0.70, 0.9, 0.6]


def test_single_model_groups_and_order():
    [g] = select_gallery([_preds("a", Y, A, CA)], negative_classes=["normal"], per_group=2)
    items = g["items"]
    assert g["model"] == "a"
    assert [(it["sample_id"], it["selected_as"]) for it in items] == [
        ("test/0", "missed_disease"), ("test/1", "missed_disease"),  # most confident miss first
        ("test/2", "error"), ("test/3", "error"),
        ("test/4", "correct"), ("test/5", "correct"),  # round robin over classes, most confident first
    ]
    first = items[0]
    assert first["group"] == "missed_disease" and first["true"] == "malignant" and first["pred"] == "normal"
    assert first["prob"] == pytest.approx(0.9) and first["target"] == 0 and first["hard"] is True


def test_two_models_share_samples_with_hard_ones_first():
    out = select_gallery([_preds("a", Y, A, CA), _preds("b", Y, B, CB)], negative_classes=["normal"], per_group=2)
    ids = [[it["sample_id"] for it in g["items"]] for g in out]
    assert ids[0] == ids[1]
    # sample 0 is missed by both models (hard): it leads; then the most confident single miss.
    assert ids[0][:2] == ["test/0", "test/2"]
    a_items, b_items = out[0]["items"], out[1]["items"]
    assert a_items[0]["hard"] and b_items[0]["hard"]
    # sample 2: model a calls it malignant (error), model b calls it normal (missed disease)
    assert a_items[1]["group"] == "error" and b_items[1]["group"] == "missed_disease"
    # correct group: only samples both models get right
    correct_ids = [it["sample_id"] for it in a_items if it["selected_as"] == "correct"]
    assert set(correct_ids) <= {"test/4", "test/5", "test/6", "test/8"}


def test_alignment_and_errors():
    ids = [f"test/{i}" for i in range(9)]
    rev = _preds("b", Y[::-1], B[::-1], CB[::-1], ids=ids[::-1])
    out = select_gallery([_preds("a", Y, A, CA), rev], negative_classes=["normal"], per_group=3)
    assert [it["sample_id"] for it in out[0]["items"]] == [it["sample_id"] for it in out[1]["items"]]
    assert out[1]["items"][0]["pred"] == NAMES[B[int(out[1]["items"][0]["sample_id"].split("/")[1])]]
    with pytest.raises(MedauditError, match="not class names"):
        select_gallery([_preds("a", Y, A, CA)], negative_classes=["healthy"])
    assert select_gallery([_preds("a", Y, A, CA)], negative_classes=[], per_group=8)[0]["items"][0]["group"] == "error"
    assert select_gallery([], negative_classes=[]) == []


def test_describe_samples_keeps_order():
    [g] = describe_samples([_preds("a", Y, A, CA)], negative_classes=["normal"])
    assert [it["sample_id"] for it in g["items"]] == [f"test/{i}" for i in range(9)]
    assert {it["selected_as"] for it in g["items"]} == {"requested"}
