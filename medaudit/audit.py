"""Assemble the JSON snapshot (docs/report-schema.md) from saved predictions.

Pure: takes Predictions and already-made blocks (checkpoint facts, CAM tiles; the run's
measurements arrive in ``run``) and returns plain data. No model, no data loading, no
rendering here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medaudit.clinical import (
    ClinicalSettings,
    clinical_comparison,
    clinical_entry,
    clinical_findings,
)
from medaudit.compare import compare_models
from medaudit.errors import MedauditError
from medaudit.findings import comparison_findings, dataset_findings, model_findings, settings_findings
from medaudit.metrics import compute_metrics, detect_negative_classes, fn_risk, operating_points
from medaudit.metrics.decision import disease_outcome
from medaudit.predictions import Predictions, align
from medaudit.snapshot import SCHEMA_VERSION


@dataclass
class AuditSettings:
    """How the numbers of a snapshot are computed; recorded in its ``settings`` block.

    Attributes
    ----------
    split : str
        The split evaluated.
    bootstrap : int
        Bootstrap resamples for confidence intervals (0: none).
    seed : int
        Seed of the resampling.
    ece_bins : int
        Equal-width confidence bins of the calibration error.
    negative_classes : list of str, optional
        The "healthy" classes of the missed-disease analysis; None: auto-detected
        (:func:`resolve_negative_classes`).
    positive_class : str, optional
        Binary tasks: the disease class.
    target_sensitivity : float
        Sensitivity the operating points aim for, in (0, 1].
    """

    split: str = "test"
    bootstrap: int = 1000
    seed: int = 0
    ece_bins: int = 15
    negative_classes: list[str] | None = None  # None → auto-detect
    positive_class: str | None = None
    target_sensitivity: float = 0.95
    clinical: ClinicalSettings = field(default_factory=ClinicalSettings)

    def __post_init__(self) -> None:
        if isinstance(self.clinical, dict):  # read back from JSON (a saved snapshot's inputs)
            object.__setattr__(self, "clinical", ClinicalSettings(**self.clinical))


@dataclass
class ModelResult:
    """Everything measured for one model, as :func:`assemble_snapshot` takes it.

    Attributes
    ----------
    preds : Predictions
        On the evaluated split.
    checkpoint : dict
        The ``models[i].checkpoint`` block (architecture facts, training record).
    prediction_info : dict
        The ``models[i].predictions`` block (sample count, file names in the report).
    val_preds : Predictions, optional
        On the validation split: operating points are chosen there, not on the test split.
    cam : dict, optional
        The ``models[i].cam`` block (Grad-CAM tiles).
    extra : dict
        Free for callers; not written into the snapshot.
    """

    preds: Predictions
    checkpoint: dict
    prediction_info: dict
    val_preds: Predictions | None = None
    cam: dict | None = None
    extra: dict = field(default_factory=dict)


def resolve_negative_classes(class_names: list[str], task: str, settings: AuditSettings) -> tuple[list[str], str]:
    """Which classes count as "healthy" for missed-disease risk, and where that choice came from.

    The one rule for every command: the classes given, else every class but a binary task's
    positive class, else the names that look healthy (``normal``, ``notumor`` ...), else a
    binary task's first class; multilabel tasks have none.

    Parameters
    ----------
    class_names : list of str
        The task's classes, in label order.
    task : {"binary", "multiclass", "multilabel", "ordinal"}
    settings : AuditSettings
        ``negative_classes`` and ``positive_class`` are read.

    Returns
    -------
    negatives : list of str
        In the order given (repeats dropped) or in label order.
    source : str
        A key of :data:`NEGATIVE_SOURCE_NOTES`.

    Raises
    ------
    MedauditError
        (``param="negative_classes"`` / ``"positive_class"``) for a name that is not a class,
        a class given as both, or every class given as negative.
    """
    if settings.positive_class is not None and task != "binary":
        raise MedauditError(f"positive_class {settings.positive_class!r} applies to binary tasks only; this task is "
                            f"{task}: name the healthy classes with --negative-class instead", param="positive_class")
    if settings.negative_classes:
        unknown = [c for c in settings.negative_classes if c not in class_names]
        if unknown:
            raise MedauditError(f"{unknown[0]!r} is not a class; classes are: {', '.join(class_names)}",
                                param="negative_classes")
        if settings.positive_class is not None and settings.positive_class in settings.negative_classes:
            raise MedauditError(f"{settings.positive_class!r} is both the positive class and a negative class; "
                                "a class is either the disease or healthy", param="positive_class")
        if len(set(settings.negative_classes)) == len(class_names):
            raise MedauditError("every class is given as negative; at least one must be a disease class",
                                param="negative_classes")
        return list(dict.fromkeys(settings.negative_classes)), "option"
    if settings.positive_class is not None:
        if settings.positive_class not in class_names:
            raise MedauditError(f"{settings.positive_class!r} is not a class; classes are: {', '.join(class_names)}",
                                param="positive_class")
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
    """Disease-vs-negative labels (1 = disease) and scores, by the one rule (metrics.decision)."""
    y, score, _ = disease_outcome(preds.y_true, preds.probs, preds.class_names, negative_classes=negatives)
    return y, score


def model_entry(result: ModelResult, settings: AuditSettings, negatives: list[str]) -> dict:
    """One ``models[i]`` block of the snapshot (docs/report-schema.md, "models").

    Parameters
    ----------
    result : ModelResult
        The model's predictions (N samples, K classes) on the evaluated split, aligned with the
        other models'; ``val_preds`` (validation split) chooses the operating points when given.
    settings : AuditSettings
    negatives : list of str
        The healthy classes (:func:`resolve_negative_classes`); empty: no missed-disease analysis.

    Returns
    -------
    dict
        ``name``, ``checkpoint``, ``predictions`` (as given), ``metrics`` (with
        ``missed_disease_rate`` added overall and per class when there are negatives),
        ``fn_risk`` and ``operating_points`` (None without negatives or for multilabel tasks), ``cam``.
    """
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
        "clinical": clinical_entry(p, result.val_preds, negatives, settings.clinical,
                                   target_sensitivity=settings.target_sensitivity, n_bootstrap=settings.bootstrap,
                                   seed=settings.seed, n_bins=settings.ece_bins),
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
    """Build the whole snapshot from the models' predictions.

    The ``run`` block (timestamps, durations, efficiency timings, cache hits) is the only part
    that is not a pure function of the predictions and ``settings``.

    Parameters
    ----------
    results : list of ModelResult, length M >= 1
        One per model, with distinct ``preds.model_name``; their predictions are aligned on
        the sample ids (``results[i].preds`` is replaced by the aligned copy).
    dataset : dict
        The ``dataset`` block (:func:`medaudit.data.inspect_dataset` plus ``split_evaluated``).
    settings : AuditSettings
    title : str
    author : str, optional
    notes_markdown : str, optional
        Reviewer notes shown in the report.
    run : dict, optional
        The measurements and provenance of this run (docs/report-schema.md, "run").

    Returns
    -------
    dict
        The snapshot (schema :data:`~medaudit.snapshot.SCHEMA_VERSION`), JSON-serialisable;
        ``figures`` is empty until the report writer fills it.

    Raises
    ------
    MedauditError
        No model (``param="models"``), two models of one name (``param="names"``), predictions
        that do not align, or negative classes that do not fit (:func:`resolve_negative_classes`).
    """
    if not results:
        raise MedauditError("no models to audit: give at least one checkpoint", param="models")
    names = [r.preds.model_name for r in results]
    if len(set(names)) != len(names):
        raise MedauditError(f"model names must be unique in one report (got {names}); give each model its own name",
                            param="names")
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
        "clinical": settings.clinical.as_dict(),
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
    clinical = clinical_comparison(aligned, negatives, settings.clinical, n_bootstrap=settings.bootstrap,
                                   seed=settings.seed)
    findings.extend(clinical_findings(models, clinical))
    return {
        "schema_version": SCHEMA_VERSION,
        "title": title,
        "author": author,
        "notes_markdown": notes_markdown,
        "dataset": dataset,
        "models": models,
        "comparisons": comparisons,
        "clinical": clinical,
        "findings": findings,
        "settings": settings_block,
        "figures": {},
        "run": run or {},
    }
