"""``compute_metrics``: the ``metrics`` block of the report snapshot (docs/report-schema.md).

**Patients.** Given ``clusters`` (hashed patient ids), every interval resamples *patients*, each
with all its images (the cluster bootstrap of :mod:`medaudit.metrics.clustered`, on the same
engine), within the stratum of the patient's largest true class. That includes the proportions
(accuracy, precision, recall, specificity, NPV): their image-level Wilson interval treats a
patient's correlated images as independent and is too narrow, and a design-effect Wilson needs an
intra-patient correlation per rate that a few dozen patients estimate poorly, so they get the
cluster-bootstrap percentile interval instead (``ci_method`` ``"cluster-bootstrap"``, ``k``/``n``
still count images). Intervals are withheld by the number of *patients* behind each value. Point
values do not change. Without ``clusters`` nothing changes (bit for bit).
"""

from __future__ import annotations

import numpy as np

from medaudit.errors import MedauditError
from medaudit.metrics import calibration as cal
from medaudit.metrics.classification import (
    confusion_block,
    confusion_from_sums,
    confusion_json,
    confusion_metrics,
    exact_match_block,
    label_counts_block,
    label_counts_from_sums,
    multilabel_metrics,
    nanmean,
)
from medaudit.metrics.clustered import Clusters, check_clusters, cluster_index, on_clusters
from medaudit.metrics.curves import RankingDesign, auc_ap_from_sums, curves_json, ranking_design
from medaudit.metrics.intervals import estimate, interval_withheld, percentile_ci, proportion, recentred_ci
from medaudit.metrics.resample import Block, SumDesign, point_and_bootstrap
from medaudit.tasks import check_task

SCALARS = (
    "balanced_accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall", "macro_specificity",
    "weighted_precision", "weighted_recall", "auc_macro", "auc_micro", "ap_macro", "kappa", "mcc", "ece", "brier",
)  # fmt: skip
PER_CLASS_BOOT = ("f1", "auc", "ap")
PROPORTIONS = ("precision", "recall", "specificity", "npv")  # per class; Wilson, or cluster bootstrap


def _validate(y_true, probs, class_names, task) -> tuple[np.ndarray, np.ndarray, list[str]]:
    check_task(task, "compute_metrics", param="task")
    names = [str(c) for c in class_names]
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true)
    n = y.shape[0] if y.ndim else 0
    if probs.ndim != 2 or probs.shape != (n, len(names)):
        raise MedauditError(f"compute_metrics: probabilities have shape {probs.shape}, expected ({n}, {len(names)})")
    if n == 0:
        raise MedauditError("compute_metrics: no samples to evaluate; check the split and the predictions file")
    if not np.isfinite(probs).all():
        raise MedauditError("compute_metrics: probabilities contain NaN or inf; re-run `medaudit predict`")
    if task == "binary" and len(names) != 2:
        raise MedauditError(f"compute_metrics: a binary task needs 2 class names, got {len(names)}")
    if not np.issubdtype(y.dtype, np.integer) and not np.array_equal(y, np.round(y)):
        raise MedauditError("compute_metrics: y_true must hold integer class indices (0/1 for multilabel)")
    y = y.astype(np.int64)
    if task == "multilabel":
        if y.shape != probs.shape or not np.isin(y, (0, 1)).all():
            raise MedauditError(f"compute_metrics: multilabel y_true must be 0/1 of shape {probs.shape}")
    elif y.ndim != 1 or y.min() < 0 or y.max() >= len(names):
        raise MedauditError(f"compute_metrics: y_true must be class indices in [0, {len(names)}) of shape ({n},)")
    return y, probs, names


def _canonical_order(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Sort by (true class, probabilities): makes the output independent of input sample order."""
    y2 = y.reshape(len(y), -1)
    keys = [probs[:, j] for j in range(probs.shape[1] - 1, -1, -1)] + [y2[:, j] for j in range(y2.shape[1] - 1, -1, -1)]
    return np.lexsort(keys)


def _design(y, probs, task, n_bins) -> tuple[list[Block], list[RankingDesign]]:
    """All weighted sums of the audit (blocks over samples), and the ranking layout of each class (then micro)."""
    n, c = probs.shape
    ids = np.arange(n)
    ml = task == "multilabel"
    blocks = []
    if ml:
        pred = (probs >= 0.5).astype(np.int64)
        blocks += [label_counts_block("counts", y, pred), exact_match_block("exact", y, pred)]
        positive = y.astype(bool)
    else:
        blocks.append(confusion_block("cm", y, probs.argmax(axis=1), c))
        positive = np.eye(c, dtype=bool)[y]
    groups = []
    for k in range(c):
        d = ranking_design(probs[:, k], positive[:, k])
        blocks.append(Block(f"rank{k}", d.rows, ids, d.n_rows))
        groups.append(d)
    d = ranking_design(probs.ravel(), positive.ravel())
    blocks.append(Block("rank_micro", d.rows, np.repeat(ids, c), d.n_rows))
    groups.append(d)
    conf, outcome, owner = cal.forecasts(y, probs, ml)
    blocks.append(Block("ece", cal.assign_bins(conf, n_bins), owner, n_bins, outcome - conf))
    blocks.append(Block("brier", np.zeros(n, np.int64), ids, 1, cal.brier_per_sample(y, probs, task)))
    return blocks, groups


def _evaluator(task: str, n: int, c: int, groups: list[RankingDesign], n_forecasts: int, positive: int = 1):
    def evaluate(s: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        m = s["brier"].shape[1]
        if task == "multilabel":
            out = multilabel_metrics(label_counts_from_sums(s["counts"], c), s["exact"][0], np.full(m, float(n)))
            out["kappa"] = out["mcc"] = np.full(m, np.nan)
        else:
            out = confusion_metrics(confusion_from_sums(s["cm"], c), ordinal=task == "ordinal")
        aucs, aps = zip(*(auc_ap_from_sums(s[f"rank{k}"], groups[k]) for k in range(c)), strict=True)
        out["auc"], out["ap"] = np.stack(aucs, axis=1), np.stack(aps, axis=1)
        if task == "binary":
            out["auc_macro"], out["ap_macro"] = out["auc"][:, positive], out["ap"][:, positive]
        else:
            out["auc_macro"], out["ap_macro"] = nanmean(out["auc"]), nanmean(out["ap"])
        out["auc_micro"] = auc_ap_from_sums(s["rank_micro"], groups[c], with_ap=False)[0]
        out["ece"] = cal.ece_from_sums(s["ece"], np.full(m, float(n_forecasts)))
        out["brier"] = s["brier"][0] / n
        out["support"] = out["support"].astype(np.int64)
        return out

    return evaluate


def _counts(y: np.ndarray, probs: np.ndarray, ml: bool) -> tuple:
    """Integer one-vs-rest ``tp, fp, fn, tn`` per class (C,) and the number of exact matches."""
    if ml:
        pred, yb = probs >= 0.5, y.astype(bool)
        tp, fp = (yb & pred).sum(0), (~yb & pred).sum(0)
        fn, tn = (yb & ~pred).sum(0), (~yb & ~pred).sum(0)
        return tp, fp, fn, tn, int((pred == yb).all(axis=1).sum())
    c = probs.shape[1]
    cm = np.zeros((c, c), np.int64)
    np.add.at(cm, (y, probs.argmax(axis=1)), 1)
    tp = np.diag(cm)
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    return tp, fp, fn, len(y) - tp - fp - fn, int(tp.sum())


def _governing(counts: tuple, names: list[str], units: dict | None = None) -> dict[str, list[tuple[int, str]]]:
    """Per class, the count that decides whether a bootstrap interval is reported, and its words.

    ``pos``: the class's samples (its F1, recall); ``neg``: the others (specificity);
    ``pred``: its predictions (precision); ``npred``: the other predictions (NPV); ``rank``: the
    smaller of positives and negatives (AUC and AP need both). See
    :func:`~medaudit.metrics.intervals.interval_withheld`. ``units`` (patients, from
    :func:`_patient_units`) replaces the image counts under the cluster bootstrap.
    """
    tp, fp, fn, tn = (np.asarray(x, dtype=np.int64) for x in counts)
    if units is None:
        units = {"pos": tp + fn, "neg": fp + tn, "pred": tp + fp, "npred": tn + fn, "word": "samples"}
    u = units["word"]
    out: dict[str, list[tuple[int, str]]] = {"pos": [], "neg": [], "pred": [], "npred": [], "rank": []}
    for j, name in enumerate(names):
        pos = (int(units["pos"][j]), f"{int(units['pos'][j])} {u} of class '{name}'")
        neg = (int(units["neg"][j]), f"{int(units['neg'][j])} {u} outside class '{name}'")
        out["pos"].append(pos)
        out["neg"].append(neg)
        pred_words = "predictions of" if u == "samples" else f"{u} with predictions of"
        out["pred"].append((int(units["pred"][j]), f"{int(units['pred'][j])} {pred_words} class '{name}'"))
        out["npred"].append((int(units["npred"][j]), f"{int(units['npred'][j])} {u} predicted outside class '{name}'"))
        out["rank"].append(min(pos, neg, key=lambda t: t[0]))
    return out


def _patient_units(cl: Clusters, y: np.ndarray, probs: np.ndarray, ml: bool) -> dict:
    """Distinct patients behind each per-class count (the governing counts of the cluster bootstrap)."""
    c = probs.shape[1]
    pos = y.astype(bool) if ml else np.eye(c, dtype=bool)[y]
    pred = probs >= 0.5 if ml else np.eye(c, dtype=bool)[probs.argmax(axis=1)]
    out = {key: np.array([cl.count(m[:, j]) for j in range(c)], dtype=np.int64)
           for key, m in (("pos", pos), ("neg", ~pos), ("pred", pred), ("npred", ~pred))}
    return {**out, "word": "patients", "n": cl.n_clusters}


def _clustered_proportion(base: dict, ci: tuple[float, float], count: tuple[int, str]) -> dict:
    """A Wilson value object with its interval replaced by the cluster-bootstrap percentile one."""
    if base["value"] is None:
        return base
    out = {**base, "ci_low": None, "ci_high": None, "ci_method": None}
    withheld = interval_withheld(ci, *count)
    if withheld:
        return {**out, "ci_reason": withheld}
    if np.isfinite(ci[0]) and np.isfinite(ci[1]):
        out.update(ci_low=float(ci[0]), ci_high=float(ci[1]), ci_method="cluster-bootstrap")
    return out


def _per_class_json(point: dict, ci: dict, names: list[str], counts: tuple, units: dict | None = None,
                    method: str = "bootstrap") -> dict:
    tp, fp, fn, tn = counts
    gov = _governing(counts, names, units)
    per_class = {}
    for j, name in enumerate(names):
        no_pos = f"no samples of class '{name}' in y_true"
        no_neg = f"every sample belongs to class '{name}' (no negatives)"

        def boot(key: str, reason: str, kind: str, j: int = j) -> dict:
            interval = tuple(ci[key][:, j])
            return estimate(point[key][j], interval, reason, method,
                            ci_reason=interval_withheld(interval, *gov[kind][j]))

        def prop(key: str, k, n, reason: str, kind: str, j: int = j) -> dict:
            value = proportion(k, n, reason)
            return value if units is None else _clustered_proportion(value, tuple(ci[key][:, j]), gov[kind][j])

        per_class[name] = {
            "support": int(tp[j] + fn[j]),
            "precision": prop("precision", tp[j], tp[j] + fp[j], f"class '{name}' is never predicted", "pred"),
            "recall": prop("recall", tp[j], tp[j] + fn[j], no_pos, "pos"),
            "specificity": prop("specificity", tn[j], tn[j] + fp[j], no_neg, "neg"),
            "npv": prop("npv", tn[j], tn[j] + fn[j], f"every sample is predicted as class '{name}'", "npred"),
            "f1": boot("f1", no_pos, "pos"),
            "auc": boot("auc", no_pos if tp[j] + fn[j] == 0 else no_neg, "rank"),
            "ap": boot("ap", no_pos, "rank"),
            "missed_disease_rate": None,
        }
    return per_class


# Averages: which per-class value they average (for the note naming skipped classes).
_AVERAGED = {"macro_f1": "f1", "weighted_f1": "f1", "macro_precision": "precision", "macro_recall": "recall",
             "macro_specificity": "specificity", "weighted_precision": "precision", "weighted_recall": "recall",
             "balanced_accuracy": "recall", "auc_macro": "auc", "ap_macro": "ap"}  # fmt: skip
# The governing count of a macro average's terms (see _governing); weighted averages use the
# samples they are taken over, because a small class weighs in only by its share.
_TERM_COUNT = {"f1": "pos", "precision": "pred", "recall": "pos", "specificity": "neg", "auc": "rank", "ap": "rank"}
_NO_VARIATION = "labels and predictions leave no variation beyond chance (denominator 0)"


def _averaged_over(key: str, point: dict, task: str) -> np.ndarray | None:
    """Which classes the average ``key`` is taken over, bool (C,); None if ``key`` is no class average."""
    if task == "binary" and key in ("auc_macro", "ap_macro"):
        return None  # the positive class's own value, not an average
    if key == "balanced_accuracy" and task == "multilabel":
        return np.isfinite(point["recall"]) & np.isfinite(point["specificity"])
    source = _AVERAGED.get(key)
    return None if source is None else np.isfinite(point[source])


def _scalar_count(key: str, defined: np.ndarray | None, gov: dict, n: int, task: str,
                  positive: int, unit: str = "samples") -> tuple[int, str]:
    """The governing count of a scalar: its smallest term's count, or the samples it is taken over."""
    if task == "binary" and key in ("auc_macro", "ap_macro"):
        return gov["rank"][positive]
    if defined is not None and defined.any():
        if key.startswith("weighted_"):
            total = sum(gov["pos"][j][0] for j in np.flatnonzero(defined))
            return total, f"{total} {unit}"
        kind = "rank" if key == "balanced_accuracy" and task == "multilabel" else _TERM_COUNT[_AVERAGED[key]]
        return min((gov[kind][j] for j in np.flatnonzero(defined)), key=lambda t: t[0])
    if key in ("kappa", "mcc", "kappa_quadratic") and task != "multilabel":
        # Chance-corrected agreement needs every class's row; a class resampled from a few
        # samples barely varies, which narrows the interval.
        present = [t for t in gov["pos"] if t[0] > 0]
        return min(present, key=lambda t: t[0]) if present else (n, f"{n} {unit}")
    return n, f"{n} {unit}"


def _scalars_json(point: dict, ci: dict, names: list[str], task: str, counts: tuple, n: int,
                  positive: int = 1, units: dict | None = None, method: str = "bootstrap") -> dict:
    ml, c = task == "multilabel", len(names)
    gov = _governing(counts, names, units)
    n_units, unit = (n, "samples") if units is None else (units["n"], units["word"])
    reasons = {
        "kappa": "multilabel task: see per-label metrics" if ml else _NO_VARIATION,
        "mcc": "multilabel task: see per-label metrics" if ml else _NO_VARIATION,
        "ece": "no samples",
        "brier": "no samples",
        "auc_micro": "pooled labels hold a single value (no positives or no negatives)",
        "balanced_accuracy": "sensitivity or specificity is undefined for every label" if ml else None,
    }
    if task == "binary":
        reasons["auc_macro"] = f"AUC of the positive class '{names[positive]}' is undefined"
        reasons["ap_macro"] = f"AP of the positive class '{names[positive]}' is undefined"
    out = {}
    keys = list(SCALARS) + (["kappa_quadratic"] if task == "ordinal" else [])
    for key in keys:
        defined = _averaged_over(key, point, task)
        reason = reasons.get(key) or (_NO_VARIATION if key == "kappa_quadratic"
                                      else f"{_AVERAGED.get(key, key)} is undefined for every class")
        interval = tuple(ci[key][:, 0])
        withheld = interval_withheld(interval, *_scalar_count(key, defined, gov, n_units, task, positive, unit))
        value = estimate(point[key], interval, reason, method + "-recentred" if key == "ece" else method,
                         ci_reason=withheld)
        if defined is not None and value["value"] is not None:
            # Machine-readable for the gate (an average over some classes is not the average
            # over all); the note says the same in words for the report.
            value["classes_defined"], value["classes_total"] = int(defined.sum()), c
            skipped = [nm for j, nm in enumerate(names) if not defined[j]]
            if skipped:
                value["note"] = f"over {c - len(skipped)} of {c} classes; undefined for: " + ", ".join(skipped)
        out[key] = value
    if task != "ordinal":
        out["kappa_quadratic"] = None
    return out


def compute_metrics(
    y_true, probs, class_names, task, *, n_bootstrap: int = 1000, seed: int = 0, ece_bins: int = 15,
    positive_class: str | None = None, clusters=None,
) -> dict:
    """The ``metrics`` block of the report snapshot, with confidence intervals.

    Parameters
    ----------
    y_true : array_like of int, shape (N,), or (N, K) 0/1 for ``task="multilabel"``
    probs : array_like of float, shape (N, C)
        Softmax probabilities (single-label) or per-label sigmoid probabilities (multilabel).
        Prediction = argmax (single-label) or ``p >= 0.5`` per label.
    class_names : list of str, length C
    task : {"binary", "multiclass", "multilabel", "ordinal"}
    n_bootstrap : int
        Resamples of the percentile bootstrap (0 = no bootstrap intervals). Single-label tasks
        resample within each true class (class supports fixed); multilabel resamples samples.
    seed : int
        Seed of the bootstrap ``numpy.random.Generator``; same inputs + seed = same output, and
        the input sample order does not matter (samples are put in a canonical order first).
    ece_bins : int
    positive_class : str, optional
        Binary tasks: the class whose AUC/AP is the headline ``auc_macro``/``ap_macro`` (the
        disease class). Default: the second class (index 1). AP is not symmetric, so this
        matters: the AP of a majority "healthy" class would flatter the model.
    clusters : array_like of str, shape (N,), optional
        Hashed patient id of each sample (``""`` = unknown: its own patient). Given: the cluster
        bootstrap for every interval, proportions included (module doc); point values unchanged.
        None: resampling images, Wilson intervals for proportions.

    Returns
    -------
    dict
        JSON-ready (python floats/ints/lists/None). Proportions carry Wilson intervals with
        ``k``/``n``; other statistics bootstrap intervals (NaN replicates — e.g. a class not
        predicted in a resample — are skipped; no interval when fewer than half are defined).
        Undefined values are ``None`` with a ``reason`` (policy: :mod:`medaudit.metrics.classification`).
        Averages that skip classes where a value is undefined carry a ``note`` naming them.
        ``missed_disease_rate`` entries are left None for the caller (see :func:`fn_risk`).
    """
    y, probs, names = _validate(y_true, probs, class_names, task)
    if n_bootstrap < 0:
        raise MedauditError(f"compute_metrics: n_bootstrap must be >= 0, got {n_bootstrap}", param="n_bootstrap")
    if ece_bins < 1:
        raise MedauditError(f"compute_metrics: ece_bins must be >= 1, got {ece_bins}", param="ece_bins")
    ids = check_clusters(clusters, y.shape[0])
    order = _canonical_order(y, probs)
    y, probs = y[order], probs[order]
    n, c = probs.shape
    ml = task == "multilabel"
    blocks, groups = _design(y, probs, task, ece_bins)
    positive = 1
    if positive_class is not None and task == "binary":
        if positive_class not in names:
            raise MedauditError(f"{positive_class!r} is not a class; classes are: {', '.join(names)}",
                                param="positive_class")
        positive = names.index(positive_class)
    evaluate = _evaluator(task, n, c, groups, n * c if ml else n, positive)
    strata = [n] if ml else np.bincount(y, minlength=c).tolist()
    keys = list(SCALARS) + list(PER_CLASS_BOOT) + (["kappa_quadratic"] if task == "ordinal" else [])
    units, method = None, "bootstrap"
    if ids is None:
        design = SumDesign(n, blocks)
    else:
        # Patients resampled, within the stratum of their largest true class (multilabel: one stratum).
        cl = cluster_index(ids[order], np.zeros(n, np.int64) if ml else y)
        design, strata = SumDesign(cl.n_clusters, on_clusters(blocks, cl)), cl.strata_sizes
        keys += ["accuracy", *PROPORTIONS]
        units, method = _patient_units(cl, y, probs, ml), "cluster-bootstrap"
    point, boot = point_and_bootstrap(design, evaluate, strata, n_bootstrap, seed, keys)
    ci = {k: percentile_ci(boot[k].reshape(n_bootstrap, int(np.prod(boot[k].shape[1:])))) for k in keys}
    # ECE is biased upward under resampling: its percentile interval can miss the estimate.
    ci["ece"] = recentred_ci(ci["ece"], boot["ece"].reshape(n_bootstrap, 1), np.atleast_1d(point["ece"]))

    *counts, n_exact = _counts(y, probs, ml)
    accuracy = proportion(n_exact, n, "no samples")
    if units is not None:
        accuracy = _clustered_proportion(accuracy, tuple(ci["accuracy"][:, 0]),
                                         (units["n"], f"{units['n']} patients"))
        out_n = {"n": int(n), "n_patients": int(units["n"])}
    else:
        out_n = {"n": int(n)}
    out = {**out_n, "accuracy": accuracy, "missed_disease_rate": None}
    out.update(_scalars_json(point, ci, names, task, counts, int(n), positive, units, method))
    out["per_class"] = _per_class_json(point, ci, names, counts, units, method)
    out["confusion_matrix"] = confusion_json(names, y, probs, ml)
    out["curves"] = curves_json(names, y, probs, ml)
    conf, outcome, _ = cal.forecasts(y, probs, ml)
    out["calibration"] = cal.reliability(conf, outcome, ece_bins)
    return out
