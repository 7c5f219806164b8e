"""Template context and heat map of the "Robustness" section, read from ``snapshot["robustness"]``.

Nothing is computed: the block (written by :mod:`medaudit.robustness`, docs/report-schema.md,
"robustness") is formatted as it is. A snapshot without the key (older than the sweep) or with
``null`` (no ``--robustness``) gets a one-line note instead of the section's tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medaudit.report.format import Cell, Footnotes, fmt_float, fmt_int
from medaudit.report.subgroup_context import _THUMB_URI

NOT_RUN = "not run: give medaudit report --robustness (or run medaudit robustness) to sweep corruptions"
OLD = "not available in this snapshot: it was written before medaudit's robustness sweeps"
MAX_TILE_URI = 16384  # a 64-pixel PNG tile is a few kB; anything larger in an (untrusted) snapshot is dropped


def disease_classes(snapshot: dict, block: dict) -> list[str]:
    """The classes whose recall drop the heat map shows: every class but the healthy ones."""
    own = (block.get("settings") or {}).get("negative_classes")
    negatives = set(own if isinstance(own, list) else (snapshot.get("settings") or {}).get("negative_classes") or [])
    models = block.get("models") or []
    names = list(((models[0].get("clean") or {}).get("recall") or {}) if models else [])
    return [c for c in names if c not in negatives] or names


def _worst_drop(cell: dict, classes: list[str]) -> tuple[float | None, str | None]:
    """The largest recall drop among ``classes`` in a cell, and its class (None: all undefined)."""
    best, which = None, None
    for cls in classes:
        v = (((cell.get("drop") or {}).get("recall") or {}).get(cls) or {}).get("value")
        if isinstance(v, int | float) and (best is None or v > best):
            best, which = float(v), cls
    return best, which


def robustness_heatmap(snapshot: dict):
    """Corruption x severity heat map per model; colour = largest recall drop among the disease classes.

    Red is a loss of recall under the corruption, blue a gain; each cell prints the drop in
    percentage points and the class it is of. None when the snapshot has no sweep.
    """
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    block = snapshot.get("robustness")
    if not isinstance(block, dict) or not block.get("models"):
        return None
    models = block["models"]
    s = block.get("settings") or {}
    corr = list(s.get("corruptions") or [])
    sev = list(s.get("severities") or [])
    if not corr or not sev:
        return None
    classes = disease_classes(snapshot, block)
    labels = block.get("labels") or {}
    grids, tags = [], []
    for m in models:
        g = np.full((len(corr), len(sev)), np.nan)
        t = [["" for _ in sev] for _ in corr]
        for c in m.get("cells") or []:
            if c.get("corruption") in corr and c.get("severity") in sev:
                i, j = corr.index(c["corruption"]), sev.index(c["severity"])
                v, cls = _worst_drop(c, classes)
                if v is not None:
                    g[i, j] = 100 * v
                    t[i][j] = f"{100 * v:.0f}" + (f"\n{str(cls)[:10]}" if len(classes) > 1 and v > 0 else "")
        grids.append(g)
        tags.append(t)
    finite = np.concatenate([g[np.isfinite(g)] for g in grids])
    span = max(float(np.abs(finite).max()) if finite.size else 1.0, 1.0)
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-span, vmax=span)
    n = len(models)
    fig = Figure(figsize=(min(6.7, 1.2 + 2.2 * n + 0.25 * len(sev) * n), 0.9 + 0.32 * len(corr)))
    axes = fig.subplots(1, n, squeeze=False)[0]
    image = None
    for k, (ax, m, g, t) in enumerate(zip(axes, models, grids, tags, strict=True)):
        image = ax.imshow(np.ma.masked_invalid(g), cmap="RdBu_r", norm=norm, aspect="auto")
        ax.set_xticks(range(len(sev)), [str(x) for x in sev])
        ax.set_yticks(range(len(corr)), [str(labels.get(c, c)).replace("$", r"\$") for c in corr] if k == 0
                      else [""] * len(corr))
        ax.set_xlabel("severity")
        ax.set_title(str(m.get("name")).replace("$", r"\$"))
        ax.grid(False)
        for i in range(len(corr)):
            for j in range(len(sev)):
                ax.text(j, i, t[i][j] or "n/a", ha="center", va="center", fontsize=5.5,
                        color="white" if np.isfinite(g[i, j]) and abs(g[i, j]) > 0.6 * span else "black")
    cb = fig.colorbar(image, ax=list(axes), fraction=0.04, pad=0.02)
    cb.set_label("recall drop (points)")
    return fig


def _pct(v: Any) -> str:
    return fmt_float(None) if not isinstance(v, int | float) or isinstance(v, bool) else f"{100 * v:.1f}%"


def _drop_cell(v: dict | None, notes: Footnotes, key: str) -> Cell:
    if not isinstance(v, dict) or v.get("value") is None:
        return Cell(fmt_float(None), notes.add((v or {}).get("reason")), key, "undef")
    text = f"{100 * v['value']:+.1f}"
    if v.get("ci_low") is not None and v.get("ci_high") is not None:
        text += f" [{100 * v['ci_low']:+.1f}\u2013{100 * v['ci_high']:+.1f}]"
    elif v.get("reason"):
        return Cell(text, notes.add(v["reason"]), key)
    return Cell(text, None, key)


def _tiles(block: dict) -> list[dict]:
    labels = block.get("labels") or {}
    out = []
    for e in block.get("examples") or []:
        uri = e.get("image") if isinstance(e, dict) else None
        if isinstance(uri, str) and len(uri) < MAX_TILE_URI and _THUMB_URI.fullmatch(uri):
            name = str(e.get("corruption"))
            out.append({"uri": uri, "caption": "clean" if name == "none" else
                        f"{labels.get(name, name)} ({e.get('severity')})"})
    return out


def robustness_section(snapshot: dict, figs: dict, colors: dict) -> dict:
    """The context of the Robustness section (``{"reason": ...}`` when there is nothing to show)."""
    if "robustness" not in snapshot:
        return {"reason": OLD}
    block = snapshot.get("robustness")
    if not isinstance(block, dict):
        return {"reason": NOT_RUN}
    s = block.get("settings") or {}
    labels = block.get("labels") or {}
    classes = disease_classes(snapshot, block)
    per_model = []
    for i, m in enumerate(block.get("models") or []):
        notes = Footnotes()
        rows = []
        clean = m.get("clean") or {}
        for j, c in enumerate(m.get("cells") or []):
            key = f"robustness.models[{i}].cells[{j}]"
            drop = c.get("drop") or {}
            rows.append({
                "corruption": str(labels.get(c.get("corruption"), c.get("corruption"))),
                "severity": fmt_int(c.get("severity")),
                "cells": [Cell(_pct(c.get(k)), None, f"{key}.{k}") for k in
                           ("accuracy", "balanced_accuracy", "missed_disease_rate")]
                + [Cell(fmt_float(c.get("auc")), None, f"{key}.auc"), Cell(_pct(c.get("flip_rate")), None,
                                                                          f"{key}.flip_rate")],
                "drops": [_drop_cell(drop.get("balanced_accuracy"), notes, f"{key}.drop.balanced_accuracy")]
                + [_drop_cell((drop.get("recall") or {}).get(cls), notes, f"{key}.drop.recall[{cls}]")
                   for cls in classes],
            })
        summ = m.get("summary") or {}
        worst = summ.get("worst") or {}
        per_model.append({
            "name": m.get("name"), "color": colors.get(m.get("name"), "#0072B2"), "rows": rows,
            "notes": notes.reasons,
            "clean": [("Accuracy", _pct(clean.get("accuracy"))), ("Balanced accuracy",
                                                                   _pct(clean.get("balanced_accuracy"))),
                      ("Missed-disease rate", _pct(clean.get("missed_disease_rate"))),
                      ("AUC", fmt_float(clean.get("auc")))],
            "mrbe": fmt_float(summ.get("mean_relative_balanced_error"), 2),
            "mbe": _pct(summ.get("mean_balanced_error")),
            "worst": (f"{labels.get(worst.get('corruption'), worst.get('corruption'))} at severity "
                      f"{worst.get('severity')}: recall of {worst.get('class')} "
                      f"{_drop_cell(worst.get('drop'), Footnotes(), '').text} points") if worst else None,
        })
    findings = [f for f in snapshot.get("findings") or [] if isinstance(f, dict) and f.get("topic") == "robustness"]
    params = s.get("parameters") or {}
    return {
        "reason": None,
        "figure": figs.get("robustness"),
        "settings": [
            ("Samples", f"{fmt_int(s.get('n_samples'))} of {fmt_int(s.get('n_available'))} images of split "
                        f"'{s.get('split', 'test')}'" + (" (stratified subsample, --robustness-samples "
                                                         f"{fmt_int(s.get('n_requested'))})" if s.get("subsampled")
                                                         else " (all)")),
            ("Severities", ", ".join(str(x) for x in s.get("severities") or [])),
            ("Decision rule", str(s.get("decision_rule") or "most probable class")),
            ("Seed", str(s.get("seed"))),
        ],
        "corruptions": [{"label": str(labels.get(c, c)), "name": str(c), "param": str((params.get(c) or {}).get("param", "")),
                         "levels": ", ".join(fmt_float(v, 2).rstrip("0").rstrip(".")
                                             for v in (params.get(c) or {}).get("levels") or [])}
                        for c in s.get("corruptions") or []],
        "classes": classes,
        "per_model": per_model,
        "tiles": _tiles(block),
        "tile_severity": next((e.get("severity") for e in block.get("examples") or []
                               if isinstance(e, dict) and e.get("severity")), None),
        "findings": findings,
    }
