"""Template context for section 7, model comparison (schema owned by :mod:`medaudit.compare`).

Same rules as :mod:`medaudit.report.context`: values are read and formatted, never
recomputed; an undefined p-value or interval prints as "undefined" with the snapshot's
reason as a footnote. ``bootstrap_diff`` mixes metric differences (``accuracy``,
``macro_f1``), a per-class block (``recall``) and the resampling ``settings``; each is
shown in its own place, and ``settings`` is never a metric column.
"""

from __future__ import annotations

from typing import Any

from medaudit.report.format import Cell, Footnotes, fmt_any, fmt_float, fmt_metric, fmt_p, not_available
from medaudit.report.perf_context import ids_text

BOOT_METRICS = [("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced accuracy"), ("macro_f1", "Macro-F1"),
                ("missed_disease_rate", "Missed-disease rate (lower is better)")]


def diff_cell(d: dict | None, notes: Footnotes, *, signed: bool = True) -> Cell:
    """``+0.012 [-0.020–0.041]`` for a ``{diff, ci_low, ci_high, reason}`` block."""
    if d is None:
        return Cell("not available", None, None, "undef")
    if d.get("diff") is None:
        return Cell("undefined", notes.add(d.get("reason")), None, "undef")
    text = fmt_metric({"value": d["diff"], "ci_low": d.get("ci_low"), "ci_high": d.get("ci_high")})
    if signed and d["diff"] > 0:
        text = "+" + text
    if d.get("ci_low") is None and d.get("reason"):
        return Cell(text, notes.add(d["reason"]))
    return Cell(text)


def _p_cell(p: Any, reason: str | None, notes: Footnotes) -> Cell:
    if p is None:
        return Cell("undefined", notes.add(reason or "test not computed"), None, "undef")
    return Cell(fmt_p(p))


def _delong(dl: dict | None, notes: Footnotes) -> tuple[dict | None, list[dict]]:
    if dl is None:
        return None, []
    why = dl.get("reason")
    main = {"auc_a": fmt_float(dl.get("auc_a")), "auc_b": fmt_float(dl.get("auc_b")),
            "diff": diff_cell({"diff": dl.get("diff"), "ci_low": dl.get("ci_low"), "ci_high": dl.get("ci_high"),
                               "reason": why}, notes),
            "p": _p_cell(dl.get("p_value"), why, notes), "p_holm": _p_cell(dl.get("p_holm"), why, notes),
            "method": dl.get("method") or "DeLong", "positive": dl.get("positive")}
    per = []
    for cls, v in (dl.get("per_class") or {}).items():
        v = v or {}
        r = v.get("reason")
        per.append({"name": cls, "auc_a": fmt_float(v.get("auc_a")), "auc_b": fmt_float(v.get("auc_b")),
                    "diff": diff_cell(v, notes), "p": _p_cell(v.get("p_value"), r, notes),
                    "p_holm": _p_cell(v.get("p_holm"), r, notes)})
    return main, per


def _boot_settings(s: dict | None) -> str | None:
    if not s:
        return None
    parts = [str(s["method"])] if s.get("method") else []
    if s.get("n_bootstrap") is not None:
        parts.append(f"{s['n_bootstrap']} resamples")
    if s.get("confidence") is not None:
        parts.append(f"{100 * float(s['confidence']):g}% percentile intervals")
    if s.get("seed") is not None:
        parts.append(f"seed {s['seed']}")
    return "; ".join(parts)


def comparison_section(comp: dict | None, n_models: int, figs: dict, colors: dict) -> dict:
    """Section 6 context: error overlap, McNemar, DeLong (overall and per class) and
    bootstrap differences per model pair.

    Parameters
    ----------
    comp : dict or None
        ``snapshot["comparisons"]`` (null with fewer than 2 models).
    n_models : int
        Number of models, to word the reason when ``comp`` is null.
    figs : dict
        Figure key -> data URI (``overlap``).
    colors : dict
        Model name -> colour.

    Returns
    -------
    dict
        Pre-formatted cells and sentences; ``reason`` is set when nothing can be shown.
    """
    if comp is None:
        why = "fewer than 2 models in this report" if n_models < 2 else "the comparison was not run"
        return {"reason": not_available(why)}
    notes = Footnotes()
    pairs, recall_classes, boot_keys, settings = [], [], [], None
    for p in comp.get("pairs") or []:
        boot = p.get("bootstrap_diff") or {}
        for k in boot:
            if k not in boot_keys:
                boot_keys.append(k)
        recall_classes += [c for c in (boot.get("recall") or {}) if c not in recall_classes]
        settings = settings or _boot_settings(boot.get("settings"))
    cols = [(k, label) for k, label in BOOT_METRICS if k in boot_keys]
    for p in comp.get("pairs") or []:
        mc, md, boot = p.get("mcnemar") or {}, p.get("missed_disease"), p.get("bootstrap_diff") or {}
        delong, per_class = _delong(p.get("delong"), notes)
        jac = p.get("jaccard")
        pairs.append({
            "a": p.get("a"), "b": p.get("b"), "both": fmt_any(p.get("both")), "only_a": fmt_any(p.get("only_a")),
            "only_b": fmt_any(p.get("only_b")),
            "jaccard": Cell(fmt_float(jac)) if jac is not None else Cell(
                "undefined", notes.add(p.get("jaccard_reason")), None, "undef"),
            "acc_a": fmt_float(p.get("accuracy_a")), "acc_b": fmt_float(p.get("accuracy_b")),
            "n_disagree": fmt_any(p.get("n_disagree")), "disagreement": fmt_float(p.get("disagreement_rate")),
            "relation_text": p.get("relation_text") or p.get("relation") or "",
            "b01": fmt_any(mc.get("b01")), "b10": fmt_any(mc.get("b10")),
            "n_discordant": fmt_any(mc.get("n_discordant")), "mc_p": _p_cell(mc.get("p_value"), None, notes),
            "mc_p_mid": fmt_p(mc.get("p_mid")), "mc_p_holm": _p_cell(mc.get("p_holm"), None, notes),
            "delong": delong, "delong_per_class": per_class,
            "delong_reason": not_available("DeLong needs a score per model on the same samples")
            if delong is None else None,
            "boot": [diff_cell(boot.get(k), notes) for k, _ in cols],
            "recall": [diff_cell((boot.get("recall") or {}).get(c), notes) for c in recall_classes],
            "missed": None if md is None else {
                "both": fmt_any(md.get("both")), "only_a": fmt_any(md.get("only_a")),
                "only_b": fmt_any(md.get("only_b")), "n_disease": fmt_any(md.get("n_disease")),
                "relation_text": md.get("relation_text") or md.get("relation") or ""},
        })
    inter = [{"models": " \u2229 ".join(map(str, r.get("models") or [])), "count": fmt_any(r.get("count"))}
             for r in comp.get("intersections") or []]
    errs = [{"name": k, "color": colors.get(k, "#333"), "n": fmt_any(v.get("n_errors"))}
            for k, v in (comp.get("error_sets") or {}).items()]
    missed_sets = [{"name": k, "color": colors.get(k, "#333"), "n": fmt_any(v.get("n_missed"))}
                   for k, v in (comp.get("missed_sets") or {}).items()]
    mt = comp.get("multiple_testing") or {}
    return {"reason": None, "models": comp.get("models") or [], "n": fmt_any(comp.get("n")), "pairs": pairs,
            "task": comp.get("task"), "negatives": ", ".join(map(str, comp.get("negative_classes") or [])),
            "intersections": inter, "errors": errs, "missed_sets": missed_sets, "hard": ids_text(comp.get("hard_samples")),
            "n_hard": len(comp.get("hard_samples") or []), "figure": figs.get("overlap"),
            "upset": len(comp.get("models") or []) > 2,
            "boot_columns": [label for _, label in cols], "boot_settings": settings,
            "recall_classes": recall_classes, "has_per_class_delong": any(p["delong_per_class"] for p in pairs),
            "multiple_testing": {"method": mt.get("method"), "note": mt.get("note"),
                                 "mcnemar_tests": mt.get("mcnemar_tests"), "delong_tests": mt.get("delong_tests")}
            if mt else None,
            "notes": notes.reasons}
