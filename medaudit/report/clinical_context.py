"""Template context for the "Clinical use" section: what the scores mean for decisions.

Reads ``models[i].clinical`` and the snapshot's top-level ``clinical`` block (written by
:mod:`medaudit.clinical`; see docs/report-schema.md, "clinical") and formats them; nothing is
computed. A block can be ``None`` (its option was not given), ``{"available": false, "reason"}``
(it could not be run) or missing altogether (a snapshot older than the clinical-use analyses);
each case becomes a sentence, never an empty table or a 0.
"""

from __future__ import annotations

from typing import Any

from medaudit.report.format import Cell, Footnotes, fmt_float, fmt_int, fmt_kn, not_available

OLD_SNAPSHOT = ("not available in this snapshot: it was written before medaudit's clinical-use analyses; "
                "run medaudit report again to add them")
NOT_REQUESTED = {
    "prevalence": "not computed: no deployment prevalence was given (medaudit report --prevalence 2%)",
    "cost": "not computed: no costs were given (medaudit report --cost FN=10,FP=1)",
    "cost_matrix": "not computed: no cost matrix was given (medaudit report --cost-matrix costs.csv)",
}
MAX_COLUMNS = 3  # models side by side in a transposed table; more would not fit an A4 page

RECAL_ROWS = [("nll", "Log loss (NLL)"), ("brier", "Brier score"), ("ece", "ECE"), ("adaptive_ece", "Adaptive ECE"),
              ("classwise_ece", "Class-wise ECE"), ("slope", "Calibration slope (ideal 1)"),
              ("intercept", "Calibration intercept (ideal 0)"), ("citl", "Calibration-in-the-large (ideal 0)")]
CONFORMAL_SUMMARY = [("coverage", "Coverage, all classes"), ("mean_set_size", "Mean set size"),
                     ("singleton", "Sets with one class"), ("empty", "Empty sets"),
                     ("contains_disease", "Sets holding a disease class"),
                     ("disease_excluded", "Disease samples whose set holds no disease class")]


def pct(x: Any) -> str:
    """``0.02`` -> ``"2%"`` (3 significant digits); ``None`` -> undefined."""
    if x is None or isinstance(x, bool):
        return fmt_float(x)
    return f"{100 * float(x):.3g}%"


def _unavailable(block: Any, key: str) -> str | None:
    """The sentence for a block that is not there, or None when it holds numbers."""
    if block is None:
        return NOT_REQUESTED.get(key, not_available("not computed for this model"))
    if not isinstance(block, dict):
        return not_available("unexpected value in the snapshot")
    if block.get("available") is False:
        return not_available(block.get("reason"))
    return None


def clinical_section(snapshot: dict, models: list[dict], figs: dict, colors: dict) -> dict:
    """The section's context.

    Parameters
    ----------
    snapshot : dict
        The snapshot (its top-level ``clinical`` and ``settings`` are read).
    models : list of dict, length M
        ``measured_models(snapshot)``; each may carry ``clinical``.
    figs : dict
        Figure key -> data URI (``decision_curves``, ``risk_coverage``, ``recalibration_m<i>``).
    colors : dict
        Model name -> colour.

    Returns
    -------
    dict
        ``reason`` (the whole section is unavailable) or ``settings`` (label, text pairs),
        ``warnings``, and one dict per part: ``decision``, ``cost``, ``prevalence``,
        ``thresholds``, ``recalibration``, ``conformal``, ``selective``. Each part has a
        ``reason`` (all models lack it) or its rows and ``missing`` (``{"name", "reason"}`` of
        the models that lack it).
    """
    top = snapshot.get("clinical")
    has_model_blocks = any("clinical" in m for m in models)
    if top is None and not has_model_blocks:
        return {"reason": OLD_SNAPSHOT}
    if not models:
        return {"reason": not_available("the snapshot lists no models")}
    entries = []
    for i, m in enumerate(models):
        c = m.get("clinical")
        why = None
        if c is None:
            why = not_available("no clinical-use block for this model in the snapshot")
        elif c.get("available") is False:
            why = not_available(c.get("reason"))
        entries.append({"i": i, "name": m.get("name", f"model {i}"), "color": colors.get(m.get("name")),
                        "block": c if why is None else None, "reason": why})
    warnings = [f"{e['name']}: {(e['block'].get('validation') or {}).get('reason')}." for e in entries
                if e["block"] and (e["block"].get("validation") or {}).get("split") is None]
    return {"reason": None, "settings": _settings(snapshot, top, entries), "warnings": warnings,
            "decision": _decision(top, figs, colors),
            "cost": _cost(entries), "cost_matrix": _cost_matrix(entries), "prevalence": _prevalence(entries), "thresholds": _thresholds(entries),
            "recalibration": _recalibration(entries, figs), "conformal": _conformal(entries),
            "selective": _selective(entries, figs)}


def _settings(snapshot: dict, top: dict | None, entries: list[dict]) -> list[tuple[str, str]]:
    st = (top or {}).get("settings") or (snapshot.get("settings") or {}).get("clinical") or {}
    cost = st.get("cost")
    rows = [("Deployment prevalence", pct(st["prevalence"]) if st.get("prevalence") is not None
             else "not given: the test split's own mix of disease is used"),
            ("Costs", f"missed disease (FN) = {cost['FN']:g}, false alarm (FP) = {cost['FP']:g} (correct calls cost 0)"
             if isinstance(cost, dict) and cost.get("FN") is not None and cost.get("FP") is not None
             else "not given")]
    if st.get("prevalence_per_class"):  # --prevalence CLASS=P: each class against the rest
        rows.insert(1, ("Deployment prevalence per class", ", ".join(
            f"{c} {pct(v)}" for c, v in st["prevalence_per_class"].items()) + " (each class against the rest)"))
    if st.get("conformal_alpha") is not None:
        rows.append(("Conformal sets aim at", f"{pct(1 - st['conformal_alpha'])} coverage for every class"))
    if st.get("delta") is not None:
        rows.append(("A guarantee may fail with probability", f"at most {fmt_float(st['delta'], 2)}"))
    positive = (top or {}).get("positive") or next(
        ((e["block"].get("thresholds") or {}).get("positive") for e in entries if e["block"]), None)
    if positive:
        rows.append(("Disease (positive) means", str(positive)))
    vals = [f"{e['name']}: {fmt_int(v.get('n'))} samples" for e in entries if e["block"]
            for v in [e["block"].get("validation") or {}] if v.get("split")]
    rows.append(("Chosen on validation", "; ".join(vals) if vals else "no model has a validation split"))
    return rows


# -- decision curves --------------------------------------------------------------------


def _decision(top: dict | None, figs: dict, colors: dict) -> dict:
    why = not_available("decision curves are not in this snapshot") if top is None else _unavailable(top, "decision")
    if why:
        return {"reason": why}
    dc = top.get("decision_curves") or {}
    prev = dc.get("prevalence") or {}
    if prev.get("source", "").startswith("deployment"):
        basis = f"at the deployment prevalence {pct(prev.get('value'))} (test sample: {pct(prev.get('test_sample'))})"
    else:
        basis = f"at the test sample's prevalence {pct(prev.get('value'))}"
    t = dc.get("thresholds") or []
    grid = f"{pct(t[0])}\u2013{pct(t[-1])}" if t else "none"
    return {"reason": not_available(dc["reason"]) if dc.get("reason") else None,
            "figure": figs.get("decision_curves"), "basis": basis, "grid": grid,
            "band": dc.get("band") or "no bands (bootstrap off)",
            "findings": [{"text": f.get("text", ""), "model": f.get("model"),
                          "color": colors.get(f.get("model"))} for f in top.get("findings") or []]}


# -- tables across models -----------------------------------------------------------------


def _group(entries: list[dict], labels: list[str], cells: dict[str, list[Cell]]) -> list[dict]:
    """A transposed table (rows = quantities, columns = models) in groups of :data:`MAX_COLUMNS` models."""
    names = list(cells)
    out = []
    for start in range(0, len(names), MAX_COLUMNS):
        part = names[start:start + MAX_COLUMNS]
        out.append({"models": [{"name": n, "color": next(e["color"] for e in entries if e["name"] == n)}
                               for n in part],
                    "rows": [{"label": lab, "cells": [cells[n][r] for n in part]} for r, lab in enumerate(labels)]})
    return out


def _part(entries: list[dict], key: str) -> tuple[list[tuple[dict, dict]], list[dict], str | None]:
    """(models with the block, models without it and why, the part's reason when none has it)."""
    have, missing = [], []
    for e in entries:
        if e["block"] is None:
            missing.append({"name": e["name"], "reason": e["reason"]})
            continue
        why = _unavailable(e["block"].get(key), key)
        if why:
            missing.append({"name": e["name"], "reason": why})
        else:
            have.append((e, e["block"][key]))
    if have:
        return have, missing, None
    reasons = {m["reason"] for m in missing}
    if len(reasons) == 1:  # one sentence for the part, not one per model
        return have, [], reasons.pop()
    return have, missing, "not available for any model (reasons per model below)"


def _cost(entries: list[dict]) -> dict:
    have, missing, reason = _part(entries, "cost")
    notes = Footnotes()
    labels = ["Threshold (chosen on validation)", "Expected cost per patient", "Treat everyone", "Treat no one",
              "Model cost / cheaper of the two", "Cheaper of the two", "Test sensitivity", "Test specificity"]
    cells: dict[str, list[Cell]] = {}
    costs = prevalence = bayes = None
    for e, blk in have:
        key = f"models.{e['i']}.clinical.cost"
        ch, t = blk.get("choice") or {}, blk.get("test") or {}
        threshold = notes.number(ch.get("threshold"), f"{key}.choice.threshold",
                                 reason=ch.get("reason") or (f"the cheapest policy on validation is "
                                                              f"{ch.get('policy')}" if ch.get("policy") else None))
        if ch.get("chosen_on") not in (None, "val"):
            threshold = Cell(f"{threshold.text} (on {ch['chosen_on']}: optimistic)", threshold.note, threshold.key,
                             "undef")
        cells[e["name"]] = [
            threshold,
            notes.metric(t.get("expected_cost"), f"{key}.test.expected_cost"),
            notes.metric(t.get("treat_all_cost"), f"{key}.test.treat_all_cost"),
            notes.metric(t.get("treat_none_cost"), f"{key}.test.treat_none_cost"),
            notes.metric(t.get("normalised_cost"), f"{key}.test.normalised_cost"),
            Cell(str(t.get("best_trivial") or "undefined"), None, f"{key}.test.best_trivial", "text"),
            notes.metric(t.get("sensitivity"), f"{key}.test.sensitivity"),
            notes.metric(t.get("specificity"), f"{key}.test.specificity"),
        ]
        costs = costs or blk.get("costs")
        prevalence = prevalence or blk.get("prevalence")
        bayes = bayes if bayes is not None else blk.get("bayes_threshold")
    basis = None
    if prevalence:
        basis = (f"deployment prevalence {pct(prevalence.get('value'))}"
                 if str(prevalence.get("source", "")).startswith("deployment")
                 else f"the test sample's prevalence {pct(prevalence.get('value'))}")
    return {"reason": reason, "missing": missing, "groups": _group(entries, labels, cells) if cells else [],
            "notes": notes.reasons, "basis": basis, "bayes": fmt_float(bayes) if bayes is not None else None,
            "costs": costs}


def _cost_matrix(entries: list[dict]) -> dict:
    have, missing, reason = _part(entries, "cost_matrix")
    notes = Footnotes()
    labels = ["Most probable class: expected cost", "\u2026 / cheapest constant decision",
              "Lowest expected cost under the model's probabilities", "\u2026 / cheapest constant decision",
              "Cheapest constant decision (on test)", "\u2026 its cost"]
    cells: dict[str, list[Cell]] = {}
    for e, blk in have:
        key = f"models.{e['i']}.clinical.cost_matrix"
        pol = blk.get("policies") or {}
        best = blk.get("best_constant")
        row = []
        for name in ("argmax", "min_expected_cost"):
            for k in ("expected_cost", "normalised_cost"):
                row.append(notes.metric((pol.get(name) or {}).get(k), f"{key}.policies.{name}.{k}"))
        row.append(Cell(f"always \u201c{best}\u201d" if best is not None else "undefined", None, None, "text"))
        row.append(notes.metric((blk.get("constant") or {}).get(best), f"{key}.constant.{best}")
                   if best is not None else Cell("undefined", None, None, "undef"))
        cells[e["name"]] = row
    return {"reason": reason, "missing": missing, "groups": _group(entries, labels, cells) if cells else [],
            "notes": notes.reasons}


def _point_label(name: str | None) -> str:
    kind = str(name or "").split("_", 1)[0]
    return {"naive": "Naive", "guaranteed": "Guaranteed"}.get(kind, str(name or "unnamed"))


def _prevalence(entries: list[dict]) -> dict:
    """PPV/NPV rows: of disease as a whole (``prevalence``) and of each disease class one-vs-rest
    (``prevalence_per_class``, ``--prevalence CLASS=P``), per model in that order."""
    have, missing, reason = _part(entries, "prevalence")
    notes = Footnotes()
    # entry index -> [(snapshot key, block, outcome or None = disease as a whole, its thresholds block)]
    blocks: dict[int, list[tuple[str, dict, str | None, dict]]] = {}
    prev = None
    for e, blk in have:
        prev = prev if prev is not None else blk.get("prevalence")
        blocks.setdefault(e["i"], []).append((f"models.{e['i']}.clinical.prevalence", blk, None,
                                              e["block"].get("thresholds") or {}))
    per_class = False
    for e in entries:
        for cls, blk in ((e["block"] or {}).get("prevalence_per_class") or {}).items():
            if isinstance(blk, dict):
                per_class = True
                blocks.setdefault(e["i"], []).append((f"models.{e['i']}.clinical.prevalence_per_class.{cls}", blk,
                                                      f"{cls} vs the rest at {pct(blk.get('prevalence'))}",
                                                      blk.get("thresholds") or {}))
    if per_class:
        # There are rows, so "no prevalence of disease as a whole was given" hides nothing.
        reason = None
        missing = [m for m in missing if m["reason"] != NOT_REQUESTED["prevalence"]]
    rows = []
    for e in entries:
        for key, blk, outcome, thresholds in blocks.get(e["i"], []):
            if outcome is None and per_class:
                outcome = f"{blk.get('positive') or 'disease'} at {pct(blk.get('prevalence'))}"
            row = {"model": e["name"], "color": e["color"], "first": not any(r["model"] == e["name"] for r in rows),
                   "outcome": outcome, "outcome_first": True}
            if blk.get("available") is False:
                rows.append({**row, "point": "", "reason": not_available(blk.get("reason"))})
                continue
            points = blk.get("points") or {}
            # In the order of the threshold table (naive, then guaranteed), not report.json's sorted keys.
            order = [p.get("name") for p in thresholds.get("points") or []]
            names = [n for n in order if n in points] + [n for n in points if n not in order]
            for j, pname in enumerate(names):
                p = points[pname]
                r = {**row, "first": row["first"] and j == 0, "outcome_first": j == 0, "point": _point_label(pname)}
                if p.get("available") is False:
                    r["reason"] = not_available(p.get("reason"))
                else:
                    r.update(threshold=fmt_float(p.get("threshold")),
                             cells=[notes.metric(p.get(k), f"{key}.points.{pname}.{k}")
                                    for k in ("sensitivity", "specificity", "ppv", "npv")])
                rows.append(r)
            if not names:
                rows.append({**row, "point": "", "reason": not_available("no operating point in the snapshot")})
    return {"reason": reason, "missing": missing, "rows": rows, "notes": notes.reasons, "per_class": per_class,
            "prevalence": pct(prev) if prev is not None and not per_class else None}


def _thresholds(entries: list[dict]) -> dict:
    have, missing, reason = _part(entries, "thresholds")
    notes = Footnotes()
    rows = []
    target = delta = note = None
    for e, blk in have:
        target = target if target is not None else blk.get("target")
        delta = delta if delta is not None else blk.get("delta")
        note = note or blk.get("note")
        for j, p in enumerate(blk.get("points") or []):
            key = f"models.{e['i']}.clinical.thresholds.points.{j}"
            val, test = p.get("on_validation") or {}, p.get("on_test") or {}
            why = val.get("reason")
            if val.get("k") is not None and val.get("n") is not None:
                counted = f"{val['k']}/{val['n']}"
                if val.get("lower_bound") is not None:
                    counted += f" (lower bound {fmt_float(val['lower_bound'])})"
            else:
                counted = f"n = {fmt_int(val.get('n'))}" if val.get("n") is not None else "undefined"
            rows.append({"model": e["name"], "color": e["color"], "first": j == 0, "point": _point_label(p.get("name")),
                         "threshold": notes.number(p.get("threshold"), f"{key}.threshold", reason=why),
                         "validation": counted,
                         "cells": [notes.metric(test.get(k), f"{key}.on_test.{k}") for k in ("sensitivity",
                                                                                             "specificity")]})
    return {"reason": reason, "missing": missing, "rows": rows, "notes": notes.reasons,
            "target": pct(target) if target is not None else None,
            "delta": fmt_float(delta, 2) if delta is not None else None, "note": note}


# -- per model ----------------------------------------------------------------------------


def _recal_params(blk: dict) -> str:
    p = blk.get("parameters") or {}
    if p.get("reason"):
        return not_available(p["reason"])
    if blk.get("method") == "temperature":
        text = f"temperature T = {fmt_float(p.get('temperature'))}"
        if p.get("at_bound"):
            text += " (at the edge of the search range: validation gives no usable fit)"
    else:
        text = (f"Platt scaling of p({p.get('positive')}): intercept {fmt_float(p.get('intercept'))}, "
                f"slope {fmt_float(p.get('slope'))}")
    if p.get("nll_before") is not None and p.get("nll_after") is not None:
        text += f"; validation log loss {fmt_float(p['nll_before'])} \u2192 {fmt_float(p['nll_after'])}"
    return text


def _spiegelhalter(sp: dict | None) -> str:
    def one(d: dict | None) -> str:
        if not d or d.get("z") is None:
            return "undefined" + (f" ({d['reason']})" if d and d.get("reason") else "")
        p = d.get("p_value")
        return f"z = {fmt_float(d['z'], 2)}, p = {'< 0.001' if p is not None and p < 0.001 else fmt_float(p)}"

    sp = sp or {}
    return f"before: {one(sp.get('before'))}; after: {one(sp.get('after'))}"


def _recal_table(blk: dict, key: str) -> dict[str, Any]:
    """One method's before/after/change table (``key``: where its ``test.metrics`` live)."""
    notes = Footnotes()
    test = blk.get("test")
    out: dict[str, Any] = {"method": blk.get("method"), "variant": blk.get("variant"), "params": _recal_params(blk),
                           "note": blk.get("note"), "rows": [], "notes": []}
    if not test:
        out["reason"] = not_available(blk.get("note") or "no recalibrated test predictions")
        return out
    met = test.get("metrics") or {}
    out.update(reason=None, n=fmt_int(test.get("n")), forecast=test.get("forecast"),
               spiegelhalter=_spiegelhalter(test.get("spiegelhalter")))
    for k, label in RECAL_ROWS:
        if k in met:
            out["rows"].append({"label": label, "cells": [notes.metric((met[k] or {}).get(w), f"{key}.{k}.{w}")
                                                          for w in ("before", "after", "change")]})
    out["notes"] = notes.reasons
    return out


def _recalibration(entries: list[dict], figs: dict) -> dict:
    """Temperature scaling per model, and beside it Platt scaling where the snapshot has it (two-class
    tasks: ``recalibration_platt``; older snapshots have none, and render as before)."""
    have, missing, reason = _part(entries, "recalibration")
    per_model = []
    for e, blk in have:
        entry = {"name": e["name"], "color": e["color"], "figure": figs.get(f"recalibration_m{e['i']}"),
                 **_recal_table(blk, f"models.{e['i']}.clinical.recalibration.test.metrics")}
        platt = e["block"].get("recalibration_platt")
        if isinstance(platt, dict):
            entry["platt"] = ({"method": "platt", "reason": not_available(platt.get("reason")), "rows": []}
                              if platt.get("available") is False else
                              _recal_table(platt, f"models.{e['i']}.clinical.recalibration_platt.test.metrics"))
        per_model.append(entry)
    return {"reason": reason, "missing": missing, "per_model": per_model}


def _conformal(entries: list[dict]) -> dict:
    have, missing, reason = _part(entries, "conformal")
    per_model = []
    for e, blk in have:
        methods = [m for m in ("lac", "aps") if isinstance(blk.get(m), dict)] + sorted(
            m for m, v in blk.items() if m not in ("lac", "aps", "available", "reason") and isinstance(v, dict))
        notes = Footnotes()
        classes: list[str] = []
        for m in methods:
            classes += [c for c in blk[m].get("coverage_per_class") or {} if c not in classes]
        rows = []
        for c in classes:
            cells = []
            for m in methods:
                mv = (blk[m].get("coverage_per_class") or {}).get(c)
                cells.append(notes.metric(mv, f"models.{e['i']}.clinical.conformal.{m}.coverage_per_class.{c}"))
                cells.append(Cell(fmt_kn(mv) or "", None, None))
            rows.append({"name": c, "cells": cells})
        summary = []
        for k, label in CONFORMAL_SUMMARY:
            cells = []
            for m in methods:
                mv = blk[m].get(k)
                cell = notes.metric(mv, f"models.{e['i']}.clinical.conformal.{m}.{k}", 2 if k == "mean_set_size" else 3)
                if mv is None:  # the key itself is absent from this method's block
                    cell = Cell("not available", notes.add(f"'{k}' is not in the snapshot"), cell.key, "undef")
                cells.append(cell)
            summary.append({"label": label, "cells": cells})
        target = next((blk[m].get("target_coverage") for m in methods if blk[m].get("target_coverage") is not None),
                      None)
        remarks: list[str] = []
        for m in methods:
            for n in blk[m].get("notes") or []:
                if n not in remarks:
                    remarks.append(n)
        per_model.append({"name": e["name"], "color": e["color"], "methods": [m.upper() for m in methods],
                          "rows": rows, "summary": summary, "notes": notes.reasons, "remarks": remarks,
                          "target": pct(target) if target is not None else None,
                          "n_test": fmt_int(next((blk[m].get("n_test") for m in methods), None)),
                          "mondrian": any(blk[m].get("mondrian") for m in methods)})
    return {"reason": reason, "missing": missing, "per_model": per_model}


def _selective(entries: list[dict], figs: dict) -> dict:
    have, missing, reason = _part(entries, "selective")
    notes = Footnotes()
    summary, points, point_reasons = [], [], []
    for e, blk in have:
        key = f"models.{e['i']}.clinical.selective"
        summary.append({"name": e["name"], "color": e["color"], "n": fmt_int(blk.get("n_test")),
                        "cells": [notes.metric(blk.get("aurc"), f"{key}.aurc"),
                                  notes.metric(blk.get("e_aurc"), f"{key}.e_aurc"),
                                  notes.number(blk.get("aurc_optimal"), f"{key}.aurc_optimal",
                                               reason="AURC or E-AURC is undefined"),
                                  notes.metric(blk.get("risk_at_full_coverage"), f"{key}.risk_at_full_coverage")]})
        if blk.get("operating_points_reason"):
            point_reasons.append({"name": e["name"], "reason": not_available(blk["operating_points_reason"])})
        for j, p in enumerate(blk.get("operating_points") or []):
            pk = f"{key}.operating_points.{j}"
            target = (f"coverage {pct(p.get('target_value'))}" if p.get("target") == "coverage"
                      else f"selective risk \u2264 {pct(p.get('target_value'))}")
            threshold = notes.number(p.get("threshold"), f"{pk}.threshold", reason=p.get("reason"))
            points.append({"model": e["name"], "color": e["color"], "first": j == 0, "target": target,
                           "threshold": threshold, "val_coverage": pct(p.get("val_coverage"))
                           if p.get("val_coverage") is not None else "undefined",
                           "cells": [notes.metric(p.get(k), f"{pk}.{k}") for k in
                                     ("coverage", "selective_risk", "missed_disease")],
                           "guarantee": p.get("guarantee")})
    return {"reason": reason, "missing": missing, "summary": summary, "points": points,
            "point_reasons": point_reasons, "notes": notes.reasons, "figure": figs.get("risk_coverage"),
            "rule": next((b.get("rule") for _, b in have if b.get("rule")), None)}
