"""medaudit.clinical: what runs on which split, what is skipped and why; the report reuses the
validation samples a model was selected on."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import confusion_matrix

from medaudit.clinical import (
    NO_VALIDATION,
    ClinicalSettings,
    clinical_comparison,
    clinical_entry,
    clinical_findings,
    parse_cost,
    parse_prevalence,
    recalibrated_variant,
)
from medaudit.errors import MedauditError
from medaudit.metrics.thresholds import guaranteed_operating_points
from medaudit.predictions import Predictions

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]
KW = dict(target_sensitivity=0.9, n_bootstrap=50, seed=0, n_bins=10)


def _preds(n, seed, name="m", sharp=2.0, split="test"):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    logits = rng.normal(size=(n, 4)) * sharp
    logits[np.arange(n), y] += 2.5
    p = np.exp(logits)
    p /= p.sum(1, keepdims=True)
    return Predictions(model_name=name, class_names=CLASSES, task="multiclass",
                       sample_ids=np.array([f"{split}/{i}" for i in range(n)]), y_true=y, probs=p,
                       provenance={"split": split})


def test_with_validation_every_analysis_runs_and_delegates_to_its_metric():
    val, test = _preds(400, 1, split="val"), _preds(300, 2)
    settings = ClinicalSettings(prevalence=0.05, cost_fn=10, cost_fp=1)
    entry = clinical_entry(test, val, ["notumor"], settings, **KW)
    assert entry["available"] and entry["validation"]["split"] == "val" and entry["validation"]["n"] == 400
    direct = guaranteed_operating_points(val.y_true, val.probs, test.y_true, test.probs, CLASSES, ["notumor"],
                                         target=0.9, delta=0.05)
    assert entry["thresholds"]["points"] == direct["points"]
    assert set(entry["conformal"]) == {"lac", "aps"} and entry["conformal"]["lac"]["mondrian"] is True
    assert entry["recalibration"]["fitted_on"] == "val" and set(entry["recalibration"]["reliability"]) == {
        "before", "after"}
    assert entry["cost"]["choice"]["chosen_on"] == "val"

    # PPV at the deployment prevalence, by hand from the test confusion matrix at the naive threshold.
    naive = next(p for p in direct["points"] if p["name"].startswith("naive"))
    y = (test.y_true != CLASSES.index("notumor")).astype(int)
    called = (1 - test.probs[:, 2] >= naive["threshold"]).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, called, labels=[0, 1]).ravel()
    sens, spec = tp / (tp + fn), tn / (tn + fp)
    ppv = sens * 0.05 / (sens * 0.05 + (1 - spec) * 0.95)
    got = entry["prevalence"]["points"][naive["name"]]["ppv"]["value"]
    assert got == pytest.approx(ppv, rel=1e-12)


def test_without_validation_nothing_is_chosen_and_a_warning_says_so():
    test = _preds(200, 3)
    entry = clinical_entry(test, None, ["notumor"], ClinicalSettings(prevalence=0.05, cost_fn=5, cost_fp=1), **KW)
    for key in ("thresholds", "recalibration", "conformal", "cost"):
        assert entry[key] == {"available": False, "reason": NO_VALIDATION}, key
    assert entry["prevalence"]["available"] is False
    assert entry["selective"]["operating_points"] == [] or entry["selective"]["operating_points_reason"]
    assert entry["selective"]["aurc"]["value"] is not None, "what needs no choice still runs"
    findings = clinical_findings([{"name": "m", "clinical": entry}], None)
    assert [f["level"] for f in findings] == ["warning"] and "cannot be chosen honestly" in findings[0]["text"]


def test_no_healthy_class_and_multilabel_are_explained_not_zero():
    val, test = _preds(200, 4, split="val"), _preds(200, 5)
    entry = clinical_entry(test, val, [], ClinicalSettings(prevalence=0.1), **KW)
    assert entry["thresholds"]["available"] is False and "--negative-class" in entry["thresholds"]["reason"]
    assert entry["conformal"]["lac"]["coverage"]["value"] is not None  # needs no healthy class
    ml = Predictions(model_name="m", class_names=["a", "b"], task="multilabel", sample_ids=np.array(["1", "2"]),
                     y_true=np.array([[1, 0], [0, 1]]), probs=np.array([[0.9, 0.2], [0.1, 0.8]]))
    assert clinical_entry(ml, None, [], ClinicalSettings(), **KW)["available"] is False
    assert clinical_comparison([ml], [], ClinicalSettings(), n_bootstrap=0, seed=0)["available"] is False


def test_decision_curves_cover_every_model_on_the_same_samples():
    a, b = _preds(300, 6, "a"), _preds(300, 6, "b", sharp=0.5)
    comp = clinical_comparison([a, b], ["notumor"], ClinicalSettings(prevalence=0.2), n_bootstrap=50, seed=0)
    curves = comp["decision_curves"]
    assert set(curves["models"]) == {"a", "b"} and curves["prevalence"]["value"] == 0.2
    t = np.asarray(curves["thresholds"])
    # treat all at a given prevalence: the closed form pi - (1 - pi) t / (1 - t)
    np.testing.assert_allclose(curves["treat_all"]["net_benefit"], 0.2 - 0.8 * t / (1 - t), rtol=1e-12, atol=1e-15)


def test_recalibrated_predictions_are_a_named_variant_and_the_originals_stay():
    val, test = _preds(400, 7, split="val", sharp=4.0), _preds(300, 8, sharp=4.0)
    before = test.probs.copy()
    variant = recalibrated_variant(test, val, ["notumor"])
    assert variant.model_name == "m (temperature-scaled)" and variant.provenance["variant"] == "temperature-scaled"
    np.testing.assert_array_equal(test.probs, before)
    np.testing.assert_array_equal(variant.probs.argmax(1), test.probs.argmax(1))  # T > 0 keeps the ranking
    assert not np.allclose(variant.probs, test.probs)
    assert recalibrated_variant(test, None, ["notumor"]) is None


@pytest.mark.parametrize("text, value", [("0.02", 0.02), ("2%", 0.02), (" 0.5 ", 0.5), (None, None)])
def test_parse_prevalence(text, value):
    assert parse_prevalence(text) == pytest.approx(value) if value else parse_prevalence(text) is None


@pytest.mark.parametrize("text", ["0", "1", "150%", "x", "-0.1", "٠.٥"])
def test_bad_prevalence_is_one_line(text):
    with pytest.raises(MedauditError) as exc:
        parse_prevalence(text)
    assert exc.value.param == "prevalence" and "\n" not in str(exc.value)


def test_parse_cost_and_its_errors():
    assert parse_cost("FN=10,FP=1") == (10.0, 1.0) and parse_cost("fp=2, fn=5") == (5.0, 2.0)
    for bad in ("FN=10", "FN=10,FP=1,FN=2", "FN=a,FP=1", "TP=1,FP=1", "10,1"):
        with pytest.raises(MedauditError) as exc:
            parse_cost(bad)
        assert exc.value.param == "cost"
    for kw in ({"cost_fn": -1, "cost_fp": 1}, {"cost_fn": 0, "cost_fp": 0}, {"cost_fn": 1},
               {"conformal_alpha": 1.0}, {"delta": 0}, {"prevalence": 1.2}):
        with pytest.raises(MedauditError):
            ClinicalSettings(**kw)


# -- the report reuses the validation samples a model was selected on ----------------------


@pytest.fixture(scope="module")
def kaggle_layout(tmp_path_factory):
    """Training/Testing folders only (no val), and a checkpoint trained there (it carves val)."""
    from medaudit.cli import main
    from medaudit.data import make_demo_dataset

    root = tmp_path_factory.mktemp("kaggle")
    data = make_demo_dataset(root / "data", n_train=6, n_val=1, n_test=3, size=16)
    shutil.rmtree(data / "val")
    (data / "medaudit-demo.json").unlink()
    r = CliRunner().invoke(main, ["train", "--data", str(data), "--model", "resnet18", "--img-size", "16",
                                  "--epochs", "1", "--batch-size", "8", "--val-fraction", "0.25", "--quiet",
                                  "-o", str(root / "r18.pt")])
    assert r.exit_code == 0, r.output
    return data, root / "r18.pt"


def _report(data, ckpt, out):
    from medaudit.cli import main

    args = ["report", "--models", str(ckpt), "--data", str(data), "--no-bench", "--no-cam", "--format", "json",
            "--bootstrap", "20", "--quiet", "-o", str(out)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    return json.loads((out / "report.json").read_text()), r.output


def test_the_report_chooses_on_the_validation_samples_carved_at_training(kaggle_layout, tmp_path):
    import torch

    data, ckpt = kaggle_layout
    recorded = torch.load(ckpt, weights_only=True)["training"]["validation"]
    snap, _ = _report(data, ckpt, tmp_path / "rep")
    m = snap["models"][0]
    assert m["clinical"]["validation"]["split"] == "val (carved from train)"
    assert m["clinical"]["validation"]["n"] == recorded["n"] == len(recorded["sample_ids"])
    assert m["clinical"]["validation"]["fingerprint"] == recorded["fingerprint"]
    assert {p["chosen_on"] for p in m["operating_points"]["points"] if p["name"] != "default_0.5"} == {"val"}
    assert "sample_ids" not in m["checkpoint"]["training"]["validation"], "ids stay in the checkpoint"
    assert any("carved at training" in f["text"] for f in snap["findings"])
    # the recalibrated predictions are a named variant file beside the originals, usable by compare
    (variant,) = m["predictions"]["variants"]
    loaded = Predictions.load(tmp_path / "rep" / variant["file"])
    original = Predictions.load(tmp_path / "rep" / m["predictions"]["file"])
    assert loaded.model_name == "r18 (temperature-scaled)" and loaded.provenance["variant"] == "temperature-scaled"
    assert (loaded.sample_ids == original.sample_ids).all() and not np.allclose(loaded.probs, original.probs)


def test_a_carve_the_data_no_longer_holds_is_not_used(kaggle_layout, tmp_path):
    import torch

    data, ckpt = kaggle_layout
    changed = tmp_path / "data"
    shutil.copytree(data, changed)
    first = torch.load(ckpt, weights_only=True)["training"]["validation"]["sample_ids"][0]
    (changed / first).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snap, output = _report(changed, ckpt, tmp_path / "rep")
    assert "validation samples recorded at training" in output and "data changed since training" in output
    assert snap["models"][0]["clinical"]["validation"]["split"] is None
    assert {p["chosen_on"] for p in snap["models"][0]["operating_points"]["points"]} <= {"fixed", "test"}


def test_a_cost_matrix_csv_is_read_in_class_order_and_checked(tmp_path):
    from medaudit.clinical import cost_matrix_array, read_cost_matrix
    from medaudit.metrics.decision import cost_matrix_decisions

    path = tmp_path / "costs.csv"
    # columns in another order than the classes: read by name, not by position
    path.write_text("true,pituitary,glioma,meningioma,notumor\n"
                    "glioma,1,0,1,10\nmeningioma,1,1,0,10\nnotumor,1,1,1,0\npituitary,0,1,1,10\n")
    matrix = read_cost_matrix(path)
    array = cost_matrix_array(matrix, CLASSES)
    assert array[CLASSES.index("glioma"), CLASSES.index("notumor")] == 10 and array[2, 2] == 0
    test = _preds(200, 9)
    entry = clinical_entry(test, None, ["notumor"], ClinicalSettings(cost_matrix=matrix), **KW)
    direct = cost_matrix_decisions(test.y_true, test.probs, CLASSES, array, n_bootstrap=50, seed=0)
    assert entry["cost_matrix"] == direct, "needs no validation: nothing is chosen"
    for text, fragment in (("true,glioma,notumor\nglioma,0,1\nnotumor,1,0\n", "missing meningioma, pituitary"),
                           ("true,a\nx,1\n", "expected a header"),
                           ("true,glioma,x\nglioma,0,-1\nx,1,0\n", "costs must be finite and >= 0"),
                           ("true,glioma,x\nglioma,0,y\nx,1,0\n", "not a number")):
        path.write_text(text)
        with pytest.raises(MedauditError, match=fragment) as exc:
            ClinicalSettings(cost_matrix=read_cost_matrix(path)).check_classes(CLASSES)
        assert exc.value.param == "cost_matrix"
