"""Subgroups and patients in the snapshot (issue 18): settings, per-model blocks, comparisons, findings,
and the patient-clustered intervals of compute_metrics.

Every expected number comes from an independent call (subgroup_metrics, patient_level + compute_metrics
on hand-built arrays, scikit-learn) or from a simulation, never from the audit's own output.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from medaudit.audit import AuditSettings, ModelResult, SubgroupSettings, assemble_snapshot, resolve_groups
from medaudit.errors import MedauditError
from medaudit.metadata import bin_numeric
from medaudit.metrics import compute_metrics
from medaudit.metrics.clustered import patient_level
from medaudit.metrics.subgroups import subgroup_differences, subgroup_metrics
from medaudit.predictions import Predictions

CLASSES = ["normal", "pneumonia"]
B = 200


def _cohort(seed=0, n_patients=120, per_patient=3, drop_site="B", drop=0.0):
    """Seeded binary predictions: patients with several images, sex/age/site; site `drop_site` recall lowered."""
    rng = np.random.default_rng(seed)
    pid = np.repeat([f"p-{i:016x}" for i in range(n_patients)], per_patient)
    n = pid.size
    sick = np.repeat(rng.random(n_patients) < 0.4, per_patient)
    site = np.repeat(rng.choice(["A", "B", "C"], n_patients), per_patient)
    sex = np.repeat(rng.choice(["F", "M", ""], n_patients, p=[0.48, 0.48, 0.04]), per_patient)
    age = np.repeat(rng.uniform(18, 90, n_patients), per_patient)
    age[rng.random(n) < 0.03] = np.nan
    y = sick.astype(np.int64)
    # a patient effect shared by its images (correlated images), plus a little per-image noise
    effect = np.repeat(rng.normal(0, 0.16, n_patients), per_patient)
    score = np.clip(np.where(sick, 0.75, 0.25) + effect + rng.normal(0, 0.06, n), 0.001, 0.999)
    if drop:
        lowered = (site == drop_site) & sick
        score[lowered] = np.clip(score[lowered] - drop, 0.001, 0.999)
    probs = np.column_stack([1 - score, score])
    meta = {"patient_id": pid, "sex": sex, "age": age, "site": site}
    return y, probs, meta


def _preds(name, y, probs, meta, patient="patient_id"):
    return Predictions(model_name=name, class_names=CLASSES, task="binary",
                       sample_ids=np.array([f"test/{i}" for i in range(len(y))]), y_true=y, probs=probs,
                       metadata=meta, patient_column=patient if meta and patient in meta else None)


def _dataset(patients=None, near=None):
    return {"split_evaluated": "test", "duplicates": {"across": {}}, "near_duplicates": near or {"across": {}},
            "patients": patients or {"column": None, "reason": "none"}}


def _snap(preds_list, sg=None, dataset=None, bootstrap=B):
    settings = AuditSettings(bootstrap=bootstrap, negative_classes=["normal"], subgroups=sg or SubgroupSettings())
    results = [ModelResult(preds=p, checkpoint={}, prediction_info={}) for p in preds_list]
    snap = assemble_snapshot(results, dataset=dataset or _dataset(), settings=settings, title="t")
    return json.loads(json.dumps(snap))  # as written: JSON types only


def _json(x):
    return json.loads(json.dumps(x))


AGE_BINS = [0, 40, 65, 120]
SG = SubgroupSettings(group_by=["site", "Sex", "age"], bins={"age": AGE_BINS}, intersections=[["sex", "site"]],
                      salt_id="abc123def456")


def test_the_blocks_equal_direct_calls_on_the_same_arrays():
    y, probs, meta = _cohort()
    _, probs_b, _ = _cohort(seed=1)
    snap = _snap([_preds("m1", y, probs, meta), _preds("m2", y, probs_b, meta)], SG)

    s = snap["settings"]["subgroups"]
    assert s == {"group_by": ["site", "sex", "age"], "bins": {"age": [0.0, 40.0, 65.0, 120.0]},
                 "intersections": [["sex", "site"]], "patient_column": "patient_id", "min_group_n": 10,
                 "level": "image", "aggregate": "max", "salt_id": "abc123def456"}
    age = bin_numeric(meta["age"], AGE_BINS)
    groups = {"site": meta["site"], "sex": meta["sex"], "age": np.where(age == "unknown", "", age)}
    for m, p in zip(snap["models"], (probs, probs_b), strict=True):
        direct = subgroup_metrics(y, p, CLASSES, ["normal"], groups, clusters=meta["patient_id"],
                                  intersections=[("sex", "site")], n_bootstrap=B, seed=0, ece_bins=15)
        assert m["subgroups"] == _json(direct)
        assert m["patient_level"] is None
        # the missing age and sex values are the 'unknown' group, not a group of their own
        assert m["subgroups"]["columns"]["age"]["groups"]["unknown"]["unknown"] is True
    (pair,) = snap["comparisons"]["subgroup_differences"]
    direct = subgroup_differences(y, probs, probs_b, CLASSES, ["normal"], groups, clusters=meta["patient_id"],
                                  intersections=[("sex", "site")], n_bootstrap=B, seed=0)
    assert pair == {"a": "m1", "b": "m2", **_json(direct)}


def test_main_metrics_resample_patients_when_the_data_has_a_patient_column():
    y, probs, meta = _cohort(per_patient=4)
    with_ids = _snap([_preds("m", y, probs, meta)])["models"][0]["metrics"]
    no_ids = _snap([_preds("m", y, probs, {k: v for k, v in meta.items() if k != "patient_id"})])
    no_ids = no_ids["models"][0]["metrics"]
    direct = _json(compute_metrics(y, probs, CLASSES, "binary", n_bootstrap=B, positive_class="pneumonia",
                                   clusters=meta["patient_id"]))
    direct["missed_disease_rate"] = with_ids["missed_disease_rate"]  # filled from fn_risk by the audit
    direct["per_class"]["pneumonia"]["missed_disease_rate"] = with_ids["per_class"]["pneumonia"]["missed_disease_rate"]
    assert with_ids == direct
    assert with_ids["n_patients"] == 120 and "n_patients" not in no_ids
    assert with_ids["accuracy"]["value"] == no_ids["accuracy"]["value"]  # points unchanged
    assert with_ids["accuracy"]["ci_method"] == "cluster-bootstrap" and no_ids["accuracy"]["ci_method"] == "wilson"
    assert with_ids["auc_macro"]["ci_method"] == "cluster-bootstrap"
    assert with_ids["ece"]["ci_method"] == "cluster-bootstrap-recentred"
    # 4 near-identical images per patient: the patient-level intervals are wider
    width = lambda v: v["ci_high"] - v["ci_low"]  # noqa: E731
    assert width(with_ids["auc_macro"]) > 1.3 * width(no_ids["auc_macro"])
    assert width(with_ids["per_class"]["pneumonia"]["recall"]) > width(no_ids["per_class"]["pneumonia"]["recall"])
    # no --group-by, but a patient column: the settings block says so
    assert _snap([_preds("m", y, probs, meta)])["settings"]["subgroups"]["patient_column"] == "patient_id"


def test_cluster_bootstrap_of_copies_equals_the_image_bootstrap_of_the_originals():
    """k exact copies of each image, clustered: resampling patients is resampling the original images.
    With the patient ids ordered as the original images are (canonical order), the draws coincide, so
    every bootstrap interval equals the plain image-level one of the originals."""
    rng = np.random.default_rng(3)
    n, k = 90, 3
    y = rng.integers(0, 3, n)
    logits = rng.normal(0, 1, (n, 3)) + 1.5 * np.eye(3)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    order = np.lexsort([probs[:, j] for j in (2, 1, 0)] + [y])  # compute_metrics' canonical order
    ids = np.empty(n, dtype=object)
    ids[order] = [f"p-{i:05d}" for i in range(n)]
    plain = compute_metrics(y, probs, ["a", "b", "c"], "multiclass", n_bootstrap=B, seed=5)
    copies = compute_metrics(np.repeat(y, k), np.repeat(probs, k, axis=0), ["a", "b", "c"], "multiclass",
                             n_bootstrap=B, seed=5, clusters=np.repeat(ids.astype(str), k))
    for key in ("macro_f1", "auc_macro", "kappa", "brier", "balanced_accuracy"):
        assert copies[key]["value"] == pytest.approx(plain[key]["value"], rel=1e-12)
        assert copies[key]["ci_low"] == pytest.approx(plain[key]["ci_low"], rel=1e-9), key
        assert copies[key]["ci_high"] == pytest.approx(plain[key]["ci_high"], rel=1e-9), key
    for cls in ("a", "b", "c"):
        assert copies["per_class"][cls]["auc"]["ci_low"] == pytest.approx(plain["per_class"][cls]["auc"]["ci_low"])


def test_clustered_proportion_intervals_cover_where_image_wilson_does_not():
    """Simulation: patients with a patient-level chance of being read right (strong intra-patient
    correlation). The cluster-bootstrap accuracy interval covers the true mean near nominal; the
    image-level Wilson interval of the same data under-covers."""
    rng = np.random.default_rng(11)
    n_sims, n_pat, per = 120, 40, 8
    true_acc = 0.8  # mean of the patient-level Beta(2, 0.5) chance of a right answer (ICC about 0.29)
    hit_cluster = hit_wilson = 0
    for _ in range(n_sims):
        chance = np.repeat(rng.beta(2, 0.5, n_pat), per)
        right = rng.random(n_pat * per) < chance
        y = rng.integers(0, 2, n_pat * per)
        pred = np.where(right, y, 1 - y)
        probs = np.column_stack([1 - (0.2 + 0.6 * pred), 0.2 + 0.6 * pred])
        ids = np.repeat([f"p-{i}" for i in range(n_pat)], per)
        c = compute_metrics(y, probs, ["n", "d"], "binary", n_bootstrap=300, seed=int(rng.integers(1 << 30)),
                            clusters=ids)["accuracy"]
        w = compute_metrics(y, probs, ["n", "d"], "binary", n_bootstrap=0)["accuracy"]
        hit_cluster += c["ci_low"] <= true_acc <= c["ci_high"]
        hit_wilson += w["ci_low"] <= true_acc <= w["ci_high"]
    assert hit_cluster / n_sims >= 0.86
    assert hit_wilson / n_sims <= 0.80
    assert hit_cluster > hit_wilson


def test_patient_level_block_is_compute_metrics_on_the_aggregated_arrays():
    y, probs, meta = _cohort(per_patient=3)
    for aggregate in ("max", "mean"):
        snap = _snap([_preds("m", y, probs, meta)], SubgroupSettings(level="patient", aggregate=aggregate))
        block = snap["models"][0]["patient_level"]
        # by hand: per patient, any disease image and the max/mean of p(disease)
        pids, inv = np.unique(meta["patient_id"], return_inverse=True)
        label = np.zeros(pids.size, int)
        np.maximum.at(label, inv, y)
        red = np.full(pids.size, -np.inf) if aggregate == "max" else np.zeros(pids.size)
        (np.maximum.at if aggregate == "max" else np.add.at)(red, inv, probs[:, 1])
        if aggregate == "mean":
            red /= np.bincount(inv)
        pl = patient_level(y, probs, meta["patient_id"], CLASSES, ["normal"], aggregate=aggregate)
        assert np.array_equal(pl.y_true, label) and np.allclose(pl.probs[:, 1], red)
        expected = compute_metrics(label, np.column_stack([1 - red, red]), ["no disease", "disease"], "binary",
                                   n_bootstrap=B, positive_class="disease")
        from sklearn.metrics import roc_auc_score
        assert block["metrics"]["auc_macro"]["value"] == pytest.approx(roc_auc_score(label, red))
        assert block["metrics"]["auc_macro"] == pytest.approx(_json(expected)["auc_macro"])
        assert block["n_patients"] == 120 and block["n_images"] == 360 and block["aggregate"] == aggregate
        recall = block["metrics"]["per_class"]["disease"]["recall"]["value"]
        assert block["metrics"]["missed_disease_rate"]["value"] == pytest.approx(1 - recall)


def test_multiclass_without_healthy_class_patient_level_needs_mean():
    rng = np.random.default_rng(0)
    y = np.repeat(rng.integers(0, 3, 30), 2)
    y[0], y[1] = 0, 1  # patient 0's images carry two classes: left out, counted
    probs = rng.dirichlet(np.ones(3), 60)
    meta = {"patient_id": np.repeat([f"p-{i}" for i in range(30)], 2)}
    p = Predictions(model_name="m", class_names=["x", "y", "z"], task="multiclass", sample_ids=np.arange(60).astype(str),
                    y_true=y, probs=probs, metadata=meta, patient_column="patient_id")
    res = [ModelResult(preds=p, checkpoint={}, prediction_info={})]
    snap = assemble_snapshot(res, dataset=_dataset(), title="t",
                             settings=AuditSettings(bootstrap=0, subgroups=SubgroupSettings(level="patient")))
    assert snap["models"][0]["patient_level"]["available"] is False
    assert "--aggregate mean" in snap["models"][0]["patient_level"]["reason"]
    snap = assemble_snapshot(res, dataset=_dataset(), title="t", settings=AuditSettings(
        bootstrap=0, subgroups=SubgroupSettings(level="patient", aggregate="mean")))
    block = snap["models"][0]["patient_level"]
    assert block["view"] == "multiclass" and block["n_patients"] == 29
    assert block["excluded"] == {"n_patients": 1, "n_images": 2, "reason": "images of the patient carry different "
                                                                           "classes"}
    assert any("leave out 1 patient" in f["text"] for f in snap["findings"])


def test_a_planted_site_drop_is_a_warning_in_plain_words_and_no_drop_is_not():
    y, probs, meta = _cohort(seed=4, n_patients=300, per_patient=2, drop=0.35)
    snap = _snap([_preds("m", y, probs, meta)], SubgroupSettings(group_by=["site"]), bootstrap=500)
    gap = snap["models"][0]["subgroups"]["columns"]["site"]["groups"]["B"]["gap"]["recall"]
    assert gap["diff"] < -0.1 and gap["p_adjusted"] < 0.05
    texts = [f["text"] for f in snap["findings"] if f["level"] == "warning" and "site = B" in f["text"]]
    recall = [t for t in texts if t.startswith("Recall")]
    assert len(recall) == 1
    lo, hi = -gap["ci_high"], -gap["ci_low"]
    assert (f"Recall (sensitivity) is lower for site = B than for the other samples by {abs(gap['diff']):.2f}, "
            f"95% CI {lo:.2f}–{hi:.2f}, Holm p") in recall[0]
    assert all("site = A" not in f["text"] and "site = C" not in f["text"] or f["level"] != "warning"
               for f in snap["findings"] if "Recall" in f["text"])
    # The same data without the drop: no subgroup warning
    y, probs, meta = _cohort(seed=4, n_patients=300, per_patient=2, drop=0.0)
    snap = _snap([_preds("m", y, probs, meta)], SubgroupSettings(group_by=["site"]), bootstrap=500)
    assert not [f for f in snap["findings"] if f["level"] == "warning" and "site =" in f["text"]]


def test_small_groups_are_an_info_finding():
    y, probs, meta = _cohort(n_patients=240)
    meta["site"] = meta["site"].astype("<U8")
    meta["site"][:6] = "tiny"  # two patients
    snap = _snap([_preds("m", y, probs, meta)], SubgroupSettings(group_by=["site"]))
    tiny = snap["models"][0]["subgroups"]["columns"]["site"]["groups"]["tiny"]
    assert tiny["recall"]["value"] is None and tiny["recall"]["too_few"] is True
    (info,) = [f for f in snap["findings"] if "too few" in f["text"]]
    assert info["level"] == "info" and "site: group(s) tiny" in info["text"] and "patients" in info["text"]


def test_leakage_findings_patients_error_near_duplicates_warning():
    patients = {"column": "patient_id", "leakage": True,
                "across": {"train/test": {"n": 2, "n_samples": 5, "examples": ["p-00000000000000aa", "p-bb"]},
                           "train/val": {"n": 1, "n_samples": 1, "examples": ["p-cc"]},
                           "val/test": {"n": 0, "n_samples": 0, "examples": []}}}
    near = {"across": {"train/test": {"n": 4, "n_pixel_identical": 1,
                                      "examples": [{"a": "train/1", "b": "test/9", "distance": 2,
                                                    "correlation": 0.995}]},
                       "val/test": {"n": 2, "n_pixel_identical": 2, "examples": []}}}
    y, probs, _ = _cohort()
    snap = _snap([_preds("m", y, probs, None)], dataset=_dataset(patients, near))
    by_level = {}
    for f in snap["findings"]:
        by_level.setdefault(f["level"], []).append(f["text"])
    (err,) = by_level["error"]
    assert "2 patient(s) of the evaluated 'test' split also have images in 'train'" in err
    assert "p-00000000000000aa" in err and "5 image(s)" in err
    assert any("'train' and 'val'" in t for t in by_level["warning"])
    near_w = [t for t in by_level["warning"] if "near-identical" in t]
    assert len(near_w) == 1 and near_w[0].startswith("3 image(s) of 'test'")  # 4 minus the pixel-identical one
    assert snap["settings"]["subgroups"] is None  # no --group-by and no patient column


def test_without_metadata_nothing_is_added():
    y, probs, _ = _cohort()
    snap = _snap([_preds("m", y, probs, None), _preds("n", y, probs[::-1][::-1], None)])
    assert snap["settings"]["subgroups"] is None
    assert snap["models"][0]["subgroups"] is None and snap["models"][0]["patient_level"] is None
    assert snap["comparisons"]["subgroup_differences"] is None
    assert "n_patients" not in snap["models"][0]["metrics"]


def test_no_healthy_class_makes_subgroups_unavailable():
    y, probs, meta = _cohort()
    p = Predictions(model_name="m", class_names=["a", "b", "c"], task="multiclass",
                    sample_ids=np.arange(len(y)).astype(str), y_true=y,
                    probs=np.column_stack([probs * 0.9, np.full(len(y), 0.1)]), metadata=meta,
                    patient_column="patient_id")
    snap = assemble_snapshot([ModelResult(preds=p, checkpoint={}, prediction_info={})], dataset=_dataset(),
                             title="t", settings=AuditSettings(bootstrap=0, subgroups=SubgroupSettings(group_by=["site"])))
    assert snap["models"][0]["subgroups"] == {"available": False, "reason": snap["models"][0]["subgroups"]["reason"]}
    assert "--negative-class" in snap["models"][0]["subgroups"]["reason"]


@pytest.mark.parametrize("sg, param, words", [
    (SubgroupSettings(group_by=["scanner"]), "group_by", "its metadata columns are: 'patient_id', 'sex', 'age'"),
    (SubgroupSettings(group_by=["age"]), "bins", "--bins age=0,40,65,120"),
    (SubgroupSettings(group_by=["sex"], bins={"sex": [0, 1]}), "bins", "categorical"),
    (SubgroupSettings(group_by=["sex"], bins={"age": [0, 50, 100]}), "bins", "add --group-by age"),
    (SubgroupSettings(group_by=["patient_id"]), "group_by", "patient column"),
    (SubgroupSettings(group_by=["site"]), "group_by", "one group ('A')"),
    (SubgroupSettings(group_by=["age"], bins={"age": [0, 10, 15]}), "group_by", "choose other --bins"),
    (SubgroupSettings(group_by=["sex"], intersections=[["sex", "nope"]]), "intersections", "no such metadata column"),
])
def test_bad_group_settings_are_one_line_errors(sg, param, words):
    meta = {"patient_id": np.array(["p-1", "p-1", "p-2", "p-3"]), "sex": np.array(["F", "M", "F", ""]),
            "age": np.array([30.0, 50.0, np.nan, 70.0]), "site": np.array(["A", "A", "A", ""])}
    with pytest.raises(MedauditError) as e:
        resolve_groups(meta, "patient_id", sg, "split 'test' of d.csv")
    assert e.value.param == param and words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("kw, param", [({"level": "series"}, "level"), ({"aggregate": "median"}, "aggregate"),
                                       ({"min_group_n": 0}, "min_group_n"), ({"bins": {"age": [5, 5]}}, "bins"),
                                       ({"bins": {"age": [40, 20]}}, "bins"),
                                       ({"intersections": [["sex", "Sex"]]}, "intersections")])
def test_bad_subgroup_settings(kw, param):
    with pytest.raises(MedauditError) as e:
        SubgroupSettings(**kw)
    assert e.value.param == param


def test_patient_level_without_patient_column_is_an_error():
    y, probs, meta = _cohort()
    meta = {k: v for k, v in meta.items() if k != "patient_id"}
    with pytest.raises(MedauditError) as e:
        _snap([_preds("m", y, probs, meta)], SubgroupSettings(level="patient"))
    assert e.value.param == "level"


def test_subgroup_settings_read_back_from_json():
    s = AuditSettings(subgroups={"group_by": ["site"], "bins": {}, "intersections": [], "min_group_n": 5,
                                 "level": "image", "aggregate": "max", "salt_id": None})
    assert isinstance(s.subgroups, SubgroupSettings) and s.subgroups.min_group_n == 5
