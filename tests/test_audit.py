import json

import numpy as np
import pytest

from medaudit.audit import AuditSettings, ModelResult, assemble_snapshot, resolve_negative_classes
from medaudit.errors import MedauditError
from medaudit.predictions import Predictions

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


def _preds(name, seed, n=80):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), n // 4)
    logits = rng.normal(size=(n, 4)) + 2.0 * np.eye(4)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return Predictions(name, CLASSES, "multiclass", [f"s{i:03d}" for i in range(n)], y, p)


def _result(p):
    return ModelResult(preds=p, checkpoint={"arch": "x"}, prediction_info={"n": p.n_samples})


def test_negative_class_resolution():
    s = AuditSettings()
    assert resolve_negative_classes(CLASSES, "multiclass", s) == (["notumor"], "auto")
    assert resolve_negative_classes(["malignant", "normal_benign"], "binary", s)[0] == ["normal_benign"]
    assert resolve_negative_classes(["benign", "malignant"], "binary", s) == (["benign"], "binary-default")
    assert resolve_negative_classes(["a", "b"], "binary", AuditSettings(positive_class="a"))[0] == ["b"]
    for task in ("multiclass", "multilabel", "ordinal"):  # silently ignored before: refused now
        with pytest.raises(MedauditError, match="applies to binary tasks only") as exc:
            resolve_negative_classes(CLASSES, task, AuditSettings(positive_class="glioma"))
        assert exc.value.param == "positive_class"
    with pytest.raises(MedauditError, match="'healthy' is not a class; classes are: glioma") as exc:
        resolve_negative_classes(CLASSES, "multiclass", AuditSettings(negative_classes=["healthy"]))
    assert exc.value.param == "negative_classes"  # the CLI prefixes --negative-class
    assert resolve_negative_classes(["x", "y", "z"], "multiclass", s) == ([], "none found")
    with pytest.raises(MedauditError, match="'a' is both the positive class and a negative class") as exc:
        resolve_negative_classes(["a", "b"], "binary", AuditSettings(negative_classes=["a"], positive_class="a"))
    assert exc.value.param == "positive_class"
    with pytest.raises(MedauditError, match="every class is given as negative") as exc:
        resolve_negative_classes(["a", "b"], "binary", AuditSettings(negative_classes=["a", "b"]))
    assert exc.value.param == "negative_classes"
    with pytest.raises(MedauditError, match="'c' is not a class") as exc:
        resolve_negative_classes(["a", "b"], "binary", AuditSettings(positive_class="c"))
    assert exc.value.param == "positive_class"


@pytest.mark.parametrize("names,settings,level", [
    (CLASSES, AuditSettings(bootstrap=0), "info"),                       # auto-detected 'notumor'
    (["benign", "malignant"], AuditSettings(bootstrap=0), "warning"),    # guessed: first class of a binary task
    (CLASSES, AuditSettings(bootstrap=0, negative_classes=["notumor"]), None),  # given: nothing to flag
])
def test_guessed_negative_classes_are_said_in_findings_and_settings(names, settings, level):
    n = 40
    y = np.arange(n) % len(names)
    p = np.full((n, len(names)), 1.0 / len(names))
    task = "binary" if len(names) == 2 else "multiclass"
    preds = Predictions("m", names, task, [f"s{i}" for i in range(n)], y, p)
    snap = assemble_snapshot([_result(preds)], dataset={"spec": "mem"}, settings=settings, title="t")
    note = snap["settings"]["negative_classes_note"]
    said = [f for f in snap["findings"] if "treat" in f["text"] and "as healthy" in f["text"]]
    if level is None:
        assert note == "chosen explicitly (--negative-class)" and not said
    else:
        assert [f["level"] for f in said] == [level] and note in said[0]["text"]


def test_snapshot_wires_risk_into_metrics_and_is_deterministic():
    settings = AuditSettings(bootstrap=100, seed=3)
    snaps = []
    for _ in range(2):
        results = [_result(_preds("a", 0)), _result(_preds("b", 1))]
        snaps.append(assemble_snapshot(results, dataset={"spec": "mem"}, settings=settings, title="t"))
    a, b = snaps
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    m = a["models"][0]
    # missed-disease rate for glioma = share of glioma samples predicted notumor, by hand
    p = _preds("a", 0)
    gl = p.y_true == 0
    expected = float((p.y_pred[gl] == 2).mean())
    assert m["metrics"]["per_class"]["glioma"]["missed_disease_rate"]["value"] == pytest.approx(expected)
    assert m["metrics"]["missed_disease_rate"] == m["fn_risk"]["overall"]
    assert a["comparisons"]["models"] == ["a", "b"] and a["findings"]
    assert m["operating_points"]["points"][0]["threshold"] == 0.5
    json.dumps(a, allow_nan=False)  # valid JSON: no NaN anywhere


def test_duplicate_names_and_empty():
    with pytest.raises(MedauditError, match="unique") as exc:
        assemble_snapshot([_result(_preds("a", 0)), _result(_preds("a", 1))], dataset={}, settings=AuditSettings(
            bootstrap=0), title="t")
    assert exc.value.param == "names"
    with pytest.raises(MedauditError, match="no models") as exc:
        assemble_snapshot([], dataset={}, settings=AuditSettings(), title="t")
    assert exc.value.param == "models"


def test_templates_are_packaged():
    from fnmatch import fnmatch
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parents[1]
    cfg = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = cfg["tool"]["setuptools"]["package-data"]["medaudit.templates"]
    for f in (root / "templates").rglob("*"):
        if f.is_file() and f.name not in ("README.md", "__init__.py") and "__pycache__" not in f.parts:
            rel = f.relative_to(root / "templates").as_posix()
            assert any(fnmatch(rel, p) for p in patterns), f"{rel} would be missing from the wheel"
    # every package is in the wheel: tests/test_packaging.py builds one and checks it


def test_binary_headline_ap_is_the_disease_class():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(4)
    y = (rng.random(200) < 0.3).astype(int)  # class 0 'malignant' is the minority disease class
    y = 1 - y
    score_malignant = np.clip((y == 0) * 0.3 + rng.random(200) * 0.7, 0, 1)
    probs = np.stack([score_malignant, 1 - score_malignant], 1)
    p = Predictions("m", ["malignant", "normal_benign"], "binary", [f"s{i}" for i in range(200)], y, probs)
    snap = assemble_snapshot([_result(p)], dataset={}, settings=AuditSettings(bootstrap=0), title="t")
    ap = snap["models"][0]["metrics"]["ap_macro"]["value"]
    assert ap == pytest.approx(average_precision_score(y == 0, score_malignant))
    assert ap != pytest.approx(average_precision_score(y == 1, 1 - score_malignant))
