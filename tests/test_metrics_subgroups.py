"""Subgroup and patient-level metrics: fairlearn/scikit-learn references, the cluster bootstrap, simulations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame
from scipy.stats import norm
from sklearn.metrics import precision_score, recall_score, roc_auc_score
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from medaudit.errors import MedauditError
from medaudit.metrics import compute_metrics
from medaudit.metrics.clustered import cluster_index, cluster_weights, on_clusters, patient_level
from medaudit.metrics.resample import Block, SumDesign, point_and_bootstrap
from medaudit.metrics.subgroups import GAP_METRICS, bootstrap_p_value, subgroup_differences, subgroup_metrics

NAMES = ["normal", "pneumonia", "covid"]
NEG = ["normal"]


@pytest.fixture(autouse=True)
def _one_bootstrap_thread(monkeypatch):
    # Small designs: thread start-up costs more than it saves (and the box is shared).
    monkeypatch.setenv("MEDAUDIT_THREADS", "1")


def _softmax(logits):
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def _data(n=900, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.55, 0.3, 0.15])
    probs = _softmax(rng.normal(size=(n, 3)) + 1.3 * np.eye(3)[y])
    sex = rng.choice(["F", "M", ""], n, p=[0.47, 0.47, 0.06])
    site = rng.choice(["A", "B", "C"], n, p=[0.5, 0.3, 0.2])
    return y, probs, {"sex": sex, "site": site}


def _disease_view(y, probs):
    disease = (y != 0).astype(int)
    called = (probs.argmax(axis=1) != 0).astype(int)
    return disease, called, 1.0 - probs[:, 0]


def _ece(y, probs, bins=15):
    """Top-label ECE written from its definition (equal-width right-closed bins)."""
    conf, correct = probs.max(axis=1), (probs.argmax(axis=1) == y).astype(float)
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    return sum(abs((correct - conf)[idx == b].sum()) for b in range(bins)) / len(y)


def _frames(y, probs, sensitive):
    disease, called, score = _disease_view(y, probs)
    metrics = {
        "recall": recall_score,
        "specificity": lambda t, p: recall_score(t, p, pos_label=0),
        "ppv": precision_score,
        "npv": lambda t, p: precision_score(t, p, pos_label=0),
        "prevalence": lambda t, p: np.mean(t),
    }
    counts = MetricFrame(metrics=metrics, y_true=disease, y_pred=called, sensitive_features=sensitive)
    auc = MetricFrame(metrics=roc_auc_score, y_true=disease, y_pred=score, sensitive_features=sensitive)
    return counts.by_group, auc.by_group


def test_point_estimates_match_fairlearn_metricframe_per_group_and_intersection():
    y, probs, groups = _data()
    out = subgroup_metrics(y, probs, NAMES, NEG, groups, intersections=[("sex", "site")], min_group_n=1,
                           n_bootstrap=50)
    shown = {k: np.where(v == "", "unknown", v) for k, v in groups.items()}
    for column, sensitive in (("sex", shown["sex"]), ("site", shown["site"]),
                              ("sex & site", pd.DataFrame({"sex": shown["sex"], "site": shown["site"]}))):
        by_group, auc = _frames(y, probs, sensitive)
        got = out["columns"][column]["groups"]
        expected_labels = set()
        for key in by_group.index:
            parts = key if isinstance(key, tuple) else (key,)
            label = "unknown" if "unknown" in parts else " & ".join(parts)
            if label == "unknown" and len(parts) == 2:
                continue  # every pair with an unknown part is one "unknown" group
            expected_labels.add(label)
            g = got[label]
            for metric in ("recall", "specificity", "ppv", "npv", "prevalence"):
                assert g[metric]["value"] == pytest.approx(by_group.loc[key, metric], abs=1e-12), (column, label)
            assert g["auc"]["value"] == pytest.approx(auc.loc[key], abs=1e-12)
            assert g["missed_disease_rate"]["value"] == pytest.approx(1 - by_group.loc[key, "recall"], abs=1e-12)
            mask = np.all([shown[c] == p for c, p in zip(column.split(" & "), parts, strict=True)], axis=0)
            assert g["ece"]["value"] == pytest.approx(_ece(y[mask], probs[mask]), abs=1e-12)
            assert g["n"] == mask.sum() and g["n_disease"] == (y[mask] != 0).sum()
        assert expected_labels <= set(got)
    # The unknown intersection group pools every pair with an unknown part.
    unk = (groups["sex"] == "") | (groups["site"] == "")
    assert out["columns"]["sex & site"]["groups"]["unknown"]["n"] == unk.sum()
    assert out["columns"]["sex & site"]["groups"]["unknown"]["unknown"] is True
    # Overall = all samples, as compute_metrics' top-label ECE.
    assert out["overall"]["ece"]["value"] == pytest.approx(
        compute_metrics(y, probs, NAMES, "multiclass", n_bootstrap=0)["ece"]["value"], abs=1e-12)


def test_gap_is_group_minus_every_other_sample_by_sklearn():
    y, probs, groups = _data(seed=1)
    out = subgroup_metrics(y, probs, NAMES, NEG, groups, min_group_n=1, n_bootstrap=200)
    disease, called, score = _disease_view(y, probs)
    for column, label in (("sex", "F"), ("site", "C"), ("sex", "unknown")):
        member = groups[column] == ("" if label == "unknown" else label)
        rest = ~member  # the rest includes the unknowns
        gap = out["columns"][column]["groups"][label]["gap"]
        assert gap["recall"]["diff"] == pytest.approx(
            recall_score(disease[member], called[member]) - recall_score(disease[rest], called[rest]), abs=1e-12)
        assert gap["auc"]["diff"] == pytest.approx(
            roc_auc_score(disease[member], score[member]) - roc_auc_score(disease[rest], score[rest]), abs=1e-12)
        assert gap["ece"]["diff"] == pytest.approx(_ece(y[member], probs[member]) - _ece(y[rest], probs[rest]),
                                                   abs=1e-12)
        for metric in GAP_METRICS:
            g = gap[metric]
            assert g["ci_low"] <= g["diff"] <= g["ci_high"] and 0 < g["p_value"] <= 1


def test_auc_with_disease_the_majority_and_tied_scores_matches_sklearn():
    # More disease than healthy samples (the ranking is built on the smaller class) and many ties.
    rng = np.random.default_rng(15)
    n = 800
    y = rng.choice(3, n, p=[0.2, 0.5, 0.3])
    probs = _softmax(0.5 * rng.integers(-2, 3, size=(n, 3)) + np.eye(3)[y])  # few distinct rows
    site = rng.choice(["A", "B"], n, p=[0.3, 0.7])
    out = subgroup_metrics(y, probs, NAMES, NEG, {"site": site}, n_bootstrap=20)
    disease, _, score = _disease_view(y, probs)
    assert np.unique(score).size < n / 2
    for label in ("A", "B"):
        m = site == label
        g = out["columns"]["site"]["groups"][label]
        assert g["auc"]["value"] == pytest.approx(roc_auc_score(disease[m], score[m]), abs=1e-12)
        assert g["gap"]["auc"]["diff"] == pytest.approx(
            roc_auc_score(disease[m], score[m]) - roc_auc_score(disease[~m], score[~m]), abs=1e-12)
    assert out["overall"]["auc"]["value"] == pytest.approx(roc_auc_score(disease, score), abs=1e-12)


def test_without_patient_ids_proportions_carry_wilson_intervals_from_statsmodels():
    y, probs, groups = _data(seed=2)
    out = subgroup_metrics(y, probs, NAMES, NEG, groups, n_bootstrap=100)
    disease, called, _ = _disease_view(y, probs)
    member = groups["site"] == "B"
    rec = out["columns"]["site"]["groups"]["B"]["recall"]
    k, n = int((called & disease & member).sum()), int((disease & member).sum())
    assert (rec["k"], rec["n"], rec["ci_method"]) == (k, n, "wilson")
    assert (rec["ci_low"], rec["ci_high"]) == pytest.approx(proportion_confint(k, n, method="wilson"), abs=1e-12)
    assert out["columns"]["site"]["groups"]["B"]["auc"]["ci_method"] == "bootstrap"
    assert out["settings"]["clusters"] is False


def test_worst_group_is_the_lowest_known_group_never_unknown():
    y, probs, groups = _data(seed=3)
    sex = groups["sex"]
    # Make the unknowns the worst: every disease sample without a recorded sex is called healthy.
    probs = probs.copy()
    bad = (sex == "") & (y != 0)
    probs[bad] = [0.9, 0.05, 0.05]
    out = subgroup_metrics(y, probs, NAMES, NEG, groups, n_bootstrap=0)
    col = out["columns"]["sex"]
    assert col["groups"]["unknown"]["recall"]["value"] == 0.0
    by_group, auc = _frames(y[sex != ""], probs[sex != ""], sex[sex != ""])
    assert col["worst"]["recall"]["group"] == by_group["recall"].idxmin()
    assert col["worst"]["missed_disease_rate"]["group"] == by_group["recall"].idxmin()
    assert col["worst"]["auc"]["group"] == auc.idxmin()
    assert col["worst"]["recall"]["value"] == pytest.approx(by_group["recall"].min())


def test_too_few_to_estimate_is_none_with_a_reason_and_out_of_holm_and_worst():
    y, probs, groups = _data(n=1200, seed=4)
    site = groups["site"].astype("<U8")
    disease_idx = np.flatnonzero(y != 0)
    healthy_idx = np.flatnonzero(y == 0)
    site[disease_idx[:4]] = "tiny"  # 4 disease samples, 60 healthy: recall too few, specificity fine
    site[healthy_idx[:60]] = "tiny"
    groups = {**groups, "site": site}
    out = subgroup_metrics(y, probs, NAMES, NEG, groups, min_group_n=10, n_bootstrap=200)
    tiny = out["columns"]["site"]["groups"]["tiny"]
    for metric in ("recall", "missed_disease_rate", "auc"):
        assert tiny[metric]["value"] is None and tiny[metric]["too_few"] is True
        assert tiny[metric]["reason"].startswith("too few to estimate: 4 ")
        assert "(fewer than min_group_n=10)" in tiny[metric]["reason"]
        assert tiny["gap"][metric]["diff"] is None and tiny["gap"][metric]["p_adjusted"] is None
    assert tiny["specificity"]["value"] is not None
    assert tiny["n_disease"] == 4
    assert out["columns"]["site"]["worst"]["recall"]["group"] != "tiny"
    # Holm over every defined recall gap of every column: the same as statsmodels'.
    entries = [g["gap"]["recall"] for c in out["columns"].values() for g in c["groups"].values()
               if g["gap"]["recall"]["p_value"] is not None]
    assert len(entries) >= 5
    expected = multipletests([e["p_value"] for e in entries], method="holm")[1]
    assert [e["p_adjusted"] for e in entries] == pytest.approx(expected, abs=1e-12)


def test_with_patient_ids_counts_and_thresholds_are_patients():
    y, probs, groups = _data(n=600, seed=5)
    # 40 disease images of one site from 3 patients: enough images, too few patients.
    site = groups["site"].copy()
    pid = np.array([f"p-{i:016x}" for i in range(600)])
    idx = np.flatnonzero(y != 0)[:40]
    site[idx] = "D"
    pid[idx] = [f"p-{100000 + i % 3:016x}" for i in range(40)]
    healthy = np.flatnonzero(y == 0)[:30]
    site[healthy] = "D"
    out = subgroup_metrics(y, probs, NAMES, NEG, {"site": site}, clusters=pid, n_bootstrap=100)
    d = out["columns"]["site"]["groups"]["D"]
    assert (d["n"], d["n_disease"], d["n_patients"], d["n_disease_patients"]) == (70, 40, 33, 3)
    assert d["recall"]["value"] is None and "3 disease patients" in d["recall"]["reason"]
    assert d["specificity"]["ci_method"] == "cluster-bootstrap"
    assert out["settings"]["clusters"] is True and out["settings"]["n_clusters"] == 600 - 40 + 3


def test_cluster_design_sums_equal_the_expanded_per_image_weights():
    rng = np.random.default_rng(6)
    n = 300
    pid = np.array([f"p-{i:016x}" for i in rng.integers(0, 80, n)])
    pid[rng.random(n) < 0.1] = ""  # unknown: each image its own patient
    stratum = (rng.random(n) < 0.3).astype(np.int64)
    cl = cluster_index(pid, stratum)
    # A patient's stratum is its largest sample stratum; every unknown image is its own cluster.
    assert cl.n_clusters == len(set(pid[pid != ""])) + (pid == "").sum()
    assert sum(cl.strata_sizes) == cl.n_clusters
    for j in range(cl.n_clusters):
        members = cl.index == j
        before = sum(cl.strata_sizes[:1])
        assert (stratum[members].max() == 1) == (j >= before)
    blocks = [Block("counts", rng.integers(0, 7, n), np.arange(n), 7),
              Block("values", rng.integers(0, 3, 2 * n), np.tile(np.arange(n), 2), 3, rng.normal(size=2 * n))]
    per_image = SumDesign(n, blocks)
    per_patient = SumDesign(cl.n_clusters, on_clusters(blocks, cl))
    draws = list(cluster_weights(cl, 40, np.random.default_rng(1), 16))
    w_img = np.concatenate(draws, axis=1)
    from medaudit.metrics.intervals import stratified_weights
    w_pat = np.concatenate(list(stratified_weights(cl.strata_sizes, 40, np.random.default_rng(1), 16)), axis=1)
    np.testing.assert_array_equal(w_img, w_pat[cl.index])
    a, b = per_image.sums(w_img), per_patient.sums(w_pat)
    np.testing.assert_array_equal(a["counts"], b["counts"])
    np.testing.assert_allclose(a["values"], b["values"], rtol=1e-12)
    # Each resample draws as many patients per stratum as the stratum has.
    for start, size in zip(np.cumsum([0] + cl.strata_sizes[:-1]), cl.strata_sizes, strict=True):
        assert (w_pat[start:start + size].sum(axis=0) == size).all()
    # The engine, given the patient design, makes exactly these draws.
    _, boot = point_and_bootstrap(per_patient, lambda s: {"c": s["counts"].T.astype(float)}, cl.strata_sizes,
                                  40, 1, ["c"], chunk=16)
    np.testing.assert_array_equal(boot["c"], per_image.sums(w_img)["counts"].T)


def test_cluster_bootstrap_interval_agrees_with_resampling_patient_lists():
    """An independent cluster bootstrap (explicit patient lists, other generator) gives the same interval."""
    y, probs, site, pid = _clustered(seed=7, n_patients=150)
    out = subgroup_metrics(y, probs, ["normal", "disease"], NEG, None, clusters=pid, n_bootstrap=2000, seed=3)
    rec = out["overall"]["recall"]
    rng = np.random.default_rng(99)
    patients = np.unique(pid)
    members = [np.flatnonzero(pid == p) for p in patients]
    sick = np.array([y[m].max() == 1 for m in members])
    called = probs.argmax(axis=1) == 1
    reps = []
    for _ in range(2000):
        take = np.concatenate([rng.choice(np.flatnonzero(s == sick), (s == sick).sum()) for s in (False, True)])
        idx = np.concatenate([members[t] for t in take])
        reps.append(called[idx][y[idx] == 1].mean())
    ref = np.percentile(reps, [2.5, 97.5])
    assert rec["ci_method"] == "cluster-bootstrap"
    assert (rec["ci_low"], rec["ci_high"]) == pytest.approx(tuple(ref), abs=0.012)


SU, SE, MU1, MU0 = 1.2, 0.5, 1.0, -1.0  # patient effect, image noise, disease / healthy mean logit


def _clustered(seed, n_patients=80, images=4):
    """Patients with several images; a patient random effect on the logit correlates them."""
    rng = np.random.default_rng(seed)
    sick = rng.random(n_patients) < 0.4
    effect = rng.normal(0, SU, n_patients)
    site = rng.choice(["A", "B"], n_patients)  # per patient, unrelated to performance
    pat = np.repeat(np.arange(n_patients), images)
    logit = np.where(sick, MU1, MU0)[pat] + effect[pat] + rng.normal(0, SE, pat.size)
    p1 = 1.0 / (1.0 + np.exp(-logit))
    return sick[pat].astype(int), np.column_stack([1 - p1, p1]), site[pat], np.array([f"p-{i:016x}" for i in pat])


def test_simulation_cluster_intervals_cover_and_image_level_ones_under_cover():
    """Coverage of the true image-level recall and AUC, and the null rejection rate of a site gap.

    Truth in closed form: an image is called disease when its logit > 0, so recall =
    Phi(MU1 / sqrt(SU² + SE²)); images of different patients give AUC = Phi((MU1 - MU0) /
    sqrt(2 (SU² + SE²))). Sites are assigned per patient at random, so every site gap is 0.
    """
    true_recall = norm.cdf(MU1 / np.hypot(SU, SE))
    true_auc = norm.cdf((MU1 - MU0) / np.sqrt(2 * (SU**2 + SE**2)))
    reps = 120
    hits = {k: 0 for k in ("recall_c", "recall_n", "auc_c", "auc_n", "reject_c", "reject_n", "tested_c", "tested_n")}
    for r in range(reps):
        y, probs, site, pid = _clustered(seed=1000 + r)
        for tag, clusters in (("c", pid), ("n", None)):
            out = subgroup_metrics(y, probs, ["normal", "disease"], NEG, {"site": site}, clusters=clusters,
                                   n_bootstrap=300, seed=r)
            rec, auc = out["overall"]["recall"], out["overall"]["auc"]
            hits[f"recall_{tag}"] += rec["ci_low"] <= true_recall <= rec["ci_high"]
            hits[f"auc_{tag}"] += auc["ci_low"] <= true_auc <= auc["ci_high"]
            p = out["columns"]["site"]["groups"]["A"]["gap"]["recall"]["p_value"]
            if p is not None:  # None: too few disease patients at a site in this sample
                hits[f"tested_{tag}"] += 1
                hits[f"reject_{tag}"] += p < 0.05
    rate = {k: v / reps for k, v in hits.items()}
    assert hits["tested_c"] >= 0.8 * reps, hits
    rate["reject_c"], rate["reject_n"] = (hits[f"reject_{t}"] / hits[f"tested_{t}"] for t in "cn")
    # Cluster bootstrap: near nominal (80 patients; the percentile bootstrap runs ~2 points low here).
    assert rate["recall_c"] >= 0.88 and rate["auc_c"] >= 0.88, rate
    assert rate["reject_c"] <= 0.10, rate
    # Image-level intervals (Wilson / image bootstrap) treat 4 correlated images as 4 patients.
    assert rate["recall_n"] <= 0.87 and rate["auc_n"] <= 0.85, rate
    assert rate["recall_n"] < rate["recall_c"] - 0.07 and rate["auc_n"] < rate["auc_c"] - 0.1, rate
    assert rate["reject_n"] >= 0.15, rate


def test_bootstrap_p_value_inverts_the_percentile_interval():
    rng = np.random.default_rng(8)
    s = rng.normal(0.05, 0.025, 999)  # 2 SE above 0
    p = bootstrap_p_value(s)
    assert p == pytest.approx(2 * ((s <= 0).sum() + 1) / 1000)
    lo, hi = np.percentile(s, [100 * p / 2 * 1.1, 100 * (1 - p / 2 * 1.1)])
    assert lo > 0  # the interval at a slightly larger alpha excludes 0
    assert bootstrap_p_value(np.full(10, np.nan)) is None
    assert bootstrap_p_value(np.zeros(99)) == 1.0


def test_output_does_not_depend_on_the_input_order():
    y, probs, site, pid = _clustered(seed=9, n_patients=60)
    sex = np.where(np.arange(y.size) % 3 == 0, "F", "M")
    pid = pid.copy()
    pid[::17] = ""
    a = subgroup_metrics(y, probs, ["normal", "disease"], NEG, {"site": site, "sex": sex}, clusters=pid,
                         n_bootstrap=200, min_group_n=5)
    perm = np.random.default_rng(0).permutation(y.size)
    b = subgroup_metrics(y[perm], probs[perm], ["normal", "disease"], NEG, {"site": site[perm], "sex": sex[perm]},
                         clusters=pid[perm], n_bootstrap=200, min_group_n=5)
    assert a == b


def test_no_bootstrap_gives_wilson_and_no_gap_intervals():
    y, probs, groups = _data(seed=10)
    out = subgroup_metrics(y, probs, NAMES, NEG, groups, n_bootstrap=0)
    g = out["columns"]["site"]["groups"]["A"]
    assert g["recall"]["ci_method"] == "wilson"
    assert g["auc"]["value"] is not None and g["auc"]["ci_low"] is None and "disabled" in g["auc"]["ci_reason"]
    assert g["gap"]["auc"]["diff"] is not None and g["gap"]["auc"]["p_value"] is None
    assert "disabled" in g["gap"]["auc"]["reason"]


# -- between two models ---------------------------------------------------------------------------


def test_subgroup_differences_points_by_sklearn_and_the_site_where_b_loses():
    rng = np.random.default_rng(11)
    n_pat, images = 300, 3
    pat = np.repeat(np.arange(n_pat), images)
    site = rng.choice(["A", "B", "C"], n_pat)[pat]
    y = (rng.random(n_pat) < 0.4).astype(int)[pat]
    noise = rng.normal(0, 1, (2, y.size))
    # B is sharper than A everywhere but site C, where B is no better than chance.
    logit_a = np.where(y == 1, 0.8, -0.8) + noise[0]
    logit_b = np.where(site == "C", rng.normal(0, 1, y.size), np.where(y == 1, 2.0, -2.0) + noise[1])
    pa, pb = (np.column_stack([1 - 1 / (1 + np.exp(-t)), 1 / (1 + np.exp(-t))]) for t in (logit_a, logit_b))
    pid = np.array([f"p-{i:016x}" for i in pat])
    out = subgroup_differences(y, pa, pb, ["normal", "disease"], NEG, {"site": site}, clusters=pid,
                               n_bootstrap=300)
    for label in ("A", "B", "C"):
        m = site == label
        expected = roc_auc_score(y[m], pa[m, 1]) - roc_auc_score(y[m], pb[m, 1])
        got = out["columns"]["site"]["groups"][label]["diff"]["auc"]
        assert got["diff"] == pytest.approx(expected, abs=1e-12)
        assert got["ci_method"] == "cluster-bootstrap-percentile"
    assert out["overall"]["auc"]["favours"] == "b"
    cons = out["columns"]["site"]["consistency"]["auc"]
    assert cons["holds_in_every_group"] is False
    assert cons["groups_against"] == ["C"] and cons["significant_against"] == ["C"]
    # Holm within each metric over the groups.
    ps = [out["columns"]["site"]["groups"][g]["diff"]["auc"]["p_value"] for g in ("A", "B", "C")]
    adj = [out["columns"]["site"]["groups"][g]["diff"]["auc"]["p_adjusted"] for g in ("A", "B", "C")]
    assert adj == pytest.approx(multipletests(ps, method="holm")[1], abs=1e-12)


def test_subgroup_differences_advantage_that_holds_everywhere():
    y, probs, groups = _data(n=1500, seed=12)
    rng = np.random.default_rng(12)
    worse = _softmax(np.log(probs) + rng.normal(0, 1.5, probs.shape))
    out = subgroup_differences(y, worse, probs, NAMES, NEG, {"site": groups["site"]}, n_bootstrap=200)
    cons = out["columns"]["site"]["consistency"]["auc"]
    assert out["overall"]["auc"]["favours"] == "b"
    assert cons["holds_in_every_group"] is True and cons["groups_against"] == [] and cons["n_groups_compared"] == 3
    assert out["overall"]["ece"]["favours"] in ("a", "b")


# -- patient level ---------------------------------------------------------------------------------


def test_patient_level_max_and_mean_against_pandas_groupby():
    rng = np.random.default_rng(13)
    n = 200
    pid = np.array([f"p-{i:016x}" for i in rng.integers(0, 50, n)])
    pid[:5] = ""
    y = rng.choice(3, n, p=[0.6, 0.25, 0.15])
    probs = _softmax(rng.normal(size=(n, 3)))
    frame = pd.DataFrame({"pid": pid, "disease": (y != 0).astype(int), "score": 1 - probs[:, 0]})
    named = frame[frame.pid != ""].groupby("pid")
    for how in ("max", "mean"):
        pl = patient_level(y, probs, pid, NAMES, NEG, aggregate=how)
        assert pl.task == "binary" and pl.class_names == ["no disease", "disease"]
        k = named.ngroups
        np.testing.assert_array_equal(pl.patient_ids[:k], named.size().index.to_numpy())
        np.testing.assert_allclose(pl.probs[:k, 1], getattr(named["score"], how)().to_numpy(), rtol=1e-12)
        np.testing.assert_array_equal(pl.y_true[:k], named["disease"].max().to_numpy())
        np.testing.assert_array_equal(pl.n_images[:k], named.size().to_numpy())
        # Unknown patient: each image stays its own patient.
        assert (pl.patient_ids[k:] == "").sum() == 5 and (pl.n_images[k:] == 1).all()
        np.testing.assert_allclose(pl.probs.sum(axis=1), 1.0)
        m = compute_metrics(pl.y_true, pl.probs, pl.class_names, pl.task, n_bootstrap=0)
        assert m["n"] == k + 5


def test_patient_level_multiclass_leaves_out_patients_whose_images_disagree():
    y = np.array([1, 1, 2, 0, 2, 2])
    probs = _softmax(np.random.default_rng(14).normal(size=(6, 3)))
    pid = np.array(["p-a", "p-a", "p-b", "p-b", "p-c", "p-c"])
    pl = patient_level(y, probs, pid, NAMES, aggregate="mean")
    assert pl.task == "multiclass" and list(pl.patient_ids) == ["p-a", "p-c"]
    np.testing.assert_array_equal(pl.y_true, [1, 2])
    np.testing.assert_allclose(pl.probs[0], probs[:2].mean(axis=0))
    assert pl.excluded == {"n_patients": 1, "n_images": 2, "reason": "images of the patient carry different classes"}
    # Disease-vs-healthy: p-b has a disease image, so it is a disease patient.
    pl2 = patient_level(y, probs, pid, NAMES, NEG)
    np.testing.assert_array_equal(pl2.y_true, [1, 1, 1])
    with pytest.raises(MedauditError) as err:
        patient_level(y, probs, pid, NAMES, aggregate="max")
    assert err.value.param == "aggregate"


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"groups": {"age": np.linspace(20, 80, 900)}}, "groups"),
        ({"groups": {"site": np.array(["A"] * 10)}}, "groups"),
        ({"intersections": [("sex", "scanner")]}, "intersections"),
        ({"intersections": [("sex", "sex")]}, "intersections"),
        ({"min_group_n": 0}, "min_group_n"),
        ({"n_bootstrap": -1}, "n_bootstrap"),
        ({"negative_classes": ["healthy"]}, "negative_classes"),
        ({"negative_classes": NAMES}, "negative_classes"),
        ({"clusters": np.array(["p-1"] * 5)}, "clusters"),
        ({"clusters": np.arange(900)}, "clusters"),
        ({"probs": np.full((900, 3), np.nan)}, "probs"),
        ({"alpha": 1.5}, "alpha"),
    ],
)
def test_bad_input_is_a_medaudit_error_naming_the_parameter(change, param):
    y, probs, groups = _data()
    kwargs = {"groups": groups, "negative_classes": NEG, "probs": probs, **change}
    with pytest.raises(MedauditError) as err:
        subgroup_metrics(y, kwargs.pop("probs"), NAMES, kwargs.pop("negative_classes"), kwargs.pop("groups"),
                         n_bootstrap=kwargs.pop("n_bootstrap", 10), **kwargs)
    assert err.value.param == param
