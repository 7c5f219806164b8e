"""compute_metrics against scikit-learn on random and edge-case predictions."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from medaudit.errors import MedauditError
from medaudit.metrics import compute_metrics
from medaudit.metrics.classification import (
    confusion_block,
    confusion_from_sums,
    exact_match_block,
    label_counts_block,
    label_counts_from_sums,
    one_vs_rest_counts,
)
from medaudit.metrics.resample import SumDesign

pytestmark = pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make(n, c, seed, signal=1.5, decimals=None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    p = softmax(rng.normal(size=(n, c)) + signal * np.eye(c)[y])
    if decimals is not None:  # coarse probabilities create ties
        p = np.round(p, decimals)
    return y, p


def val(obj):
    return obj["value"]


def close(a, b):
    if b is None or (isinstance(b, float) and np.isnan(b)):
        return a is None
    return a is not None and a == pytest.approx(b, abs=1e-10)


def check_against_sklearn(y, p, task="multiclass"):
    c = p.shape[1]
    names = [f"c{i}" for i in range(c)]
    m = compute_metrics(y, p, names, task, n_bootstrap=0)
    pred = p.argmax(axis=1)
    labels = list(range(c))
    prec, rec, f1, sup = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=np.nan)
    onehot = np.eye(c, dtype=int)[y]
    for j, name in enumerate(names):
        pc = m["per_class"][name]
        assert pc["support"] == sup[j]
        assert close(val(pc["precision"]), prec[j])
        assert close(val(pc["recall"]), rec[j])
        assert close(val(pc["f1"]), f1[j] if sup[j] else None)
        neg_true, neg_pred = y != j, pred != j
        spec = skm.recall_score(neg_true, neg_pred, zero_division=np.nan) if neg_true.any() else None
        npv = skm.precision_score(neg_true, neg_pred, zero_division=np.nan) if neg_pred.any() else None
        assert close(val(pc["specificity"]), spec)
        assert close(val(pc["npv"]), npv)
        both = 0 < onehot[:, j].sum() < len(y)
        assert close(val(pc["auc"]), skm.roc_auc_score(onehot[:, j], p[:, j]) if both else None)
        ap = skm.average_precision_score(onehot[:, j], p[:, j]) if onehot[:, j].any() else None
        assert close(val(pc["ap"]), ap)
    assert val(m["accuracy"]) == pytest.approx(skm.accuracy_score(y, pred))
    present = sup > 0
    assert close(val(m["balanced_accuracy"]), np.mean(rec[present]))
    assert close(val(m["macro_f1"]), np.mean(f1[present]))
    # Weighted averages skip undefined classes (sklearn zero_division=nan); when the classes left
    # carry no support at all we say undefined where sklearn returns 0.
    for key, values, fn in (("weighted_f1", f1, skm.f1_score), ("weighted_precision", prec, skm.precision_score)):
        has_weight = sup[np.isfinite(values)].sum() > 0
        ref = fn(y, pred, labels=labels, average="weighted", zero_division=np.nan) if has_weight else None
        assert close(val(m[key]), ref), key
    assert close(val(m["macro_precision"]), np.nanmean(prec) if np.isfinite(prec).any() else None)
    assert close(
        val(m["macro_recall"]), skm.recall_score(y, pred, labels=labels, average="macro", zero_division=np.nan)
    )
    if len(set(y)) > 1 or len(set(pred)) > 1:
        kappa = skm.cohen_kappa_score(y, pred, labels=labels)
        assert close(val(m["kappa"]), kappa if np.isfinite(kappa) else None)
    mcc_den = np.sqrt((len(y) ** 2 - np.sum(np.bincount(pred, minlength=c) ** 2)) * (len(y) ** 2 - np.sum(sup**2)))
    assert close(val(m["mcc"]), skm.matthews_corrcoef(y, pred) if mcc_den > 0 else None)
    if task != "binary":
        assert val(m["brier"]) == pytest.approx(skm.brier_score_loss(y, p, labels=labels))
    auc_defined = [val(m["per_class"][nm]["auc"]) for nm in names if val(m["per_class"][nm]["auc"]) is not None]
    if task == "binary":
        assert close(val(m["auc_macro"]), val(m["per_class"]["c1"]["auc"]))
    elif auc_defined:
        assert val(m["auc_macro"]) == pytest.approx(np.mean(auc_defined))
        if len(auc_defined) == c:
            assert val(m["auc_macro"]) == pytest.approx(skm.roc_auc_score(onehot, p, average="macro"))
    if 0 < onehot.sum() < onehot.size:
        assert val(m["auc_micro"]) == pytest.approx(skm.roc_auc_score(onehot.ravel(), p.ravel()))
    cm = skm.confusion_matrix(y, pred, labels=labels)
    assert m["confusion_matrix"]["counts"] == cm.tolist()
    for row, norm in zip(cm, m["confusion_matrix"]["normalized"], strict=True):
        assert norm is None if row.sum() == 0 else np.allclose(norm, row / row.sum())
    return m


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("c", [3, 5])
def test_random_multiclass_matches_sklearn(seed, c):
    y, p = make(120, c, seed)
    check_against_sklearn(y, p)


def test_ties_match_sklearn():
    y, p = make(200, 3, 7, signal=0.8, decimals=1)
    assert len(np.unique(p[:, 0])) < 20
    check_against_sklearn(y, p)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 40),
    c=st.integers(2, 4),
    seed=st.integers(0, 10_000),
    decimals=st.sampled_from([None, 1, 2]),
)
def test_property_matches_sklearn(n, c, seed, decimals):
    rng = np.random.default_rng(seed)
    # Few distinct labels sometimes: classes absent from y_true or never predicted.
    y = rng.integers(0, rng.integers(1, c + 1), n)
    p = softmax(rng.normal(size=(n, c)) * 2)
    if decimals is not None:
        p = np.round(p, decimals)
    check_against_sklearn(y, p)


def test_class_never_predicted_and_absent():
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.2, 0.8, 0.0], [0.7, 0.3, 0.0], [0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    m = check_against_sklearn(y, p)
    c2 = m["per_class"]["c2"]
    assert c2["support"] == 0
    for key in ("recall", "f1", "auc", "ap", "precision"):
        assert c2[key]["value"] is None and c2[key]["reason"], key
    assert "no samples of class 'c2'" in c2["recall"]["reason"]
    assert "never predicted" in c2["precision"]["reason"]
    assert "c2" in m["macro_f1"]["note"]
    assert m["confusion_matrix"]["normalized"][2] is None


def test_single_class_test_set_is_undefined_not_zero():
    y = np.zeros(5, int)
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.55, 0.45]])
    m = compute_metrics(y, p, ["normal", "tumor"], "binary", n_bootstrap=50)
    assert m["auc_macro"]["value"] is None and m["auc_macro"]["reason"]
    assert m["per_class"]["normal"]["auc"]["reason"].startswith("every sample belongs")
    assert m["per_class"]["normal"]["specificity"]["value"] is None
    assert m["per_class"]["tumor"]["recall"]["value"] is None
    assert m["per_class"]["tumor"]["specificity"]["value"] == pytest.approx(0.8)
    assert m["auc_micro"]["value"] is not None  # pooled labels still hold both values
    assert m["mcc"]["value"] is None and m["mcc"]["reason"]


def test_perfect_and_inverted_binary():
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.9])
    perfect = check_against_sklearn(y, np.column_stack([1 - s, s]), task="binary")
    assert perfect["auc_macro"]["value"] == 1.0 and perfect["mcc"]["value"] == 1.0 and perfect["kappa"]["value"] == 1.0
    inverted = check_against_sklearn(y, np.column_stack([s, 1 - s]), task="binary")
    assert inverted["auc_macro"]["value"] == 0.0 and inverted["mcc"]["value"] == -1.0
    assert inverted["accuracy"]["value"] == 0.0 and inverted["accuracy"]["ci_high"] > 0


def test_binary_brier_is_sklearn_binary_definition():
    y, p = make(80, 2, 3)
    m = check_against_sklearn(y, p, task="binary")
    assert m["brier"]["value"] == pytest.approx(skm.brier_score_loss(y, p[:, 1]))
    assert set(m["per_class"]) == {"c0", "c1"}


def test_ordinal_quadratic_kappa():
    y, p = make(150, 4, 11, signal=1.0)
    m = compute_metrics(y, p, list("abcd"), "ordinal", n_bootstrap=100)
    ref = skm.cohen_kappa_score(y, p.argmax(1), weights="quadratic", labels=[0, 1, 2, 3])
    assert m["kappa_quadratic"]["value"] == pytest.approx(ref)
    assert m["kappa_quadratic"]["ci_method"] == "bootstrap"
    assert compute_metrics(y, p, list("abcd"), "multiclass", n_bootstrap=0)["kappa_quadratic"] is None


def test_multilabel_matches_sklearn():
    rng = np.random.default_rng(5)
    n, k = 150, 4
    y = (rng.random((n, k)) < [0.5, 0.3, 0.1, 0.0]).astype(int)  # last label never present
    p = 1 / (1 + np.exp(-(rng.normal(size=(n, k)) + 2 * (y - 0.5))))
    names = ["a", "b", "c", "d"]
    m = compute_metrics(y, p, names, "multilabel", n_bootstrap=100)
    pred = (p >= 0.5).astype(int)
    assert m["accuracy"]["value"] == pytest.approx(skm.accuracy_score(y, pred))  # subset accuracy
    prec, rec, f1, sup = skm.precision_recall_fscore_support(y, pred, zero_division=np.nan)
    for j, name in enumerate(names):
        pc = m["per_class"][name]
        assert pc["support"] == sup[j]
        assert close(pc["precision"]["value"], prec[j])
        assert close(pc["recall"]["value"], rec[j])
    for j in range(3):
        assert m["per_class"][names[j]]["auc"]["value"] == pytest.approx(skm.roc_auc_score(y[:, j], p[:, j]))
        assert m["per_class"][names[j]]["ap"]["value"] == pytest.approx(skm.average_precision_score(y[:, j], p[:, j]))
    assert m["per_class"]["d"]["auc"]["value"] is None
    assert m["auc_macro"]["value"] == pytest.approx(skm.roc_auc_score(y[:, :3], p[:, :3], average="macro"))
    assert m["auc_micro"]["value"] == pytest.approx(skm.roc_auc_score(y, p, average="micro"))
    assert m["brier"]["value"] == pytest.approx(np.mean((p - y) ** 2))
    assert m["kappa"]["value"] is None and "multilabel" in m["kappa"]["reason"]
    assert set(m["confusion_matrix"]["per_label"]) == set(names)
    assert m["confusion_matrix"]["per_label"]["a"]["counts"] == skm.confusion_matrix(y[:, 0], pred[:, 0]).tolist()


@pytest.mark.parametrize(
    ("y", "p", "task"),
    [
        (np.array([0, 1]), np.ones((2, 3)) / 3, "binary"),
        (np.array([0, 3]), np.ones((2, 3)) / 3, "multiclass"),
        (np.array([0, 1]), np.array([[0.5, np.nan], [0.5, 0.5]]), "binary"),
        (np.array([], int), np.ones((0, 2)), "binary"),
        (np.array([0, 1]), np.ones((2, 2)) / 2, "survival"),
    ],
)
def test_bad_input_raises_medaudit_error(y, p, task):
    with pytest.raises(MedauditError):
        compute_metrics(y, p, [f"c{i}" for i in range(p.shape[1])], task, n_bootstrap=0)


def test_parameter_errors_name_the_parameter():
    y, p = make(20, 2, 0)
    for kwargs, param in [({"n_bootstrap": -1}, "n_bootstrap"), ({"ece_bins": 0}, "ece_bins"),
                          ({"positive_class": "tumour"}, "positive_class"), ({"task": "survival"}, "task")]:
        with pytest.raises(MedauditError) as err:
            compute_metrics(y, p, ["c0", "c1"], **{"task": "binary", **kwargs})
        assert err.value.param == param and "--" not in str(err.value)


def test_count_blocks_read_back_as_sklearn_confusion_matrices():
    """The sum layouts the engine uses: weighted sums of the blocks equal scikit-learn's counts."""
    rng = np.random.default_rng(1)
    n, c = 60, 4
    y, pred = rng.integers(0, c, n), rng.integers(0, c, n)
    w = rng.integers(0, 3, n).astype(np.float32)
    design = SumDesign(n, [confusion_block("cm", y, pred, c)])
    cm = confusion_from_sums(design.sums(w[:, None])["cm"], c)
    np.testing.assert_array_equal(cm[0], skm.confusion_matrix(y, pred, labels=range(c), sample_weight=w))
    tp, fp, fn, tn = one_vs_rest_counts(cm)
    ovr = skm.multilabel_confusion_matrix(y, pred, labels=range(c), sample_weight=w)  # (C, 2, 2): [[tn, fp], [fn, tp]]
    np.testing.assert_array_equal(np.stack([tn[0], fp[0], fn[0], tp[0]], axis=1), ovr.reshape(c, 4))

    yl, pl = (rng.random((n, 3)) < 0.4).astype(int), (rng.random((n, 3)) < 0.4).astype(int)
    design = SumDesign(n, [label_counts_block("counts", yl, pl), exact_match_block("exact", yl, pl)])
    sums = design.sums(w[:, None])
    counts = label_counts_from_sums(sums["counts"], 3)
    np.testing.assert_array_equal(counts[0], skm.multilabel_confusion_matrix(yl, pl, sample_weight=w).reshape(3, 4))
    assert sums["exact"][0, 0] == w[(yl == pl).all(axis=1)].sum()
