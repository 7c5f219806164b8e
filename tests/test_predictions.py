import csv
import json

import numpy as np
import pytest

from medaudit.errors import MedauditError
from medaudit.predictions import Predictions, align, check_same_samples


def make(name="m", n=6, seed=0, ids=None):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(3), size=n)
    return Predictions(model_name=name, class_names=["a", "b", "c"], task="multiclass",
                       sample_ids=ids if ids is not None else [f"s{i}" for i in range(n)],
                       y_true=rng.integers(0, 3, n), probs=p, provenance={"split": "test"})


def test_save_load_roundtrip_without_medaudit(tmp_path):
    p = make()
    path = p.save(tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as f:  # readable with plain numpy, no pickle
        header = json.loads(str(f["header"]))
        assert header["class_names"] == ["a", "b", "c"] and f["probs"].shape == (6, 3)
    q = Predictions.load(path)
    assert np.array_equal(q.y_true, p.y_true) and np.allclose(q.probs, p.probs)
    assert q.provenance == {"split": "test"}


def test_csv_export(tmp_path):
    p = make()
    rows = list(csv.reader(open(p.to_csv(tmp_path / "p.csv"))))
    assert rows[0] == ["sample_id", "y_true", "y_pred", "p_a", "p_b", "p_c"]
    assert len(rows) == 7 and rows[1][1] == "abc"[p.y_true[0]] and rows[1][2] == "abc"[p.y_pred[0]]


def test_multilabel_csv_and_pred(tmp_path):
    p = Predictions(model_name="m", class_names=["x", "y"], task="multilabel", sample_ids=["a", "b"],
                    y_true=np.array([[1, 0], [1, 1]]), probs=np.array([[0.9, 0.2], [0.4, 0.7]]))
    assert p.y_pred.tolist() == [[1, 0], [0, 1]] and p.correct.tolist() == [True, False]
    rows = list(csv.reader(open(p.to_csv(tmp_path / "m.csv"))))
    assert rows[0][:5] == ["sample_id", "y_true_x", "y_true_y", "y_pred_x", "y_pred_y"]


def test_validation_errors():
    with pytest.raises(MedauditError, match="non-finite"):
        Predictions("m", ["a", "b"], "binary", ["s0", "s1"], [0, 1], [[0.5, np.nan], [0.5, 0.5]])
    with pytest.raises(MedauditError, match="shape"):
        Predictions("m", ["a", "b", "c"], "multiclass", ["s0"], [0], [[0.5, 0.5]])
    with pytest.raises(MedauditError, match="unique"):
        Predictions("m", ["a", "b"], "binary", ["s0", "s0"], [0, 1], [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(MedauditError, match="non-integer labels"):
        Predictions("m", ["a", "b"], "binary", ["s0", "s1"], [0, 0.5], [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(MedauditError, match="0/1 per label"):
        Predictions("m", ["a", "b"], "multilabel", ["s0"], [[0, 2]], [[0.5, 0.5]])
    ok = Predictions("m", ["a", "b"], "binary", ["s0", "s1"], [0.0, 1.0], [[0.5, 0.5], [0.5, 0.5]])
    assert ok.y_true.dtype == np.int64  # float labels that are whole numbers are taken as indices


def test_align_and_mismatch():
    a = make("a")
    b = make("b", ids=[f"s{i}" for i in range(6)])
    perm = np.array([5, 4, 3, 2, 1, 0])
    b2 = Predictions("b", b.class_names, b.task, a.sample_ids[perm], a.y_true[perm], b.probs[perm])
    out = align([a, b2])
    assert out[1].sample_ids.tolist() == a.sample_ids.tolist()
    assert np.allclose(out[1].probs, b.probs[perm][np.argsort(perm)])
    c = make("c", ids=[f"t{i}" for i in range(6)])
    with pytest.raises(MedauditError, match="different samples"):
        check_same_samples([a, c])
