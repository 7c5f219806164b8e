"""Snapshot -> template context: plain dicts of already-formatted cells.

Templates only lay out what this module prepares, so every number the reader sees is
formatted by :mod:`medaudit.report.format` and every ``null`` in the snapshot becomes
``"undefined"`` (a value) or ``"not available: <reason>"`` (a block) here, in one place.
Nothing is computed: values are read from the snapshot as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import zip_longest
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml as escape_html

from medaudit.report.checklist_context import checklist_section
from medaudit.report.clinical_context import clinical_section
from medaudit.report.compare_context import comparison_section
from medaudit.report.eff_context import efficiency_section
from medaudit.report.external_context import external_section
from medaudit.report.format import (
    Cell,
    Footnotes,
    flatten,
    fmt_any,
    fmt_count,
    fmt_float,
    fmt_int,
    fmt_kn,
    fmt_metric,
    fmt_p,
    not_available,
    ordered_splits,
)
from medaudit.report.perf_context import gallery_section, risk_section
from medaudit.report.plots import model_colors
from medaudit.report.robustness_context import robustness_section
from medaudit.report.subgroup_context import data_checks, subgroup_section
from medaudit.report.train_context import all_settings, training_rows
from medaudit.snapshot import measured_efficiency, measured_models

SECTIONS = [
    ("summary", "Summary"),
    ("data", "Data"),
    ("models", "Models"),
    ("performance", "Performance"),
    ("risk", "Missed-disease risk and operating points"),
    ("clinical", "Clinical use"),
    ("subgroups", "Subgroups"),
    ("robustness", "Robustness to image corruptions"),
    ("external", "External cohorts and dataset shift"),
    ("comparison", "Model comparison"),
    ("gallery", "Grad-CAM and prediction galleries"),
    ("efficiency", "Efficiency"),
    ("appendix", "Reproducibility appendix"),
]

HEADLINE = [
    ("accuracy", "Accuracy"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("macro_f1", "Macro-F1"),
    ("auc_macro", "AUC (macro)"),
    ("missed_disease_rate", "Missed-disease rate"),
    ("ece", "ECE"),
]
PER_CLASS = [("precision", "Precision"), ("recall", "Recall (sensitivity)"), ("specificity", "Specificity"),
             ("f1", "F1"), ("auc", "AUC")]
OTHER = [("weighted_f1", "Weighted F1"), ("macro_precision", "Macro precision"), ("macro_recall", "Macro recall"),
         ("macro_specificity", "Macro specificity"), ("auc_micro", "AUC (micro)"), ("ap_macro", "AP (macro)"),
         ("kappa", "Cohen's kappa"), ("kappa_quadratic", "Quadratic kappa"), ("mcc", "MCC"), ("brier", "Brier score")]

Embed = Callable[[str], "str | None"]


def build_context(snapshot: dict, embed: Embed, *, target: str = "html") -> dict[str, Any]:
    """Prepare everything the templates show.

    Parameters
    ----------
    snapshot : dict
        A schema-2.0 (or 1.0) snapshot (docs/report-schema.md); ``snapshot["figures"]`` maps
        figure keys to paths relative to the report folder.
    embed : callable
        ``embed(relative_path) -> data URI or None``; ``None`` when the file is missing
        or not allowed (outside the report folder).
    target : {"html", "pdf"}
        Lets templates add PDF-only parts (table of contents page, sign-off page).

    Returns
    -------
    dict
        The Jinja context: ``meta``, ``sections`` and one entry per section id.
    """
    models = measured_models(snapshot)
    names = [m.get("name", f"model {i}") for i, m in enumerate(models)]
    colors = model_colors(names)
    figs = _Figures({k: embed(v) for k, v in (snapshot.get("figures") or {}).items()})
    ds = snapshot.get("dataset") or {}
    run = snapshot.get("run") or {}
    ctx: dict[str, Any] = {
        "target": target,
        "meta": {
            "title": snapshot.get("title") or "Model audit report",
            "author": snapshot.get("author"),
            "dataset": ds.get("spec") or "unknown dataset",
            "created": run.get("created") or "unknown date",
            "date": (run.get("created") or "")[:10] or "unknown date",
            "schema_version": snapshot.get("schema_version"),
            "notes_html": render_markdown(snapshot.get("notes_markdown")),
        },
        "sections": [{"id": sid, "title": title, "number": i + 1} for i, (sid, title) in enumerate(SECTIONS)],
        "sec": {sid: {"id": sid, "title": title, "number": i + 1} for i, (sid, title) in enumerate(SECTIONS)},
        "model_names": names,
        "colors": colors,
        "figures": figs,
    }
    ctx["summary"] = _summary(snapshot, models, names, colors)
    ctx["data"] = _data(ds)
    ctx["data"]["checks"] = data_checks(snapshot, models, colors)
    ctx["models"] = _models(models, names, colors, figs)
    ctx["performance"] = _performance(models, names, colors, figs)
    ctx["risk"] = risk_section(models, figs, snapshot.get("settings"))
    ctx["clinical"] = clinical_section(snapshot, models, figs, colors)
    ctx["subgroups"] = subgroup_section(snapshot, models, figs, colors)
    ctx["robustness"] = robustness_section(snapshot, figs, colors)
    ctx["external"] = external_section(snapshot, colors)
    ctx["comparison"] = comparison_section(snapshot.get("comparisons"), len(models), figs, colors)
    ctx["gallery"] = gallery_section(models, embed)
    ctx["efficiency"] = efficiency_section(models, measured_efficiency(snapshot), run.get("distributed"))
    ctx["appendix"] = _appendix(snapshot, models)
    ctx["checklists"] = checklist_section(snapshot, [sid for sid, _ in SECTIONS])
    return ctx


class _Figures(dict):
    """Figure key -> data URI; a figure that was not drawn reads as ``None`` in templates."""

    def __missing__(self, key: str) -> None:
        return None


def render_markdown(text: str | None) -> str | None:
    """Reviewer notes: CommonMark with raw HTML off (no injected markup) and images shown as plain
    text, neither fetched nor linked (``![x](http://…)`` would otherwise become a live link once the
    image rule is off); ``javascript:`` links are refused by markdown-it's link validator."""
    if not text:
        return None
    md = MarkdownIt("commonmark", {"html": False})
    md.add_render_rule("image", _image_as_text)
    return md.render(text)


def _image_as_text(self, tokens, idx, options, env) -> str:
    token = tokens[idx]
    alt = "".join(t.content for t in (token.children or [])) or "image"
    return escape_html(f"[image: {alt} ({token.attrGet('src') or ''})]")


def _summary(snapshot: dict, models: list[dict], names: list[str], colors: dict) -> dict:
    notes = Footnotes()
    rows = []
    for i, m in enumerate(models):
        met = m.get("metrics") or {}
        cells = []
        for key, _ in HEADLINE:
            mv = met.get(key)
            if mv is None:
                cells.append(Cell("not available", notes.add(_absent_reason(key, m)), f"models.{i}.metrics.{key}",
                                  "undef"))
            else:
                cells.append(notes.metric(mv, f"models.{i}.metrics.{key}"))
        rows.append({"name": names[i], "color": colors[names[i]], "n": met.get("n"), "cells": cells})
    findings = [{"level": f.get("level", "info"), "text": f.get("text", ""), "model": f.get("model")}
                for f in snapshot.get("findings") or []]
    return {"columns": [label for _, label in HEADLINE], "rows": rows, "notes": notes.reasons, "findings": findings,
            "split": (snapshot.get("settings") or {}).get("split") or (snapshot.get("dataset") or {}).get(
                "split_evaluated"),
            "available": bool(models), "reason": None if models else not_available("the snapshot lists no models")}


def _absent_reason(key: str, model: dict) -> str:
    if key == "missed_disease_rate":
        return "no negative (healthy) class configured, so no missed-disease analysis"
    return f"'{key}' is not in the snapshot for this model"


def _data(ds: dict) -> dict:
    classes = ds.get("class_names") or []
    splits = ds.get("splits") or {}
    split_rows = [{"name": s, "n": fmt_int(v.get("n")),
                   "counts": [fmt_int((v.get("class_counts") or {}).get(c, 0)) for c in classes],
                   "sizes": _image_sizes(v.get("image_sizes")), "modes": _modes(v.get("modes"))}
                  for s, v in ((s, splits[s]) for s in ordered_splits(splits))]
    dup = ds.get("duplicates")
    dup_ctx = None
    if dup is not None:
        within = [(k, fmt_int(v)) for k, v in (dup.get("within") or {}).items()]
        across = [(k, fmt_int(v)) for k, v in (dup.get("across") or {}).items()]
        dup_ctx = {"rows": list(zip_longest(within, across, fillvalue=None)),
                   "leakage": bool(dup.get("leakage")), "examples": [" \u2194 ".join(map(str, e))
                                                                  for e in (dup.get("examples") or [])[:10]],
                   "n_examples": len(dup.get("examples") or [])}
    return {"spec": ds.get("spec") or "unknown", "fingerprint": ds.get("fingerprint") or "unknown",
            "task": ds.get("task") or "unknown", "split_evaluated": ds.get("split_evaluated") or "unknown",
            "classes": classes, "split_rows": split_rows,
            "has_sizes": any("image_sizes" in v or "modes" in v for v in splits.values()), "duplicates": dup_ctx,
            "duplicates_reason": not_available("duplicate check not run") if dup is None else None}


def _image_sizes(sz: dict | None) -> str:
    """``64×64`` when every image has one size, else the width × height ranges
    (pixels, as stored; before any resize) and the most common size."""
    if not sz:
        return "not recorded"
    w, h = sz.get("width") or {}, sz.get("height") or {}
    common = sz.get("most_common") or {}
    if sz.get("n_distinct") == 1 and common.get("size"):
        return "×".join(map(str, common["size"]))

    def rng(d: dict) -> str:
        return str(d.get("min")) if d.get("min") == d.get("max") else f"{d.get('min')}–{d.get('max')}"

    text = f"{rng(w)} × {rng(h)} ({fmt_any(sz.get('n_distinct'))} sizes"
    if common.get("size"):
        text += f"; most common {'×'.join(map(str, common['size']))}, n = {fmt_any(common.get('count'))}"
    return text + ")"


def _modes(modes: dict | None) -> str:
    """Pillow image modes with counts (``L: 546``), the reader's check for mixed RGB/grey data."""
    if not modes:
        return "not recorded"
    return ", ".join(f"{k}: {fmt_int(v)}" for k, v in modes.items())


def _models(models: list[dict], names: list[str], colors: dict, figs: dict) -> dict:
    rows_spec: list[tuple[str, Callable[[dict], str]]] = [
        ("Architecture", lambda m: str(_ck(m).get("arch") or "unknown")),
        ("Family", lambda m: {"cnn": "CNN", "transformer": "Transformer"}.get(_ck(m).get("family"),
                                                                              str(_ck(m).get("family") or "unknown"))),
        ("Parameters", lambda m: fmt_count(_ck(m).get("params"))),
        ("FLOPs / MACs (per image)", _fmt_flops),
        ("Input size", lambda m: _input_size(_ck(m))),
        ("Depth", lambda m: fmt_any(_ck(m).get("depth"))),
        ("Patch size", lambda m: "n/a (CNN)" if _ck(m).get("patch_size") is None and _ck(m).get("family") == "cnn"
         else fmt_any(_ck(m).get("patch_size"))),
        ("Resize", lambda m: str(_ck(m).get("resize") or "unknown")),
        ("Normalisation mean / std", lambda m: f"{fmt_any(_ck(m).get('mean'))} / {fmt_any(_ck(m).get('std'))}"),
        ("Classes", lambda m: fmt_any(_ck(m).get("num_classes"))),
        ("Selected on split", lambda m: str(_ck(m).get("selected_on") or "unknown")),
    ]
    arch = [{"label": label, "values": [fn(m) for m in models]} for label, fn in rows_spec]
    warnings = []
    training = []
    for name, m in zip(names, models, strict=False):
        ck = _ck(m)
        sel = ck.get("selected_on") or "unknown"
        if sel == "test":
            warnings.append(f"{name}: the checkpoint was selected on the test split, so test metrics are "
                            "optimistically biased; select on a validation split.")
        elif sel == "unknown":
            warnings.append(f"{name}: the split used to select this checkpoint is unknown.")
        tr = ck.get("training")
        training.append({"name": name, "color": colors[name],
                         "reason": None if tr else not_available("no training record in the checkpoint"),
                         "history_reason": None if ck.get("history") else not_available(
                             "converted weights" if (tr or {}).get("source") == "converted"
                             else "no training history in the checkpoint")})
    return {"names": names, "colors": [colors[n] for n in names], "arch": arch, "warnings": warnings,
            "training": training, "train_rows": training_rows([_ck(m).get("training") for m in models]),
            "curves": figs.get("training_curves"),
            "curves_reason": None if figs.get("training_curves") else not_available(
                "no model has a training history (e.g. converted weights)")}


def _ck(m: dict) -> dict:
    return m.get("checkpoint") or {}


def _flops(m: dict) -> tuple[Any, Any]:
    """(FLOPs, MACs) per image: the checkpoint's static counts first (present with
    --no-bench), then the benchmark's; FLOPs = 2 x MACs (medaudit.bench.count_flops)."""
    for blk in (_ck(m), m.get("efficiency") or {}):
        flops, macs = blk.get("flops"), blk.get("macs")
        if flops is not None or macs is not None:
            return (flops if flops is not None else 2 * macs), (macs if macs is not None else flops / 2)
    return None, None


def _fmt_flops(m: dict) -> str:
    flops, macs = _flops(m)
    if flops is None:
        return "not available: no FLOP count in the checkpoint or benchmark"
    return f"{fmt_count(flops)} / {fmt_count(macs)}"


def _input_size(ck: dict) -> str:
    s, c = ck.get("img_size"), ck.get("in_chans")
    if s is None:
        return "unknown"
    return f"{s}\u00d7{s}" + (f"\u00d7{c}" if c is not None else "")


def _performance(models: list[dict], names: list[str], colors: dict, figs: dict) -> dict:
    per_model = []
    for i, (name, m) in enumerate(zip(names, models, strict=False)):
        met = m.get("metrics")
        if not met:
            per_model.append({"name": name, "color": colors[name], "reason": not_available("no metrics for model")})
            continue
        notes = Footnotes()
        rows = []
        for cname, pc in (met.get("per_class") or {}).items():
            key = f"models.{i}.metrics.per_class"
            rows.append({"name": cname, "support": fmt_int(pc.get("support")),
                         "cells": [notes.metric(pc.get(k), f"{key}.{cname}.{k}") for k, _ in PER_CLASS]})
        other = [{"label": label, "cell": notes.metric(met.get(k), f"models.{i}.metrics.{k}")}
                 for k, label in OTHER if not (k == "kappa_quadratic" and met.get(k) is None)]
        per_model.append({"name": name, "color": colors[name], "n": fmt_int(met.get("n")), "rows": rows,
                          "other": other, "notes": notes.reasons, "confusion": figs.get(f"confusion_m{i}"),
                          "reason": None})
    cal_notes = Footnotes()
    cal = [{"name": n, "color": colors[n],
            "ece": cal_notes.metric((m.get("metrics") or {}).get("ece"), f"models.{i}.metrics.ece"),
            "brier": cal_notes.metric((m.get("metrics") or {}).get("brier"), f"models.{i}.metrics.brier"),
            "bins": ((m.get("metrics") or {}).get("calibration") or {}).get("n_bins")}
           for i, (n, m) in enumerate(zip(names, models, strict=False))]
    return {"per_model": per_model, "columns": [label for _, label in PER_CLASS], "roc": figs.get("roc"),
            "pr": figs.get("pr"), "calibration": figs.get("calibration"), "cal_rows": cal, "cal_notes": cal_notes.reasons}


def _appendix(snapshot: dict, models: list[dict]) -> dict:
    run = snapshot.get("run") or {}
    ds = snapshot.get("dataset") or {}
    ck_rows = []
    for m in models:
        ck, pr = _ck(m), m.get("predictions") or {}
        ck_rows.append({"name": m.get("name"), "path": ck.get("path") or "unknown", "sha256": ck.get("sha256") or
                        "unknown", "predictions": pr.get("file") or "unknown", "device": pr.get("device") or "unknown",
                        "wall_s": fmt_float(pr.get("wall_s"), 2), "cached": fmt_any(pr.get("cached"))})
    return {"command": run.get("command") or "unknown", "created": run.get("created") or "unknown",
            "duration_s": fmt_float(run.get("duration_s"), 1), "host": run.get("host") or "unknown",
            "versions": [(k, fmt_any(v)) for k, v in (run.get("versions") or {}).items()],
            "settings": [(k, "not set" if v is None else fmt_any(v))
                         for k, v in flatten(snapshot.get("settings") or {})],
            "fingerprint": ds.get("fingerprint") or "unknown", "spec": ds.get("spec") or "unknown",
            "checkpoints": ck_rows,
            "training": [all_settings(m.get("name"), _ck(m).get("training")) for m in models if _ck(m).get("training")],
            "schema_version": snapshot.get("schema_version") or "unknown"}


__all__ = ["build_context", "render_markdown", "SECTIONS", "fmt_metric", "fmt_kn", "fmt_p"]
