"""The snapshot's ``robustness`` block and its findings, from saved predictions (torch-free).

:mod:`medaudit.sweep` runs the forwards (clean and corrupted, cached); this module only reads
their predictions: per model and (corruption, severity) the numbers of
:mod:`medaudit.metrics.robustness`, and the plain-language findings
("resnet18 loses 21 % recall of glioma under contrast reduction at severity 3; vit_tiny 6 %").
The block's layout is in docs/report-schema.md ("robustness").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medaudit.errors import MedauditError
from medaudit.metrics.robustness import cell_metrics, corruption_cell, sweep_summary
from medaudit.predictions import Predictions

# A recall drop from this size up, whose whole 95 % interval lies above 0, is a warning.
WARN_DROP = 0.10


def robustness_block(clean: Sequence[Predictions], corrupted: Sequence[dict[tuple[str, int], Predictions]], *,
                     settings: dict, negative_classes: Sequence[str], n_bootstrap: int = 1000, seed: int = 0,
                     labels: dict[str, str] | None = None, examples: list[dict] | None = None) -> dict:
    """Build ``snapshot["robustness"]``.

    Parameters
    ----------
    clean : sequence of Predictions, length M
        Each model's predictions on the clean sweep samples (N, the subsample).
    corrupted : sequence of dict, length M
        Per model ``{(corruption, severity): Predictions}`` on the same N samples.
    settings : dict
        ``corruptions``, ``severities``, ``n_samples``, ``n_requested``, ``subsampled``, ``seed``
        (and anything else to record, e.g. ``parameters``).
    negative_classes : sequence of str
        Healthy classes (missed-disease rate; the worst cell is looked for among the others).
    n_bootstrap, seed : int
        Of the paired intervals.
    labels : dict, optional
        Corruption name -> words for the report.
    examples : list of dict, optional
        ``{"corruption", "severity", "image"}`` tiles (PNG data URIs).

    Returns
    -------
    dict
        ``{"settings", "labels", "models": [{"name", "clean", "cells", "summary"}], "examples"}``.

    Raises
    ------
    MedauditError
        Corrupted predictions whose samples are not the clean ones (``param="robustness"``).
    """
    models = []
    for p0, cells_in in zip(clean, corrupted, strict=True):
        names = list(p0.class_names)
        disease = [c for c in names if c not in negative_classes] or names
        cells = []
        for (corruption, severity), p in cells_in.items():
            if not np.array_equal(p.sample_ids, p0.sample_ids):
                raise MedauditError(f"{p.model_name}: the {corruption} @ {severity} predictions are not of the clean "
                                    "sweep samples in their order", param="robustness")
            cell = corruption_cell(p0.y_true, p0.y_pred, p.y_pred, p.probs, names, negative_classes=negative_classes,
                                   n_bootstrap=n_bootstrap, seed=seed)
            cells.append({"corruption": corruption, "severity": int(severity), **cell})
        base = cell_metrics(p0.y_true, p0.y_pred, p0.probs, names, negative_classes)
        models.append({"name": p0.model_name, "clean": base, "cells": cells,
                       "summary": sweep_summary(base, cells, disease)})
    return {"settings": {**settings, "negative_classes": list(negative_classes)}, "labels": dict(labels or {}), "models": models,
            "examples": list(examples or [])}


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _label(block: dict, name: str) -> str:
    return (block.get("labels") or {}).get(name, name)


def _cell(model: dict, corruption: str, severity: int) -> dict | None:
    return next((c for c in model["cells"] if c["corruption"] == corruption and c["severity"] == severity), None)


def robustness_findings(block: dict | None) -> list[dict]:
    """Findings of the robustness sweep: each model's worst recall drop, beside the other models'.

    A drop is a warning when it is at least :data:`WARN_DROP` and its whole 95 % interval lies
    above 0; a drop whose interval holds 0 is reported as not shown to be a loss. Nothing is
    said of a model whose every drop is undefined.

    Parameters
    ----------
    block : dict or None
        ``snapshot["robustness"]``.

    Returns
    -------
    list of dict
        ``{"level", "text", "model", "topic": "robustness"}``.
    """
    if not block:
        return []
    out: list[dict] = []
    s = block.get("settings") or {}
    if s.get("subsampled"):
        out.append({"level": "info", "model": None, "topic": "robustness",
                    "text": f"Robustness sweep on a stratified subsample of {s.get('n_samples')} of "
                            f"{s.get('n_available', s.get('n_samples'))} images (--robustness-samples)."})
    models = block.get("models") or []
    for m in models:
        worst = (m.get("summary") or {}).get("worst")
        if not worst:
            continue
        d, cls, corr, sev = worst["drop"], worst["class"], worst["corruption"], worst["severity"]
        others = []
        for o in models:
            if o is m:
                continue
            oc = _cell(o, corr, sev)
            ov = ((oc or {}).get("drop", {}).get("recall", {}).get(cls) or {}).get("value")
            others.append(f"{o['name']} {_pct(ov)}" if ov is not None else f"{o['name']} undefined")
        ci = (f" (95 % CI {_pct(d['ci_low'])} to {_pct(d['ci_high'])})" if d.get("ci_low") is not None else
              f" (no interval: {d.get('reason')})")
        if d["value"] <= 0:
            out.append({"level": "info", "model": m["name"], "topic": "robustness",
                        "text": f"{m['name']}: no corruption lowered the recall of any disease class "
                                f"(largest change {_pct(d['value'])})."})
            continue
        shown = d.get("ci_low") is not None and d["ci_low"] > 0
        level = "warning" if shown and d["value"] >= WARN_DROP else "info"
        text = (f"{m['name']} loses {_pct(d['value'])} recall of {cls} under {_label(block, corr)} at severity "
                f"{sev}{ci}" + (f"; {', '.join(others)}" if others else "") + ".")
        if not shown:
            text = text[:-1] + ("; its interval includes no loss, so these samples do not show one."
                                if d.get("ci_low") is not None else "; without an interval this is not shown to be a loss.")
        out.append({"level": level, "text": text, "model": m["name"], "topic": "robustness"})
    return out
