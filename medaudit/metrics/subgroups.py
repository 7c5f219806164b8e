"""Subgroup performance (sex, age band, site, scanner...): per group, against the rest, between models.

Everything is computed in the **disease-vs-healthy** view of :mod:`medaudit.metrics.risk`:

* *disease* = the true class is not a negative ("no disease") class;
* *called disease* = the argmax class is not a negative class (the rule of
  :func:`~medaudit.metrics.risk.missed_disease_mask`, so ``missed_disease_rate = 1 - recall``);
* the ranking score for AUC is ``p(disease) = 1 - sum p(negative classes)``;
* ECE is the top-label ECE of :func:`~medaudit.metrics.compute_metrics` (confidence = top
  probability, correct = argmax is the true class), so a group's ECE compares with the overall one.

**Intervals.** Without patient ids: Wilson intervals for the proportions (prevalence, recall,
specificity, PPV, NPV, missed-disease rate) and the stratified percentile bootstrap (resampling
images within disease / healthy) for AUC, ECE and every gap. With patient ids (``clusters``):
the *cluster bootstrap* for everything — patients are resampled, each with all its images,
within disease / healthy patients (a patient with any disease image is a disease patient); see
:mod:`medaudit.metrics.clustered`. A design-effect-corrected Wilson interval is not used: it
needs the intra-patient correlation of each rate in each group, which a few dozen patients
estimate poorly, while the cluster bootstrap needs no such estimate (and the simulations in
``tests/test_metrics_subgroups.py`` show it near nominal where image-level intervals are not).
ECE intervals are recentred (:func:`~medaudit.metrics.intervals.recentred_ci`).

**Group vs rest.** Each group's gap is ``value(group) - value(every other sample)`` (the rest
includes samples whose value of the column is unknown). Its interval is the percentile
interval of the same resamples; its p-value is the bootstrap test that inverts that interval,
``min(1, 2 min(#{d* <= 0} + 1, #{d* >= 0} + 1) / (B + 1))`` over the B resamples where the
gap is defined (two-sided; the +1 keeps it from being 0). p-values are **Holm**-adjusted
within each metric over every group of every column (and intersection) in the call.

**Too few to estimate.** A value whose governing count — disease cases for recall and missed
disease, healthy cases for specificity, called-disease / called-healthy cases for PPV / NPV,
the smaller of disease and healthy for AUC, all cases for prevalence and ECE — is below
``min_group_n`` is ``None`` with the reason "too few to estimate", never a number; with
patient ids the counts are patients, not images (a gap needs the count in the group and in
the rest; between two models, PPV / NPV take the smaller model's count). Such a value has no gap, is out
of the Holm family and cannot be the worst group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from medaudit.errors import MedauditError
from medaudit.metrics import calibration as cal
from medaudit.metrics.classification import ratio
from medaudit.metrics.clustered import Clusters, check_clusters, cluster_index, negative_indices, on_clusters
from medaudit.metrics.curves import RankingDesign, auc_ap_from_sums, ranking_design
from medaudit.metrics.intervals import (
    estimate,
    interval_withheld,
    percentile_ci,
    proportion,
    recentred_ci,
    undefined,
)
from medaudit.metrics.resample import Block, SumDesign, point_and_bootstrap
from medaudit.metrics.significance import holm

METRICS = ("prevalence", "recall", "specificity", "ppv", "npv", "auc", "missed_disease_rate", "ece")
GAP_METRICS = METRICS[1:]  # prevalence differs between groups by nature, not by the model
LOWER_IS_BETTER = frozenset({"missed_disease_rate", "ece"})
_PROPORTIONS = {  # metric: (numerator, denominator) of the Wilson interval, from the 4 counts
    "prevalence": (("fn", "tp"), ("tn", "fp", "fn", "tp")), "recall": (("tp",), ("tp", "fn")),
    "specificity": (("tn",), ("tn", "fp")), "ppv": (("tp",), ("tp", "fp")), "npv": (("tn",), ("tn", "fn")),
    "missed_disease_rate": (("fn",), ("tp", "fn")),
}  # fmt: skip
# The governing count of each metric (see the module doc) and its words.
_GOVERNING = {"prevalence": "n", "recall": "pos", "missed_disease_rate": "pos", "specificity": "neg",
              "ppv": "pred_pos", "npv": "pred_neg", "auc": "auc", "ece": "n"}
_COUNT_WORDS = {"n": "{} {u}", "pos": "{} disease {u}", "neg": "{} healthy {u}",
                "pred_pos": "{} {u} called disease", "pred_neg": "{} {u} called healthy",
                "auc": "{} {u} in the smaller of disease and healthy"}
_UNDEFINED = {"prevalence": "no samples", "recall": "no disease samples", "missed_disease_rate": "no disease samples",
              "specificity": "no healthy samples", "ppv": "no sample is called disease",
              "npv": "no sample is called healthy", "auc": "needs both disease and healthy samples",
              "ece": "no samples"}
UNKNOWN = "unknown"


# -- inputs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    name: str
    labels: list[str]  # group labels, sorted, "unknown" last
    unknown: list[bool]
    codes: np.ndarray  # (N,) int64 in [0, G)


@dataclass(frozen=True)
class _View:
    """One model's per-sample quantities in the disease-vs-healthy view."""

    disease: np.ndarray  # (N,) bool
    called: np.ndarray  # (N,) bool: argmax is a disease class
    score: np.ndarray  # (N,) float: 1 - sum p(negatives)
    bins: np.ndarray  # (N,) int: top-label confidence bin
    miscal: np.ndarray  # (N,) float: correct - confidence


def _check_probs(probs, n: int, c: int, what: str) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (n, c):
        raise MedauditError(f"{what}: shape {p.shape}, expected ({n}, {c})", param=what)
    if not np.isfinite(p).all():
        raise MedauditError(f"{what}: contains NaN or inf; re-run `medaudit predict`", param=what)
    return p


def _check_labels(y_true, c: int) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1 or y.size == 0:
        raise MedauditError(f"y_true must be a non-empty 1-D array of class indices, got shape {y.shape}",
                            param="y_true")
    if not np.issubdtype(y.dtype, np.integer) and not (y.dtype.kind == "f" and np.array_equal(y, np.round(y))):
        raise MedauditError("y_true must hold integer class indices", param="y_true")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= c:
        raise MedauditError(f"y_true must hold class indices in [0, {c})", param="y_true")
    return y


def _check_groups(groups: Mapping[str, np.ndarray] | None, n: int) -> dict[str, np.ndarray]:
    """Categorical columns as str arrays (N,) with ``""`` = unknown."""
    out = {}
    for name, values in (groups or {}).items():
        arr = np.asarray(values)
        if arr.ndim != 1 or arr.shape[0] != n:
            raise MedauditError(f"group column {name!r}: need one value per sample ({n}), got shape {arr.shape}",
                                param="groups")
        if arr.dtype.kind == "f":
            raise MedauditError(f"group column {name!r} is numeric; cut it into bands first (e.g. age 0-39, 40-64, "
                                "65+) so each group is a category", param="groups")
        if arr.dtype.kind == "O":
            arr = np.asarray(["" if v is None else str(v) for v in arr], dtype=str)
        elif arr.dtype.kind in "biu":
            arr = arr.astype(str)  # integer codes (site 1, 2, 3) are categories
        elif arr.dtype.kind != "U":
            raise MedauditError(f"group column {name!r}: need categorical strings, got {arr.dtype}", param="groups")
        out[str(name)] = np.char.strip(arr)
    return out


def _columns(groups: dict[str, np.ndarray], intersections: Sequence[tuple[str, str]]) -> list[_Column]:
    cols = dict(groups)
    for pair in intersections or ():
        if len(pair) != 2 or pair[0] == pair[1] or any(p not in groups for p in pair):
            raise MedauditError(f"intersection {tuple(pair)!r}: need two different group columns from "
                                f"{sorted(groups)}", param="intersections")
        a, b = groups[pair[0]], groups[pair[1]]
        joined = np.char.add(np.char.add(a, " & "), b)
        cols[f"{pair[0]} & {pair[1]}"] = np.where((a == "") | (b == ""), "", joined)
    out = []
    for name, values in cols.items():
        labels = sorted(set(values.tolist()) - {""})
        has_unknown = bool((values == "").any())
        codes = np.searchsorted(np.asarray(labels, dtype=str), values) if labels else np.zeros(len(values), np.int64)
        codes = np.where(values == "", len(labels), codes).astype(np.int64)
        out.append(_Column(name, labels + [UNKNOWN] * has_unknown, [False] * len(labels) + [True] * has_unknown,
                           codes))
    return out


def _view(y: np.ndarray, probs: np.ndarray, neg_idx: list[int], n_bins: int) -> _View:
    pred = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    return _View(disease=~np.isin(y, neg_idx), called=~np.isin(pred, neg_idx),
                 score=1.0 - probs[:, neg_idx].sum(axis=1), bins=cal.assign_bins(conf, n_bins),
                 miscal=(pred == y).astype(np.float64) - conf)


# -- weighted sums -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Where one (model, column)'s sums sit: the rank block's units (group, then its rest)."""

    key: str
    n_groups: int
    units: list[tuple[int, RankingDesign]]  # (row offset, design) per unit
    rest: bool


def _blocks(tag: str, col: _Column | None, v: _View, n_bins: int, rest: bool) -> tuple[list[Block], _Layout]:
    """Count, calibration and ranking blocks of one model over one column (None = all samples)."""
    n = v.disease.shape[0]
    ids = np.arange(n)
    codes = np.zeros(n, np.int64) if col is None else col.codes
    g_count = 1 if col is None else len(col.labels)
    key = f"{tag}|{'*' if col is None else col.name}"
    outcome = 2 * v.disease.astype(np.int64) + v.called  # 0 tn, 1 fp, 2 fn, 3 tp
    blocks = [Block(f"cm{key}", codes * 4 + outcome, ids, 4 * g_count),
              Block(f"ece{key}", codes * n_bins + v.bins, ids, n_bins * g_count, v.miscal)]
    rows, cols, units, offset = [], [], [], 0
    for g in range(g_count):
        member = codes == g
        for mask in (member, ~member) if rest else (member,):
            # Rows grow with the distinct scores of the positives: rank the smaller class as the
            # positives (AUC(s; disease) = AUC(-s; healthy), ties included).
            pos = v.disease[mask]
            flip = 2 * int(pos.sum()) > pos.size
            d = ranking_design(-v.score[mask], ~pos) if flip else ranking_design(v.score[mask], pos)
            rows.append(d.rows + offset)
            cols.append(ids[mask])
            units.append((offset, d))
            offset += d.n_rows
    blocks.append(Block(f"rank{key}", np.concatenate(rows), np.concatenate(cols), offset))
    return blocks, _Layout(key, g_count, units, rest)


def _rates(tn, fp, fn, tp, ece_abs, auc) -> dict[str, np.ndarray]:
    n = tn + fp + fn + tp
    return {"prevalence": ratio(fn + tp, n), "recall": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp),
            "ppv": ratio(tp, tp + fp), "npv": ratio(tn, tn + fn), "auc": auc,
            "missed_disease_rate": ratio(fn, tp + fn), "ece": ratio(ece_abs, n)}


def _column_stats(s: dict, lay: _Layout, n_bins: int, total: tuple | None) -> tuple[dict, dict | None, tuple]:
    """Per-group metrics (m, G), and the rest's (m, G) when the layout has rest units."""
    g = lay.n_groups
    cm = s[f"cm{lay.key}"].astype(np.float64).reshape(g, 4, -1)
    tn, fp, fn, tp = (cm[:, j, :].T for j in range(4))  # (m, G)
    ece = s[f"ece{lay.key}"].reshape(g, n_bins, -1)  # (G, bins, m)
    rank = s[f"rank{lay.key}"]
    aucs = [auc_ap_from_sums(rank[off:off + d.n_rows], d, with_ap=False)[0] for off, d in lay.units]
    step = 2 if lay.rest else 1
    group = _rates(tn, fp, fn, tp, np.abs(ece).sum(axis=1).T, np.stack(aucs[::step], axis=1))
    sums = (tn, fp, fn, tp, ece)
    if not lay.rest or total is None:
        return group, None, sums
    t_tn, t_fp, t_fn, t_tp, t_ece = total
    rest = _rates(t_tn - tn, t_fp - fp, t_fn - fn, t_tp - tp, np.abs(t_ece - ece).sum(axis=1).T,
                  np.stack(aucs[1::2], axis=1))
    return group, rest, sums


def _prepare(y, probs_list, class_names, negative_classes, groups, clusters, intersections, n_bootstrap, seed,
             alpha, min_group_n, ece_bins):
    """Validate, put the samples in a canonical order, number the clusters."""
    names = [str(c) for c in class_names]
    if len(names) < 2:
        raise MedauditError("need at least 2 classes", param="class_names")
    y = _check_labels(y, len(names))
    n = y.shape[0]
    probs_list = [_check_probs(p, n, len(names), what) for p, what in probs_list]
    neg_idx = negative_indices(names, negative_classes)
    cl = check_clusters(clusters, n)
    cols_in = _check_groups(groups, n)
    for value, name, low in ((n_bootstrap, "n_bootstrap", 0), (min_group_n, "min_group_n", 1), (ece_bins, "ece_bins", 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise MedauditError(f"{name} must be a whole number >= {low}, got {value!r}", param=name)
    if not 0.0 < alpha < 1.0:
        raise MedauditError(f"alpha must be in (0, 1), got {alpha}", param="alpha")
    # Canonical order (contents, not input position) so that the seeded resamples do not depend on
    # how the caller ordered the samples.
    # Strings are sorted once, as integer codes (sorting strings in lexsort is slow).
    text = ([cl] if cl is not None else []) + [cols_in[k] for k in sorted(cols_in)]
    keys = [c for p in probs_list for c in p.T] + [y] + [np.unique(t, return_inverse=True)[1] for t in text]
    order = np.lexsort(keys[::-1])
    y = y[order]
    probs_list = [p[order] for p in probs_list]
    cl = None if cl is None else cl[order]
    cols_in = {k: v[order] for k, v in cols_in.items()}
    columns = _columns(cols_in, intersections)
    views = [_view(y, p, neg_idx, ece_bins) for p in probs_list]
    clusters_ = cluster_index(cl, views[0].disease.astype(np.int64))
    return names, neg_idx, views, columns, clusters_


# -- counts that govern estimability ----------------------------------------------------------------


def _distinct(clusters: Clusters, codes: np.ndarray, mask: np.ndarray, g_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct clusters among the masked samples, per group and in each group's rest: two (G,) int.

    A cluster is in the rest of ``g`` when one of its masked samples is outside ``g``, i.e. unless
    all of them are in ``g``: rest = all masked clusters - those only seen in ``g``.
    """
    k = max(clusters.n_clusters, 1)
    pairs = np.unique(codes[mask] * k + clusters.index[mask])
    group, cluster = pairs // k, pairs % k
    per_group = np.bincount(group, minlength=g_count)
    seen = np.bincount(cluster, minlength=k)  # distinct groups each cluster shows up in
    only = np.bincount(group[seen[cluster] == 1], minlength=g_count)
    return per_group, int((seen > 0).sum()) - only


def _governing_counts(clusters: Clusters, codes: np.ndarray, g_count: int, views: list[_View]) -> list[dict]:
    """Per group, the units (patients or images) behind each governing count: ``group`` and ``rest`` dicts."""
    v = views[0]
    masks = {"n": np.ones_like(v.disease), "pos": v.disease, "neg": ~v.disease}
    found = {key: _distinct(clusters, codes, mask, g_count) for key, mask in masks.items()}
    # Predicted counts differ between models: the smallest governs a comparison.
    for key, sign in (("pred_pos", True), ("pred_neg", False)):
        each = [_distinct(clusters, codes, w.called == sign, g_count) for w in views]
        found[key] = tuple(np.min([e[j] for e in each], axis=0) for j in range(2))
    found["auc"] = tuple(np.minimum(found["pos"][j], found["neg"][j]) for j in range(2))
    return [{side: {key: int(x[j][g]) for key, x in found.items()} for j, side in enumerate(("group", "rest"))}
            for g in range(g_count)]


def _count_words(kind: str, count: int, unit: str) -> str:
    return _COUNT_WORDS[kind].format(count, u=unit)


# -- JSON ----------------------------------------------------------------------------------------


def bootstrap_p_value(samples: np.ndarray, min_defined: float = 0.5) -> float | None:
    """Two-sided bootstrap p-value of "the statistic is 0", inverting the percentile interval.

    Parameters
    ----------
    samples : ndarray, shape (B,)
        Bootstrap replicates of a difference; NaN = undefined in that resample.
    min_defined : float
        No p-value when fewer than this share of replicates are defined (as
        :func:`~medaudit.metrics.intervals.percentile_ci`).

    Returns
    -------
    float or None
        ``min(1, 2 min(#{d <= 0} + 1, #{d >= 0} + 1) / (B' + 1))`` over the ``B'`` defined
        replicates: the smallest alpha whose percentile interval excludes 0, with the +1 of
        Davison & Hinkley (1997, eq. 4.11) so that it is never 0.
    """
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0 or s.size < min_defined * np.asarray(samples).size:
        return None
    return float(min(1.0, 2.0 * (min((s <= 0).sum(), (s >= 0).sum()) + 1) / (s.size + 1)))


def _counts_int(sums: tuple, g: int) -> dict[str, int]:
    tn, fp, fn, tp, _ = sums
    return {"tn": int(round(tn[0, g])), "fp": int(round(fp[0, g])), "fn": int(round(fn[0, g])),
            "tp": int(round(tp[0, g]))}


class _Builder:
    """Turns points, resamples and counts into value objects (one place for the interval rules)."""

    def __init__(self, clustered: bool, n_bootstrap: int, alpha: float, min_n: int):
        self.clustered, self.n_bootstrap, self.alpha, self.min_n = clustered, n_bootstrap, alpha, min_n
        self.unit = "patients" if clustered else "images"
        self.method = "cluster-bootstrap" if clustered else "bootstrap"

    def too_few(self, metric: str, gov: dict) -> str | None:
        kind = _GOVERNING[metric]
        if gov[kind] >= self.min_n:
            return None
        return (f"too few to estimate: {_count_words(kind, gov[kind], self.unit)} "
                f"(fewer than min_group_n={self.min_n})")

    def _ci(self, boot: np.ndarray, point: float, recentre: bool) -> tuple[float, float] | None:
        if self.n_bootstrap == 0:
            return None
        ci = percentile_ci(boot.reshape(-1, 1), self.alpha)
        if recentre:
            ci = recentred_ci(ci, boot.reshape(-1, 1), np.atleast_1d(point))
        return float(ci[0, 0]), float(ci[1, 0])

    def value(self, metric: str, point: float, boot: np.ndarray, gov: dict, counts: dict[str, int]) -> dict:
        reason = self.too_few(metric, gov)
        if reason:
            return {**undefined(reason), "too_few": True}
        if not self.clustered and metric in _PROPORTIONS:
            num, den = _PROPORTIONS[metric]
            return proportion(sum(counts[k] for k in num), sum(counts[k] for k in den), _UNDEFINED[metric],
                              self.alpha)
        kind = _GOVERNING[metric]
        ci = self._ci(boot, point, metric == "ece")
        withheld = ("bootstrap disabled (0 resamples)" if self.n_bootstrap == 0
                    else interval_withheld(ci, gov[kind], _count_words(kind, gov[kind], self.unit)))
        method = self.method + ("-recentred" if metric == "ece" else "")
        return estimate(point, ci, _UNDEFINED[metric], method, ci_reason=withheld)

    def difference(self, metric: str, point: float, boot: np.ndarray, govs: list[dict], what: str) -> dict:
        out = {"diff": None, "ci_low": None, "ci_high": None, "ci_method": None, "p_value": None,
               "p_adjusted": None, "reason": None}
        reasons = [r for r in (self.too_few(metric, g) for g in govs) if r]
        if reasons:
            return {**out, "reason": reasons[0] + f" ({what})", "too_few": True}
        if not np.isfinite(point):
            return {**out, "reason": f"{metric} is undefined ({what})"}
        out["diff"] = float(point)
        if self.n_bootstrap == 0:
            return {**out, "reason": "bootstrap disabled (0 resamples)"}
        ci = self._ci(boot, point, False)
        if not (np.isfinite(ci[0]) and np.isfinite(ci[1])):
            return {**out, "reason": f"{metric} is undefined in most bootstrap resamples"}
        kind = _GOVERNING[metric]
        count = min(g[kind] for g in govs)
        withheld = interval_withheld(ci, count, _count_words(kind, count, self.unit))
        if withheld:
            return {**out, "reason": withheld}
        return {**out, "ci_low": ci[0], "ci_high": ci[1], "ci_method": self.method + "-percentile",
                "p_value": bootstrap_p_value(boot)}


def _adjust(entries: list[dict]) -> None:
    """Holm within each metric over the given gap/difference entries ({metric: entry} dicts)."""
    for metric in GAP_METRICS:
        family = [e[metric] for e in entries if metric in e]
        for entry, p in zip(family, holm([e["p_value"] for e in family]), strict=True):
            entry["p_adjusted"] = p


def _worst(groups: dict, column: _Column) -> dict:
    out = {}
    for metric in GAP_METRICS:
        cands = [(groups[lab][metric]["value"], lab) for lab, unk in zip(column.labels, column.unknown, strict=True)
                 if not unk and groups[lab][metric]["value"] is not None]
        if not cands:
            out[metric] = None
            continue
        value, label = (max if metric in LOWER_IS_BETTER else min)(cands)
        out[metric] = {"group": label, "value": value, "direction": "highest" if metric in LOWER_IS_BETTER else
                       "lowest", "n_groups_compared": len(cands)}
    return out


def _settings(b: _Builder, names, neg_idx, clusters: Clusters, n_bootstrap, seed, alpha, min_group_n, ece_bins,
              paired: bool) -> dict:
    if b.clustered:
        intervals = ("cluster bootstrap: patients resampled with all their images, within disease / healthy "
                     "patients; percentile intervals (ECE recentred); no design-effect Wilson")
    else:
        intervals = ("Wilson for proportions; bootstrap resampling images within disease / healthy for AUC, "
                     "ECE (recentred) and " + ("differences" if paired else "gaps"))
    return {
        "negative_classes": [names[j] for j in neg_idx],
        "decision": "called disease when the argmax class is not a negative class",
        "score": "p(disease) = 1 - sum p(negative classes) (for AUC)",
        "ece": f"top-label, {ece_bins} equal-width bins",
        "intervals": intervals,
        "p_values": "two-sided bootstrap (inverted percentile interval), Holm-adjusted within each metric over "
                    "every group of every column",
        "comparison": "model A - model B on the same resamples (paired)" if paired else
                      "group - every other sample (unknowns included in the rest)",
        "clusters": bool(clusters.given),
        "n_clusters": int(clusters.n_clusters),
        "n_bootstrap": int(n_bootstrap),
        "seed": int(seed),
        "confidence": 1.0 - alpha,
        "min_group_n": int(min_group_n),
    }


def _run(views, columns, clusters, ece_bins, n_bootstrap, seed, rest: bool):
    """Point values and resamples of every (model, column) layout on one design."""
    blocks, layouts = [], {}
    for t in range(len(views)):
        for col in [None, *columns]:
            b, lay = _blocks(str(t), col, views[t], ece_bins, rest and col is not None)
            blocks += b
            layouts[(t, None if col is None else col.name)] = lay
    design = SumDesign(clusters.n_clusters, on_clusters(blocks, clusters))

    def evaluate(s):
        out = {}
        for t in range(len(views)):
            overall, _, total = _column_stats(s, layouts[(t, None)], ece_bins, None)
            for k, x in overall.items():
                out[f"{t}|*|{k}"] = x
            for col in columns:
                group, other, _ = _column_stats(s, layouts[(t, col.name)], ece_bins, total)
                for k in METRICS:
                    out[f"{t}|{col.name}|{k}"] = group[k]
                    if other is not None:
                        out[f"{t}|{col.name}|{k}|gap"] = group[k] - other[k]
        if len(views) == 2:
            for k in list(out):
                if k.startswith("0|"):
                    out["d" + k[1:]] = out[k] - out["1" + k[1:]]
        return out

    ones = {k: v.astype(np.float64) for k, v in design.sums(np.ones((clusters.n_clusters, 1))).items()}
    keys = list(evaluate(ones))
    point, boot = point_and_bootstrap(design, evaluate, clusters.strata_sizes, n_bootstrap, seed, keys)
    sums = {key: _column_stats(ones, lay, ece_bins, None)[2] for key, lay in layouts.items()}
    return point, boot, sums


def _group_counts(clusters: Clusters, codes: np.ndarray, g_count: int, v: _View) -> list[dict]:
    n = np.bincount(codes, minlength=g_count)
    pos = np.bincount(codes[v.disease], minlength=g_count)
    out = []
    for g in range(g_count):
        row = {"n": int(n[g]), "n_disease": int(pos[g]), "n_patients": None, "n_disease_patients": None}
        if clusters.given:
            member = codes == g
            row["n_patients"] = clusters.count(member)
            row["n_disease_patients"] = clusters.count(member & v.disease)
        out.append(row)
    return out


def subgroup_metrics(
    y_true, probs, class_names, negative_classes, groups: Mapping[str, np.ndarray] | None, *,
    clusters=None, intersections: Sequence[tuple[str, str]] = (), min_group_n: int = 10,
    n_bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05, ece_bins: int = 15,
) -> dict:
    """Performance per subgroup, each group against the rest, with intervals (module doc: the rules).

    Parameters
    ----------
    y_true : array_like of int, shape (N,)
        True class indices.
    probs : array_like of float, shape (N, C)
        Probabilities.
    class_names : sequence of str, length C
    negative_classes : sequence of str
        The "no disease" classes (at least one, not all).
    groups : mapping of str to array_like of str, each shape (N,)
        Categorical columns (sex, site, age band...); ``""`` = unknown, shown as group
        ``"unknown"``. Integer codes count as categories; float columns are refused (band them).
    clusters : array_like of str, shape (N,), optional
        Hashed patient ids (``""`` = unknown: the image is its own patient). Given: the cluster
        bootstrap and patient counts.
    intersections : sequence of (str, str)
        Pairs of columns to cross, e.g. ``[("sex", "site")]``: column ``"sex & site"``, groups
        ``"F & A"``...; unknown when either part is.
    min_group_n : int
        Smallest governing count (patients with ``clusters``, else images) for a value.
    n_bootstrap : int
        Resamples (0 = Wilson intervals only; no bootstrap intervals, gaps or p-values).
    seed : int
        Seed of the resamples; the input order of the samples does not change the result.
    alpha : float
        1 - confidence level.
    ece_bins : int

    Returns
    -------
    dict
        ``settings`` (the methods in words, counts, seed); ``overall`` (the metrics on all
        samples); ``columns``: per column, ``groups`` (per group label: ``n``, ``n_disease``,
        ``n_patients``, ``n_disease_patients`` (None without clusters), ``unknown``, a value
        object per metric of :data:`METRICS`, and ``gap``: per metric of :data:`GAP_METRICS`
        ``{diff, ci_low, ci_high, ci_method, p_value, p_adjusted, reason}``) and ``worst``
        (per metric the known group with the lowest value, highest for missed disease and ECE,
        or None). Undefined values are None with a reason; "too few to estimate" ones also
        carry ``too_few: True``.

    Raises
    ------
    MedauditError
        Bad shapes, classes, columns, intersections or settings (``param`` names the argument).
    """
    names, neg_idx, views, columns, cl = _prepare(
        y_true, [(probs, "probs")], class_names, negative_classes, groups, clusters, intersections, n_bootstrap,
        seed, alpha, min_group_n, ece_bins)
    point, boot, sums = _run(views, columns, cl, ece_bins, n_bootstrap, seed, rest=True)
    b = _Builder(cl.given, n_bootstrap, alpha, min_group_n)
    n_all = np.zeros(len(views[0].disease), np.int64)
    gov_all = _governing_counts(cl, n_all, 1, views)[0]["group"]
    overall = {**_group_counts(cl, n_all, 1, views[0])[0],
               **{m: b.value(m, point[f"0|*|{m}"][0], boot[f"0|*|{m}"][:, 0], gov_all, _counts_int(sums[(0, None)], 0))
                  for m in METRICS}}
    out_cols, gaps = {}, []
    for col in columns:
        g_count = len(col.labels)
        govs = _governing_counts(cl, col.codes, g_count, views)
        basics = _group_counts(cl, col.codes, g_count, views[0])
        groups_out = {}
        for g, label in enumerate(col.labels):
            key = f"0|{col.name}"
            counts = _counts_int(sums[(0, col.name)], g)
            entry = {**basics[g], "unknown": col.unknown[g]}
            for m in METRICS:
                entry[m] = b.value(m, point[f"{key}|{m}"][g], boot[f"{key}|{m}"][:, g], govs[g]["group"], counts)
            entry["gap"] = {m: b.difference(m, point[f"{key}|{m}|gap"][g], boot[f"{key}|{m}|gap"][:, g],
                                            [govs[g]["group"], govs[g]["rest"]], f"group '{label}' or the rest")
                            for m in GAP_METRICS}
            gaps.append(entry["gap"])
            groups_out[label] = entry
        out_cols[col.name] = {"groups": groups_out, "worst": _worst(groups_out, col)}
    _adjust(gaps)
    return {"settings": _settings(b, names, neg_idx, cl, n_bootstrap, seed, alpha, min_group_n, ece_bins, False),
            "overall": overall, "columns": out_cols}


def _favours(metric: str, diff: float | None) -> str | None:
    if diff is None:
        return None
    if diff == 0:
        return "neither"
    return "a" if (diff < 0) == (metric in LOWER_IS_BETTER) else "b"


def subgroup_differences(
    y_true, probs_a, probs_b, class_names, negative_classes, groups: Mapping[str, np.ndarray] | None, *,
    clusters=None, intersections: Sequence[tuple[str, str]] = (), min_group_n: int = 10,
    n_bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05, ece_bins: int = 15,
) -> dict:
    """Per-group differences between two models on the same samples: does an advantage hold everywhere?

    Both models are evaluated on the same resamples (paired; with ``clusters``, the paired
    cluster bootstrap). Rules, views and counts as :func:`subgroup_metrics`.

    Parameters
    ----------
    y_true : array_like of int, shape (N,)
    probs_a, probs_b : array_like of float, shape (N, C)
        The two models' probabilities, same sample order.
    class_names, negative_classes, groups, clusters, intersections, min_group_n, n_bootstrap, seed, alpha, ece_bins
        As :func:`subgroup_metrics`.

    Returns
    -------
    dict
        ``settings``; ``overall``: per metric of :data:`GAP_METRICS` the difference A - B
        ``{diff, ci_low, ci_high, ci_method, p_value, p_adjusted, reason, favours}``
        (``favours``: ``"a"``, ``"b"``, ``"neither"`` or None; lower is better for missed
        disease and ECE); ``columns``: per column ``groups`` (per label: ``n``... and
        ``diff`` per metric) and ``consistency`` per metric: ``overall_favours``,
        ``holds_in_every_group`` (every known group with a difference favours the same
        model; None when overall favours neither), ``groups_against`` (point difference the
        other way) and ``significant_against`` (interval entirely the other way).
    """
    names, neg_idx, views, columns, cl = _prepare(
        y_true, [(probs_a, "probs_a"), (probs_b, "probs_b")], class_names, negative_classes, groups, clusters,
        intersections, n_bootstrap, seed, alpha, min_group_n, ece_bins)
    point, boot, _ = _run(views, columns, cl, ece_bins, n_bootstrap, seed, rest=False)
    b = _Builder(cl.given, n_bootstrap, alpha, min_group_n)

    def diff(key: str, g: int, m: str, gov: dict, what: str) -> dict:
        entry = b.difference(m, point[f"d|{key}|{m}"][g], boot[f"d|{key}|{m}"][:, g], [gov], what)
        entry["favours"] = _favours(m, entry["diff"])
        return entry

    zeros = np.zeros(len(views[0].disease), np.int64)
    gov_all = _governing_counts(cl, zeros, 1, views)[0]["group"]
    overall = {m: diff("*", 0, m, gov_all, "all samples") for m in GAP_METRICS}
    family, out_cols = [], {}
    for col in columns:
        g_count = len(col.labels)
        govs = _governing_counts(cl, col.codes, g_count, views)
        basics = _group_counts(cl, col.codes, g_count, views[0])
        groups_out = {}
        for g, label in enumerate(col.labels):
            d = {m: diff(col.name, g, m, govs[g]["group"], f"group '{label}'") for m in GAP_METRICS}
            family.append(d)
            groups_out[label] = {**basics[g], "unknown": col.unknown[g], "diff": d}
        consistency = {}
        for m in GAP_METRICS:
            side = overall[m]["favours"]
            known = [(lab, groups_out[lab]["diff"][m]) for lab, unk in zip(col.labels, col.unknown, strict=True)
                     if not unk and groups_out[lab]["diff"][m]["diff"] is not None]
            against = [lab for lab, e in known if side in ("a", "b") and e["favours"] not in (side, None)]
            # Significantly against: the whole interval favours the other model.
            sig = [lab for lab, e in known if side in ("a", "b") and e["ci_low"] is not None
                   and {_favours(m, e["ci_low"]), _favours(m, e["ci_high"])} == {"b" if side == "a" else "a"}]
            consistency[m] = {"overall_favours": side,
                              "holds_in_every_group": None if side not in ("a", "b") or not known else not against,
                              "groups_against": against, "significant_against": sig,
                              "n_groups_compared": len(known)}
        out_cols[col.name] = {"groups": groups_out, "consistency": consistency}
    _adjust(family)
    for entry in overall.values():  # one test, not part of the per-group family
        entry["p_adjusted"] = entry["p_value"]
    return {"settings": _settings(b, names, neg_idx, cl, n_bootstrap, seed, alpha, min_group_n, ece_bins, True),
            "overall": overall, "columns": out_cols}
