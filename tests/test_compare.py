"""Model comparison: exact overlap vs brute-force sets, the comparisons block, the CLI."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from medaudit.cli import main
from medaudit.compare import compare_models, exclusive_intersections, format_comparison_table, overlap
from medaudit.errors import MedauditError
from medaudit.predictions import Predictions

IDS = st.sets(st.integers(0, 15))


# -- overlap against brute-force set operations --------------------------------------------
@given(IDS, IDS)
@settings(max_examples=150, deadline=None)
def test_overlap_matches_set_operations(a, b):
    r = overlap(a, b, "A", "B")
    assert (r["both"], r["only_a"], r["only_b"]) == (len(a & b), len(a - b), len(b - a))
    if a | b:
        assert r["jaccard"] == pytest.approx(len(a & b) / len(a | b)) and r["jaccard_reason"] is None
    else:
        assert r["jaccard"] is None and r["jaccard_reason"]
    expected = (
        "both_empty" if not (a | b)
        else "equal" if a == b
        else "a_subset_b" if a < b
        else "b_subset_a" if b < a
        else "disjoint" if not (a & b)
        else "overlapping"
    )
    assert r["relation_kind"] == expected
    assert f"{len(a & b)} shared" in r["relation_text"] or expected == "both_empty"
    swapped = overlap(b, a, "B", "A")
    assert (swapped["only_a"], swapped["only_b"]) == (r["only_b"], r["only_a"])


def test_overlap_plain_text():
    r = overlap({1, 2, 3, 4}, {1, 2, 3, 4, 5}, "ResNet", "ViT")
    assert r["relation"] == "errors(ViT) ⊇ errors(ResNet)"
    assert r["relation_text"] == "errors(ViT) ⊇ errors(ResNet): yes — 4 shared, 0 ResNet-only, 1 ViT-only"
    assert overlap({1}, {2}, "a", "b")["relation_kind"] == "disjoint"
    assert "no misses" in overlap(set(), {2}, "a", "b", what="misses")["relation_text"]


@given(st.lists(IDS, min_size=1, max_size=4))
@settings(max_examples=100, deadline=None)
def test_exclusive_intersections_brute_force(sets_list):
    sets = {f"m{i}": s for i, s in enumerate(sets_list)}
    out = exclusive_intersections(sets)
    union = set().union(*sets.values())
    assert sum(r["count"] for r in out) == len(union)
    for r in out:
        inside = set.intersection(*(sets[m] for m in r["models"]))
        outside = set().union(*(s for m, s in sets.items() if m not in r["models"]))
        assert r["count"] == len(inside - outside) > 0
    counts = [r["count"] for r in out]
    assert counts == sorted(counts, reverse=True)


# -- compare_models ---------------------------------------------------------------------
def _binary_pair(n=300, seed=1):
    """ResNet with 4 errors, ViT with the same 4 plus 1 (the issue's scenario)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    ids = [f"test/{i}" for i in range(n)]
    err = rng.choice(n, 5, replace=False)

    def make(name, wrong):
        p1 = np.where(y == 1, 0.85, 0.15) + rng.uniform(-0.1, 0.1, n)  # never crosses 0.5
        p1[wrong] = 1 - p1[wrong]
        return Predictions(name, ["normal", "pneumonia"], "binary", ids, y, np.c_[1 - p1, p1])

    return make("resnet", err[:4]), make("vit", err), [ids[i] for i in err]


def test_compare_issue_scenario():
    a, b, err = _binary_pair()
    c = compare_models([a, b], negative_classes=["normal"], n_bootstrap=200)
    assert c["models"] == ["resnet", "vit"] and c["n"] == 300
    assert c["error_sets"]["resnet"]["n_errors"] == 4 and c["error_sets"]["vit"]["n_errors"] == 5
    assert set(c["error_sets"]["vit"]["ids"]) == set(err)
    (p,) = c["pairs"]
    assert (p["both"], p["only_a"], p["only_b"], p["jaccard"]) == (4, 0, 1, 0.8)
    assert p["relation"] == "errors(vit) ⊇ errors(resnet)"
    assert p["mcnemar"]["b01"] == 0 and p["mcnemar"]["b10"] == 1
    assert p["mcnemar"]["p_value"] == 1.0 and p["mcnemar"]["p_mid"] == pytest.approx(0.5)
    assert p["n_disagree"] == 1 and p["disagreement_rate"] == pytest.approx(1 / 300)
    assert sorted(c["hard_samples"]) == sorted(err[:4])
    assert c["intersections"] == [{"models": ["resnet", "vit"], "count": 4}, {"models": ["vit"], "count": 1}]
    dl = p["delong"]
    assert dl["positive"] == "pneumonia"
    assert dl["auc_a"] == pytest.approx(roc_auc_score(a.y_true, a.probs[:, 1]))
    assert dl["auc_b"] == pytest.approx(roc_auc_score(b.y_true, b.probs[:, 1]))
    assert dl["p_holm"] == dl["p_value"]  # a single test
    assert p["bootstrap_diff"]["accuracy"]["diff"] == pytest.approx(1 / 300)
    # Snapshot rules: JSON without NaN, deterministic.
    text = json.dumps(c, sort_keys=True, allow_nan=False)
    assert text == json.dumps(compare_models([a, b], negative_classes=["normal"], n_bootstrap=200),
                              sort_keys=True, allow_nan=False)


def test_missed_disease_overlap_brute_force():
    a, b, _ = _binary_pair(seed=4)
    c = compare_models([a, b], negative_classes=["normal"], n_bootstrap=0)
    miss = {p.model_name: {s for s, t, q in zip(p.sample_ids, p.y_true, p.y_pred, strict=True) if t == 1 and q == 0}
            for p in (a, b)}
    md = c["pairs"][0]["missed_disease"]
    assert (md["both"], md["only_a"], md["only_b"]) == (
        len(miss["resnet"] & miss["vit"]), len(miss["resnet"] - miss["vit"]), len(miss["vit"] - miss["resnet"]))
    assert md["n_disease"] == int((a.y_true == 1).sum())
    assert set(c["missed_sets"]["vit"]["ids"]) == miss["vit"]
    assert compare_models([a, b], negative_classes=[], n_bootstrap=0)["pairs"][0]["missed_disease"] is None


def test_alignment_does_not_change_results():
    a, b, _ = _binary_pair(seed=2)
    perm = np.random.default_rng(0).permutation(a.n_samples)
    b_shuffled = Predictions(b.model_name, b.class_names, b.task, b.sample_ids[perm], b.y_true[perm], b.probs[perm])
    kw = dict(negative_classes=["normal"], n_bootstrap=100)
    assert compare_models([a, b], **kw) == compare_models([a, b_shuffled], **kw)


def _multiclass(n_models=3, n=240, seed=0):
    rng = np.random.default_rng(seed)
    classes = ["normal", "glioma", "meningioma", "pituitary"]
    y = rng.integers(0, 4, n)
    ids = [f"s{i:03d}" for i in range(n)]
    out = []
    for m in range(n_models):
        logits = rng.normal(0, 1, (n, 4))
        logits[np.arange(n), y] += 1.5 + 0.5 * m
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        out.append(Predictions(f"m{m}", classes, "multiclass", ids, y, p))
    return out


def test_three_models_multiclass():
    preds = _multiclass()
    c = compare_models(preds, negative_classes=["normal"], n_bootstrap=100)
    assert [(p["a"], p["b"]) for p in c["pairs"]] == list(combinations(["m0", "m1", "m2"], 2))
    wrong = {p.model_name: set(p.sample_ids[~p.correct].tolist()) for p in preds}
    assert set(c["hard_samples"]) == wrong["m0"] & wrong["m1"] & wrong["m2"]
    assert sum(i["count"] for i in c["intersections"]) == len(set().union(*wrong.values()))
    for p in c["pairs"]:
        assert p["mcnemar"]["p_holm"] >= p["mcnemar"]["p_value"]
        dl = p["delong"]
        assert dl["p_value"] is None and dl["reason"] and set(dl["per_class"]) == set(preds[0].class_names)
        pa = next(q for q in preds if q.model_name == p["a"])
        for k, name in enumerate(pa.class_names):
            r = dl["per_class"][name]
            assert r["auc_a"] == pytest.approx(roc_auc_score(pa.y_true == k, pa.probs[:, k]))
            assert r["p_holm"] >= r["p_value"]
        assert dl["auc_a"] == pytest.approx(roc_auc_score(pa.y_true, pa.probs, multi_class="ovr", average="macro"))
    mt = c["multiple_testing"]
    assert mt["mcnemar_tests"] == 3 and mt["delong_tests"] == 12 and mt["note"]
    text = format_comparison_table(c)
    assert "m0 vs m1" in text and "Exclusive error intersections" in text


def test_multilabel_runs_without_missed_disease():
    rng = np.random.default_rng(0)
    y = (rng.random((80, 3)) < 0.4).astype(np.int8)
    preds = []
    for m, flip in enumerate((0.1, 0.2)):
        p = np.clip(np.where(y == 1, 0.8, 0.2) + rng.normal(0, 0.1, y.shape), 0, 1)
        p = np.where(rng.random(y.shape) < flip, 1 - p, p)
        preds.append(Predictions(f"m{m}", ["a", "b", "c"], "multilabel", [str(i) for i in range(80)], y, p))
    c = compare_models(preds, negative_classes=[], n_bootstrap=50)
    p = c["pairs"][0]
    assert p["missed_disease"] is None and c["missed_sets"] is None
    assert p["only_a"] + p["both"] == int((~preds[0].correct).sum())
    assert set(p["delong"]["per_class"]) == {"a", "b", "c"}


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: Predictions("vit", b.class_names, b.task, [f"x/{i}" for i in range(b.n_samples)], b.y_true, b.probs),
         "different samples"),
        (lambda b: Predictions("vit", ["healthy", "sick"], b.task, b.sample_ids, b.y_true, b.probs),
         "different class names"),
        (lambda b: Predictions("resnet", b.class_names, b.task, b.sample_ids, b.y_true, b.probs), "unique"),
        (lambda b: Predictions("vit", b.class_names, b.task, b.sample_ids, 1 - b.y_true, b.probs), "true labels"),
    ],
)
def test_compare_rejects_incomparable_inputs(mutate, message):
    a, b, _ = _binary_pair(n=50)
    with pytest.raises(MedauditError, match=message):
        compare_models([a, mutate(b)], negative_classes=["normal"], n_bootstrap=0)


def test_compare_rejects_bad_arguments():
    a, b, _ = _binary_pair(n=50)
    with pytest.raises(MedauditError, match="at least 2"):
        compare_models([a], negative_classes=[])
    with pytest.raises(MedauditError, match="'healthy'") as err:
        compare_models([a, b], negative_classes=["healthy"])
    assert err.value.param == "negative_classes"  # the CLI names its option; the library does not


# -- CLI ------------------------------------------------------------------------------
def test_cli_compare(tmp_path):
    a, b, _ = _binary_pair()
    pa, pb = a.save(tmp_path / "resnet.npz"), b.save(tmp_path / "vit.npz")
    out = tmp_path / "cmp.json"
    res = CliRunner().invoke(main, ["compare", str(pa), str(pb), "--negative-class", "normal",
                                    "--bootstrap", "100", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "errors(vit) ⊇ errors(resnet): yes — 4 shared" in res.output
    assert "not significant" in res.output and "0/1" in res.output
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert payload["comparisons"]["pairs"][0]["mcnemar"]["b10"] == 1 and payload["findings"]


def test_cli_compare_mismatched_samples_exit_2(tmp_path):
    a, b, _ = _binary_pair(n=60)
    other = Predictions("vit", b.class_names, b.task, b.sample_ids[:50], b.y_true[:50], b.probs[:50])
    pa, pb = a.save(tmp_path / "a.npz"), other.save(tmp_path / "b.npz")
    res = CliRunner().invoke(main, ["compare", str(pa), str(pb), "--negative-class", "normal"])
    assert res.exit_code == 2
    assert "different samples" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["compare", str(pa)])
    assert res.exit_code == 2 and "at least two" in res.output
    res = CliRunner().invoke(main, ["compare", str(pa), str(tmp_path / "missing.npz")])
    assert res.exit_code == 2 and "no such file" in res.output


def test_cli_compare_unknown_negative_class_names_the_option(tmp_path):
    a, b, _ = _binary_pair(n=40)
    pa, pb = a.save(tmp_path / "a.npz"), b.save(tmp_path / "b.npz")
    res = CliRunner().invoke(main, ["compare", str(pa), str(pb), "--negative-class", "healthy"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "--negative-class: " in res.output and "'healthy'" in res.output  # the option that was wrong


@pytest.mark.realdata
def test_real_pneumoniamnist_against_references():
    """Two nearest-class-mean classifiers on the real PneumoniaMNIST test split (624 images)."""
    from pathlib import Path

    from scipy.stats import binomtest

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "medmnist" / "pneumoniamnist.npz"
    if not path.is_file():
        pytest.skip("shared/data/medmnist/pneumoniamnist.npz not available")
    with np.load(path) as f:
        xtr, ytr = f["train_images"].reshape(-1, 784) / 255.0, f["train_labels"].ravel()
        xte, yte = f["test_images"].reshape(-1, 784) / 255.0, f["test_labels"].ravel()
    ids = [f"test/{i}" for i in range(len(yte))]
    preds = []
    for name, sl in (("full", slice(None)), ("centre", slice(196, 588))):  # all pixels / middle rows
        means = np.stack([xtr[ytr == k][:, sl].mean(0) for k in (0, 1)])
        d = ((xte[:, None, sl] - means[None]) ** 2).sum(-1)
        p = np.exp(-d / 10) / np.exp(-d / 10).sum(1, keepdims=True)
        preds.append(Predictions(name, ["normal", "pneumonia"], "binary", ids, yte, p))
    c = compare_models(preds, negative_classes=["normal"], n_bootstrap=200)
    p = c["pairs"][0]
    wa, wb = (set(np.array(ids)[~q.correct].tolist()) for q in preds)
    assert (p["both"], p["only_a"], p["only_b"]) == (len(wa & wb), len(wa - wb), len(wb - wa))
    assert p["mcnemar"]["p_value"] == pytest.approx(binomtest(p["only_b"], p["only_a"] + p["only_b"]).pvalue)
    # O(n^2) DeLong structural components on the real scores.
    v10, v01 = [], []
    for q in preds:
        s = q.probs[:, 1].astype(float)
        x, z = s[yte == 1], s[yte == 0]
        psi = (x[:, None] > z[None]) + 0.5 * (x[:, None] == z[None])
        v10.append(psi.mean(1))
        v01.append(psi.mean(0))
    cov = np.cov(np.array(v10)) / len(v10[0]) + np.cov(np.array(v01)) / len(v01[0])
    aucs = [v.mean() for v in v10]
    assert (p["delong"]["auc_a"], p["delong"]["auc_b"]) == pytest.approx(tuple(aucs))
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    assert p["delong"]["z"] == pytest.approx((aucs[0] - aucs[1]) / np.sqrt(var), rel=1e-6)
