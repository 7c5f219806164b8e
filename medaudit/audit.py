"""Assemble the JSON snapshot (docs/report-schema.md) from saved predictions.

Pure: takes Predictions and already-made blocks (checkpoint facts, CAM tiles; the run's
measurements arrive in ``run``) and returns plain data. No model, no data loading, no
rendering here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medaudit.errors import MedauditError
from medaudit.predictions import Predictions, align

# 2.0: the measurements of the machine (inference device/time/cache hit, efficiency) moved into
# `run`, so everything else is a pure function of the predictions. 1.0 snapshots still render.
SCHEMA_VERSION = "2.0"


@dataclass
class AuditSettings:
    split: str = "test"
    bootstrap: int = 1000
    seed: int = 0
    ece_bins: int = 15
    negative_classes: list[str] | None = None  # None → auto-detect
    positive_class: str | None = None
    target_sensitivity: float = 0.95


@dataclass
class ModelResult:
    """Everything measured for one model; ``preds`` is the evaluated split."""

    preds: Predictions
    checkpoint: dict
    prediction_info: dict
    val_preds: Predictions | None = None
    cam: dict | None = None
    extra: dict = field(default_factory=dict)


def resolve_negative_classes(class_names: list[str], task: str, settings: AuditSettings) -> tuple[list[str], str]:
    """Which classes count as "healthy" for missed-disease risk, and where that choice came from."""
    from medaudit.metrics import detect_negative_classes

    if settings.negative_classes:
        unknown = [c for c in settings.negative_classes if c not in class_names]
        if unknown:
            raise MedauditError(f"--negative-class {unknown[0]!r} is not a class; classes are: {', '.join(class_names)}")
        if settings.positive_class is not None and settings.positive_class in settings.negative_classes:
            raise MedauditError(f"--positive-class {settings.positive_class!r} is also given as --negative-class; "
                                "a class is either the disease or healthy")
        if len(set(settings.negative_classes)) == len(class_names):
            raise MedauditError("--negative-class names every class; at least one must be a disease class")
        return list(dict.fromkeys(settings.negative_classes)), "option"
    if settings.positive_class is not None:
        if settings.positive_class not in class_names:
            raise MedauditError(
                f"--positive-class {settings.positive_class!r} is not a class; classes are: {', '.join(class_names)}"
            )
        if task == "binary":
            return [c for c in class_names if c != settings.positive_class], "positive-class option"
    if task == "multilabel":
        return [], "not applicable (multilabel)"
    found = detect_negative_classes(class_names)
    if found and len(found) < len(class_names):
        return found, "auto"
    if task == "binary":
        return [class_names[0]], "binary-default"
    return [], "none found"


# How the negative ("healthy") classes were chosen, said where the missed-disease numbers are shown.
NEGATIVE_SOURCE_NOTES = {
    "option": "chosen explicitly (--negative-class)",
    "positive-class option": "every class but --positive-class",
    "auto": "auto-detected from the class names; pass --negative-class to choose others",
    "binary-default": ("assumed: no class name looks healthy, so the first class of this binary task is taken as "
                       "negative; pass --negative-class or --positive-class to say which is which"),
    "not applicable (multilabel)": "not applicable to multilabel tasks",
    "none found": "no class name looks healthy; pass --negative-class to get missed-disease rates",
}


def _disease_scores(preds: Predictions, negatives: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Collapse to disease-vs-negative: y = 1 for disease, score = P(not a negative class)."""
    neg_idx = [preds.class_names.index(c) for c in negatives]
    y = (~np.isin(preds.y_true, neg_idx)).astype(np.int64)
    score = 1.0 - preds.probs[:, neg_idx].sum(axis=1)
    return y, np.clip(score, 0.0, 1.0)


def model_entry(result: ModelResult, settings: AuditSettings, negatives: list[str]) -> dict:
    """One ``models[i]`` block."""
    from medaudit.metrics import compute_metrics, fn_risk, operating_points

    p = result.preds
    # Binary: the headline AUC/AP is the disease class's, the one that is not "healthy".
    disease = [c for c in p.class_names if c not in negatives]
    positive = disease[0] if p.task == "binary" and len(disease) == 1 else None
    metrics = compute_metrics(
        p.y_true, p.probs, p.class_names, p.task,
        n_bootstrap=settings.bootstrap, seed=settings.seed, ece_bins=settings.ece_bins, positive_class=positive,
    )
    risk = None
    ops = None
    if negatives and not p.multilabel:
        risk = fn_risk(p.y_true, p.y_pred, p.class_names, negatives, p.sample_ids)
        metrics["missed_disease_rate"] = risk["overall"]
        for cls, block in risk["per_class"].items():
            metrics["per_class"][cls]["missed_disease_rate"] = block["rate"]
        y, score = _disease_scores(p, negatives)
        yv = sv = None
        if result.val_preds is not None:
            yv, sv = _disease_scores(result.val_preds, negatives)
        ops = operating_points(y, score, y_true_val=yv, score_val=sv, target_sensitivity=settings.target_sensitivity)
    return {
        "name": p.model_name,
        "checkpoint": result.checkpoint,
        "predictions": result.prediction_info,
        "metrics": metrics,
        "fn_risk": risk,
        "operating_points": ops,
        "cam": result.cam,
    }


def assemble_snapshot(
    results: list[ModelResult],
    *,
    dataset: dict,
    settings: AuditSettings,
    title: str,
    author: str | None = None,
    notes_markdown: str | None = None,
    run: dict | None = None,
) -> dict:
    """Build the whole snapshot; the ``run`` block (timestamps, durations, efficiency timings,
    cache hits) is the only part that is not a pure function of the predictions."""
    from medaudit.compare import compare_models
    from medaudit.findings import comparison_findings, dataset_findings, model_findings, settings_findings

    if not results:
        raise MedauditError("no models to audit: pass at least one checkpoint with --models")
    names = [r.preds.model_name for r in results]
    if len(set(names)) != len(names):
        raise MedauditError(f"model names must be unique in one report (got {names}); use --names")
    aligned = align([r.preds for r in results])
    for r, p in zip(results, aligned):
        r.preds = p
    ref = aligned[0]
    negatives, source = resolve_negative_classes(ref.class_names, ref.task, settings)
    settings_block = {
        "split": settings.split,
        "bootstrap": settings.bootstrap,
        "seed": settings.seed,
        "ece_bins": settings.ece_bins,
        "negative_classes": negatives,
        "negative_classes_source": source,
        "negative_classes_note": NEGATIVE_SOURCE_NOTES[source],
        "positive_class": settings.positive_class,
        "target_sensitivity": settings.target_sensitivity,
    }
    models = [model_entry(r, settings, negatives) for r in results]
    comparisons = None
    if len(results) >= 2:
        comparisons = compare_models(aligned, negative_classes=negatives, n_bootstrap=settings.bootstrap,
                                     seed=settings.seed)
    findings: list[dict] = dataset_findings(dataset) + settings_findings(settings_block)
    for m in models:
        findings.extend(model_findings(m, settings_block))
    if comparisons is not None:
        findings.extend(comparison_findings(comparisons, models))
    return {
        "schema_version": SCHEMA_VERSION,
        "title": title,
        "author": author,
        "notes_markdown": notes_markdown,
        "dataset": dataset,
        "models": models,
        "comparisons": comparisons,
        "findings": findings,
        "settings": settings_block,
        "figures": {},
        "run": run or {},
    }


def measured_models(snapshot: dict) -> list[dict]:
    """``snapshot["models"]`` with each model's measurements from ``run`` merged back in.

    Each returned model carries ``efficiency`` (``run.efficiency.models[name]``, or where
    schema 1.0 kept it, ``models[i].efficiency``; None when not measured) and
    ``predictions`` extended by ``run.predictions[name]`` (device, wall_s, cached): the view
    the report sections read. The snapshot itself is not modified.
    """
    run = snapshot.get("run") or {}
    effs = (run.get("efficiency") or {}).get("models") or {}
    passes = run.get("predictions") or {}
    out = []
    for m in snapshot.get("models") or []:
        name = m.get("name")
        out.append({**m, "efficiency": effs.get(name, m.get("efficiency")),  # 1.0 kept it in the model
                    "predictions": {**(m.get("predictions") or {}), **(passes.get(name) or {})}})
    return out


def measured_efficiency(snapshot: dict) -> dict | None:
    """The shared efficiency block (environment, paired ratios): ``run.efficiency`` (2.0) or top level (1.0)."""
    return (snapshot.get("run") or {}).get("efficiency") or snapshot.get("efficiency")
