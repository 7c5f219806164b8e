"""Template context for sections 5-8: missed-disease risk, comparison, galleries, efficiency.

Split from :mod:`medaudit.report.context` to keep modules small; same rules: read the
snapshot, format, and turn every ``null`` into an explicit "undefined"/"not available".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medaudit.report.format import (
    Cell,
    Footnotes,
    flatten,
    fmt_any,
    fmt_float,
    fmt_kn,
    fmt_metric,
    fmt_p,
    not_available,
)

MAX_IDS = 12  # sample ids listed inline; the full lists stay in report.json


def _ids(ids: list | None) -> str:
    ids = list(ids or [])
    if not ids:
        return "none"
    more = f" \u2026 (+{len(ids) - MAX_IDS} more, see report.json)" if len(ids) > MAX_IDS else ""
    return ", ".join(map(str, ids[:MAX_IDS])) + more


def risk_section(models: list[dict], figs: dict) -> dict:
    """Section 5: missed-disease rates per model and class, and operating points."""
    out = []
    for i, m in enumerate(models):
        name = m.get("name")
        fn, op = m.get("fn_risk"), m.get("operating_points")
        notes = Footnotes()
        entry: dict[str, Any] = {"name": name, "fn_reason": None, "op_reason": None}
        if fn is None:
            entry["fn_reason"] = not_available("no negative (healthy) class configured for this task")
        else:
            entry["negatives"] = ", ".join(map(str, fn.get("negative_classes") or [])) or "none"
            entry["overall"] = notes.metric(fn.get("overall"), f"models.{i}.fn_risk.overall")
            entry["overall_kn"] = fmt_kn(fn.get("overall"))
            entry["rows"] = [{"name": c, "rate": notes.metric(v.get("rate"), f"models.{i}.fn_risk.per_class.{c}.rate"),
                              "kn": fmt_kn(v.get("rate")),
                              "missed_as": ", ".join(f"{k}: {n}" for k, n in (v.get("missed_as") or {}).items()) or "none",
                              "ids": _ids(v.get("missed_ids"))}
                             for c, v in (fn.get("per_class") or {}).items()]
        if op is None:
            entry["op_reason"] = not_available("operating points need a binary or disease-vs-negative score")
        else:
            entry["op_positive"] = op.get("positive")
            entry["op_score"] = op.get("score")
            entry["op_note"] = op.get("note")
            entry["points"] = []
            for j, p in enumerate(op.get("points") or []):
                key = f"models.{i}.operating_points.points.{j}"
                remark = ""
                if p.get("chosen_on") == "test":
                    remark = "threshold chosen on the test split: optimistic"
                if p.get("reached_on_choice_split") is False:
                    remark = (remark + "; " if remark else "") + "target not reached on the choice split"
                entry["points"].append({
                    "name": p.get("name"), "threshold": fmt_float(p.get("threshold")), "chosen_on": p.get("chosen_on"),
                    "sensitivity": notes.metric(p.get("sensitivity"), f"{key}.sensitivity"),
                    "specificity": notes.metric(p.get("specificity"), f"{key}.specificity"), "remark": remark})
        entry["notes"] = notes.reasons
        out.append(entry)
    return {"per_model": out, "figure": figs.get("missed_disease")}


def comparison_section(comp: dict | None, n_models: int, figs: dict, colors: dict) -> dict:
    """Section 6: error overlap, McNemar and DeLong per model pair."""
    if comp is None:
        why = "fewer than 2 models in this report" if n_models < 2 else "the comparison was not run"
        return {"reason": not_available(why)}
    notes = Footnotes()
    pairs = []
    for p in comp.get("pairs") or []:
        mc, dl, md = p.get("mcnemar") or {}, p.get("delong"), p.get("missed_disease")
        boot = [{"metric": k, "text": _diff(v)} for k, v in (p.get("bootstrap_diff") or {}).items()]
        pairs.append({
            "a": p.get("a"), "b": p.get("b"), "both": fmt_any(p.get("both")), "only_a": fmt_any(p.get("only_a")),
            "only_b": fmt_any(p.get("only_b")), "jaccard": fmt_float(p.get("jaccard")),
            "relation": p.get("relation") or "", "disagreement": fmt_float(p.get("disagreement_rate")),
            "b01": fmt_any(mc.get("b01")), "b10": fmt_any(mc.get("b10")), "mc_p": fmt_p(mc.get("p_value")),
            "mc_p_mid": fmt_p(mc.get("p_mid")), "mc_p_holm": fmt_p(mc.get("p_holm")),
            "delong": None if dl is None else {
                "auc_a": fmt_float(dl.get("auc_a")), "auc_b": fmt_float(dl.get("auc_b")),
                "diff": _diff(dl), "z": fmt_float(dl.get("z"), 2), "p": fmt_p(dl.get("p_value")),
                "p_holm": fmt_p(dl.get("p_holm"))},
            "delong_reason": not_available("DeLong needs a single AUC per model on the same samples")
            if dl is None else None,
            "boot": boot,
            "missed": None if md is None else {k: fmt_any(md.get(k)) for k in ("both", "only_a", "only_b", "relation")},
        })
    inter = [{"models": " \u2229 ".join(map(str, r.get("models") or [])), "count": fmt_any(r.get("count"))}
             for r in comp.get("intersections") or []]
    errs = [{"name": k, "color": colors.get(k, "#333"), "n": fmt_any(v.get("n_errors"))}
            for k, v in (comp.get("error_sets") or {}).items()]
    return {"reason": None, "models": comp.get("models") or [], "n": fmt_any(comp.get("n")), "pairs": pairs,
            "intersections": inter, "errors": errs, "hard": _ids(comp.get("hard_samples")),
            "n_hard": len(comp.get("hard_samples") or []), "figure": figs.get("overlap"), "notes": notes.reasons,
            "upset": len(comp.get("models") or []) > 2}


def _diff(d: dict | None) -> str:
    """``+0.012 [-0.020–0.041]`` for a difference with an interval."""
    if not d or d.get("diff") is None:
        return "undefined"
    return fmt_metric({"value": d["diff"], "ci_low": d.get("ci_low"), "ci_high": d.get("ci_high")})


def gallery_section(models: list[dict], embed: Callable[[str], str | None]) -> dict:
    """Section 7: Grad-CAM tiles; with 2+ models, one row per sample id, models side by side."""
    per_model = []
    order: list[str] = []
    by_model: dict[str, dict[str, dict]] = {}
    for m in models:
        name, cam = m.get("name"), m.get("cam")
        if cam is None:
            per_model.append({"name": name, "reason": not_available("Grad-CAM was not run for this model")})
            continue
        if cam.get("reason") and not cam.get("tiles"):
            per_model.append({"name": name, "reason": not_available(cam["reason"])})
            continue
        per_model.append({"name": name, "method": cam.get("method"), "layer": cam.get("layer"), "reason": None})
        tiles = by_model.setdefault(name, {})
        for t in cam.get("tiles") or []:
            sid = str(t.get("sample_id"))
            if sid not in order:
                order.append(sid)
            uri = embed(t.get("file") or "")
            tiles[sid] = {"uri": uri, "true": t.get("true"), "pred": t.get("pred"), "prob": fmt_float(t.get("prob")),
                          "group": (t.get("group") or "").replace("_", " "),
                          "missing": None if uri else f"image not available: {t.get('file')}"}
    cols = [p["name"] for p in per_model if p["reason"] is None]
    rows = [{"sample_id": sid, "true": next((by_model[c][sid]["true"] for c in cols if sid in by_model[c]), ""),
             "tiles": [by_model[c].get(sid) for c in cols]} for sid in order]
    return {"per_model": per_model, "columns": cols, "rows": rows,
            "reason": None if rows else not_available("no Grad-CAM tiles in the snapshot")}


def efficiency_section(models: list[dict]) -> dict:
    """Section 8: every efficiency field, models side by side (schema owned by bench.py)."""
    keys: list[str] = []
    flat = []
    for m in models:
        f = dict(flatten(m.get("efficiency"))) if m.get("efficiency") else None
        flat.append(f)
        for k in f or {}:
            if k not in keys:
                keys.append(k)
    rows = [{"label": k.replace("_", " ").replace(".", " \u00b7 "), "values": [Cell(fmt_any(f[k]) if f is not None and k in f else
                                                           ("not available" if f is None else "\u2014"))
                                                      for f in flat]} for k in keys]
    reasons = [(m.get("name"), not_available("benchmark not run (--no-bench)")) for m, f in zip(models, flat, strict=False) if f is None]
    return {"names": [m.get("name") for m in models], "rows": rows, "missing": reasons,
            "reason": None if rows else not_available("no model has efficiency measurements (--no-bench)")}
