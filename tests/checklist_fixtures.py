"""Snapshots for the checklist tests (issue 17).

``full_snapshot``: the factory's subgroup snapshot (metadata, patients, near-duplicates; real
:mod:`medaudit.metrics.subgroups`) with the clinical blocks of its clinical snapshot (a validation
split; real :mod:`medaudit.clinical`), per-split demographics from the real
:func:`medaudit.data.inspect.split_demographics`, and the blocks other issues add, shaped by
their contracts: ``external`` (cohorts with shift tests), ``robustness`` (a corruption sweep) and
``models[i].cam`` localisation / faithfulness. ``bare_snapshot``: the factory's plain snapshot with
none of metadata, external cohort or validation split.
"""

from __future__ import annotations

import copy
import functools
import json
import warnings

import numpy as np

from tests.snapshot_factory import (
    _SEEDED,
    CLASSES,
    NEG,
    make_clinical_snapshot,
    make_snapshot,
    make_subgroup_snapshot,
)

N = 120


def _mv(value, lo=None, hi=None, method=None, **extra):
    return {"value": value, "ci_low": lo, "ci_high": hi, "ci_method": method, "reason": None, **extra}


@functools.lru_cache(maxsize=1)
def _full() -> dict:
    from medaudit.data.inspect import split_demographics

    snap = make_subgroup_snapshot(n=N, n_bootstrap=50)
    clin = make_clinical_snapshot(n=N)
    for m, c in zip(snap["models"], clin["models"], strict=True):
        m["clinical"] = c["clinical"]
    snap["clinical"] = clin["clinical"]
    rng = np.random.default_rng(7)
    for split in snap["dataset"]["splits"].values():
        n = split["n"]
        meta = {"sex": rng.choice(["F", "M"], n), "site": rng.choice(["A", "B"], n),
                "age": rng.normal(55, 12, n).round(), "patient_id": np.array([f"p{k // 2}" for k in range(n)])}
        split.update(split_demographics(meta, "patient_id"))
    classes = snap["dataset"]["class_names"]
    snap["external"] = _external(snap)
    snap["robustness"] = {
        "settings": {"corruptions": ["gaussian_noise", "jpeg"], "severities": [1, 3, 5], "n_samples": 60,
                     "n_requested": 500, "subsampled": True, "seed": 0},
        "models": [{"name": m["name"], "clean": {}, "cells": [],
                    "summary": {"mean_balanced_error": 0.3, "mean_relative_balanced_error": 1.2 + 0.1 * i,
                                "per_corruption": {}, "worst": {"corruption": "jpeg", "severity": 5,
                                                                "class": "pneumonia",
                                                                "drop": _mv(0.25, 0.1, 0.4, "bootstrap")}}}
                   for i, m in enumerate(snap["models"])],
        "examples": [],
    }
    for m in snap["models"]:
        if m.get("cam"):
            m["cam"]["layer_reason"] = "last conv stage"
            m["cam"]["localisation"] = {"source": "masks", "n": 12, "per_class": {
                classes[1]: {"pointing_game": _mv(0.75, 0.47, 0.91, "wilson", k=9, n=12),
                             "energy_inside": _mv(0.41, 0.33, 0.5, "bootstrap")}}}
            m["cam"]["faithfulness"] = {"n": 12, "drop": {"0.2": _mv(0.32, 0.2, 0.44, "bootstrap")},
                                        "random_drop": {"0.2": _mv(0.05, 0.01, 0.1, "bootstrap")},
                                        "difference": {"0.2": _mv(0.27, 0.15, 0.39, "bootstrap")}}
    snap["settings"]["checklists"] = ["claim2024", "tripod-ai", "stard-ai"]
    return snap


def _external(snap: dict) -> dict:
    """The ``external`` block from the real :func:`medaudit.external.cohort_entry`: the factory's test
    predictions as the reference, and a cohort from the same generator with another prevalence."""
    from medaudit.external import cohort_entry, external_block
    from medaudit.predictions import Predictions

    y, ids, probs = _SEEDED[(2, N, 0)]
    classes = list(CLASSES)
    names = [m["name"] for m in snap["models"]]
    rng = np.random.default_rng(11)
    y_new = rng.choice([0, 1, 3], size=80, p=[0.2, 0.5, 0.3])
    ref, new = [], []
    for i, name in enumerate(names):
        ref.append(Predictions(model_name=name, class_names=classes, task="multiclass", sample_ids=ids, y_true=y,
                               probs=probs[name], provenance={"split": "test"}))
        logits = rng.normal(0, 1, (y_new.size, len(classes)))
        logits[np.arange(y_new.size), y_new] += 1.2 + 0.4 * i
        new.append(Predictions(model_name=name, class_names=classes, task="multiclass",
                               sample_ids=np.array([f"c/{k}" for k in range(y_new.size)]), y_true=y_new,
                               probs=np.exp(logits) / np.exp(logits).sum(1, keepdims=True),
                               provenance={"split": "test"}))
    with warnings.catch_warnings():  # the class absent from both samples warns, by design
        warnings.simplefilter("ignore")
        cohort = cohort_entry("site-C", "data/site_c.csv", ref, new, NEG, n_bootstrap=50, seed=0)
    return json.loads(json.dumps(external_block("test", [cohort], None)))


def full_snapshot() -> dict:
    """Metadata, patients, an external cohort, a validation split, robustness and CAM checks."""
    return copy.deepcopy(_full())


def bare_snapshot() -> dict:
    """No metadata, no external cohort, no validation split (and no robustness sweep)."""
    snap = make_snapshot(n_models=2, n=N)
    del snap["dataset"]["splits"]["val"]
    snap["settings"]["checklists"] = ["claim2024", "tripod-ai", "stard-ai"]
    return snap
