"""External cohorts: per-cohort metrics as compute_metrics, unpaired drops against hand-computed
points and the normal approximation of two independent samples, findings, sites."""

from __future__ import annotations

import numpy as np
import pytest

from medaudit.external import cohort_entry, external_block, external_findings, site_entries, unpaired_drops
from medaudit.metrics import compute_metrics, fn_risk
from medaudit.predictions import Predictions

CLASSES = ["glioma", "meningioma", "notumor"]
NEG = ["notumor"]


def _preds(n, acc, seed, name="m", site=None, prior=(1 / 3, 1 / 3, 1 / 3)):
    """Predictions that are right with probability ``acc`` per sample (else a random other class)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=prior)
    right = rng.random(n) < acc
    pred = np.where(right, y, (y + rng.integers(1, 3, size=n)) % 3)
    logits = rng.normal(0, 0.5, size=(n, 3))
    logits[np.arange(n), pred] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    meta = None if site is None else {"site": np.asarray(site)}
    return Predictions(model_name=name, class_names=CLASSES, task="multiclass",
                       sample_ids=[f"{seed}-{i}" for i in range(n)], y_true=y, probs=probs, metadata=meta)


def test_drop_points_are_the_difference_of_the_two_samples_metrics():
    a, b = _preds(150, 0.9, 1), _preds(120, 0.7, 2)
    drops = unpaired_drops(a, b, NEG, n_bootstrap=200, seed=0)
    ma = compute_metrics(a.y_true, a.probs, CLASSES, "multiclass", n_bootstrap=0)
    mb = compute_metrics(b.y_true, b.probs, CLASSES, "multiclass", n_bootstrap=0)
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "auc_macro", "ece"):
        assert drops[key]["value"] == pytest.approx(ma[key]["value"] - mb[key]["value"], abs=1e-9), key
        assert drops[key]["internal"] == pytest.approx(ma[key]["value"])
    ra = fn_risk(a.y_true, a.y_pred, CLASSES, NEG, a.sample_ids)["overall"]["value"]
    rb = fn_risk(b.y_true, b.y_pred, CLASSES, NEG, b.sample_ids)["overall"]["value"]
    assert drops["missed_disease_rate"]["value"] == pytest.approx(ra - rb)
    assert not drops["missed_disease_rate"]["higher_is_better"]
    assert drops["balanced_accuracy"]["ci_low"] > 0  # 0.9 vs 0.7 on 120+ samples
    assert drops["balanced_accuracy"]["ci_method"] == "unpaired-bootstrap"


def test_unpaired_interval_width_matches_two_independent_samples():
    # Balanced accuracy resampled within classes: var = sum_k r_k (1 - r_k) / n_k / C^2 on each side,
    # and the two sides add (independent). The percentile interval must be about 2 * 1.96 * sd wide.
    a, b = _preds(600, 0.85, 3), _preds(300, 0.7, 4)
    d = unpaired_drops(a, b, NEG, n_bootstrap=2000, seed=1)["balanced_accuracy"]

    def var(p):
        y, yp = p.y_true, p.y_pred
        r = np.array([(yp[y == k] == k).mean() for k in range(3)])
        n = np.bincount(y, minlength=3)
        return float((r * (1 - r) / n).sum() / 9)

    expected = 2 * 1.96 * np.sqrt(var(a) + var(b))
    assert d["ci_high"] - d["ci_low"] == pytest.approx(expected, rel=0.12)
    # a paired-style (one sample only) width would be far narrower: the cohort's variance counts
    assert d["ci_high"] - d["ci_low"] > 1.3 * 2 * 1.96 * np.sqrt(var(a))


def test_same_accuracy_gives_an_interval_around_zero_and_no_warning():
    a, b = _preds(200, 0.8, 5), _preds(200, 0.8, 6)
    entry = cohort_entry("site_b", "data/b", [a], [b], NEG, n_bootstrap=300)
    d = entry["models"][0]["drop"]["balanced_accuracy"]
    assert d["ci_low"] < 0 < d["ci_high"]
    found = external_findings(external_block("test", [entry], None))
    assert not [f for f in found if f["level"] == "warning" and "loses" in f["text"]]


def test_cohort_entry_contract_and_findings():
    ref = [_preds(200, 0.92, 7, "r18"), _preds(200, 0.9, 7, "vit")]
    coh = [_preds(150, 0.6, 8, "r18", prior=(0.45, 0.45, 0.1)), _preds(150, 0.88, 8, "vit", prior=(0.45, 0.45, 0.1))]
    entry = cohort_entry("site_b", "data/b", ref, coh, NEG, n_bootstrap=300)
    assert set(entry) == {"name", "spec", "n", "class_counts", "models", "shift"}
    assert entry["n"] == 150 and sum(entry["class_counts"].values()) == 150
    m = entry["models"][0]
    assert {"name", "metrics", "drop", "missed_disease"} <= set(m)
    assert m["metrics"]["missed_disease_rate"]["value"] == m["missed_disease"]["overall"]["value"]
    shift = entry["shift"]
    assert shift["model"] == "r18" and shift["verdict"] in (
        "no shift detected", "label shift", "covariate shift", "shift, kind unclear")
    assert set(shift["label_shift"]["prevalence"]) == set(CLASSES)
    found = external_findings(external_block("test", [entry], None))
    loses = [f for f in found if f["model"] == "r18" and "loses" in f["text"] and "balanced accuracy" in f["text"]]
    assert loses and loses[0]["level"] == "warning" and "site_b" in loses[0]["text"]
    assert all(f["topic"] == "external" for f in found)


def test_sites_compare_each_site_with_the_others():
    rng = np.random.default_rng(9)
    site = rng.choice(["A", "B"], size=240)
    p = _preds(240, 0.85, 9, site=site)
    entries = site_entries([p], NEG, n_bootstrap=200)
    assert [e["name"] for e in entries] == ["site = A", "site = B"]
    assert entries[0]["n"] == int((site == "A").sum())
    inside = p.subset(np.flatnonzero(site == "A"))
    rest = p.subset(np.flatnonzero(site != "A"))
    direct = unpaired_drops(rest, inside, NEG, n_bootstrap=200)
    assert entries[0]["models"][0]["drop"]["balanced_accuracy"] == direct["balanced_accuracy"]
    assert site_entries([_preds(50, 0.8, 10)], NEG) is None  # no site column


def test_a_withheld_interval_has_no_p_value():
    a, b = _preds(12, 0.9, 11), _preds(6, 0.5, 12)  # fewer than MIN_BOOTSTRAP_N on one side
    d = unpaired_drops(a, b, NEG, n_bootstrap=100)["balanced_accuracy"]
    assert d["value"] is not None and d["ci_low"] is None and d["ci_reason"] and d["p_value"] is None
