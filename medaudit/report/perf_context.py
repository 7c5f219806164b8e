"""Template context for sections 5 and 8: missed-disease risk and Grad-CAM galleries.

Split from :mod:`medaudit.report.context` to keep modules small; same rules: read the
snapshot, format, and turn every ``null`` into an explicit "undefined"/"not available".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medaudit.report.cam_context import faithfulness_context, localisation_context
from medaudit.report.format import (
    Footnotes,
    fmt_float,
    fmt_kn,
    not_available,
)

MAX_IDS = 12  # sample ids listed inline; the full lists stay in report.json


def ids_text(ids: list | None) -> str:
    """The first :data:`MAX_IDS` sample ids, then how many more are in report.json."""
    ids = list(ids or [])
    if not ids:
        return "none"
    more = f" \u2026 (+{len(ids) - MAX_IDS} more, see report.json)" if len(ids) > MAX_IDS else ""
    return ", ".join(map(str, ids[:MAX_IDS])) + more


def risk_section(models: list[dict], figs: dict, settings: dict | None = None) -> dict:
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
                              "ids": ids_text(v.get("missed_ids"))}
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
    return {"per_model": out, "figure": figs.get("missed_disease"),
            "negatives_note": (settings or {}).get("negative_classes_note")}


# tests/test_explain_localise.py: on a tiny ViT trained on lesions in known places, the CAM peak
# fell in the lesion's quadrant for ~0.6 of images with GradCAM and 0.84 with LayerCAM (chance 0.25).
VIT_GRADCAM_NOTE = ("On Vision Transformers Grad-CAM localises less sharply than LayerCAM (pointing game on "
                    "synthetic lesions: about 0.6 vs 0.84); consider --cam-method layercam.")


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
        note = None
        if cam.get("method") == "gradcam" and (m.get("checkpoint") or {}).get("family") == "transformer":
            note = VIT_GRADCAM_NOTE
        if cam.get("n_invalid"):
            note = (note + " " if note else "") + (f"{cam['n_invalid']} sample(s) have no valid map (shown with "
                                                   "the reason instead of an overlay).")
        per_model.append({"name": name, "method": cam.get("method"), "layer": cam.get("layer"), "reason": None,
                          "note": note, "layer_reason": cam.get("layer_reason")})
        tiles = by_model.setdefault(name, {})
        for t in cam.get("tiles") or []:
            sid = str(t.get("sample_id"))
            if sid not in order:
                order.append(sid)
            uri = embed(t.get("file") or "")
            tiles[sid] = {"uri": uri, "true": t.get("true"), "pred": t.get("pred"), "prob": fmt_float(t.get("prob")),
                          "group": (t.get("group") or "").replace("_", " "), "hard": bool(t.get("hard")),
                          "missing": None if uri else f"image not available: {t.get('file')}"}
    cols = [p["name"] for p in per_model if p["reason"] is None]
    rows = [{"sample_id": sid, "true": next((by_model[c][sid]["true"] for c in cols if sid in by_model[c]), ""),
             "hard": len(cols) > 1 and any(by_model[c].get(sid, {}).get("hard") for c in cols),
             "tiles": [by_model[c].get(sid) for c in cols]} for sid in order]
    return {"per_model": per_model, "columns": cols, "rows": rows,
            "reason": None if rows else not_available("no Grad-CAM tiles in the snapshot"),
            "localisation": localisation_context(models), "faithfulness": faithfulness_context(models)}
