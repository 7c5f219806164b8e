"""Plain-language findings: significance only after Holm, numbers in every claim, no overstatement."""

from __future__ import annotations

import numpy as np
import pytest

from medaudit.compare import compare_models
from medaudit.findings import comparison_findings, model_findings
from medaudit.predictions import Predictions

SETTINGS = {"target_sensitivity": 0.95, "negative_classes": ["normal"]}


def _value(v, lo=None, hi=None, reason=None, **extra):
    return {"value": v, "ci_low": lo, "ci_high": hi, "ci_method": "wilson" if lo is not None else None,
            "reason": reason, **extra}


def _model(**over):
    entry = {
        "name": "resnet18",
        "checkpoint": {"selected_on": "val"},
        "metrics": {
            "accuracy": _value(0.95, 0.93, 0.97),
            "ece": _value(0.02, 0.01, 0.03),
            "per_class": {"normal": {"support": 200, "auc": _value(0.9)},
                          "pneumonia": {"support": 300, "auc": _value(0.9)}},
        },
        "fn_risk": {"negative_classes": ["normal"],
                    "overall": _value(0.01, 0.003, 0.03, k=3, n=300),
                    "per_class": {"pneumonia": {"rate": _value(0.01, 0.003, 0.03, k=3, n=300)}}},
        "operating_points": None,
    }
    entry.update(over)
    return entry


def _check_shape(findings):
    for f in findings:
        assert set(f) == {"level", "text", "model"}
        assert f["level"] in ("info", "warning", "critical") and f["text"]


def test_healthy_model_has_only_info():
    out = model_findings(_model(), SETTINGS)
    _check_shape(out)
    assert [f["level"] for f in out] == ["info"]
    assert "3 of 300" in out[0]["text"] and "1.0%" in out[0]["text"] and out[0]["model"] == "resnet18"


@pytest.mark.parametrize(
    "overall, level",
    [
        (_value(0.10, 0.07, 0.14, k=30, n=300), "critical"),  # even the lower bound is above 5%
        (_value(0.06, 0.03, 0.10, k=18, n=300), "warning"),  # above 5%, interval includes it
        (_value(0.0, 0.0, 0.012, k=0, n=300), None),  # nothing missed: nothing to say
    ],
)
def test_missed_disease_levels(overall, level):
    m = _model()
    m["fn_risk"]["overall"] = overall
    out = [f for f in model_findings(m, SETTINGS) if "disease images" in f["text"]]
    assert [f["level"] for f in out] == ([level] if level else [])


def test_selection_calibration_undefined_small_support():
    m = _model(checkpoint={"selected_on": "test"})
    m["metrics"]["ece"] = _value(0.15, 0.12, 0.18)
    m["metrics"]["calibration"] = {"bin_confidence": [0.9, None], "bin_accuracy": [0.7, None], "bin_count": [10, 0]}
    m["metrics"]["per_class"]["rare"] = {"support": 5, "auc": _value(None, reason="only 1 positive")}
    m["metrics"]["kappa_quadratic"] = None
    m["operating_points"] = {"points": [{"name": "youden", "chosen_on": "test"},
                                        {"name": "target_sensitivity_0.95", "chosen_on": "val",
                                         "target": 0.95, "reached_on_choice_split": False}]}
    out = model_findings(m, SETTINGS)
    _check_shape(out)
    text = " | ".join(f["text"] for f in out)
    assert "selected" in text and "test split" in text
    assert "ECE = 0.150" in text and "overconfident" in text
    assert "auc[rare] (only 1 positive)" in text
    assert "fewer than 30 test samples (rare)" in text
    assert "'youden' threshold" in text and "could not reach" in text
    levels = {f["level"] for f in out}
    assert "warning" in levels and "critical" not in levels


# -- comparison findings ----------------------------------------------------------------
def _pair(b01, b10, p, p_holm, **over):
    pair = {
        "a": "A", "b": "B", "both": 3, "only_a": b01, "only_b": b10, "jaccard": 0.5,
        "relation_kind": "overlapping", "relation": "errors(A) and errors(B) overlap partially",
        "relation_text": f"neither ⊇ — 3 shared, {b01} A-only, {b10} B-only",
        "accuracy_a": 1 - (3 + b01) / 1000, "accuracy_b": 1 - (3 + b10) / 1000,
        "mcnemar": {"b01": b01, "b10": b10, "n_discordant": b01 + b10, "p_value": p, "p_mid": p, "p_holm": p_holm},
        "delong": None, "bootstrap_diff": {"recall": {}}, "missed_disease": None,
    }
    pair.update(over)
    return pair


def _comparisons(*pairs, note=None):
    return {"pairs": list(pairs), "hard_samples": [], "multiple_testing": {"note": note}}


def test_significance_uses_holm_adjusted_p():
    raw_only = comparison_findings(_comparisons(_pair(2, 12, 0.013, 0.052)), [])
    assert "but the difference is not significant" in raw_only[0]["text"]
    assert "McNemar exact p = 0.013, Holm-adjusted p = 0.052" in raw_only[0]["text"]
    sig = comparison_findings(_comparisons(_pair(2, 30, 1e-6, 3e-6)), [])
    assert "A is more accurate than B" in sig[0]["text"] and "and the difference is significant" in sig[0]["text"]
    assert "p = < 0.001" not in sig[0]["text"] and "Holm-adjusted p < 0.001" in sig[0]["text"]
    tie = comparison_findings(_comparisons(_pair(4, 4, 1.0, 1.0)), [])
    assert "same accuracy" in tie[0]["text"]


def test_auc_and_recall_findings_never_overstate():
    delong = {"auc_a": 0.91, "auc_b": 0.89, "diff": 0.02, "ci_low": -0.01, "ci_high": 0.05, "p_value": 0.2,
              "p_holm": 0.2, "per_class": None}
    recall = {"recall": {"x": {"diff": 0.05, "ci_low": 0.01, "ci_high": 0.09},
                         "y": {"diff": 0.05, "ci_low": -0.01, "ci_high": 0.11},
                         "z": {"diff": -0.06, "ci_low": -0.10, "ci_high": -0.02}}}
    out = comparison_findings(_comparisons(_pair(5, 6, 1.0, 1.0, delong=delong, bootstrap_diff=recall),
                                           note="7 tests"), [{"name": "A"}, {"name": "B"}])
    _check_shape(out)
    text = [f["text"] for f in out]
    assert any("not significant" in t and "DeLong p = 0.200" in t for t in text)
    assert any("Recall of 'x'" in t and "not adjusted" in t for t in text)
    assert not any("Recall of 'y'" in t for t in text)  # interval includes 0: no claim
    # B higher: the interval is of B - A, as the sentence says it
    assert any("Recall of 'z': B is higher than A by 6.0% (paired bootstrap 95% CI 2.0% to 10.0%" in t for t in text)
    assert text[-1] == "7 tests"


def test_end_to_end_superset_is_described_not_claimed():
    rng = np.random.default_rng(0)
    n = 1311
    y = rng.integers(0, 2, n)
    p1 = np.where(y == 1, 0.9, 0.1)
    ids = [f"test/{i}" for i in range(n)]
    err = rng.choice(n, 5, replace=False)
    preds = []
    for name, wrong in (("ResNet-18", err[:4]), ("ViT-Tiny", err)):
        q = p1.copy()
        q[wrong] = 1 - q[wrong]
        preds.append(Predictions(name, ["normal", "pneumonia"], "binary", ids, y, np.c_[1 - q, q]))
    c = compare_models(preds, negative_classes=["normal"], n_bootstrap=100)
    out = comparison_findings(c, [{"name": "ResNet-18", "checkpoint": {"selected_on": "val"}},
                                  {"name": "ViT-Tiny", "checkpoint": {"selected_on": "test"}}])
    _check_shape(out)
    text = " | ".join(f["text"] for f in out)
    assert "ResNet-18 is more accurate than ViT-Tiny (99.7% vs 99.6%), but the difference is not significant" in text
    assert "errors(ViT-Tiny) ⊇ errors(ResNet-18): yes — 4 shared" in text
    assert "not evidence that one model is better" in text
    assert "misclassified by every model" in text
    assert any(f["level"] == "warning" and "different splits" in f["text"] for f in out)
    assert " significant (" not in text.replace("not significant (", "")
    assert comparison_findings(None, []) == []


def test_dataset_findings_flag_leakage_into_the_evaluated_split():
    from medaudit.findings import dataset_findings

    ds = {"split_evaluated": "test", "duplicates": {"across": {"train/test": 1, "train/val": 8, "val/test": 0}}}
    out = dataset_findings(ds)
    assert [f["level"] for f in out] == ["warning", "info"]
    assert "1 image(s) of the evaluated 'test' split" in out[0]["text"] and "'train'" in out[0]["text"]
    assert dataset_findings({"split_evaluated": "test", "duplicates": None}) == []


def test_missed_disease_difference_is_a_finding_only_when_its_interval_excludes_zero():
    from medaudit.findings import _missed_diff_finding

    pair = {"a": "r18", "b": "vit", "bootstrap_diff": {"missed_disease_rate": {
        "diff": -0.06, "ci_low": -0.10, "ci_high": -0.02, "reason": None}}}
    (f,) = _missed_diff_finding(pair)
    assert f["level"] == "warning" and f["text"].startswith("vit misses more disease than r18")
    assert "higher by 6.0% (paired bootstrap 95% CI 2.0% to 10.0%)" in f["text"]  # stated as vit - r18
    pair["bootstrap_diff"]["missed_disease_rate"]["ci_high"] = 0.01
    assert _missed_diff_finding(pair) == []
