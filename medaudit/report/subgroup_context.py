"""Template context for the "Subgroups" section and the Data section's patient and near-duplicate parts.

Reads ``settings.subgroups``, ``models[i].subgroups``, ``models[i].patient_level``,
``comparisons.subgroup_differences`` and ``dataset.patients`` / ``dataset.near_duplicates``
(written by the audit for issue 18; shapes in :mod:`medaudit.metrics.subgroups`,
:mod:`medaudit.data.inspect` and :mod:`medaudit.data.neardup`) and formats them; nothing is
computed. A block can be ``None`` (not requested), ``{"available": false, "reason"}`` or missing
(a snapshot older than issue 18); each case becomes a sentence, never an empty table or a 0.

Patient ids appear only as the salted hashes the loader made (``"p-<16 hex>"``).
"""

from __future__ import annotations

import re
from typing import Any

from medaudit.report.format import Cell, Footnotes, fmt_float, fmt_int, fmt_p, not_available, ordered_splits

OLD_SNAPSHOT = ("not available in this snapshot: it was written before medaudit's subgroup analyses; "
                "run medaudit report again to add them")
NOT_REQUESTED = ("not computed: no group column and no patient column were given "
                 "(medaudit report --group-by sex,site)")
TOO_FEW = "too few"
MAX_COLUMNS = 3  # models side by side in the patient-level table; more would not fit an A4 page
ALPHA = 0.05  # a gap is flagged when its Holm-adjusted p is below this (the findings' rule)

# (key, label) in table order; keys are medaudit.metrics.subgroups.METRICS / GAP_METRICS.
METRICS = [("prevalence", "Prevalence"), ("recall", "Sensitivity"), ("specificity", "Specificity"),
           ("ppv", "PPV"), ("npv", "NPV"), ("auc", "AUC"), ("missed_disease_rate", "Missed disease"),
           ("ece", "ECE")]
GAP_METRICS = METRICS[1:]
# The forest plots (medaudit.report.plots) draw these.
FOREST_METRICS = [("recall", "Sensitivity"), ("specificity", "Specificity"), ("auc", "AUC"),
                  ("missed_disease_rate", "Missed-disease rate")]
# Disease vs healthy at image and patient level: (label, key in subgroups.overall, key in the
# patient-level per_class["disease"] block).
PATIENT_ROWS = [("Sensitivity", "recall", "recall"), ("Specificity", "specificity", "specificity"),
                ("PPV", "ppv", "precision"), ("NPV", "npv", "npv"), ("AUC", "auc", "auc"),
                ("Missed-disease rate", "missed_disease_rate", "missed_disease_rate")]
# How a finding without a ``topic`` key is placed (the wording of medaudit.findings).
SUBGROUP_WORDS = ("subgroup", "too few", "holm p ", "patient-level")
DATA_WORDS = ("leakage", "near-identical", "near-duplicate", "pixel-identical", "model selection may be optimistic")


def _state(block: Any, missing: str) -> str | None:
    """The sentence for a block that holds no numbers, or None when it does."""
    if block is None:
        return missing
    if not isinstance(block, dict):
        return not_available("unexpected value in the snapshot")
    if block.get("available") is False:
        return not_available(block.get("reason"))
    return None


def concerns(finding: dict, topic: str, columns: list[str]) -> bool:
    """Whether a snapshot finding belongs to ``topic`` ("subgroups" or "data").

    A finding with a ``topic`` key is taken at its word. Older findings have only ``level``,
    ``text`` and ``model``: a subgroup finding names a group column ("... on site B ...") or
    speaks of subgroups / Holm p-values, a data finding of patient leakage or near-duplicates.
    """
    if "topic" in finding:
        return finding.get("topic") == topic
    text = str(finding.get("text", "")).lower()
    if topic == "data":
        return any(w in text for w in DATA_WORDS)
    if any(w in text for w in DATA_WORDS):
        return False
    return any(w in text for w in SUBGROUP_WORDS) or any(
        re.search(rf"(?<!\w){re.escape(c.lower())}(?!\w)", text) for c in columns)


def _findings(snapshot: dict, topic: str, columns: list[str], colors: dict) -> list[dict]:
    return [{"level": f.get("level", "info"), "text": f.get("text", ""), "color": colors.get(f.get("model"))}
            for f in snapshot.get("findings") or [] if isinstance(f, dict) and concerns(f, topic, columns)]


# -- the Subgroups section -------------------------------------------------------------------


def subgroup_section(snapshot: dict, models: list[dict], figs: dict, colors: dict) -> dict:
    """The section's context.

    Parameters
    ----------
    snapshot : dict
        The snapshot (``settings.subgroups``, ``findings`` and ``comparisons.subgroup_differences``
        are read).
    models : list of dict, length M
        ``measured_models(snapshot)``; each may carry ``subgroups`` and ``patient_level``.
    figs : dict
        Figure key -> data URI (``subgroups_m<i>``: the forest plot of model ``i``).
    colors : dict
        Model name -> colour.

    Returns
    -------
    dict
        ``reason`` (the whole section is unavailable), else ``settings`` (label, text pairs),
        ``methods``, ``findings``, ``metric_labels``, ``gap_labels``, ``per_model`` (one dict per
        model: ``name``, ``color``, ``reason`` or ``figure`` and ``columns``, each column with
        ``rows`` of formatted cells and its footnotes), ``patient_level`` and ``differences``
        (each with a ``reason`` when no model has it).
    """
    settings = (snapshot.get("settings") or {})
    st = settings.get("subgroups")
    has_blocks = any("subgroups" in m or "patient_level" in m for m in models)
    if "subgroups" not in settings and not has_blocks:
        return {"reason": OLD_SNAPSHOT}
    if st is None and not any(m.get("subgroups") or m.get("patient_level") for m in models):
        return {"reason": NOT_REQUESTED}
    if not models:
        return {"reason": not_available("the snapshot lists no models")}
    st = st or {}
    columns = list(st.get("group_by") or []) + [" & ".join(p) for p in st.get("intersections") or []]
    per_model = [_model(i, m, figs, colors) for i, m in enumerate(models)]
    methods = next((m["subgroups"].get("settings") for m in models
                    if isinstance(m.get("subgroups"), dict) and m["subgroups"].get("settings")), None)
    return {"reason": None, "settings": _settings(st, methods), "findings": _findings(snapshot, "subgroups",
                                                                                   columns, colors),
            "metric_labels": [label for _, label in METRICS], "gap_labels": [label for _, label in GAP_METRICS],
            "forest_metrics": ", ".join(label.lower() for _, label in FOREST_METRICS),
            "per_model": per_model, "any_table": any(p["columns"] for p in per_model),
            "patient_level": _patient_level(models, colors),
            "differences": _differences(snapshot.get("comparisons"), colors)}


def _settings(st: dict, methods: dict | None) -> list[tuple[str, str]]:
    rows = [("Grouped by", ", ".join(map(str, st.get("group_by") or [])) or "no group column")]
    for col, edges in (st.get("bins") or {}).items():
        rows.append((f"Bands of {col}", ", ".join(fmt_float(e, 0) if float(e).is_integer() else fmt_float(e, 2)
                                                  for e in edges) + " (lower edge included)"))
    if st.get("intersections"):
        rows.append(("Crossed", "; ".join(" \u00d7 ".join(map(str, p)) for p in st["intersections"])))
    if st.get("patient_column") or (methods or {}).get("clusters"):
        rows.append(("Patients", f"column '{st.get('patient_column') or 'not recorded'}', salted hashes only "
                                 f"(salt id {st.get('salt_id') or 'not recorded'})"))
    else:
        rows.append(("Patients", "no patient column: each image counts as its own patient"))
    if st.get("min_group_n") is not None:
        unit = "patients" if st.get("patient_column") or (methods or {}).get("clusters") else "images"
        rows.append(("Smallest count estimated", f"{fmt_int(st['min_group_n'])} {unit} behind a value (fewer: "
                                                 "too few to estimate)"))
    if st.get("level"):
        rows.append(("Level of the headline metrics", str(st["level"])))
    if methods:
        rows += [("Disease means", f"the true class is not one of {', '.join(methods.get('negative_classes') or [])}"),
                 ("Intervals", str(methods.get("intervals"))), ("p-values", str(methods.get("p_values"))),
                 ("Gap", str(methods.get("comparison")))]
    return rows


def _value_cell(notes: Footnotes, mv: Any, key: str) -> Cell:
    if isinstance(mv, dict) and mv.get("too_few"):
        return Cell(TOO_FEW, notes.add(mv.get("reason")), key, "undef")
    return notes.metric(mv, key)


def _gap_cell(notes: Footnotes, gap: Any, key: str) -> dict:
    """A gap: ``diff [lo–hi]`` and its Holm p, flagged below :data:`ALPHA`."""
    if not isinstance(gap, dict):
        return {"cell": Cell("not available", None, key, "undef"), "p": None, "flag": False}
    if gap.get("diff") is None:
        text = TOO_FEW if gap.get("too_few") else "undefined"
        return {"cell": Cell(text, notes.add(gap.get("reason")), key, "undef"), "p": None, "flag": False}
    text = fmt_float(gap["diff"])
    if gap.get("ci_low") is not None and gap.get("ci_high") is not None:
        text += f" [{fmt_float(gap['ci_low'])}\u2013{fmt_float(gap['ci_high'])}]"
    note = notes.add(gap["reason"]) if gap.get("reason") else None
    p = gap.get("p_adjusted")
    return {"cell": Cell(text, note, key), "p": None if p is None else fmt_p(p), "p_key": f"{key}.p_adjusted",
            "flag": p is not None and p < ALPHA}


def _model(i: int, m: dict, figs: dict, colors: dict) -> dict:
    name = m.get("name", f"model {i}")
    out = {"name": name, "color": colors.get(name), "figure": None, "columns": [], "worst": []}
    block = m.get("subgroups")
    why = _state(block, "not computed for this model: no group column was given" if "subgroups" in m
                 else not_available("no subgroup block for this model in the snapshot"))
    out["reason"] = why
    if why:
        return out
    out["figure"] = figs.get(f"subgroups_m{i}")
    ov = block.get("overall") or {}
    for n_col, (col, cb) in enumerate((block.get("columns") or {}).items()):
        vnotes, gnotes = Footnotes(), Footnotes()
        if n_col == 0:  # the overall row heads the first column's table and shares its footnotes
            out["overall"] = {"n": fmt_int(ov.get("n")),
                              "patients": "\u2014" if ov.get("n_patients") is None else fmt_int(ov["n_patients"]),
                              "cells": [_value_cell(vnotes, ov.get(k), f"models.{i}.subgroups.overall.{k}")
                                        for k, _ in METRICS]}
        rows = []
        for label, g in (cb.get("groups") or {}).items():
            key = f"models.{i}.subgroups.columns.{col}.groups.{label}"
            rows.append({"label": label, "unknown": bool(g.get("unknown")), "n": fmt_int(g.get("n")),
                         "n_disease": fmt_int(g.get("n_disease")),
                         "patients": "\u2014" if g.get("n_patients") is None else fmt_int(g["n_patients"]),
                         "cells": [_value_cell(vnotes, g.get(k), f"{key}.{k}") for k, _ in METRICS],
                         "gaps": [_gap_cell(gnotes, (g.get("gap") or {}).get(k), f"{key}.gap.{k}")
                                  for k, _ in GAP_METRICS]})
        worst = [f"{label.lower()}: {w['group']} ({fmt_float(w['value'])}, {w['direction']} of "
                 f"{w['n_groups_compared']})" for k, label in GAP_METRICS
                 for w in [(cb.get("worst") or {}).get(k)] if isinstance(w, dict)]
        out["columns"].append({"name": col, "rows": rows, "value_notes": vnotes.reasons, "gap_notes": gnotes.reasons,
                               "worst": "; ".join(worst) if worst else None})
    return out


# -- patient level -----------------------------------------------------------------------------


def _patient_level(models: list[dict], colors: dict) -> dict:
    entries, missing = [], []
    for i, m in enumerate(models):
        name = m.get("name", f"model {i}")
        pl = m.get("patient_level")
        why = _state(pl, "not computed: no patient column" if "patient_level" in m
                     else not_available("no patient-level block for this model in the snapshot"))
        if why is None and not isinstance(pl.get("metrics"), dict):
            why = not_available("the patient-level block holds no metrics")
        if why:
            missing.append({"name": name, "reason": why})
        else:
            entries.append((i, name, m, pl))
    if not entries:
        reasons = {x["reason"] for x in missing}
        return {"reason": reasons.pop() if len(reasons) == 1 else "; ".join(f"{x['name']}: {x['reason']}"
                                                                            for x in missing),
                "groups": [], "missing": []}
    notes = Footnotes()
    groups = []
    for start in range(0, len(entries), MAX_COLUMNS):
        chunk = entries[start:start + MAX_COLUMNS]
        rows = [{"label": "Counted units", "cells": [c for i, _, m, pl in chunk for c in (
            Cell(f"{fmt_int((m.get('metrics') or {}).get('n'))} images"),
            Cell(f"{fmt_int(pl.get('n_patients'))} patients"))]}]
        for label, img_key, pat_key in PATIENT_ROWS:
            cells = []
            for i, _, m, pl in chunk:
                ov = (m.get("subgroups") or {}).get("overall") if isinstance(m.get("subgroups"), dict) else None
                cells.append(notes.metric(ov.get(img_key), f"models.{i}.subgroups.overall.{img_key}") if ov
                             else Cell("not available", notes.add("the image-level disease-vs-healthy values come "
                                                                   "from the subgroup block, which this model lacks"),
                                       None, "undef"))
                disease = ((pl["metrics"].get("per_class") or {}).get("disease"))
                cells.append(notes.metric(disease.get(pat_key),
                                          f"models.{i}.patient_level.metrics.per_class.disease.{pat_key}")
                             if isinstance(disease, dict) else
                             Cell("not available", notes.add("the patient-level metrics have no 'disease' class"),
                                  None, "undef"))
            rows.append({"label": label, "cells": cells})
        groups.append({"models": [{"name": n, "color": colors.get(n), "aggregate": pl.get("aggregate")}
                                  for _, n, _, pl in chunk], "rows": rows})
    rules = list(dict.fromkeys(str(pl["rule"]) for *_, pl in entries if pl.get("rule")))
    return {"reason": None, "groups": groups, "notes": notes.reasons, "missing": missing, "rules": rules}


# -- model differences per group ---------------------------------------------------------------------


def _favours_text(entry: dict, a: str, b: str) -> str:
    return {"a": a, "b": b, "neither": "neither"}.get(entry.get("favours"), "")


def _differences(comp: Any, colors: dict) -> dict:
    if not isinstance(comp, dict) or "subgroup_differences" not in comp:
        why = (not_available("fewer than two models") if comp is None else
               not_available("per-group model differences are not in this snapshot"))
        return {"reason": why, "pairs": []}
    diffs = comp.get("subgroup_differences")
    if not diffs:
        return {"reason": not_available("not computed: no group column, or fewer than two models"), "pairs": []}
    pairs = []
    for j, d in enumerate(diffs):
        a, b = str(d.get("a")), str(d.get("b"))
        why = _state(d, not_available("no difference block"))
        if why:
            pairs.append({"a": a, "b": b, "reason": why})
            continue
        notes = Footnotes()
        base = f"comparisons.subgroup_differences.{j}"
        overall = [{**_gap_cell(notes, (d.get("overall") or {}).get(k), f"{base}.overall.{k}"),
                    "favours": _favours_text((d.get("overall") or {}).get(k) or {}, a, b)} for k, _ in GAP_METRICS]
        columns = []
        for col, cb in (d.get("columns") or {}).items():
            rows = [{"label": label, "unknown": bool(g.get("unknown")), "n": fmt_int(g.get("n")),
                     "cells": [_gap_cell(notes, (g.get("diff") or {}).get(k),
                                         f"{base}.columns.{col}.groups.{label}.diff.{k}") for k, _ in GAP_METRICS]}
                    for label, g in (cb.get("groups") or {}).items()]
            sentences = []
            for k, label in GAP_METRICS:
                c = (cb.get("consistency") or {}).get(k) or {}
                side = {"a": a, "b": b}.get(c.get("overall_favours"))
                if side is None or c.get("holds_in_every_group") is None:
                    continue
                if c["holds_in_every_group"]:
                    sentences.append(f"{label}: {side}'s advantage holds in every group "
                                     f"({fmt_int(c.get('n_groups_compared'))} compared).")
                else:
                    against = ", ".join(map(str, c.get("groups_against") or []))
                    sig = c.get("significant_against") or []
                    sentences.append(f"{label}: {side} is better overall but not in {against}"
                                     + (f" (interval entirely the other way in {', '.join(map(str, sig))})" if sig
                                        else " (no interval entirely the other way)") + ".")
            columns.append({"name": col, "rows": rows, "consistency": sentences})
        pairs.append({"a": a, "b": b, "color_a": colors.get(a), "color_b": colors.get(b), "reason": None,
                      "overall": overall, "columns": columns, "notes": notes.reasons})
    return {"reason": None, "pairs": pairs}


# -- the Data section's parts ------------------------------------------------------------------------


def data_checks(snapshot: dict, models: list[dict], colors: dict) -> dict:
    """Per-split demographics, patients shared between splits and near-duplicates across splits.

    Parameters
    ----------
    snapshot : dict
        ``dataset.patients``, ``dataset.near_duplicates``, ``dataset.splits`` and ``findings``
        are read; the test split's group counts come from the first model's subgroup block.
    models : list of dict
        ``measured_models(snapshot)``.
    colors : dict
        Model name -> colour.

    Returns
    -------
    dict
        ``demographics``, ``patients`` and ``near_duplicates`` (each with a ``reason`` when the
        snapshot has no such block) and ``findings`` (the data findings of the snapshot).
    """
    ds = snapshot.get("dataset") or {}
    st = (snapshot.get("settings") or {}).get("subgroups") or {}
    return {"demographics": _demographics(ds, st, models), "patients": _patients(ds.get("patients"), "patients" in ds),
            "near_duplicates": _near(ds.get("near_duplicates"), "near_duplicates" in ds),
            "findings": _findings(snapshot, "data", [], colors)}


DEMOGRAPHICS_MISSING = ("the snapshot has no per-split counts of the group columns (dataset.splits[split].groups), "
                        "so the training and validation mix of sex, age, site... is not shown")


def _demographics(ds: dict, st: dict, models: list[dict]) -> dict:
    splits = ds.get("splits") or {}
    per_split = {s: (splits[s] or {}).get("groups") for s in ordered_splits(splits)}
    tables = []
    if any(isinstance(v, dict) and v for v in per_split.values()):
        # dataset.splits[split].groups = {column: {label: count}}, when the audit writes it.
        cols = list(dict.fromkeys(c for v in per_split.values() if isinstance(v, dict) for c in v))
        for col in cols:
            labels = list(dict.fromkeys(lab for v in per_split.values() if isinstance(v, dict)
                                        for lab in (v.get(col) or {})))
            tables.append({"name": col, "splits": list(per_split), "rows": [
                {"label": lab, "counts": [fmt_int(((v or {}).get(col) or {}).get(lab, 0)) if isinstance(v, dict)
                                          else "not recorded" for v in per_split.values()]} for lab in labels]})
        return {"reason": None, "tables": tables, "test_only": None}
    # Without per-split counts, the test split's counts are in the subgroup block (its ``n``).
    block = next((m.get("subgroups") for m in models if isinstance(m.get("subgroups"), dict)
                  and m["subgroups"].get("columns")), None)
    split = snapshot_split(ds)
    test_only = []
    if block:
        for col in st.get("group_by") or list(block["columns"]):
            cb = block["columns"].get(col)
            if not cb:
                continue
            test_only.append({"name": col, "rows": [
                {"label": lab, "n": fmt_int(g.get("n")),
                 "patients": "\u2014" if g.get("n_patients") is None else fmt_int(g["n_patients"]),
                 "n_disease": fmt_int(g.get("n_disease"))} for lab, g in (cb.get("groups") or {}).items()]})
    return {"reason": not_available(DEMOGRAPHICS_MISSING), "tables": [], "test_only": test_only or None,
            "split": split}


def snapshot_split(ds: dict) -> str:
    return str(ds.get("split_evaluated") or "test")


def _patients(p: Any, present: bool) -> dict:
    if not present:
        return {"reason": not_available("this snapshot was written before the patient check")}
    if not isinstance(p, dict):
        return {"reason": not_available("no patient check in the snapshot")}
    if p.get("column") is None:
        return {"reason": f"not checked: {p.get('reason') or 'no patient column'}"}
    n_per = p.get("n_per_split") or {}
    missing = p.get("n_missing") or {}
    splits = [{"name": s, "n": "no column" if n_per[s] is None else fmt_int(n_per[s]),
               "missing": "\u2014" if missing.get(s) is None else fmt_int(missing[s])} for s in ordered_splits(n_per)]
    across = []
    for key, v in (p.get("across") or {}).items():
        ex = list(v.get("examples") or [])
        more = int(v.get("n") or 0) - len(ex)
        across.append({"pair": key.replace("/", " \u2194 "), "n": fmt_int(v.get("n")),
                       "n_samples": fmt_int(v.get("n_samples")), "ids": ex,
                       "more": f"and {fmt_int(more)} more (not listed in report.json)" if more > 0 else None})
    return {"reason": None, "column": str(p["column"]), "leakage": bool(p.get("leakage")), "splits": splits,
            "across": across}


_THUMB_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/]+={0,2}")


def _safe_thumbnails(value: Any) -> list[str]:
    """The pair's two thumbnails when both are small PNG data URIs; anything else in an (untrusted)
    snapshot is dropped, so no other URL can reach an <img>."""
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, str) and len(v) < 4096 and _THUMB_URI.fullmatch(v) for v in value)):
        return list(value)
    return []


def _near(nd: Any, present: bool) -> dict:
    if not present:
        return {"reason": not_available("this snapshot was written before the near-duplicate check")}
    if not isinstance(nd, dict):
        return {"reason": not_available("near-duplicate check not run")}
    within = [{"split": s, "n_pairs": fmt_int(v.get("n_pairs")), "n_samples": fmt_int(v.get("n_samples"))}
              for s, v in (nd.get("within") or {}).items()]
    across, pairs = [], []
    for key, v in (nd.get("across") or {}).items():
        across.append({"pair": key.replace("/", " \u2194 "), "n": fmt_int(v.get("n")),
                       "identical": fmt_int(v.get("n_pixel_identical"))})
        for e in v.get("examples") or []:
            pairs.append({"split_a": str(e.get("split_a")), "a": str(e.get("a")), "split_b": str(e.get("split_b")),
                          "b": str(e.get("b")), "distance": fmt_int(e.get("distance")),
                          "correlation": fmt_float(e.get("correlation"), 4),
                          "thumbnails": _safe_thumbnails(e.get("thumbnails"))})
    return {"reason": None, "method": str(nd.get("method") or "not recorded"), "leakage": bool(nd.get("leakage")),
            "within": within, "across": across, "pairs": pairs}
