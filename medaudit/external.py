"""External cohorts (and sites) beside the internal test split: metrics, drops, missed disease, shift.

Torch-free: every function takes saved predictions (and, for MMD, saved features) and returns the
``external`` block of the snapshot (docs/report-schema.md, "External cohorts and dataset shift").

* **Metrics** of each model on each cohort: :func:`medaudit.metrics.compute_metrics` (the same
  value objects as ``models[i].metrics``), with ``missed_disease_rate`` from
  :func:`medaudit.metrics.risk.fn_risk`.
* **Drop** from internal to cohort, ``internal - cohort`` for every headline metric (positive =
  worse on the cohort for metrics where higher is better; negative = worse for missed disease and
  ECE), with an **unpaired** percentile bootstrap interval: the two samples are resampled
  independently, each within its own true classes, on the one bootstrap engine
  (:mod:`medaudit.metrics.resample`: both samples' sums in one design, strata = internal classes
  then cohort classes), so each cohort's class supports stay fixed. The p-value inverts the
  interval (:func:`medaudit.metrics.subgroups.bootstrap_p_value`).
* **Shift**: :func:`medaudit.metrics.shift.shift_tests` of the first model (its softmax outputs and,
  when given, its penultimate features) between the reference (internal test split) and the cohort.
* **Sites**: with a ``site`` metadata column on the internal predictions, each site is compared
  the same way with the other sites of the internal split (disjoint samples, so unpaired is right;
  BBSD and label shift only, no features).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medaudit.errors import MedauditError
from medaudit.metrics import compute_metrics
from medaudit.metrics.classification import confusion_from_sums
from medaudit.metrics.intervals import estimate, interval_withheld, percentile_ci
from medaudit.metrics.resample import Block, SumDesign, point_and_bootstrap
from medaudit.metrics.risk import fn_risk
from medaudit.metrics.shift import shift_tests
from medaudit.metrics.subgroups import bootstrap_p_value
from medaudit.metrics.summary import _canonical_order, _design, _evaluator
from medaudit.predictions import Predictions

# The headline metrics whose drop is reported (the report's HEADLINE row, AUC macro included).
DROP_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "auc_macro", "missed_disease_rate", "ece")
LOWER_IS_BETTER = frozenset({"missed_disease_rate", "ece"})
SITE_COLUMN = "site"
_WORDS = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1",
          "auc_macro": "AUC", "missed_disease_rate": "missed-disease rate", "ece": "ECE"}


def _side(tag: str, p: Predictions, offset: int, n_bins: int, negatives: list[str]):
    """Blocks of one sample (its columns shifted by ``offset``), its evaluator and class strata."""
    y, probs = np.asarray(p.y_true), np.asarray(p.probs, dtype=np.float64)
    order = _canonical_order(y, probs)
    y, probs = y[order].astype(np.int64), probs[order]
    n, c = probs.shape
    ml = p.task == "multilabel"
    blocks, groups = _design(y, probs, p.task, n_bins)
    shifted = [Block(f"{tag}{b.name}", b.rows, np.asarray(b.cols) + offset, b.n_rows, b.data) for b in blocks]
    names = list(p.class_names)
    disease = [c for c in names if c not in negatives]
    positive = names.index(disease[0]) if p.task == "binary" and len(disease) == 1 else 1
    evaluate = _evaluator(p.task, n, c, groups, n * c if ml else n, positive)
    strata = [n] if ml else np.bincount(y, minlength=c).tolist()
    return shifted, evaluate, strata


def _missed(cm: np.ndarray, names: list[str], negatives: list[str]) -> np.ndarray:
    """Missed-disease rate (B,) from confusion matrices (B, C, C): disease called a negative class."""
    neg = np.array([c in negatives for c in names])
    disease = cm[:, ~neg, :]
    total = disease.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, disease[:, :, neg].sum(axis=(1, 2)) / np.where(total > 0, total, 1), np.nan)


def unpaired_drops(internal: Predictions, cohort: Predictions, negatives: Sequence[str], *, n_bootstrap: int = 1000,
                   seed: int = 0, ece_bins: int = 15, alpha: float = 0.05) -> dict:
    """``internal - cohort`` for each of :data:`DROP_KEYS`, with unpaired bootstrap intervals.

    Parameters
    ----------
    internal : Predictions
        One model on the internal test split (N samples, C classes).
    cohort : Predictions
        The same model on the cohort (M samples, the same classes).
    negatives : sequence of str
        The healthy classes (empty: no missed-disease drop).
    n_bootstrap, seed, ece_bins, alpha
        As :func:`medaudit.metrics.compute_metrics`.

    Returns
    -------
    dict
        Per key a value object ``{"value", "ci_low", "ci_high", "ci_method", "reason", "p_value",
        "internal", "cohort", "higher_is_better"}`` (``value`` None when either side is undefined).
    """
    if list(internal.class_names) != list(cohort.class_names) or internal.task != cohort.task:
        raise MedauditError("internal and cohort predictions must have the same classes and task", param="external")
    negatives = [str(c) for c in negatives]
    names = list(internal.class_names)
    n_a = internal.n_samples
    blocks_a, eval_a, strata_a = _side("a:", internal, 0, ece_bins, negatives)
    blocks_b, eval_b, strata_b = _side("b:", cohort, n_a, ece_bins, negatives)
    design = SumDesign(n_a + cohort.n_samples, blocks_a + blocks_b)
    single = internal.task != "multilabel"
    keys = [k for k in DROP_KEYS if k != "missed_disease_rate" or (single and negatives)]

    def side_stats(s: dict, tag: str, evaluate) -> dict:
        own = {k[len(tag):]: v for k, v in s.items() if k.startswith(tag)}
        out = evaluate(own)
        if single and negatives:
            out["missed_disease_rate"] = _missed(confusion_from_sums(own["cm"], len(names)), names, negatives)
        return out

    def evaluate(s: dict) -> dict:
        a, b = side_stats(s, "a:", eval_a), side_stats(s, "b:", eval_b)
        out = {}
        for k in keys:
            out[f"a|{k}"], out[f"b|{k}"] = np.asarray(a[k], float), np.asarray(b[k], float)
            out[f"d|{k}"] = out[f"a|{k}"] - out[f"b|{k}"]
        return out

    point, boot = point_and_bootstrap(design, evaluate, strata_a + strata_b, n_bootstrap, seed,
                                      [f"d|{k}" for k in keys])
    smallest = min(n_a, cohort.n_samples)
    out = {}
    for k in keys:
        samples = boot[f"d|{k}"].reshape(n_bootstrap, 1)
        ci = tuple(percentile_ci(samples, alpha)[:, 0]) if n_bootstrap else None
        withheld = ("bootstrap disabled (0 resamples)" if not n_bootstrap
                    else interval_withheld(ci, smallest, f"{smallest} samples in the smaller sample"))
        value = estimate(float(point[f"d|{k}"]), ci, f"{_WORDS[k]} is undefined internally or on the cohort",
                         "unpaired-bootstrap", ci_reason=withheld)
        # No p-value where the interval is withheld: a test from a handful of samples fails closed too.
        value["p_value"] = (bootstrap_p_value(samples[:, 0]) if value.get("ci_low") is not None else None)
        value["internal"] = _finite(point[f"a|{k}"])
        value["cohort"] = _finite(point[f"b|{k}"])
        value["higher_is_better"] = k not in LOWER_IS_BETTER
        out[k] = value
    return out


def _finite(x) -> float | None:
    x = float(np.asarray(x).reshape(-1)[0])
    return x if np.isfinite(x) else None


def _metrics(p: Predictions, negatives: list[str], n_bootstrap: int, seed: int, ece_bins: int) -> tuple[dict, dict | None]:
    disease = [c for c in p.class_names if c not in negatives]
    positive = disease[0] if p.task == "binary" and len(disease) == 1 else None
    metrics = compute_metrics(p.y_true, p.probs, p.class_names, p.task, n_bootstrap=n_bootstrap, seed=seed,
                              ece_bins=ece_bins, positive_class=positive)
    risk = None
    if negatives and not p.multilabel:
        risk = fn_risk(p.y_true, p.y_pred, p.class_names, negatives, p.sample_ids)
        metrics["missed_disease_rate"] = risk["overall"]
        for cls, block in risk["per_class"].items():
            metrics["per_class"][cls]["missed_disease_rate"] = block["rate"]
        # Sample ids of another cohort's misses are not needed in the snapshot (counts are).
        risk = {**risk, "per_class": {c: {k: v for k, v in b.items() if k != "missed_ids"}
                                      for c, b in risk["per_class"].items()}}
    # The curves and reliability bins are the internal section's figures, not needed per cohort.
    for key in ("curves", "calibration"):
        metrics.pop(key, None)
    return metrics, risk


def cohort_entry(name: str, spec: str | None, reference: Sequence[Predictions], cohort: Sequence[Predictions],
                 negatives: Sequence[str], *, features: tuple | None = None, n_bootstrap: int = 1000,
                 seed: int = 0, ece_bins: int = 15) -> dict:
    """One ``external.cohorts[i]`` (or ``external.sites[i]``) entry.

    Parameters
    ----------
    name : str
    spec : str or None
        The data spec the cohort came from (None for a site).
    reference : sequence of Predictions, one per model
        Each model on the reference sample (the internal test split, or the other sites).
    cohort : sequence of Predictions, one per model, same order
    negatives : sequence of str
    features : (ndarray (N', D), ndarray (M', D)) or None
        The first model's penultimate features on the reference and the cohort (for MMD).
    n_bootstrap, seed, ece_bins
        As :func:`medaudit.metrics.compute_metrics`.

    Returns
    -------
    dict
        ``name``, ``spec``, ``n``, ``class_counts``, ``models`` (per model ``name``, ``metrics``,
        ``drop``, ``missed_disease``) and ``shift`` (:func:`medaudit.metrics.shift.shift_tests` of
        the first model, with ``model`` naming it).
    """
    negatives = [str(c) for c in negatives]
    first = cohort[0]
    counts = np.bincount(np.asarray(first.y_true, dtype=np.int64), minlength=len(first.class_names)) \
        if not first.multilabel else np.asarray(first.y_true).sum(axis=0)
    models = []
    for ref, coh in zip(reference, cohort, strict=True):
        metrics, risk = _metrics(coh, negatives, n_bootstrap, seed, ece_bins)
        models.append({"name": coh.model_name, "metrics": metrics,
                       "drop": unpaired_drops(ref, coh, negatives, n_bootstrap=n_bootstrap, seed=seed,
                                              ece_bins=ece_bins),
                       "missed_disease": risk})
    shift = None
    if not first.multilabel:
        fr, fn = features if features is not None else (None, None)
        shift = shift_tests(reference[0].probs, first.probs, reference[0].y_true, first.class_names,
                            features_ref=fr, features_new=fn, y_new=first.y_true, seed=seed)
        shift["model"] = first.model_name
    return {"name": name, "spec": spec, "n": int(first.n_samples),
            "class_counts": {c: int(v) for c, v in zip(first.class_names, counts, strict=True)},
            "models": models, "shift": shift}


def site_entries(internal: Sequence[Predictions], negatives: Sequence[str], *, column: str = SITE_COLUMN,
                 n_bootstrap: int = 1000, seed: int = 0, ece_bins: int = 15, min_n: int = 20) -> list[dict] | None:
    """Each site of the internal split against the other sites (None without a ``site`` column).

    Parameters
    ----------
    internal : sequence of Predictions, one per model, aligned on the same samples
    negatives : sequence of str
    column : str
        The metadata column of sites.
    n_bootstrap, seed, ece_bins
    min_n : int
        Sites (or rests) with fewer samples are left out (too few to compare).

    Returns
    -------
    list of dict or None
        :func:`cohort_entry` per site (``spec`` None, reference = the other sites); None when
        the predictions have no such column or fewer than two sites.
    """
    meta = internal[0].metadata or {}
    if column not in meta:
        return None
    values = np.asarray(["" if v is None else str(v) for v in meta[column]])
    sites = sorted(v for v in set(values.tolist()) if v)
    if len(sites) < 2:
        return None
    out = []
    for site in sites:
        mask = values == site
        if mask.sum() < min_n or (~mask).sum() < min_n:
            continue
        inside, rest = np.flatnonzero(mask), np.flatnonzero(~mask)
        out.append(cohort_entry(f"{column} = {site}", None, [p.subset(rest) for p in internal],
                                [p.subset(inside) for p in internal], negatives, n_bootstrap=n_bootstrap,
                                seed=seed, ece_bins=ece_bins))
    return out or None


def external_block(reference_split: str, cohorts: list[dict], sites: list[dict] | None) -> dict | None:
    """The snapshot's ``external`` block (None when there are neither cohorts nor sites)."""
    if not cohorts and not sites:
        return None
    return {"reference": reference_split, "cohorts": cohorts, "sites": sites,
            "drop_definition": "internal - cohort (positive: lower on the cohort); unpaired bootstrap, each sample "
                               "resampled within its own true classes"}


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _drop_finding(model: str, where: str, key: str, d: dict) -> dict | None:
    if d.get("value") is None or d.get("ci_low") is None:
        return None
    worse = d["value"] > 0 if d["higher_is_better"] else d["value"] < 0
    excludes_zero = d["ci_low"] > 0 or d["ci_high"] < 0
    size = abs(d["value"])
    lo, hi = sorted((abs(d["ci_low"]), abs(d["ci_high"])))
    ci = f"[{lo:.2f}-{hi:.2f}]" if d["ci_low"] * d["ci_high"] > 0 else f"[{d['ci_low']:.2f} to {d['ci_high']:.2f}]"
    nums = f"(internal {_fmt(d['internal'])}, {where} {_fmt(d['cohort'])}; unpaired bootstrap)"
    if not excludes_zero:
        return {"level": "info", "topic": "external", "model": model,
                "text": f"{model}: no clear change of {_WORDS[key]} on {where} {nums}, 95% CI of the difference {ci}"}
    if key in LOWER_IS_BETTER:
        verb = "misses more disease on" if key == "missed_disease_rate" and worse else \
            ("has a higher " if worse else "has a lower ") + _WORDS[key] + " on"
        text = f"{model} {verb} {where}: by {size:.2f} {ci} {nums}"
    else:
        text = f"{model} {'loses' if worse else 'gains'} {size:.2f} {ci} {_WORDS[key]} on {where} {nums}"
    return {"level": "warning" if worse else "info", "topic": "external", "model": model, "text": text}


def external_findings(block: dict | None) -> list[dict]:
    """Findings of the ``external`` block: significant drops of balanced accuracy, AUC and missed
    disease per model and cohort (or site), and each shift verdict with its statistics.

    Parameters
    ----------
    block : dict or None
        :func:`external_block`.

    Returns
    -------
    list of dict
        ``{"level", "text", "model", "topic": "external"}``.
    """
    if not block:
        return []
    out = []
    for entry in (block.get("cohorts") or []) + (block.get("sites") or []):
        where = entry["name"]
        for m in entry["models"]:
            for key in ("balanced_accuracy", "auc_macro", "missed_disease_rate"):
                d = m["drop"].get(key)
                f = _drop_finding(m["name"], where, key, d) if d else None
                if f is not None and (f["level"] == "warning" or key == "balanced_accuracy"):
                    out.append(f)
        shift = entry.get("shift")
        if shift:
            level = "info" if shift["verdict"] == "no shift detected" else "warning"
            out.append({"level": level, "topic": "external", "model": shift.get("model"),
                        "text": f"{where} vs {block['reference']}: {shift['verdict']}. {shift['explanation']}"})
    return out
