"""The "Clinical use" analyses of a snapshot (issue 20): from scores to decisions.

Per model (:func:`clinical_entry`) and across models (:func:`clinical_comparison`), from saved
predictions only: thresholds with a guarantee, PPV/NPV at the deployment prevalence, expected cost,
recalibration, conformal prediction sets, and referral to a human (selective prediction). Across
models there are decision curves. The metric functions live in :mod:`medaudit.metrics`; this module
decides what is run, on which split, and what is skipped.

The rule it owns: **anything chosen is chosen on validation and applied to test.** Without a
validation split nothing is chosen. The analyses that need a choice are skipped with a reason
(and a finding), and the ones that need none (decision curves, the risk-coverage curve, calibration
on test) still run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medaudit.errors import MedauditError
from medaudit.metrics.calibration import forecasts, reliability
from medaudit.metrics.conformal import conformal_prediction
from medaudit.metrics.decision import (
    cost_matrix_decisions,
    decision_curves,
    decision_findings,
    disease_outcome,
    expected_cost,
    ppv_npv_at_prevalence,
)
from medaudit.metrics.recalibration import recalibrate
from medaudit.metrics.selective import selective_prediction
from medaudit.metrics.thresholds import guaranteed_operating_points
from medaudit.predictions import Predictions
from medaudit.validation import ids_fingerprint

NO_VALIDATION = ("no validation split: thresholds, recalibration and conformal sets cannot be chosen honestly "
                 "(choosing them on test would grade the choice on the data that made it), so they were skipped")
CONFORMAL_METHODS = ("lac", "aps")


@dataclass(frozen=True)
class ClinicalSettings:
    """What the clinical-use analyses assume about deployment.

    Attributes
    ----------
    prevalence : float, optional
        Share of disease where the model will be used, in (0, 1). None: the test split's own mix.
    prevalence_per_class : dict of str to float, optional
        ``{disease class: its share where the model is used}``, each in (0, 1): PPV/NPV of that
        class one-vs-rest (score ``p(class)``) at thresholds chosen on validation for it.
    cost_fn, cost_fp : float, optional
        Cost of a missed disease and of a false alarm (correct calls cost 0); both or neither.
    conformal_alpha : float
        Conformal sets aim at coverage ``1 - conformal_alpha`` for every class.
    delta : float
        A guaranteed threshold misses its target with probability at most ``delta``.
    """

    prevalence: float | None = None
    cost_fn: float | None = None
    cost_fp: float | None = None
    conformal_alpha: float = 0.1
    delta: float = 0.05
    cost_matrix: dict | None = None  # {true class: {decided class: cost}} (read_cost_matrix)
    prevalence_per_class: dict | None = None  # {disease class: prevalence} (parse_prevalence_spec)

    def __post_init__(self) -> None:
        _unit(self.prevalence, "prevalence", "the share of disease where the model is used, e.g. 0.02",
              optional=True)
        if self.prevalence_per_class is not None:
            if not isinstance(self.prevalence_per_class, dict) or not self.prevalence_per_class:
                raise MedauditError("prevalence per class must name at least one class, e.g. glioma=0.02",
                                    param="prevalence")
            for cls, value in self.prevalence_per_class.items():
                _unit(value, "prevalence", f"the share of {cls} where the model is used, e.g. {cls}=0.02")
        _unit(self.conformal_alpha, "conformal_alpha", "1 - the coverage conformal sets aim at, e.g. 0.1")
        _unit(self.delta, "delta", "the allowed probability that a guaranteed threshold misses, e.g. 0.05")
        if (self.cost_fn is None) != (self.cost_fp is None):
            raise MedauditError("cost needs both FN and FP, e.g. FN=10,FP=1", param="cost")
        for key in ("cost_fn", "cost_fp"):
            value = getattr(self, key)
            if value is not None and not (np.isfinite(value) and value >= 0):
                raise MedauditError(f"cost {key[-2:].upper()}={value!r}: costs must be finite and >= 0",
                                    param="cost")
        if self.cost_fn == 0 and self.cost_fp == 0:
            raise MedauditError("cost FN=0,FP=0: at least one cost must be positive", param="cost")

    def as_dict(self) -> dict:
        out = {"prevalence": self.prevalence, "cost": None if self.cost_fn is None else
               {"FN": self.cost_fn, "FP": self.cost_fp}, "conformal_alpha": self.conformal_alpha,
               "delta": self.delta, "cost_matrix": self.cost_matrix}
        if self.prevalence_per_class is not None:  # only when given: older snapshots stay byte-identical
            out["prevalence_per_class"] = dict(self.prevalence_per_class)
        return out

    def check_classes(self, class_names: list[str], negative_classes: list[str] | None = None) -> None:
        """Before any inference: a cost matrix must name exactly the data's classes, and a prevalence
        per class must name disease classes (not the healthy ones in ``negative_classes``)."""
        if self.cost_matrix is not None:
            cost_matrix_array(self.cost_matrix, class_names)
        names, healthy = list(class_names), set(negative_classes or ())
        for cls in self.prevalence_per_class or {}:
            if cls not in names:
                raise MedauditError(f"prevalence {cls}=...: {cls!r} is not a class; classes are: {', '.join(names)}",
                                    param="prevalence")
            if cls in healthy:
                raise MedauditError(f"prevalence {cls}=...: {cls!r} is a healthy class; a prevalence per class is "
                                    "of a disease class (PPV = how often a call of that disease is right)",
                                    param="prevalence")


def cost_matrix_array(matrix: dict, class_names: list[str]) -> np.ndarray:
    """``{true: {decided: cost}}`` as a (C, C) array in class order; one-line error naming what differs."""
    names = list(class_names)
    for where, got in [("rows (true class)", set(matrix))] + [
            (f"row {r!r} (decided class)", set(cols)) for r, cols in matrix.items()]:
        if got != set(names):
            missing, extra = sorted(set(names) - got), sorted(got - set(names))
            raise MedauditError(f"cost_matrix: its {where} must be the classes {', '.join(names)}"
                                + (f"; missing {', '.join(missing)}" if missing else "")
                                + (f"; unknown {', '.join(extra)}" if extra else ""), param="cost_matrix")
    return np.array([[matrix[t][d] for d in names] for t in names], dtype=np.float64)


def read_cost_matrix(path) -> dict:
    """A cost-matrix CSV: header ``true,<decided class>...``, one row per true class, costs >= 0.

    Returns ``{true class: {decided class: cost}}``; one-line errors naming the file otherwise.
    """
    import csv
    from pathlib import Path

    from medaudit.fileio import require_regular_file

    path = require_regular_file(Path(path), param="cost_matrix")
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    except (OSError, UnicodeDecodeError) as exc:
        raise MedauditError(f"{path}: cannot be read as UTF-8 CSV ({exc})", param="cost_matrix") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if len(rows) < 3:
        raise MedauditError(f"{path}: expected a header 'true,<class>,...' and one row per true class",
                            param="cost_matrix")
    decided = [c.strip() for c in rows[0][1:]]
    out: dict = {}
    for r in rows[1:]:
        if len(r) != len(decided) + 1:
            raise MedauditError(f"{path}: row {r[0]!r} has {len(r) - 1} costs for {len(decided)} classes",
                                param="cost_matrix")
        try:
            costs = [float(c) for c in r[1:]]
        except ValueError:
            raise MedauditError(f"{path}: row {r[0]!r} holds a value that is not a number", param="cost_matrix") from None
        if not all(np.isfinite(c) and c >= 0 for c in costs):
            raise MedauditError(f"{path}: row {r[0]!r}: costs must be finite and >= 0", param="cost_matrix")
        out[r[0].strip()] = dict(zip(decided, costs, strict=True))
    return out


def _unit(value, param: str, meaning: str, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise MedauditError(f"{param} {value!r} must be in (0, 1): {meaning}", param=param)


def parse_prevalence(text: str | None) -> float | None:
    """``--prevalence 0.02`` (or ``2%``) → 0.02; ``None`` stays None. One-line error otherwise."""
    if text is None:
        return None
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise MedauditError(f"prevalence {text!r} is not a number; give the share of disease, e.g. 0.02 or 2%",
                            param="prevalence") from None
    if not raw.replace("%", "").replace(".", "", 1).isascii():
        raise MedauditError(f"prevalence {text!r}: use ASCII digits", param="prevalence")
    _unit(value, "prevalence", "the share of disease where the model is used, e.g. 0.02")
    return value


def parse_prevalence_spec(text: str | None) -> tuple[float | None, dict[str, float] | None]:
    """``--prevalence`` → (prevalence of disease as a whole, ``{class: prevalence}``).

    ``0.02`` or ``2%``: one prevalence of disease (every class but the healthy ones).
    ``glioma=0.02,meningioma=1%``: one prevalence per disease class (one-vs-rest). One bare
    number may come with them (``0.05,glioma=0.02``). ``None`` → (None, None). One-line errors
    for anything else; class names are checked against the data by
    :meth:`ClinicalSettings.check_classes`.
    """
    if text is None:
        return None, None
    overall, per_class = None, {}
    for item in text.split(","):
        cls, sep, value = item.rpartition("=")
        cls = cls.strip()
        if not sep:
            if overall is not None:
                raise MedauditError(f"prevalence {text!r}: give one prevalence of disease, or CLASS=P per class "
                                    "(e.g. 0.02 or glioma=0.02,meningioma=0.01)", param="prevalence")
            overall = parse_prevalence(item)
            continue
        if not cls:
            raise MedauditError(f"prevalence {text!r}: {item.strip()!r} names no class; write CLASS=P, "
                                "e.g. glioma=0.02", param="prevalence")
        if cls in per_class:
            raise MedauditError(f"prevalence {text!r}: {cls!r} is given twice", param="prevalence")
        try:
            per_class[cls] = parse_prevalence(value)
        except MedauditError as exc:
            raise MedauditError(f"prevalence of {cls}: {exc.args[0]}", param="prevalence") from None
    return overall, per_class or None


def parse_cost(text: str | None) -> tuple[float, float] | None:
    """``--cost FN=10,FP=1`` → (10.0, 1.0). One-line error for anything else."""
    if text is None:
        return None
    parts: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().upper()
        if not sep or key not in ("FN", "FP") or key in parts:
            raise MedauditError(f"cost {text!r}: give FN=<cost of a missed disease>,FP=<cost of a false alarm>, "
                                "e.g. FN=10,FP=1", param="cost")
        try:
            parts[key] = float(value)
        except ValueError:
            raise MedauditError(f"cost {text!r}: {value.strip()!r} is not a number", param="cost") from None
    if set(parts) != {"FN", "FP"}:
        raise MedauditError(f"cost {text!r}: give both FN and FP, e.g. FN=10,FP=1", param="cost")
    return parts["FN"], parts["FP"]


# -- per model ----------------------------------------------------------------------------


def _skipped(reason: str) -> dict:
    return {"available": False, "reason": reason}


def clinical_entry(test: Predictions, val: Predictions | None, negatives: list[str], settings: ClinicalSettings,
                   *, target_sensitivity: float, n_bootstrap: int, seed: int, n_bins: int) -> dict:
    """The ``models[i].clinical`` block: what one model's scores mean for decisions.

    Parameters
    ----------
    test : Predictions
        The evaluated split (N samples, C classes).
    val : Predictions, optional
        The validation split of the same model; everything chosen is chosen here.
    negatives : list of str
        The healthy classes; empty: no disease-vs-healthy analyses (thresholds, prevalence, cost).
    settings : ClinicalSettings
    target_sensitivity : float
        The target of the naive and the guaranteed threshold.
    n_bootstrap, seed, n_bins : int
        As for the other metrics.

    Returns
    -------
    dict
        ``validation`` (split, n, or the reason there is none), ``thresholds``, ``prevalence``,
        ``cost``, ``recalibration`` (temperature scaling), ``conformal`` (``lac`` and ``aps``,
        class-conditional), ``selective``. Each is the metric function's block, or
        ``{"available": False, "reason"}``. Only when they apply: ``prevalence_per_class``
        (``settings.prevalence_per_class`` given: ``{class: {"prevalence", "positive", "score",
        "thresholds", "points"}}``, one-vs-rest) and ``recalibration_platt`` (two classes: Platt
        scaling, the same shape as ``recalibration``).
    """
    if test.multilabel:
        reason = "clinical-use analyses cover single-label tasks; a multilabel task has no single decision"
        return {"available": False, "reason": reason}
    names = list(test.class_names)
    boot = {"n_bootstrap": n_bootstrap, "seed": seed}
    has_val = val is not None and val.n_samples > 0
    entry: dict = {"available": True, "validation": {
        "split": val.provenance.get("split") or "val", "n": val.n_samples,
        "fingerprint": ids_fingerprint(val.sample_ids.tolist())} if has_val
        else {"split": None, "n": 0, "reason": NO_VALIDATION}}
    no_disease = "no healthy class is known (give --negative-class), so there is no disease-vs-healthy decision"
    if has_val and negatives:
        thresholds = guaranteed_operating_points(val.y_true, val.probs, test.y_true, test.probs, names, negatives,
                                                 target=target_sensitivity, delta=settings.delta)
    else:
        thresholds = _skipped(NO_VALIDATION if not has_val else no_disease)
    entry["thresholds"] = thresholds
    entry["prevalence"] = _prevalence_block(test, negatives, thresholds, settings, boot, no_disease)
    if settings.prevalence_per_class is not None:  # only when asked for: other snapshots keep their keys
        entry["prevalence_per_class"] = {
            cls: _class_prevalence_block(test, val if has_val else None, cls, pi, settings,
                                         target_sensitivity, boot)
            for cls, pi in settings.prevalence_per_class.items()}
    entry["cost"] = _cost_block(test, val if has_val else None, negatives, settings, boot, no_disease)
    # A full cost matrix needs no choice (the Bayes decision under the model's probabilities), so it
    # runs without validation too.
    entry["cost_matrix"] = None if settings.cost_matrix is None else cost_matrix_decisions(
        test.y_true, test.probs, names, cost_matrix_array(settings.cost_matrix, names), **boot)
    if has_val:
        summary = _recalibration_block(val, test, names, negatives, "temperature", n_bins, boot)
        entry["recalibration"] = summary
        if len(names) == 2:  # Platt scaling is of one probability: binary tasks only
            entry["recalibration_platt"] = _recalibration_block(val, test, names, negatives, "platt", n_bins,
                                                                boot)
        entry["conformal"] = {m: conformal_prediction(val.y_true, val.probs, test.y_true, test.probs, names,
                                                      alpha=settings.conformal_alpha, method=m, mondrian=True,
                                                      negative_classes=negatives, **boot)
                              for m in CONFORMAL_METHODS}
    else:
        entry["recalibration"] = _skipped(NO_VALIDATION)
        if len(names) == 2:
            entry["recalibration_platt"] = _skipped(NO_VALIDATION)
        entry["conformal"] = _skipped(NO_VALIDATION)
    entry["selective"] = selective_prediction(
        test.y_true, test.probs, names, y_val=val.y_true if has_val else None,
        probs_val=val.probs if has_val else None, negative_classes=negatives, delta=settings.delta, **boot)
    return entry


def _prevalence_block(test, negatives, thresholds, settings, boot, no_disease) -> dict | None:
    if settings.prevalence is None:
        return None
    if not negatives:
        return _skipped(no_disease)
    if not thresholds.get("available", True) or "points" not in thresholds:
        return _skipped(thresholds.get("reason") or NO_VALIDATION)
    y, score, label = disease_outcome(test.y_true, test.probs, test.class_names, negative_classes=negatives)
    points = {}
    for point in thresholds["points"]:
        t = point.get("threshold")
        why = (point.get("on_validation") or {}).get("reason") or "no threshold was chosen on validation"
        points[point["name"]] = (ppv_npv_at_prevalence(y, score, settings.prevalence, threshold=t, **boot)
                                 if t is not None else _skipped(why))
    return {"available": True, "positive": label, "prevalence": settings.prevalence, "points": points}


def _class_prevalence_block(test, val, cls, prevalence, settings, target, boot) -> dict:
    """PPV/NPV of one disease class one-vs-rest (score p(cls)) at its prevalence, at the naive and the
    guaranteed threshold chosen on validation for that class."""
    if val is None:
        return {**_skipped(NO_VALIDATION), "prevalence": prevalence}
    names = list(test.class_names)
    thresholds = guaranteed_operating_points(val.y_true, val.probs, test.y_true, test.probs, names,
                                             disease_class=cls, target=target, delta=settings.delta)
    y, score, label = disease_outcome(test.y_true, test.probs, names, disease_class=cls)
    points = {}
    for point in thresholds["points"]:
        t = point.get("threshold")
        why = (point.get("on_validation") or {}).get("reason") or "no threshold was chosen on validation"
        points[point["name"]] = (ppv_npv_at_prevalence(y, score, prevalence, threshold=t, **boot)
                                 if t is not None else _skipped(why))
    return {"available": True, "positive": label, "prevalence": prevalence, "score": thresholds["score"],
            "thresholds": thresholds, "points": points}


def _recalibration_block(val, test, names, negatives, method, n_bins, boot) -> dict:
    """:func:`recalibrate` of one method, with the reliability diagram before and after (the same
    bins as metrics.calibration); Platt's block has none when no fit exists."""
    summary, after = recalibrate(val.y_true, val.probs, test.y_true, test.probs, names, method=method,
                                 negative_classes=negatives or None, n_bins=n_bins, **boot)
    if summary.get("test") is not None:
        summary["reliability"] = {
            when: reliability(*forecasts(test.y_true, probs, False)[:2], n_bins)
            for when, probs in (("before", test.probs), ("after", after))}
    return summary


def _cost_block(test, val, negatives, settings, boot, no_disease) -> dict | None:
    if settings.cost_fn is None:
        return None
    if not negatives:
        return _skipped(no_disease)
    if val is None:
        return _skipped(NO_VALIDATION)
    y, score, _ = disease_outcome(test.y_true, test.probs, test.class_names, negative_classes=negatives)
    yv, sv, _ = disease_outcome(val.y_true, val.probs, val.class_names, negative_classes=negatives)
    return expected_cost(y, score, cost_fn=settings.cost_fn, cost_fp=settings.cost_fp, y_true_val=yv,
                         score_val=sv, prevalence=settings.prevalence, **boot)


def recalibrated_variant(test: Predictions, val: Predictions | None, negatives: list[str]) -> Predictions | None:
    """The model's test predictions after the recalibration fitted on validation, as a *named variant*
    (``"resnet18 (temperature-scaled)"``), never in place of the originals. None without validation
    or for multilabel tasks."""
    if val is None or val.n_samples == 0 or test.multilabel:
        return None
    summary, probs = recalibrate(val.y_true, val.probs, test.y_true, test.probs, test.class_names,
                                 negative_classes=negatives or None, n_bootstrap=0)
    if summary["parameters"].get("reason"):
        return None
    provenance = {**test.provenance, "variant": summary["variant"], "recalibration": summary["parameters"]}
    return Predictions(model_name=f"{test.model_name} ({summary['variant']})", class_names=list(test.class_names),
                       task=test.task, sample_ids=test.sample_ids, y_true=test.y_true, probs=probs,
                       provenance=provenance, metadata=test.metadata, patient_column=test.patient_column)


# -- across models ------------------------------------------------------------------------


def clinical_comparison(tests: list[Predictions], negatives: list[str], settings: ClinicalSettings, *,
                        n_bootstrap: int, seed: int) -> dict:
    """The snapshot's ``clinical`` block: decision curves of every model (same test samples,
    paired resamples) with treat-all and treat-none, and their findings in plain words."""
    ref = tests[0]
    if ref.multilabel:
        return _skipped("decision curves cover single-label tasks")
    if not negatives:
        return _skipped("no healthy class is known (give --negative-class), so there is no disease to treat")
    scores = {}
    y = None
    for p in tests:
        y, scores[p.model_name], label = disease_outcome(p.y_true, p.probs, p.class_names,
                                                         negative_classes=negatives)
    curves = decision_curves(y, scores, prevalence=settings.prevalence, n_bootstrap=n_bootstrap, seed=seed)
    findings = decision_findings(curves, basis="band" if n_bootstrap else "point")
    return {"available": True, "positive": label, "decision_curves": curves, "findings": findings,
            "settings": settings.as_dict()}


def clinical_findings(models: list[dict], comparison: dict | None) -> list[dict]:
    """Findings of the clinical-use section: skipped choices, guarantees not met, coverage gaps."""
    out: list[dict] = []

    def add(level, text, model=None):
        out.append({"level": level, "text": text, "model": model})

    for m in models:
        c = m.get("clinical") or {}
        name = m.get("name")
        if not c.get("available"):
            continue
        if c["validation"]["split"] is None:
            add("warning", f"{name}: {NO_VALIDATION}.", name)
            continue
        th = c.get("thresholds") or {}
        for point in th.get("points") or []:
            sens = ((point.get("on_test") or {}).get("sensitivity") or {}).get("value")
            if point["name"].startswith("guaranteed") and point.get("threshold") is None:
                why = (point.get("on_validation") or {}).get("reason") or "validation is too small"
                add("info", f"{name}: no threshold with a guaranteed sensitivity ≥ {th['target']:.0%}: {why}.", name)
            elif point["name"].startswith("naive") and sens is not None and sens < th["target"]:
                add("info", f"{name}: the threshold chosen on validation for {th['target']:.0%} sensitivity "
                            f"reaches {sens:.1%} on test; the guaranteed threshold is the one that keeps its promise.",
                    name)
        for method, block in (c.get("conformal") or {}).items():
            if not isinstance(block, dict) or "coverage_per_class" not in block:
                continue
            target = block["target_coverage"]
            low = [cls for cls, v in block["coverage_per_class"].items()
                   if v.get("ci_high") is not None and v["ci_high"] < target]
            if low:
                add("warning", f"{name}: {method.upper()} conformal sets cover {', '.join(low)} less often than "
                               f"{target:.0%} on test (whole 95 % interval below): test differs from validation.",
                    name)
    used = {m.get("name"): (m.get("clinical") or {}).get("validation") or {} for m in models}
    carved = {n: v for n, v in used.items() if str(v.get("split") or "").startswith("val (carved")}
    for n, v in carved.items():
        add("info", f"{n}: choices are made on the {v['n']} validation samples carved at training ({v['split']}), "
                    "as recorded in its checkpoint.", n)
    prints = {v.get("fingerprint") for v in used.values() if v.get("fingerprint")}
    if len(prints) > 1:
        add("info", "The models were validated on different samples (" + ", ".join(
            f"{n}: {v.get('split')}, n={v.get('n')}" for n, v in used.items() if v.get("fingerprint")) +
            "); each model's thresholds are chosen on its own, so compare their choices with care.")
    for f in (comparison or {}).get("findings") or []:
        add("info", f["text"], f.get("model"))
    return out
