"""medaudit.clinical: what runs on which split, what is skipped and why; the report reuses the
validation samples a model was selected on."""

from __future__ import annotations

import json
import re
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
    parse_prevalence_spec,
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


# -- prevalence per disease class (one-vs-rest) and Platt scaling beside temperature scaling --------


def test_ppv_npv_per_class_are_bayes_of_the_test_counts_at_that_class_threshold():
    val, test = _preds(400, 11, split="val"), _preds(300, 12)
    settings = ClinicalSettings(prevalence_per_class={"glioma": 0.02, "pituitary": 0.005})
    entry = clinical_entry(test, val, ["notumor"], settings, **KW)
    assert entry["prevalence"] is None, "no prevalence of disease as a whole was given"
    assert set(entry["prevalence_per_class"]) == {"glioma", "pituitary"}
    for cls, pi in settings.prevalence_per_class.items():
        blk = entry["prevalence_per_class"][cls]
        k = CLASSES.index(cls)
        direct = guaranteed_operating_points(val.y_true, val.probs, test.y_true, test.probs, CLASSES,
                                             disease_class=cls, target=0.9, delta=0.05)
        assert blk["available"] and blk["positive"] == cls and blk["prevalence"] == pi
        assert blk["thresholds"]["points"] == direct["points"] and blk["score"] == f"p({cls})"
        # The per-class threshold is not the disease-vs-healthy one: it was chosen for p(cls) alone.
        assert [p["threshold"] for p in direct["points"]] != [p["threshold"] for p in entry["thresholds"]["points"]]
        for point in direct["points"]:
            y = (test.y_true == k).astype(int)
            called = (test.probs[:, k] >= point["threshold"]).astype(int)
            tn, fp, fn, tp = confusion_matrix(y, called, labels=[0, 1]).ravel()
            sens, spec = tp / (tp + fn), tn / (tn + fp)
            got = blk["points"][point["name"]]
            assert (got["sensitivity"]["k"], got["sensitivity"]["n"]) == (tp, tp + fn)
            assert got["ppv"]["value"] == pytest.approx(sens * pi / (sens * pi + (1 - spec) * (1 - pi)), rel=1e-12)
            assert got["npv"]["value"] == pytest.approx(spec * (1 - pi) / (spec * (1 - pi) + (1 - sens) * pi),
                                                        rel=1e-12)
            assert got["ppv"]["ci_low"] <= got["ppv"]["value"] <= got["ppv"]["ci_high"]


def test_per_class_prevalence_without_validation_is_skipped_with_the_reason():
    entry = clinical_entry(_preds(200, 13), None, ["notumor"],
                           ClinicalSettings(prevalence_per_class={"glioma": 0.02}), **KW)
    assert entry["prevalence_per_class"] == {"glioma": {"available": False, "reason": NO_VALIDATION,
                                                        "prevalence": 0.02}}


def test_prevalence_per_class_and_platt_keys_only_appear_when_they_apply():
    """Snapshots without them keep their keys (the pinned demo is multiclass, without --prevalence)."""
    val, test = _preds(200, 14, split="val"), _preds(150, 15)
    entry = clinical_entry(test, val, ["notumor"], ClinicalSettings(prevalence=0.1), **KW)
    assert "prevalence_per_class" not in entry and "recalibration_platt" not in entry
    assert "prevalence_per_class" not in ClinicalSettings(prevalence=0.1).as_dict()
    given = ClinicalSettings(prevalence=0.1, prevalence_per_class={"glioma": 0.02})
    assert given.as_dict()["prevalence_per_class"] == {"glioma": 0.02}


@pytest.mark.parametrize("text, expected", [
    ("0.02", (0.02, None)), ("2%", (0.02, None)), (None, (None, None)),
    ("glioma=0.02", (None, {"glioma": 0.02})), (" glioma = 2% , pituitary=0.01", (None, {"glioma": 0.02,
                                                                                       "pituitary": 0.01})),
    ("0.1,glioma=0.02", (0.1, {"glioma": 0.02})), ("a=b=0.3", (None, {"a=b": 0.3})),
])
def test_parse_prevalence_spec(text, expected):
    overall, per_class = parse_prevalence_spec(text)
    assert overall == pytest.approx(expected[0]) if expected[0] else overall is None
    assert per_class == (pytest.approx(expected[1]) if expected[1] else None)


@pytest.mark.parametrize("text, fragment", [
    ("glioma=1.5", "prevalence of glioma: prevalence 1.5 must be in (0, 1)"),
    ("glioma=0", "must be in (0, 1)"), ("glioma=x", "'x' is not a number"), ("=0.02", "names no class"),
    ("glioma=0.02,glioma=0.01", "'glioma' is given twice"), ("0.1,0.2", "give one prevalence of disease"),
])
def test_bad_prevalence_spec_is_one_line(text, fragment):
    with pytest.raises(MedauditError, match=re.escape(fragment)) as exc:
        parse_prevalence_spec(text)
    assert exc.value.param == "prevalence" and "\n" not in str(exc.value)


@pytest.mark.parametrize("per_class, fragment", [
    ({"astrocytoma": 0.02}, "'astrocytoma' is not a class; classes are: glioma, meningioma, notumor, pituitary"),
    ({"glioma": 0.02, "notumor": 0.9}, "'notumor' is a healthy class"),
])
def test_check_classes_refuses_unknown_and_healthy_classes(per_class, fragment):
    with pytest.raises(MedauditError, match=re.escape(fragment)) as exc:
        ClinicalSettings(prevalence_per_class=per_class).check_classes(CLASSES, ["notumor"])
    assert exc.value.param == "prevalence"
    for bad in ({"glioma": 1.0}, {"glioma": -0.1}, {}, {"glioma": True}):
        with pytest.raises(MedauditError):
            ClinicalSettings(prevalence_per_class=bad)


def _binary(n, seed, split, slope=2.5, shift=0.8):
    """Miscalibrated two-class scores: the logit of p(pneumonia) is `slope` times, and `shift` above, the true one."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(scale=2.0, size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-true_logit))).astype(int)
    q = 1 / (1 + np.exp(-(slope * true_logit + shift)))
    return Predictions(model_name="m", class_names=["normal", "pneumonia"], task="binary",
                       sample_ids=np.array([f"{split}/{i}" for i in range(n)]), y_true=y,
                       probs=np.column_stack([1 - q, q]), provenance={"split": split})


def test_binary_tasks_fit_platt_beside_temperature_by_maximum_likelihood():
    from scipy import optimize, special

    from medaudit.metrics.recalibration import recalibrate

    val, test = _binary(600, 21, "val"), _binary(400, 22, "test")
    entry = clinical_entry(test, val, ["normal"], ClinicalSettings(), **KW)
    temperature, platt = entry["recalibration"], entry["recalibration_platt"]
    assert temperature["method"] == "temperature" and platt["method"] == "platt" and platt["fitted_on"] == "val"
    direct, after = recalibrate(val.y_true, val.probs, test.y_true, test.probs, val.class_names, method="platt",
                                negative_classes=["normal"], n_bins=10, n_bootstrap=50, seed=0)
    assert platt["test"] == direct["test"] and platt["parameters"] == direct["parameters"]
    # Independently: the logistic regression of y on logit(p) (Newton-free, by a generic minimiser).
    z = special.logit(val.probs[:, 1])

    def nll(ab):
        eta = ab[0] + ab[1] * z
        return np.sum(np.logaddexp(0, eta) - val.y_true * eta)

    a, b = optimize.minimize(nll, [0.0, 1.0], method="BFGS", options={"gtol": 1e-10}).x
    assert platt["parameters"]["intercept"] == pytest.approx(a, abs=1e-4)
    assert platt["parameters"]["slope"] == pytest.approx(b, abs=1e-4)
    # It undoes the planted miscalibration: the true logit is (logit(p) - 0.8) / 2.5.
    assert b == pytest.approx(1 / 2.5, rel=0.25) and a == pytest.approx(-0.8 / 2.5, abs=0.25)
    expected = special.expit(a + b * special.logit(test.probs[:, 1]))
    np.testing.assert_allclose(after[:, 1], expected, rtol=1e-6)
    # Its reliability diagram is drawn on the recalibrated probabilities, beside temperature scaling's.
    assert set(platt["reliability"]) == {"before", "after"}
    assert platt["reliability"]["before"] == temperature["reliability"]["before"]
    skipped = clinical_entry(test, None, ["normal"], ClinicalSettings(), **KW)
    assert skipped["recalibration_platt"] == {"available": False, "reason": NO_VALIDATION}


def test_platt_without_a_fit_says_why_and_draws_nothing():
    val, test = _binary(200, 23, "val"), _binary(100, 24, "test")
    val = Predictions(model_name="m", class_names=val.class_names, task="binary", sample_ids=val.sample_ids,
                      y_true=np.zeros_like(val.y_true), probs=val.probs, provenance={"split": "val"})
    platt = clinical_entry(test, val, ["normal"], ClinicalSettings(), **KW)["recalibration_platt"]
    assert platt["test"] is None and platt["parameters"]["reason"] and "reliability" not in platt


def test_report_refuses_a_healthy_or_unknown_class_prevalence_before_inference(kaggle_layout, tmp_path,
                                                                                monkeypatch):
    import medaudit.pipeline
    from medaudit.cli import main

    def no_inference(*a, **k):
        raise AssertionError("inference ran before the prevalence was checked")

    monkeypatch.setattr(medaudit.pipeline, "predict_cached", no_inference)
    data, ckpt = kaggle_layout
    for spec, fragment in (("notumor=0.02", "'notumor' is a healthy class"),
                           ("glioma=0.02,tumour=0.01", "'tumour' is not a class"),
                           ("glioma=2", "must be in (0, 1)")):
        r = CliRunner().invoke(main, ["report", "--models", str(ckpt), "--data", str(data), "--no-bench", "--no-cam",
                                      "--format", "json", "--quiet", "--prevalence", spec, "-o", str(tmp_path / "r")])
        assert r.exit_code == 2, r.output
        assert fragment in r.output and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
        assert not (tmp_path / "r").exists()


def test_report_with_a_prevalence_per_class_writes_and_gates_it(kaggle_layout, tmp_path):
    from medaudit.cli import main

    data, ckpt = kaggle_layout
    out = tmp_path / "rep"
    r = CliRunner().invoke(main, ["report", "--models", str(ckpt), "--data", str(data), "--no-bench", "--no-cam",
                                  "--format", "json", "--bootstrap", "20", "--quiet", "--prevalence", "glioma=2%",
                                  "--target-sensitivity", "0.5", "--gate", "ppv[glioma]@prev=0.02,naive>=0",
                                  "-o", str(out)])
    assert r.exit_code in (0, 1), r.output  # 1: the naive point may be undefined on a tiny validation split
    snap = json.loads((out / "report.json").read_text())
    assert snap["settings"]["clinical"]["prevalence_per_class"] == {"glioma": 0.02}
    blk = snap["models"][0]["clinical"]["prevalence_per_class"]["glioma"]
    assert blk["prevalence"] == 0.02 and blk["positive"] == "glioma"
    assert "ppv[glioma]@prev=0.02,naive" in r.output
