"""Assemble the JSON snapshot (docs/report-schema.md) from saved predictions.

Pure: takes Predictions and already-made blocks (checkpoint facts, CAM tiles; the run's
measurements arrive in ``run``) and returns plain data. No model, no data loading, no
rendering here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medaudit.cam_findings import cam_findings
from medaudit.clinical import (
    ClinicalSettings,
    clinical_comparison,
    clinical_entry,
    clinical_findings,
)
from medaudit.compare import compare_models
from medaudit.errors import MedauditError
from medaudit.external import external_findings
from medaudit.findings import comparison_findings, dataset_findings, model_findings, settings_findings
from medaudit.metadata import UNKNOWN, bin_numeric, check_edges, column_kind, resolve_column
from medaudit.metrics import compute_metrics, detect_negative_classes, fn_risk, operating_points
from medaudit.metrics.clustered import AGGREGATES, patient_level
from medaudit.metrics.decision import disease_outcome
from medaudit.metrics.subgroups import subgroup_differences, subgroup_metrics
from medaudit.predictions import Predictions, align
from medaudit.robustness import robustness_findings
from medaudit.snapshot import SCHEMA_VERSION

LEVELS = ("image", "patient")


@dataclass
class SubgroupSettings:
    """Subgroups and patients (issue 18); recorded in ``settings.subgroups``.

    Attributes
    ----------
    group_by : list of str
        Metadata columns to group by (case-insensitive). Categorical as they are; numeric ones
        only with ``bins``.
    bins : dict of str to list of float
        Bin edges per numeric column (strictly increasing): ``lo <= v < hi``, the last bin closed
        (:func:`medaudit.metadata.bin_numeric`); values outside the edges are unknown.
    intersections : list of [str, str]
        Pairs of columns to cross (``sex & site``); both are grouped by on their own too.
    min_group_n : int
        Smallest governing count (patients when the data has a patient column, else images)
        for a subgroup value (:mod:`medaudit.metrics.subgroups`).
    level : {"image", "patient"}
        ``patient``: patient-level metrics beside the image-level ones (needs a patient column).
    aggregate : {"max", "mean"}
        How a patient's images combine at the patient level (:func:`medaudit.metrics.clustered.patient_level`).
    salt_id : str, optional
        :func:`medaudit.phi.salt_id` of the salt the patient ids were hashed with (the caller
        that loaded the data knows it; the audit itself reads no secret).
    """

    group_by: list[str] = field(default_factory=list)
    bins: dict[str, list[float]] = field(default_factory=dict)
    intersections: list[list[str]] = field(default_factory=list)
    min_group_n: int = 10
    level: str = "image"
    aggregate: str = "max"
    salt_id: str | None = None

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise MedauditError(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}", param="level")
        if self.aggregate not in AGGREGATES:
            raise MedauditError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {self.aggregate!r}",
                                param="aggregate")
        if isinstance(self.min_group_n, bool) or not isinstance(self.min_group_n, int) or self.min_group_n < 1:
            raise MedauditError(f"min_group_n must be a whole number >= 1, got {self.min_group_n!r}",
                                param="min_group_n")
        for pair in self.intersections:
            if len(pair) != 2 or pair[0].strip().lower() == pair[1].strip().lower():
                raise MedauditError(f"intersections {','.join(pair)!r}: name two different columns, e.g. sex,site",
                                    param="intersections")
        self.intersections = [list(pair) for pair in self.intersections]
        self.bins = {col: check_edges(edges, param="bins").tolist() for col, edges in self.bins.items()}

    @property
    def requested(self) -> bool:
        """True when subgroups were asked for (``group_by`` or ``intersections``)."""
        return bool(self.group_by or self.intersections)


@dataclass(frozen=True)
class Groups:
    """The group columns of one split, resolved against its metadata (:func:`resolve_groups`).

    Attributes
    ----------
    columns : dict of str to ndarray of str, each (N,)
        Categorical group labels as the data spells the column; ``""`` = unknown (numeric
        columns already binned).
    intersections : list of (str, str)
        The crossed pairs, in the data's spelling.
    bins : dict of str to list of float
        Bin edges per binned column, in the data's spelling.
    """

    columns: dict[str, np.ndarray]
    intersections: list[tuple[str, str]]
    bins: dict[str, list[float]]


def resolve_groups(metadata: dict[str, np.ndarray] | None, patient_column: str | None, sg: SubgroupSettings,
                   where: str) -> Groups:
    """The group columns of ``sg`` in one split's metadata, checked (the one place for these rules).

    Parameters
    ----------
    metadata : dict of str to ndarray, each (N,), or None
        ``Split.metadata`` / ``Predictions.metadata``: float64 numeric (NaN missing) or str ("" missing).
    patient_column : str or None
        The column of hashed patient ids (never a group).
    sg : SubgroupSettings
    where : str
        The data, named in errors ("split 'test' of data.csv").

    Returns
    -------
    Groups
        Empty when no subgroups were asked for.

    Raises
    ------
    MedauditError
        No metadata (``param="group_by"``); a column the data lacks (the message lists those it
        has); the patient column as a group; a numeric column without ``--bins`` or bins for a
        categorical or ungrouped column (``"bins"``); a column with fewer than two known groups.
    """
    if not sg.requested:
        return Groups({}, [], {})
    meta = metadata or {}
    if not meta:
        raise MedauditError(f"group_by: {where} has no metadata columns; grouping needs data with per-sample "
                            "columns (a CSV manifest with e.g. sex,age,site, or DICOM)", param="group_by")
    wanted: list[tuple[str, str]] = [(c, "group_by") for c in sg.group_by]
    wanted += [(c, "intersections") for pair in sg.intersections for c in pair]
    names: list[str] = []
    for name, param in wanted:
        col = resolve_column(meta, name, param=param, where=where)
        if col == patient_column:
            raise MedauditError(f"{param} '{name}': this is the patient column (hashed ids); group by a patient "
                                "property (sex, age, site), and use --level patient for patient-level metrics",
                                param=param)
        if col not in names:
            names.append(col)
    bins = {}
    for name, edges in sg.bins.items():
        col = resolve_column(meta, name, param="bins", where=where)
        if col not in names:
            raise MedauditError(f"bins '{name}': the column is not grouped by; add --group-by {name}", param="bins")
        if column_kind(meta[col]) != "numeric":
            raise MedauditError(f"bins '{name}': the column is categorical; bins apply to numeric columns only",
                                param="bins")
        bins[col] = list(edges)
    columns = {}
    for col in names:
        values = meta[col]
        if column_kind(values) == "numeric":
            if col not in bins:
                finite = values[np.isfinite(values)]
                span = f" (its values run from {finite.min():g} to {finite.max():g})" if finite.size else ""
                raise MedauditError(f"group_by '{col}': a numeric column{span}; cut it into bands with --bins, e.g. "
                                    f"--bins {col}=0,40,65,120", param="bins")
            labels = bin_numeric(values, bins[col])
            labels = np.where(labels == UNKNOWN, "", labels)  # outside the edges or missing: unknown
        else:
            labels = np.char.strip(np.asarray(values, dtype=str))
        known = sorted(set(labels.tolist()) - {""})
        if len(known) < 2:
            fix = "choose other --bins edges" if col in bins else f"drop --group-by {col}"
            what = f"every sample with a value is in one group ('{known[0]}')" if known else "no sample has a value"
            raise MedauditError(f"group_by '{col}': in {where} {what}, so there is nothing to compare; {fix}",
                                param="group_by")
        columns[col] = labels
    inter = [(resolve_column(meta, a, param="intersections", where=where),
              resolve_column(meta, b, param="intersections", where=where)) for a, b in sg.intersections]
    return Groups(columns, inter, bins)


def patient_ids(preds: Predictions) -> np.ndarray | None:
    """The hashed patient id of each sample (N,), ``""`` = unknown; None without a patient column."""
    if preds.patient_column is None or not preds.metadata:
        return None
    return np.asarray(preds.metadata[preds.patient_column], dtype=str)


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
    clinical : ClinicalSettings
        The "Clinical use" analyses.
    subgroups : SubgroupSettings
        Subgroups, patient-level metrics.
    checklists : tuple of str
        Reporting checklists of the report's appendix (issue 17, medaudit.checklists); recorded in
        ``settings.checklists`` only when any are named.
    """

    split: str = "test"
    bootstrap: int = 1000
    seed: int = 0
    ece_bins: int = 15
    negative_classes: list[str] | None = None  # None → auto-detect
    positive_class: str | None = None
    target_sensitivity: float = 0.95
    clinical: ClinicalSettings = field(default_factory=ClinicalSettings)
    subgroups: SubgroupSettings = field(default_factory=SubgroupSettings)
    checklists: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.clinical, dict):  # read back from JSON (a saved snapshot's inputs)
            object.__setattr__(self, "clinical", ClinicalSettings(**self.clinical))
        if isinstance(self.subgroups, dict):
            object.__setattr__(self, "subgroups", SubgroupSettings(**self.subgroups))


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
        ``missed_disease_rate`` added overall and per class when there are negatives; patients
        resampled when the predictions carry a patient column), ``fn_risk`` and
        ``operating_points`` (None without negatives or for multilabel tasks), ``clinical``,
        ``subgroups`` and ``patient_level`` (None unless asked for; docs/report-schema.md), ``cam``.

    Raises
    ------
    MedauditError
        Group columns that do not fit the predictions' metadata (:func:`resolve_groups`), or
        ``level="patient"`` without a patient column.
    """
    p = result.preds
    clusters = patient_ids(p)
    sg = settings.subgroups
    groups = resolve_groups(p.metadata, p.patient_column, sg, f"the predictions of model '{p.model_name}'")
    # Binary: the headline AUC/AP is the disease class's, the one that is not "healthy".
    disease = [c for c in p.class_names if c not in negatives]
    positive = disease[0] if p.task == "binary" and len(disease) == 1 else None
    metrics = compute_metrics(
        p.y_true, p.probs, p.class_names, p.task,
        n_bootstrap=settings.bootstrap, seed=settings.seed, ece_bins=settings.ece_bins, positive_class=positive,
        clusters=clusters,
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
        "subgroups": _subgroups_entry(p, negatives, groups, clusters, settings),
        "patient_level": _patient_level_entry(p, negatives, clusters, settings),
        "cam": result.cam,
    }


def _no_subgroup_view(p: Predictions, negatives: list[str]) -> str | None:
    """Why the disease-vs-healthy subgroup view cannot be taken, or None when it can."""
    if p.multilabel:
        return "multilabel task: subgroups are analysed in the disease-vs-healthy view of single-label tasks"
    if not negatives:
        return "no healthy class known, so there is no disease-vs-healthy view; pass --negative-class"
    return None


def _subgroups_entry(p: Predictions, negatives: list[str], groups: Groups, clusters: np.ndarray | None,
                     settings: AuditSettings) -> dict | None:
    """``models[i].subgroups``: None without groups, unavailable without a healthy class."""
    if not groups.columns:
        return None
    why = _no_subgroup_view(p, negatives)
    if why:
        return {"available": False, "reason": why}
    return subgroup_metrics(p.y_true, p.probs, p.class_names, negatives, groups.columns, clusters=clusters,
                            intersections=groups.intersections, min_group_n=settings.subgroups.min_group_n,
                            n_bootstrap=settings.bootstrap, seed=settings.seed, ece_bins=settings.ece_bins)


def _patient_level_entry(p: Predictions, negatives: list[str], clusters: np.ndarray | None,
                         settings: AuditSettings) -> dict | None:
    """``models[i].patient_level``: one prediction per patient, then the same metrics block.

    With healthy classes: the disease-vs-healthy view (a patient with any disease image is a
    disease patient; its score is the max or mean of its images' p(disease)). Without: the
    multiclass view (mean probabilities; a patient whose images carry different classes is left
    out and counted in ``excluded``), which needs ``aggregate="mean"``.
    """
    sg = settings.subgroups
    if sg.level != "patient":
        return None
    if clusters is None:
        raise MedauditError(f"level 'patient': the predictions of model '{p.model_name}' carry no patient column; "
                            "give data with a patient id column (--patient-col)", param="level")
    if p.multilabel:
        return {"available": False, "reason": "multilabel task: no patient-level label is defined"}
    if not negatives and sg.aggregate == "max":
        return {"available": False, "reason": "aggregate 'max' needs a healthy class (the max of p(disease)); pass "
                                              "--negative-class, or --aggregate mean for the multiclass view"}
    try:
        pl = patient_level(p.y_true, p.probs, clusters, p.class_names, negatives or None, aggregate=sg.aggregate)
    except MedauditError as exc:  # every patient's images disagree on the class
        return {"available": False, "reason": str(exc)}
    binary = bool(negatives)
    metrics = compute_metrics(pl.y_true, pl.probs, pl.class_names, pl.task, n_bootstrap=settings.bootstrap,
                              seed=settings.seed, ece_bins=settings.ece_bins,
                              positive_class="disease" if binary else None)
    if binary:
        # Patients are the units now: the missed-disease rate is 1 - the disease class's recall.
        pred = pl.probs.argmax(axis=1)
        risk = fn_risk(pl.y_true, pred, pl.class_names, ["no disease"], pl.patient_ids)
        metrics["missed_disease_rate"] = risk["overall"]
        metrics["per_class"]["disease"]["missed_disease_rate"] = risk["per_class"]["disease"]["rate"]
    return {
        "available": True,
        "aggregate": sg.aggregate,
        "view": "disease-vs-healthy" if binary else "multiclass",
        "rule": ("a patient is a disease patient when any of its images is; its score is the "
                 f"{sg.aggregate} of its images' p(disease)") if binary else
                "the mean of the patient's probability vectors; patients whose images carry different classes "
                "are left out",
        "n_patients": int(pl.y_true.shape[0]),
        "n_images": int(pl.n_images.sum()),
        "n_unknown_patient_images": int((clusters == "").sum()),
        "excluded": pl.excluded,
        "metrics": metrics,
    }


def _subgroup_settings_block(sg: SubgroupSettings, groups: Groups, patient_column: str | None) -> dict | None:
    """``settings.subgroups``; None when no group was asked for and the data has no patient column."""
    if not sg.requested and patient_column is None:
        return None
    return {
        "group_by": list(groups.columns),
        "bins": groups.bins,
        "intersections": [list(pair) for pair in groups.intersections],
        "patient_column": patient_column,
        "min_group_n": sg.min_group_n,
        "level": sg.level,
        "aggregate": sg.aggregate,
        "salt_id": sg.salt_id if patient_column is not None else None,
    }


def _subgroup_differences(aligned: list[Predictions], negatives: list[str], settings: AuditSettings) -> list | None:
    """``comparisons.subgroup_differences``: every model pair, paired per group; None without groups."""
    ref = aligned[0]
    groups = resolve_groups(ref.metadata, ref.patient_column, settings.subgroups, "the predictions")
    if not groups.columns or _no_subgroup_view(ref, negatives):
        return None
    out = []
    for i in range(len(aligned)):
        for j in range(i + 1, len(aligned)):
            a, b = aligned[i], aligned[j]
            d = subgroup_differences(ref.y_true, a.probs, b.probs, ref.class_names, negatives, groups.columns,
                                     clusters=patient_ids(ref), intersections=groups.intersections,
                                     min_group_n=settings.subgroups.min_group_n, n_bootstrap=settings.bootstrap,
                                     seed=settings.seed, ece_bins=settings.ece_bins)
            out.append({"a": a.model_name, "b": b.model_name, **d})
    return out


def assemble_snapshot(
    results: list[ModelResult],
    *,
    dataset: dict,
    settings: AuditSettings,
    title: str,
    author: str | None = None,
    notes_markdown: str | None = None,
    run: dict | None = None,
    robustness: dict | None = None,
    external: dict | None = None,
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
    robustness : dict, optional
        The corruption sweep (:func:`medaudit.robustness.robustness_block`); None: not run.
    external : dict, optional
        External cohorts and sites (:func:`medaudit.external.external_block`); None: none.

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
    groups = resolve_groups(ref.metadata, ref.patient_column, settings.subgroups, "the predictions")
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
        "subgroups": _subgroup_settings_block(settings.subgroups, groups, ref.patient_column),
        **({"checklists": list(settings.checklists)} if settings.checklists else {}),
    }
    models = [model_entry(r, settings, negatives) for r in results]
    comparisons = None
    if len(results) >= 2:
        comparisons = compare_models(aligned, negative_classes=negatives, n_bootstrap=settings.bootstrap,
                                     seed=settings.seed)
        comparisons["subgroup_differences"] = _subgroup_differences(aligned, negatives, settings)
    findings: list[dict] = dataset_findings(dataset) + settings_findings(settings_block)
    for m in models:
        findings.extend(model_findings(m, settings_block))
    if comparisons is not None:
        findings.extend(comparison_findings(comparisons, models))
    clinical = clinical_comparison(aligned, negatives, settings.clinical, n_bootstrap=settings.bootstrap,
                                   seed=settings.seed)
    findings.extend(clinical_findings(models, clinical))
    findings.extend(robustness_findings(robustness))
    findings.extend(external_findings(external))
    findings.extend(cam_findings(models))
    return {
        "schema_version": SCHEMA_VERSION,
        "title": title,
        "author": author,
        "notes_markdown": notes_markdown,
        "dataset": dataset,
        "models": models,
        "comparisons": comparisons,
        "clinical": clinical,
        "robustness": robustness,
        "external": external,
        "findings": findings,
        "settings": settings_block,
        "figures": {},
        "run": run or {},
    }
