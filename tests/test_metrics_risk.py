"""Missed-disease risk, negative-class detection and operating points (hand-computed examples)."""

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from medaudit.errors import MedauditError
from medaudit.metrics import detect_negative_classes, fn_risk, operating_points, wilson_interval
from medaudit.metrics.risk import missed_disease_counts, missed_disease_mask


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["glioma", "meningioma", "notumor", "pituitary"], ["notumor"]),
        (["Normal", "Pneumonia"], ["Normal"]),
        (["malignant", "normal_benign"], ["normal_benign"]),
        (["No Finding", "Effusion", "Mass"], ["No Finding"]),
        (["no_tumor", "tumor"], ["no_tumor"]),
        (["healthy", "sick"], ["healthy"]),
        (["COVID-negative", "covid-positive"], ["COVID-negative"]),
        (["abnormal", "benign", "malignant"], []),
        (["no tumor", "NoFinding"], ["no tumor", "NoFinding"]),
    ],
)
def test_detect_negative_classes(names, expected):
    assert detect_negative_classes(names) == expected


def test_fn_risk_hand_example():
    names = ["glioma", "meningioma", "notumor", "pituitary"]
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2, 3, 3])
    p = np.array([0, 2, 2, 1, 2, 1, 2, 0, 3, 3])
    ids = [f"s{i}" for i in range(10)]
    r = fn_risk(y, p, names, ["notumor"], ids)
    assert r["negative_classes"] == ["notumor"]
    g = r["per_class"]["glioma"]
    assert (g["rate"]["k"], g["rate"]["n"]) == (2, 4) and g["rate"]["value"] == 0.5
    assert (g["rate"]["ci_low"], g["rate"]["ci_high"]) == pytest.approx(wilson_interval(2, 4))
    assert g["missed_ids"] == ["s1", "s2"] and g["missed_as"] == {"notumor": 2}
    assert r["per_class"]["meningioma"]["missed_ids"] == ["s4"]
    assert r["per_class"]["pituitary"]["rate"]["value"] == 0.0
    assert set(r["per_class"]) == {"glioma", "meningioma", "pituitary"}
    assert (r["overall"]["k"], r["overall"]["n"]) == (3, 8)


def test_fn_risk_absent_class_and_bad_negative():
    r = fn_risk([0, 0, 1], [1, 0, 1], ["normal", "pneumonia", "covid"], ["normal"], ["a", "b", "c"])
    assert r["per_class"]["covid"]["rate"]["value"] is None and r["per_class"]["covid"]["rate"]["reason"]
    assert r["overall"]["value"] == 0.0
    with pytest.raises(MedauditError, match="'healthy'") as err:
        fn_risk([0], [0], ["normal", "x"], ["healthy"], ["a"])
    assert err.value.param == "negative_classes"
    with pytest.raises(MedauditError) as err:
        fn_risk([0], [0], ["normal", "x"], [], ["a"])
    assert err.value.param == "negative_classes"
    with pytest.raises(MedauditError, match="every class is a negative class") as err:
        fn_risk([0], [0], ["normal", "x"], ["normal", "x"], ["a"])
    assert err.value.param == "negative_classes"


def test_missed_disease_counts_of_confusion_matrices_follow_the_mask():
    """Disease = true class not negative; missed = such a sample predicted as a negative class."""
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    negative = [0, 2]
    mask = missed_disease_mask(y, p, negative)
    np.testing.assert_array_equal(mask, np.isin(y, [1, 3]) & np.isin(p, [0, 2]))
    cm = np.zeros((1, 4, 4))
    np.add.at(cm[0], (y, p), 1)
    missed, disease = missed_disease_counts(cm, negative)
    assert (missed[0], disease[0]) == (mask.sum(), np.isin(y, [1, 3]).sum())
    rate = fn_risk(y, p, ["normal", "a", "healthy", "b"], ["normal", "healthy"], [str(i) for i in range(200)])
    assert (rate["overall"]["k"], rate["overall"]["n"]) == (mask.sum(), disease[0])


def test_fn_risk_multilabel_missed_means_no_disease_label_predicted():
    names = ["No Finding", "Effusion", "Mass"]
    y = np.array([[0, 1, 0], [0, 1, 1], [1, 0, 0], [0, 0, 1]])
    p = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0]])
    r = fn_risk(y, p, names, ["No Finding"], ["a", "b", "c", "d"])
    assert r["per_class"]["Effusion"]["missed_ids"] == ["a"]  # b still got a disease label
    assert r["per_class"]["Mass"]["missed_ids"] == ["d"]
    assert r["per_class"]["Mass"]["missed_as"] == {"No Finding": 0, "(none)": 1}
    assert (r["overall"]["k"], r["overall"]["n"]) == (2, 3)


def test_operating_points_on_test_by_hand():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 0])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.55, 0.7, 0.9, 0.35, 0.05])
    op = operating_points(y, s, target_sensitivity=0.8)
    assert op["note"].startswith("no validation")
    default, youden, target = op["points"]
    assert default["threshold"] == 0.5 and default["chosen_on"] == "fixed"
    assert (default["sensitivity"]["k"], default["sensitivity"]["n"]) == (3, 5)
    assert (default["specificity"]["k"], default["specificity"]["n"]) == (4, 5)
    # Youden against sklearn's ROC: J is maximal at threshold 0.35 (sens 1.0, spec 0.8).
    fpr, tpr, thr = roc_curve(y, s)
    assert youden["threshold"] == pytest.approx(thr[np.argmax(tpr - fpr)]) == 0.35
    assert youden["chosen_on"] == "test" and youden["specificity"]["value"] == 0.8
    # Highest threshold with sensitivity >= 0.8: 0.4 (4 of 5 positives score >= 0.4).
    assert target["name"] == "target_sensitivity_0.8" and target["threshold"] == 0.4
    assert target["reached_on_choice_split"] is True and target["sensitivity"]["value"] == 0.8


def test_operating_points_chosen_on_validation_and_applied_to_test():
    y_val, s_val = np.array([0, 0, 1, 1]), np.array([0.2, 0.3, 0.6, 0.8])
    y_test, s_test = np.array([0, 1, 1, 0]), np.array([0.1, 0.5, 0.7, 0.65])
    op = operating_points(y_test, s_test, y_true_val=y_val, score_val=s_val, target_sensitivity=0.95, positive="tumor")
    assert op["positive"] == "tumor" and "validation" in op["note"]
    youden, target = op["points"][1:]
    assert youden["chosen_on"] == "val" and youden["threshold"] == 0.6
    assert youden["sensitivity"]["value"] == 0.5 and youden["specificity"]["value"] == 0.5
    assert target["threshold"] == 0.6 and target["sensitivity"]["n"] == 2


def test_operating_points_undefined_and_errors():
    op = operating_points([0, 1], [0.2, 0.9], y_true_val=[0, 0], score_val=[0.1, 0.2])
    assert op["points"][1]["threshold"] is None and op["points"][1]["sensitivity"]["value"] is None
    assert op["points"][2]["reached_on_choice_split"] is False
    with pytest.raises(MedauditError):
        operating_points([0, 2], [0.1, 0.2])
    with pytest.raises(MedauditError):
        operating_points([0, 1], [0.1, 0.2], y_true_val=[0, 1])
