"""Template context of the "External cohorts and dataset shift" section, read from ``snapshot["external"]``.

Nothing is computed: the block (written by :mod:`medaudit.external`, docs/report-schema.md,
"External cohorts and dataset shift") is formatted as it is. A snapshot without the key (older
than the feature) or with ``null`` (no ``--external`` and no ``site`` column) gets a one-line note.
"""

from __future__ import annotations

from typing import Any

from medaudit.report.format import Cell, Footnotes, fmt_float, fmt_int, fmt_p

NOT_RUN = ("not run: give medaudit report --external NAME=SPEC (another dataset with the same classes), or "
           "data with a 'site' column, to compare cohorts")
OLD = "not available in this snapshot: it was written before medaudit's external-cohort analysis"
ROWS = [("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced accuracy"), ("macro_f1", "Macro-F1"),
        ("auc_macro", "AUC (macro)"), ("missed_disease_rate", "Missed-disease rate"), ("ece", "ECE")]


def _drop_cell(d: Any, notes: Footnotes, key: str) -> Cell:
    if not isinstance(d, dict) or d.get("value") is None:
        return Cell(fmt_float(None), notes.add((d or {}).get("reason") if isinstance(d, dict) else None), key, "undef")
    text = f"{d['value']:+.3f}"
    if d.get("ci_low") is not None and d.get("ci_high") is not None:
        text += f" [{d['ci_low']:+.3f}\u2013{d['ci_high']:+.3f}]"
    elif d.get("ci_reason"):
        return Cell(text, notes.add(d["ci_reason"]), key)
    return Cell(text, None, key)


def _worse(d: Any) -> bool:
    """Whether the drop's interval lies entirely on the worse side (for the table's flag)."""
    if not isinstance(d, dict) or d.get("ci_low") is None or d.get("ci_high") is None:
        return False
    return d["ci_low"] > 0 if d.get("higher_is_better", True) else d["ci_high"] < 0


def _model_table(entry: dict, j: int, m: dict, internal: dict | None, where: str, is_site: bool) -> dict:
    notes = Footnotes()
    key = f"{where}.models[{j}]"
    rows = []
    for k, label in ROWS:
        d = (m.get("drop") or {}).get(k)
        if is_site or internal is None:
            ref = notes.number(d.get("internal") if isinstance(d, dict) else None, None,
                               reason="undefined on the reference")
        else:
            ref = notes.metric(internal.get(k), f"models[{j}].metrics.{k}")
        rows.append({"label": label, "cells": [ref, notes.metric((m.get("metrics") or {}).get(k),
                                                                 f"{key}.metrics.{k}"),
                                               _drop_cell(d, notes, f"{key}.drop.{k}")],
                     "p": fmt_p(d.get("p_value")) if isinstance(d, dict) else fmt_p(None), "worse": _worse(d)})
    missed = []
    for cls, row in ((m.get("missed_disease") or {}).get("per_class") or {}).items():
        rate = row.get("rate") if isinstance(row, dict) else None
        as_ = ", ".join(f"{neg} {fmt_int(n)}" for neg, n in ((row or {}).get("missed_as") or {}).items() if n)
        missed.append({"cls": cls, "cell": notes.metric(rate, f"{key}.missed_disease.per_class.{cls}.rate"),
                       "kn": f"{fmt_int((rate or {}).get('k'))}/{fmt_int((rate or {}).get('n'))}" if rate else "",
                       "as": as_})
    return {"name": m.get("name"), "rows": rows, "missed": missed, "notes": notes.reasons}


def _shift(shift: Any) -> dict | None:
    if not isinstance(shift, dict):
        return None
    bbsd = shift.get("bbsd") or {}
    mmd = shift.get("mmd")
    stats = [("BBSD (KS per class, Bonferroni)", f"p {fmt_p(bbsd.get('p_value'))}; " + ", ".join(
        f"{c} D = {fmt_float(r.get('statistic'), 3)}" for c, r in (bbsd.get("per_class") or {}).items()
        if isinstance(r, dict)) + f" (n = {fmt_int(bbsd.get('n_reference'))} vs {fmt_int(bbsd.get('n_cohort'))})")]
    if isinstance(mmd, dict):
        stats.append(("MMD on penultimate features", f"p {fmt_p(mmd.get('p_value'))}; MMD\u00b2 = "
                      f"{fmt_float(mmd.get('mmd2'), 4)}, PCA {fmt_int(mmd.get('pca_dims'))} dims, "
                      f"{fmt_int(mmd.get('n_permutations'))} permutations (n = {fmt_int(mmd.get('n_reference'))} vs "
                      f"{fmt_int(mmd.get('n_cohort'))})"))
    else:
        stats.append(("MMD on penultimate features", "not run (no features for this comparison)"))
    rw = shift.get("reweighted")
    if isinstance(rw, dict):
        if rw.get("bbsd_p_value") is None:
            text = f"n = {fmt_int(rw.get('n'))}: too few images to re-run the tests"
        else:
            text = f"n = {fmt_int(rw.get('n'))}; BBSD p {fmt_p(rw.get('bbsd_p_value'))}" + (
                f"; MMD p {fmt_p(rw.get('mmd_p_value'))}" if rw.get("mmd_p_value") is not None else "")
        stats.append(("Reference drawn to the estimated prevalence", text))
    ls = shift.get("label_shift") or {}
    est, ref, obs = (ls.get(k) or {} for k in ("prevalence", "reference_prevalence", "observed_prevalence"))
    prevalence = [{"cls": c, "ref": fmt_float(ref.get(c), 3), "est": fmt_float(est.get(c), 3),
                   "obs": fmt_float(obs.get(c), 3) if obs else fmt_float(None)} for c in est]
    return {"verdict": str(shift.get("verdict")), "explanation": str(shift.get("explanation") or ""),
            "model": shift.get("model"), "stats": stats, "prevalence": prevalence,
            "method": str(ls.get("method") or ""), "alarm": shift.get("verdict") != "no shift detected"}


def external_section(snapshot: dict, colors: dict) -> dict:
    """The context of the External cohorts section (``{"reason": ...}`` when there is nothing to show)."""
    if "external" not in snapshot:
        return {"reason": OLD}
    block = snapshot.get("external")
    if not isinstance(block, dict):
        return {"reason": NOT_RUN}
    internal = {m.get("name"): m.get("metrics") or {} for m in snapshot.get("models") or [] if isinstance(m, dict)}
    entries = []
    for kind, items in (("cohorts", block.get("cohorts") or []), ("sites", block.get("sites") or [])):
        for i, e in enumerate(items):
            if not isinstance(e, dict):
                continue
            where = f"external.{kind}[{i}]"
            counts = ", ".join(f"{c} {fmt_int(n)}" for c, n in (e.get("class_counts") or {}).items())
            entries.append({
                "name": e.get("name"), "kind": "site" if kind == "sites" else "cohort", "spec": e.get("spec"),
                "n": fmt_int(e.get("n")), "counts": counts,
                "models": [dict(_model_table(e, j, m, internal.get(m.get("name")), where, kind == "sites"),
                                color=colors.get(m.get("name"), "#0072B2"))
                           for j, m in enumerate(e.get("models") or []) if isinstance(m, dict)],
                "shift": _shift(e.get("shift")),
            })
    findings = [f for f in snapshot.get("findings") or [] if isinstance(f, dict) and f.get("topic") == "external"]
    return {"reason": None, "reference": str(block.get("reference") or "test"), "entries": entries,
            "findings": findings, "definition": str(block.get("drop_definition") or "")}
