"""Gate names for the clinical-use numbers of a snapshot (issue 20), and where each one lives.

``medaudit report`` writes them per model in ``models[i].clinical`` and across models in the
top-level ``clinical`` block (decision curves). This module knows those places; the grammar
(``net_benefit@T``, ``ppv@prev=P[,naive]``, ``... > treat_all``) is parsed in
:mod:`medaudit.gate.parse` and documented in ``docs/gates.md``, "Clinical-use checks".

Rules it owns:

- a block that was computed but skipped (``available: false``, e.g. no validation split) or a
  value that is undefined gives an undefined value object with the snapshot's reason, so the
  check **fails** (exit 1);
- a number the report was not asked for (no ``--cost``, no ``--prevalence``, another
  prevalence, a threshold probability off the decision-curve grid) or a snapshot without
  clinical blocks is **bad input** (exit 2): the message says how to rerun ``medaudit report``.
"""

from __future__ import annotations

import math

from medaudit.errors import MedauditError

INF = math.inf
# Operating points of models[i].clinical.thresholds (and of the PPV/NPV at prevalence).
RULES = ("guaranteed", "naive")
DEFAULT_RULE = "guaranteed"
VERSUS = ("treat_all", "treat_none")
RECALIBRATED = ("ece", "adaptive_ece", "classwise_ece", "brier", "nll")
_THRESHOLD_POINT = {f"{m}_{r}": (r, m) for r in RULES for m in ("sensitivity", "specificity")}
_CONFORMAL = {"coverage": ("lac", "coverage"), "coverage_lac": ("lac", "coverage"),
              "coverage_aps": ("aps", "coverage"), "mean_set_size": ("lac", "mean_set_size"),
              "mean_set_size_lac": ("lac", "mean_set_size"), "mean_set_size_aps": ("aps", "mean_set_size")}
_RECAL = {f"{m}_after_recalibration": m for m in RECALIBRATED}
# Platt scaling, fitted beside temperature scaling for two-class tasks (models[i].clinical.recalibration_platt).
_PLATT = {f"{m}_after_platt": m for m in RECALIBRATED}
_COST = ("expected_cost", "normalised_cost")
_SELECTIVE = ("aurc", "e_aurc")

# The range a threshold of each name may take (a value outside is a typo, as 95 for 0.95), and
# whether higher is better. Net benefit is at most the prevalence (<= 1) and may be negative;
# costs are in the units of --cost; a set holds up to C classes.
RANGES: dict[str, tuple[float, float]] = {
    "net_benefit": (-INF, 1.0), **dict.fromkeys(_THRESHOLD_POINT, (0.0, 1.0)),
    **dict.fromkeys(_CONFORMAL, (0.0, 1.0)), "mean_set_size": (0.0, INF), "mean_set_size_lac": (0.0, INF),
    "mean_set_size_aps": (0.0, INF), **dict.fromkeys(_COST, (0.0, INF)), **dict.fromkeys(_SELECTIVE, (0.0, 1.0)),
    **{f"{m}_after_{how}": (0.0, {"brier": 2.0, "nll": INF}.get(m, 1.0)) for m in RECALIBRATED
       for how in ("recalibration", "platt")},
}
# Names only ever read from the clinical blocks (ppv/npv are so only with @prev=P).
NAMES = frozenset(RANGES)
# Names that take [CLASS]: conformal coverage per class.
PER_CLASS = frozenset(k for k, (_, key) in _CONFORMAL.items() if key == "coverage")
# The forms listed when a name is unknown.
FORMS = ("net_benefit@T", "ppv@prev=P", "npv@prev=P", *sorted(NAMES - {"net_benefit"}))


def undefined(reason: str) -> dict:
    """A value object that is undefined for ``reason``: a check on it fails with that reason."""
    return {"value": None, "ci_low": None, "ci_high": None, "ci_method": None, "reason": reason}


def _block(block: object, what: str) -> tuple[dict | None, str | None]:
    """(block, None), or (None, reason) when the report skipped it (``available: false``)."""
    if not isinstance(block, dict):
        return None, f"{what} is not in the snapshot"
    if block.get("available") is False:
        return None, f"{what} was skipped: {block.get('reason') or 'no reason recorded'}"
    return block, None


def _model_clinical(model: dict, where: str) -> tuple[dict | None, str | None]:
    c = model.get("clinical")
    if c is None:
        raise MedauditError(f"{where}: model {model['name']!r} has no clinical-use block (models[i].clinical): the "
                            "snapshot was written by a medaudit without clinical-use analyses; re-create it with "
                            "`medaudit report`")
    return _block(c, "the clinical-use analysis")


def _entry(x: object, missing: str) -> dict:
    return x if isinstance(x, dict) and "value" in x else undefined(missing)


def _settings_clinical(snapshot: dict) -> dict:
    """The clinical settings the report was made with (``settings.clinical``)."""
    return (snapshot.get("settings") or {}).get("clinical") or {}


def _pct(x: float) -> str:
    return f"{x:g}"


def _per_class_text(per_class: dict) -> str:
    return ",".join(f"{c}={_pct(p)}" for c, p in per_class.items())


def check_prevalence(snapshot: dict, prevalence: float, where: str) -> None:
    """MedauditError unless the report was made at this deployment prevalence (of disease as a whole)."""
    made = _settings_clinical(snapshot).get("prevalence")
    if made is None:
        per_class = _settings_clinical(snapshot).get("prevalence_per_class") or {}
        if per_class:
            cls = next(iter(per_class))
            raise MedauditError(f"{where}: the report was made with a prevalence per class "
                                f"({_per_class_text(per_class)}), not of disease as a whole; gate on a class, "
                                f"e.g. ppv[{cls}]@prev={_pct(per_class[cls])}, or rerun `medaudit report` with "
                                f"--prevalence {_pct(prevalence)}")
        raise MedauditError(f"{where}: the report was made without a deployment prevalence, so it has no PPV/NPV "
                            f"at {_pct(prevalence)}; rerun `medaudit report` with --prevalence {_pct(prevalence)}")
    if not math.isclose(made, prevalence, rel_tol=1e-9, abs_tol=1e-12):
        raise MedauditError(f"{where}: the report was made at prevalence {_pct(made)}; rerun `medaudit report` with "
                            f"--prevalence {_pct(prevalence)} (or gate on @prev={_pct(made)})")


def _disease_classes(snapshot: dict, model: dict) -> list[str]:
    negatives = set((snapshot.get("settings") or {}).get("negative_classes") or ())
    return [c for c in (model["metrics"].get("per_class") or {}) if c not in negatives]


def prevalence_slot(snapshot: dict, model: dict, metric: str, cls: str | None, every: bool, prevalence: float,
                    rule: str | None, where: str) -> tuple[str, dict, str | None]:
    """(label, value object, note) of ``ppv@prev=P[,rule]`` / ``npv@...`` for one model.

    Without ``[CLASS]`` the PPV and NPV are of disease (every class but the healthy ones) against
    healthy (``models[i].clinical.prevalence``). With ``[CLASS]`` they are of that class
    one-vs-rest at the prevalence the report was given for it (``--prevalence CLASS=P``,
    ``models[i].clinical.prevalence_per_class``); a binary task's one disease class also reads the
    disease block. Either way at the operating point ``rule`` chosen on validation (default: the
    guaranteed-sensitivity one).
    """
    rule = rule or DEFAULT_RULE
    label = f"{metric}@prev={_pct(prevalence)},{rule}"
    per_class = _settings_clinical(snapshot).get("prevalence_per_class") or {}
    if every:
        raise MedauditError(f"{where}: {metric}[*]@prev has no one prevalence for every class; name the class, "
                            + (f"e.g. {metric}[{next(iter(per_class))}]@prev={_pct(next(iter(per_class.values())))}"
                               if per_class else f"or write {metric}@prev={_pct(prevalence)}"))
    if cls is not None and (cls in per_class or _disease_classes(snapshot, model) != [cls]):
        return _class_prevalence_slot(snapshot, model, metric, cls, prevalence, rule, where)
    check_prevalence(snapshot, prevalence, where)
    clinical, why = _model_clinical(model, where)
    block, why = (None, why) if clinical is None else _block(clinical.get("prevalence"),
                                                             "PPV/NPV at the deployment prevalence")
    return _prevalence_point(metric, rule, label, block, why, "")


def _class_prevalence_slot(snapshot: dict, model: dict, metric: str, cls: str, prevalence: float, rule: str,
                           where: str) -> tuple[str, dict, str | None]:
    """``ppv[CLASS]@prev=P``: the class's block of ``models[i].clinical.prevalence_per_class``."""
    per_class = _settings_clinical(snapshot).get("prevalence_per_class") or {}
    classes = list(model["metrics"].get("per_class") or {})
    if cls not in classes:
        raise MedauditError(f"{where} (model {model['name']!r}): unknown class {cls!r}; "
                            f"valid: {', '.join(map(repr, classes))}")
    negatives = (snapshot.get("settings") or {}).get("negative_classes") or ()
    if cls in negatives:
        raise MedauditError(f"{where}: {cls!r} is a healthy class; PPV/NPV at a prevalence are of a disease "
                            f"class, e.g. {metric}[{(_disease_classes(snapshot, model) or ['CLASS'])[0]}]@prev=P")
    if cls not in per_class:
        made = _settings_clinical(snapshot).get("prevalence")
        given = (f"a prevalence per class for {_per_class_text(per_class)} only" if per_class else
                 f"a prevalence of disease as a whole ({_pct(made)}) only" if made is not None else
                 "no deployment prevalence")
        instead = f"write {metric}@prev={_pct(made)} for disease as a whole, or " if made is not None and not per_class else ""
        raise MedauditError(f"{where}: the report was made with {given}, so it has no PPV/NPV of {cls} alone; "
                            f"{instead}rerun `medaudit report` with --prevalence {cls}={_pct(prevalence)}")
    made = per_class[cls]
    if not math.isclose(made, prevalence, rel_tol=1e-9, abs_tol=1e-12):
        raise MedauditError(f"{where}: the report was made at prevalence {_pct(made)} for {cls}; rerun `medaudit "
                            f"report` with --prevalence {cls}={_pct(prevalence)} (or gate on "
                            f"{metric}[{cls}]@prev={_pct(made)})")
    label = f"{metric}[{cls}]@prev={_pct(prevalence)},{rule}"
    clinical, why = _model_clinical(model, where)
    blocks = None if clinical is None else clinical.get("prevalence_per_class")
    if clinical is not None and not isinstance(blocks, dict):
        why = ("the snapshot has no PPV/NPV per class (models[i].clinical.prevalence_per_class) although its "
               "settings name them")
    block, why = (None, why) if not isinstance(blocks, dict) else _block(
        blocks.get(cls), f"PPV/NPV of {cls} at its deployment prevalence")
    return _prevalence_point(metric, rule, label, block, why, " one-vs-rest")


def _prevalence_point(metric: str, rule: str, label: str, block: dict | None, why: str | None,
                      how: str) -> tuple[str, dict, str | None]:
    """(label, value object, note) of the ``rule`` operating point of a PPV/NPV block."""
    points = {} if block is None else block.get("points") or {}
    name = next((k for k in points if k.startswith(f"{rule}_")), None)
    if block is not None and name is None:
        why = f"no {rule} operating point in the snapshot (points: {', '.join(points) or 'none'})"
    point, why = (None, why) if name is None else _block(points[name], f"the {rule} operating point")
    if point is None:
        return label, undefined(why), None
    t = point.get("threshold")
    note = (f"{block.get('positive')}{how} at the {rule} threshold" + (f" {t:.4g}" if t is not None else "")
            + " chosen on validation, test sensitivity and specificity")
    return label, _entry(point.get(metric), f"{metric} at the {rule} operating point is not in the snapshot"), note


def model_slots(snapshot: dict, model: dict, metric: str, cls: str | None, every: bool,
                where: str) -> list[tuple[str, dict, str | None]]:
    """(label, value object, note) triples of a clinical name for one model (one per class for ``coverage[*]``).

    Parameters
    ----------
    snapshot : dict
        The whole snapshot (its ``settings.clinical`` say what the report was asked for).
    model : dict
        ``snapshot["models"][i]``.
    metric : str
        A name of :data:`NAMES` other than ``net_benefit``.
    cls : str, optional
        The class of ``coverage[CLASS]``.
    every : bool
        ``[*]``: every class.
    where : str
        How errors name the expression.

    Returns
    -------
    list of (str, dict, str or None)
        Undefined value objects (with the reason) where the block was skipped; the note says
        which operating point or method the value is of.

    Raises
    ------
    MedauditError
        An unknown class, a class on a name without classes, a report made without ``--cost``,
        a snapshot without clinical blocks.
    """
    per_class = model["metrics"].get("per_class") or {}
    if (cls is not None or every) and metric not in PER_CLASS:
        raise MedauditError(f"{where}: {metric} has no per-class value; drop the [{'*' if every else cls}]")
    if cls is not None and cls not in per_class:
        raise MedauditError(f"{where} (model {model['name']!r}): unknown class {cls!r}; "
                            f"valid: {', '.join(map(repr, per_class))}")
    if metric in _COST and _settings_clinical(snapshot).get("cost") is None:
        raise MedauditError(f"{where}: the report was made without costs, so it has no {metric}; rerun "
                            "`medaudit report` with --cost FN=<cost of a missed disease>,FP=<cost of a false "
                            "alarm>, e.g. --cost FN=10,FP=1")
    labels = [f"{metric}[{c}]" for c in ([cls] if cls is not None else per_class)] if cls or every else [metric]
    clinical, why = _model_clinical(model, where)
    if clinical is None:
        return [(label, undefined(why), None) for label in labels]
    if metric in _THRESHOLD_POINT:
        rule, key = _THRESHOLD_POINT[metric]
        block, why = _block(clinical.get("thresholds"), "the choice of thresholds")
        point = None if block is None else next(
            (p for p in block.get("points") or [] if str(p.get("name", "")).startswith(f"{rule}_")), None)
        if point is None:
            return [(metric, undefined(why or f"no {rule} operating point in the snapshot"), None)]
        t = point.get("threshold")
        note = (f"{key} on test at the {rule} threshold" + (f" {t:.4g}" if t is not None else "")
                + f" chosen on validation for {block.get('metric')} >= {block.get('target')}")
        return [(metric, _entry((point.get("on_test") or {}).get(key), f"{key} on test is not in the snapshot"),
                 note)]
    if metric in _COST:
        block, why = _block(clinical.get("cost"), "the expected cost")
        if block is None:
            return [(metric, undefined(why), None)]
        choice = block.get("choice") or {}
        note = f"per patient at the threshold chosen on {choice.get('chosen_on', 'validation')} ({choice.get('policy')})"
        return [(metric, _entry((block.get("test") or {}).get(metric), f"{metric} is not in the snapshot"), note)]
    if metric in _SELECTIVE:
        block, why = _block(clinical.get("selective"), "the referral (selective prediction) analysis")
        return [(metric, undefined(why) if block is None else _entry(block.get(metric), f"{metric} is not computed"),
                 None)]
    if metric in _RECAL or metric in _PLATT:
        key = _RECAL.get(metric) or _PLATT[metric]
        if metric in _PLATT:
            block, why = _block(_platt_block(clinical, model, metric, where), "the Platt scaling")
        else:
            block, why = _block(clinical.get("recalibration"), "the recalibration")
        if block is not None and not isinstance(block.get("test"), dict):
            why = block.get("note") or (block.get("parameters") or {}).get("reason") or "no recalibration was fitted"
            block = None
        if block is None:
            return [(metric, undefined(why), None)]
        table = (block["test"].get("metrics") or {}).get(key) or {}
        note = f"{block.get('method')} scaling fitted on validation, {key} on test"
        return [(metric, _entry(table.get("after"), f"{key} after recalibration is not in the snapshot"), note)]
    method, key = _CONFORMAL[metric]
    conformal, why = _block(clinical.get("conformal"), "the conformal prediction sets")
    block, why = (None, why) if conformal is None else _block(conformal.get(method),
                                                              f"the {method.upper()} conformal sets")
    note = None if block is None else f"{method.upper()} sets on test, target coverage {block.get('target_coverage')}"
    if block is None:
        return [(label, undefined(why), None) for label in labels]
    if key == "mean_set_size" or labels == [metric]:
        return [(metric, _entry(block.get(key), f"{key} is not computed"), note)]
    rows = block.get("coverage_per_class") or {}
    return [(f"{metric}[{c}]", _entry(rows.get(c), f"no coverage of class {c!r} in the snapshot"), note)
            for c in ([cls] if cls is not None else per_class)]


def _platt_block(clinical: dict, model: dict, metric: str, where: str) -> object:
    """``models[i].clinical.recalibration_platt``; bad input when the task has no Platt scaling."""
    if "recalibration_platt" in clinical:
        return clinical["recalibration_platt"]
    classes = list(model["metrics"].get("per_class") or {})
    if len(classes) != 2:
        raise MedauditError(f"{where}: Platt scaling is fitted for two-class tasks only, and this one has "
                            f"{len(classes)} classes; gate on {metric.replace('_platt', '_recalibration')} "
                            "(temperature scaling)")
    raise MedauditError(f"{where}: model {model['name']!r} has no Platt scaling block "
                        "(models[i].clinical.recalibration_platt): the snapshot was written by a medaudit without "
                        "it; re-create it with `medaudit report`")


def _grid_text(grid: list[float]) -> str:
    steps = {round(b - a, 12) for a, b in zip(grid, grid[1:], strict=False)}
    if len(grid) > 2 and len(steps) == 1:
        return f"{grid[0]:g} to {grid[-1]:g} in steps of {steps.pop():g}"
    return ", ".join(f"{t:g}" for t in grid[:12]) + (", ..." if len(grid) > 12 else "")


def net_benefit_slot(snapshot: dict, model: dict, at: float, versus: str | None, where: str) -> tuple[str, dict, str]:
    """(label, value object, note) of ``net_benefit@T`` for one model.

    ``versus`` None: the model's net benefit at ``T`` with its pointwise band. ``"treat_all"``:
    the paired difference NB(model) - NB(treat all) at ``T`` with its band (the same resamples),
    compared with 0. ``"treat_none"``: treating no one has net benefit 0 at every ``T``, so the
    model's own net benefit, compared with 0.

    Raises
    ------
    MedauditError
        A ``T`` that is not on the report's threshold grid (no interpolation: the band is
        pointwise, and net benefit between grid points is a different count), a snapshot
        without a clinical block.
    """
    top = snapshot.get("clinical")
    if top is None:
        raise MedauditError(f"{where}: the snapshot has no clinical-use block (decision curves): it was written by a "
                            "medaudit without clinical-use analyses; re-create it with `medaudit report`")
    label = f"net_benefit@{at:g}" + (f"-{versus}" if versus == "treat_all" else "")
    block, why = _block(top, "the decision-curve analysis")
    curves = None if block is None else block.get("decision_curves")
    if block is not None and not isinstance(curves, dict):
        why = "the decision curves are not in the snapshot"
    if not isinstance(curves, dict):
        return label, undefined(why), ""
    grid = [float(t) for t in curves.get("thresholds") or []]
    k = next((i for i, t in enumerate(grid) if abs(t - at) <= 1e-9), None)
    if k is None:
        raise MedauditError(f"{where}: {at:g} is not a threshold probability of the report's decision curves "
                            f"({_grid_text(grid) or 'none'}); pick one of those (net benefit is not interpolated)")
    prev = curves.get("prevalence") or {}
    at_prev = (f"at deployment prevalence {prev.get('value'):g}" if str(prev.get("source", "")).startswith("deploy")
               else f"at the test sample's prevalence {prev.get('value'):g}" if prev.get("value") is not None else "")
    mine = (curves.get("models") or {}).get(model["name"])
    if not isinstance(mine, dict):
        return label, undefined(f"the decision curves have no entry for model {model['name']!r}"), ""
    if versus == "treat_all":
        curve, key = mine.get("vs_treat_all") or {}, "diff"
        all_nb = ((curves.get("treat_all") or {}).get("net_benefit") or [None] * (k + 1))[k]
        note = ("paired difference NB(model) - NB(treat all) "
                + (f"(treat all: {all_nb:.4g}) " if all_nb is not None else "") + at_prev).strip()
    else:
        curve, key = mine, "net_benefit"
        note = (("net benefit of treat none is 0; " if versus == "treat_none" else "net benefit ") + at_prev).strip()

    def at_k(name: str) -> float | None:
        values = curve.get(name) or []
        return values[k] if k < len(values) else None

    value = at_k(key)
    if value is None:
        return label, undefined(curves.get("reason") or f"net benefit at {at:g} is undefined"), note
    low, high = at_k("ci_low"), at_k("ci_high")
    band = curves.get("band")
    entry = {"value": value, "ci_low": low, "ci_high": high, "reason": None,
             "ci_method": "bootstrap" if band and low is not None and high is not None else None}
    if entry["ci_method"] is None:
        entry.update(ci_low=None, ci_high=None, ci_reason="the report has no bootstrap band here"
                     + (" (made with --bootstrap 0)" if not band else ""))
    return label, entry, note
