"""Contract of compute_metrics: schema keys, JSON-ready, deterministic, order and dtype invariant."""

import json

import numpy as np
import pytest

from medaudit.metrics import compute_metrics

NAMES = ["normal", "benign", "malignant"]
SCHEMA_KEYS = {
    "n", "accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall",
    "macro_specificity", "weighted_precision", "weighted_recall", "auc_macro", "auc_micro", "ap_macro", "kappa",
    "kappa_quadratic", "mcc", "ece", "brier", "missed_disease_rate", "per_class", "confusion_matrix", "curves",
    "calibration",
}  # fmt: skip
PER_CLASS_KEYS = {"support", "precision", "recall", "specificity", "npv", "f1", "auc", "ap", "missed_disease_rate"}
VALUE_KEYS = {"value", "ci_low", "ci_high", "ci_method", "reason"}


def sample(n=80, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    z = rng.normal(size=(n, 3)) + 1.3 * np.eye(3)[y]
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return y, np.round(p, 3).astype(np.float32)  # float32 and ties, as real predictions files


def run(y, p, seed=0, task="multiclass"):
    return compute_metrics(y, p, NAMES, task, n_bootstrap=60, seed=seed)


def dumps(m):
    return json.dumps(m, sort_keys=True, allow_nan=False)


def value_objects(m):
    """Every (path, value object) of the metrics block."""
    for key, v in m.items():
        if isinstance(v, dict) and "value" in v:
            yield key, v
    for cls, pc in m["per_class"].items():
        for key, v in pc.items():
            if isinstance(v, dict):
                yield f"{cls}.{key}", v


def test_schema_keys_and_json_ready():
    y, p = sample()
    m = run(y, p)
    assert set(m) == SCHEMA_KEYS
    assert set(m["per_class"]) == set(NAMES)
    for pc in m["per_class"].values():
        assert set(pc) == PER_CLASS_KEYS
    for path, v in value_objects(m):
        assert VALUE_KEYS <= set(v), path
        if v["value"] is None:
            assert v["reason"], path
        else:
            assert isinstance(v["value"], float) and v["ci_method"] in ("wilson", "bootstrap", "bootstrap-recentred"), path
    dumps(m)  # no NaN/inf, only JSON types
    assert len(m["calibration"]["bin_edges"]) == 16 and sum(m["calibration"]["bin_count"]) == len(y)


def test_deterministic_and_seed_dependent():
    y, p = sample()
    assert dumps(run(y, p)) == dumps(run(y, p))
    assert run(y, p, seed=1)["macro_f1"]["ci_low"] != run(y, p, seed=2)["macro_f1"]["ci_low"]


@pytest.mark.parametrize("seed", [0, 1])
def test_sample_order_does_not_matter_even_for_bootstrap(seed):
    y, p = sample(seed=seed)
    perm = np.random.default_rng(99).permutation(len(y))
    assert dumps(run(y, p)) == dumps(run(y[perm], p[perm]))


def test_dtypes_do_not_matter():
    y, p = sample()
    ref = dumps(run(y.astype(np.int64), p.astype(np.float64)))
    assert dumps(run(y.astype(np.int32), p)) == ref
    assert dumps(run(y.tolist(), p.tolist())) == ref
    assert dumps(run(y.astype(np.uint8), p.astype(np.float64))) == ref


def test_single_class_slice_makes_class_dependent_metrics_undefined():
    y, p = sample(120)
    keep = y == 2
    m = run(y[keep], p[keep])
    for path, v in value_objects(m):
        cls, _, key = path.partition(".")
        if key in ("recall", "f1", "auc", "ap") and cls in ("normal", "benign"):
            assert v["value"] is None and "no samples" in v["reason"], path
        if key in ("specificity", "auc") and cls == "malignant":
            assert v["value"] is None and "no negatives" in v["reason"], path
    assert m["auc_macro"]["value"] is None and m["mcc"]["value"] is None
    assert m["curves"]["roc"]["malignant"] is None and m["curves"]["pr"]["normal"] is None
    assert m["accuracy"]["value"] == pytest.approx(np.mean(p[keep].argmax(1) == 2))
    dumps(m)


def test_curves_are_downsampled_with_end_points():
    rng = np.random.default_rng(0)
    n = 3000
    y = rng.integers(0, 2, n)
    s = np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0, 1)
    m = compute_metrics(y, np.column_stack([1 - s, s]), ["neg", "pos"], "binary", n_bootstrap=0)
    roc = m["curves"]["roc"]["pos"]
    assert 150 < len(roc["fpr"]) <= 200 and len(roc["fpr"]) == len(roc["tpr"]) == len(roc["thresholds"])
    assert roc["fpr"][0] == 0.0 and roc["tpr"][0] == 0.0 and roc["fpr"][-1] == 1.0 and roc["tpr"][-1] == 1.0
    assert roc["thresholds"][0] is None  # sklearn's +inf start
    assert np.all(np.diff(roc["fpr"]) >= 0)
    pr = m["curves"]["pr"]["pos"]
    assert len(pr["precision"]) <= 200 and pr["recall"][0] == 1.0 and pr["recall"][-1] == 0.0
    assert m["curves"]["roc"]["micro"] is not None
