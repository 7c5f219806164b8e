"""A synthetic, schema-conformant ``report.json`` snapshot for the report tests.

Built from seeded random predictions so the numbers hang together (confusion matrix,
curves and per-class metrics agree). Deliberate edge cases:

- the class ``"covid"`` is absent from the test split (its recall/AUC are null with a reason);
- a class is literally named ``<script>alert(1)</script>`` (must be escaped everywhere);
- the second model has converted weights (no history) and was selected on *test*;
- ``kappa_quadratic`` is null (not an ordinal task);
- the third model (``n_models=3``) was not benchmarked (absent from ``run.efficiency.models``, as with --no-bench);
- the overall DeLong p-value is null with a reason (macro AUC), per-class DeLong is given.

Efficiency blocks follow :mod:`medaudit.bench` (its summaries are built with the real
``summarize_ms``/``paired_ratio`` from seeded fake timings); the training record has the
keys ``medaudit train`` writes.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import warnings
from pathlib import Path

import numpy as np

from medaudit.bench_timing import paired_ratio, summarize_ms

CLASSES = ["normal", "pneumonia", "covid", "<script>alert(1)</script>"]
MISSING = "covid"
NEG = ["normal"]


def _mv(value, lo=None, hi=None, method=None, reason=None, **extra):
    d = {"value": value, "ci_low": lo, "ci_high": hi, "ci_method": method, "reason": reason}
    d.update(extra)
    return d


def _undef(reason):
    return _mv(None, reason=reason)


def _wilson(k, n, z=1.959964):
    if n == 0:
        return _undef("no samples (n = 0)")
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return _mv(p, max(0.0, c - h), min(1.0, c + h), "wilson", k=int(k), n=int(n))


def _boot(fn, y, p, rng, reps=12):
    v = fn(y, p)
    if v is None:
        return None
    vals = []
    for _ in range(reps):
        idx = rng.integers(0, len(y), len(y))
        b = fn(y[idx], p[idx])
        if b is not None:
            vals.append(b)
    return _mv(float(v), float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5)), "bootstrap")


def _model_metrics(y, probs, rng):
    from sklearn.metrics import (
        average_precision_score,
        balanced_accuracy_score,
        cohen_kappa_score,
        f1_score,
        matthews_corrcoef,
        precision_recall_curve,
        roc_auc_score,
        roc_curve,
    )

    C = len(CLASSES)
    pred = probs.argmax(1)
    present = [c for c in range(C) if (y == c).any()]
    m: dict = {"n": int(len(y))}
    m["accuracy"] = _wilson(int((pred == y).sum()), len(y))
    m["balanced_accuracy"] = _boot(lambda a, b: balanced_accuracy_score(a, b.argmax(1)), y, probs, rng)
    m["macro_f1"] = _boot(lambda a, b: f1_score(a, b.argmax(1), labels=present, average="macro"), y, probs, rng)
    m["weighted_f1"] = _boot(lambda a, b: f1_score(a, b.argmax(1), average="weighted"), y, probs, rng)
    for k in ("macro_precision", "macro_recall", "macro_specificity", "weighted_precision", "weighted_recall"):
        m[k] = _mv(float(rng.uniform(0.6, 0.9)))
    sub = probs[:, present] / probs[:, present].sum(1, keepdims=True)
    m["auc_macro"] = _boot(lambda a, b: roc_auc_score(a, b[:, present] / b[:, present].sum(1, keepdims=True),
                                                      multi_class="ovr", labels=present)
                           if len(np.unique(a)) == len(present) else None, y, probs, rng)
    m["auc_micro"] = _mv(float(roc_auc_score(np.eye(C)[y][:, present].ravel(), sub.ravel())))
    m["ap_macro"] = _mv(float(np.mean([average_precision_score(y == c, probs[:, c]) for c in present])))
    m["kappa"] = _mv(float(cohen_kappa_score(y, pred)))
    m["kappa_quadratic"] = None
    m["mcc"] = _mv(float(matthews_corrcoef(y, pred)))
    conf = probs.max(1)
    edges = np.linspace(0, 1, 16)
    b = np.clip(np.digitize(conf, edges[1:-1]), 0, 14)
    cnt = np.bincount(b, minlength=15)
    bconf = [float(conf[b == i].mean()) if cnt[i] else None for i in range(15)]
    bacc = [float((pred == y)[b == i].mean()) if cnt[i] else None for i in range(15)]
    ece = sum(cnt[i] / len(y) * abs(bconf[i] - bacc[i]) for i in range(15) if cnt[i])
    m["ece"] = _mv(float(ece), float(ece * 0.7), float(ece * 1.3), "bootstrap")
    m["brier"] = _mv(float(np.mean(np.sum((probs - np.eye(C)[y]) ** 2, 1))))
    m["calibration"] = {"n_bins": 15, "bin_edges": edges.tolist(), "bin_confidence": bconf,
                        "bin_accuracy": bacc, "bin_count": cnt.tolist()}
    cm = np.zeros((C, C), int)
    np.add.at(cm, (y, pred), 1)
    m["confusion_matrix"] = {"labels": CLASSES, "counts": cm.tolist(),
                             "normalized": [(r / r.sum()).tolist() if r.sum() else None for r in cm]}
    per, roc, pr = {}, {"micro": None}, {}
    for c, name in enumerate(CLASSES):
        tp = int(cm[c, c])
        fp = int(cm[:, c].sum() - tp)
        fn = int(cm[c].sum() - tp)
        tn = int(cm.sum() - tp - fp - fn)
        sup = int(cm[c].sum())
        why = f"no samples of class '{name}' in y_true"
        rec = _wilson(tp, tp + fn) if sup else _undef(why)
        prec = _wilson(tp, tp + fp) if tp + fp else _undef(f"class '{name}' is never predicted")
        f1 = (_mv(2 * prec["value"] * rec["value"] / (prec["value"] + rec["value"]))
              if rec["value"] is not None and prec["value"] is not None and prec["value"] + rec["value"] > 0
              else _undef(why if not sup else "precision and recall are both zero or undefined"))
        per[name] = {"support": sup, "precision": prec, "recall": rec, "specificity": _wilson(tn, tn + fp),
                     "npv": _wilson(tn, tn + fn), "f1": f1,
                     "auc": _mv(float(roc_auc_score(y == c, probs[:, c]))) if sup else _undef(why),
                     "ap": _mv(float(average_precision_score(y == c, probs[:, c]))) if sup else _undef(why),
                     "missed_disease_rate": None}
        if sup:
            fpr, tpr, thr = roc_curve(y == c, probs[:, c])
            roc[name] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": np.nan_to_num(thr, posinf=1.0).tolist()}
            pp, rr, _ = precision_recall_curve(y == c, probs[:, c])
            pr[name] = {"precision": pp.tolist(), "recall": rr.tolist()}
        else:
            roc[name] = pr[name] = None
    fpr, tpr, thr = roc_curve(np.eye(C)[y][:, present].ravel(), sub.ravel())
    roc["micro"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": np.nan_to_num(thr, posinf=1.0).tolist()}
    m["per_class"] = per
    m["curves"] = {"roc": roc, "pr": pr}
    return m, pred


def _fn_risk(y, pred, ids):
    dis = ~np.isin(y, [CLASSES.index(c) for c in NEG])
    missed = dis & (pred == 0)
    out = {"negative_classes": NEG, "overall": _wilson(int(missed.sum()), int(dis.sum())), "per_class": {}}
    for c, name in enumerate(CLASSES):
        if name in NEG:
            continue
        mask = y == c
        out["per_class"][name] = {
            "rate": _wilson(int((missed & mask).sum()), int(mask.sum())) if mask.any()
            else _undef(f"no samples of class '{name}' in y_true"),
            "missed_ids": ids[missed & mask].tolist(), "missed_as": {"normal": int((missed & mask).sum())}}
    return out


def _operating_points(y, probs, rng):
    pos = 1 - probs[:, 0]
    dis = y != 0

    def at(t, name, chosen, **extra):
        tp = int((pos >= t)[dis].sum())
        tn = int((pos < t)[~dis].sum())
        return {"name": name, "threshold": float(t), "chosen_on": chosen,
                "sensitivity": _wilson(tp, int(dis.sum())), "specificity": _wilson(tn, int((~dis).sum())), **extra}

    return {"positive": "disease", "score": "p(disease) = 1 - p(normal)",
            "points": [at(0.5, "default_0.5", "fixed"), at(0.37, "youden", "val"),
                       at(0.12, "target_sensitivity_0.95", "val", target=0.95, reached_on_choice_split=True)],
            "note": "thresholds chosen on the validation split and applied to test"}


def _history(rng, epochs=6):
    out = []
    for e in range(1, epochs + 1):
        out.append({"epoch": e, "train_loss": float(1.2 / e + rng.uniform(0, 0.05)),
                    "val_loss": float(1.0 / e ** 0.7 + 0.2 + rng.uniform(0, 0.05)),
                    "val_auc": float(0.7 + 0.2 * (1 - 1 / e)), "val_acc": float(0.6 + 0.25 * (1 - 1 / e)),
                    "lr": 1e-3 * 0.5 ** (e // 3)})
    return out


ENVIRONMENT = {"device": "cpu", "device_name": "AMD EPYC", "dtype": "float32", "threads": 2, "interop_threads": 2,
               "cpu_count": 2, "torch": "2.14.1", "timm": "1.0.31", "medaudit": "0.1.0", "python": "3.11.9",
               "platform": "Linux-6.1-x86_64-with-glibc2.36", "loadavg_1m": 3.25, "timer": "perf_counter",
               "schedule": "interleaved", "repeats": 20, "warmup": 5, "batch_sizes": [1, 32],
               "grad": "inference_mode"}


def _timings(rng, base_ms, n=20):
    """Seeded fake per-round times (ms) for batch 1 and 32, with one-sided noise."""
    return {1: (base_ms * (1 + rng.exponential(0.08, n))).tolist(),
            32: (base_ms * 14 * (1 + rng.exponential(0.05, n))).tolist()}


def _efficiency(params, flops, times, ckpt_bytes):
    """One model's efficiency block with the keys of medaudit.bench's docstring."""
    batch_ms = {str(b): summarize_ms(t) for b, t in times.items()}
    throughput = {str(b): b / (batch_ms[str(b)]["median"] / 1e3) for b in times}
    return {"params_total": params, "params_trainable": params, "weights_bytes": params * 4 + 9_600,
            "checkpoint_bytes": ckpt_bytes, "input_shape": [3, 64, 64], "flops": int(flops),
            "macs": int(flops) // 2, "flops_reason": None, "latency_ms": batch_ms["1"], "batch_ms": batch_ms,
            "throughput": throughput, "gflops_per_s": flops * throughput["32"] / 1e9, "gflops_per_s_batch": 32,
            "peak_memory_bytes": 54_906_880, "peak_memory_kind": "cpu_rss_hwm_delta", "peak_memory_reason": None,
            "peak_memory_batch": 32, "channels_last": False, "environment": ENVIRONMENT}


TRAINING = {"amp": False, "arch": "resnet18", "augment": "basic", "batch_size": 32, "best_epoch": 5,
            "best_score": 0.8125, "class_weights": "auto", "class_weights_used": [0.6, 1.2, 4.1, 3.2],
            "data": "/data/chest4", "device": "cpu", "early_stop": 3, "epochs": 8, "epochs_run": 6,
            "finetune": "full", "focal_alpha": None, "focal_gamma": 2.0, "img_size": 64, "in_chans": 3,
            "interpolation": "bilinear", "label_smoothing": 0.0, "loss": "focal", "lr": 0.001,
            "mean": [0.485, 0.456, 0.406], "milestones": [4, 6], "momentum": 0.9, "n_train": 546, "n_val": 78,
            "num_workers": None, "optimizer": "adamw", "pretrained": False, "resize": "stretch", "sampler": "none",
            "scheduler": "multistep", "seed": 0, "select_by": "val_auc", "small_stem": False,
            "std": [0.229, 0.224, 0.225], "stopped_early": True, "torch_version": "2.14.1", "train_split": "train",
            "val_fraction": 0.1, "val_source": "val", "warmup_epochs": 0, "weight_decay": 0.05, "weights": None}


def _sizes(n):
    return {"n_distinct": 1, "width": {"min": 64, "max": 64}, "height": {"min": 64, "max": 64},
            "most_common": {"size": [64, 64], "count": n}}


# (n_models, n, seed) -> (y, sample ids, {model: probs}): the seeded test predictions behind a
# cached snapshot, kept beside it (not in it) for make_clinical_snapshot.
_SEEDED: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]] = {}


def make_snapshot(n_models: int = 2, n: int = 120, seed: int = 0) -> dict:
    """Return a schema-2.0 snapshot dict with ``n_models`` models on ``n`` test samples.

    CAM tiles are referenced as ``cams/<model>_<k>.png``; write them with
    :func:`write_cam_tiles` before rendering. Each call returns a fresh deep copy.
    """
    return copy.deepcopy(_cached_snapshot(n_models, n, seed))


@functools.lru_cache(maxsize=4)
def _cached_snapshot(n_models: int, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    test_classes = [0, 1, 3]  # no "covid" in the test split
    y = rng.choice(test_classes, size=n, p=[0.5, 0.3, 0.2])
    ids = np.array([f"test/{i}" for i in range(n)])
    arch = [("resnet18", "cnn", 11_170_000, None, 18, 1.82e9), ("vit_tiny", "transformer", 5_530_000, 16, 12, 1.26e9),
            ("efficientnet_b0", "cnn", 4_010_000, None, 16, 0.39e9)]
    models, preds, times, passes, effs = [], {}, {}, {}, {}
    for i in range(n_models):
        name, fam, params, patch, depth, flops = arch[i]
        logits = rng.normal(0, 1, (n, len(CLASSES)))
        logits[np.arange(n), y] += 1.6 + 0.4 * i
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        with warnings.catch_warnings():  # sklearn warns about the absent test class, by design
            warnings.simplefilter("ignore", UserWarning)
            metrics, pred = _model_metrics(y, probs, rng)
        preds[name] = pred
        _SEEDED.setdefault((n_models, n, seed), (y, ids, {}))[2][name] = probs
        fn = _fn_risk(y, pred, ids)
        metrics["missed_disease_rate"] = fn["overall"]
        for cname, blk in fn["per_class"].items():
            metrics["per_class"][cname]["missed_disease_rate"] = blk["rate"]
        converted = i == 1
        passes[name] = {"device": "cpu", "wall_s": 1.3 + i, "cached": False}
        if i != 2:
            effs[name] = _efficiency(params, flops, times.setdefault(name, _timings(rng, 4.0 - i)), params * 4 + 1200)
        tiles = [{"sample_id": f"test/{k}", "group": ["missed_disease", "error", "correct"][k % 3],
                  "true": CLASSES[int(y[k])], "pred": CLASSES[int(pred[k])], "prob": float(probs[k].max()),
                  "file": f"cams/{name}_{j:03d}.png"} for j, k in enumerate([3, 7, 11, 19])]
        models.append({
            "name": name,
            "checkpoint": {"path": f"checkpoints/{name}.pt", "sha256": f"{i + 1:x}" * 64, "arch": name, "family": fam,
                           "num_classes": len(CLASSES), "img_size": 64, "in_chans": 3, "mean": [0.485, 0.456, 0.406],
                           "std": [0.229, 0.224, 0.225], "resize": "stretch", "params": params, "patch_size": patch,
                           "flops": int(flops), "macs": int(flops) // 2,
                           "depth": depth, "selected_on": "test" if converted else "val",
                           "training": {"source": "converted", "weights_file": f"{name}.safetensors"} if converted
                           else dict(TRAINING, arch=name),
                           "history": None if converted else _history(rng)},
            "predictions": {"n": n, "file": f"predictions/{name}.npz", "csv": f"predictions/{name}.csv"},
            "metrics": metrics, "fn_risk": fn, "operating_points": _operating_points(y, probs, rng),
            "cam": {"method": "gradcam", "layer": "layer4.1" if fam == "cnn" else "blocks.11.norm1",
                    "tiles": tiles, "reason": None},
        })
    if n_models > 2:
        models[2]["cam"] = None
    snap = {
        "schema_version": "2.0", "title": "Pneumonia classifier audit", "author": "A. Reviewer",
        "notes_markdown": "Synthetic **test** snapshot.\n\n- item one\n- <b>raw html</b> stays text\n\n"
                          "[link](javascript:alert(1)) ![img](http://127.0.0.1:1/x.png)",
        "dataset": {
            "spec": "synthetic:chest4", "fingerprint": "ab" * 32, "task": "multiclass", "class_names": CLASSES,
            "split_evaluated": "test",
            "splits": {"train": {"n": 546, "class_counts": {"normal": 300, "pneumonia": 150, "covid": 40,
                                                            CLASSES[3]: 56},
                                 "image_sizes": {"n_distinct": 3, "width": {"min": 64, "max": 512},
                                                 "height": {"min": 64, "max": 480},
                                                 "most_common": {"size": [64, 64], "count": 540}},
                                 "modes": {"L": 544, "RGB": 2}},
                       "val": {"n": 78, "class_counts": {"normal": 40, "pneumonia": 20, "covid": 8, CLASSES[3]: 10},
                               "image_sizes": _sizes(78), "modes": {"L": 78}},
                       "test": {"n": n, "class_counts": {c: int((y == k).sum()) for k, c in enumerate(CLASSES)},
                                "image_sizes": _sizes(n), "modes": {"L": n}}},
            "duplicates": {"within": {"train": 18, "val": 0, "test": 1}, "across": {"train/val": 8, "train/test": 2},
                           "leakage": True, "examples": [["train/12", "test/3"], ["train/40", "test/77"]]},
        },
        "models": models, "comparisons": _comparisons(models, y, preds, ids) if n_models >= 2 else None,
        "findings": [{"level": "critical", "text": "resnet18 misses 12% of disease cases.", "model": "resnet18"},
                     {"level": "warning", "text": "vit_tiny was selected on the test split.", "model": "vit_tiny"},
                     {"level": "info", "text": "Class 'covid' has no test samples.", "model": None}],
        "settings": {"split": "test", "bootstrap": 30, "seed": 0, "ece_bins": 15, "negative_classes": NEG,
                     "negative_classes_source": "auto", "positive_class": None, "target_sensitivity": 0.95,
                     "negative_classes_note": "auto-detected from the class names; pass --negative-class to choose others"},
        "figures": {},
        "run": {"created": "2025-01-02T03:04:05+00:00", "command": "medaudit report --models a.pt b.pt --data x",
                "duration_s": 12.5, "host": "ci-runner",
                "versions": {"medaudit": "0.1.0", "torch": "2.14.1", "python": "3.11.9"},
                "predictions": passes, "efficiency": _run_efficiency(effs, times)},
    }
    return json.loads(json.dumps(snap))  # plain JSON types only


VAL_COUNTS = (40, 20, 8, 10)  # the val split of make_snapshot's dataset block, in class order


def make_clinical_snapshot(n_models: int = 2, n: int = 120, seed: int = 0, *, prevalence: float | None = 0.02,
                           cost: tuple[float, float] | None = (10.0, 1.0), n_bootstrap: int = 40,
                           with_validation: bool = True, with_cost_matrix: bool = False) -> dict:
    """:func:`make_snapshot` plus the clinical-use blocks, computed by the real :mod:`medaudit.clinical`.

    The test predictions are the snapshot's own seeded ones; validation predictions (the dataset
    block's val counts, every class present) come from the same generator with their own seed.
    ``with_validation=False`` gives every model the no-validation blocks (skipped with a reason);
    ``with_cost_matrix`` adds a cost matrix (a missed disease costs 10, any other error 1).
    Each call returns a fresh deep copy.
    """
    return copy.deepcopy(_cached_clinical(n_models, n, seed, prevalence, cost, n_bootstrap, with_validation,
                                          with_cost_matrix))


@functools.lru_cache(maxsize=8)
def _cached_clinical(n_models, n, seed, prevalence, cost, n_bootstrap, with_validation, with_cost_matrix) -> dict:
    from medaudit.clinical import ClinicalSettings, clinical_comparison, clinical_entry, clinical_findings
    from medaudit.predictions import Predictions

    snap = make_snapshot(n_models, n, seed)
    y, ids, probs = _SEEDED[(n_models, n, seed)]
    matrix = {t: {d: 0.0 if d == t else 10.0 if d in NEG and t not in NEG else 1.0 for d in CLASSES} for t in CLASSES}
    settings = ClinicalSettings(prevalence=prevalence, cost_fn=None if cost is None else cost[0],
                                cost_fp=None if cost is None else cost[1],
                                cost_matrix=matrix if with_cost_matrix else None)
    rng = np.random.default_rng(seed + 1000)
    y_val = np.repeat(np.arange(len(CLASSES)), VAL_COUNTS)
    tests = []
    for i, m in enumerate(snap["models"]):
        name = m["name"]
        test = Predictions(model_name=name, class_names=list(CLASSES), task="multiclass", sample_ids=ids, y_true=y,
                           probs=probs[name], provenance={"split": "test"})
        logits = rng.normal(0, 1, (y_val.size, len(CLASSES)))
        logits[np.arange(y_val.size), y_val] += 1.6 + 0.4 * i
        val = Predictions(model_name=name, class_names=list(CLASSES), task="multiclass",
                          sample_ids=np.array([f"val/{k}" for k in range(y_val.size)]), y_true=y_val,
                          probs=np.exp(logits) / np.exp(logits).sum(1, keepdims=True), provenance={"split": "val"})
        with warnings.catch_warnings():  # the absent test class warns in places, by design
            warnings.simplefilter("ignore")
            m["clinical"] = clinical_entry(test, val if with_validation else None, NEG, settings,
                                           target_sensitivity=0.95, n_bootstrap=n_bootstrap, seed=seed, n_bins=15)
        tests.append(test)
    snap["clinical"] = clinical_comparison(tests, NEG, settings, n_bootstrap=n_bootstrap, seed=seed)
    snap["findings"] = snap["findings"] + clinical_findings(snap["models"], snap["clinical"])
    snap["settings"]["clinical"] = settings.as_dict()
    return json.loads(json.dumps(snap))  # plain JSON types only


def _run_efficiency(eff, times):
    """``run.efficiency``: environment once, paired ratios and the blocks of the benchmarked models."""
    if not times:
        return None
    names = list(times)
    ratios = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            a, b = names[i], names[j]
            ratios.append({"a": a, "b": b, "params_ratio": eff[a]["params_total"] / eff[b]["params_total"],
                           "flops_ratio": eff[a]["flops"] / eff[b]["flops"],
                           "time_ratio": {str(s): paired_ratio(times[a][s], times[b][s]) for s in (1, 32)}})
    return {"environment": ENVIRONMENT, "ratios": ratios, "models": eff}


def _comparisons(models, y, preds, ids):
    from scipy.stats import binomtest

    names = [m["name"] for m in models]
    wrong = {k: preds[k] != y for k in names}
    pairs = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            a, b = names[i], names[j]
            both = int((wrong[a] & wrong[b]).sum())
            oa = int((wrong[a] & ~wrong[b]).sum())
            ob = int((~wrong[a] & wrong[b]).sum())
            p = binomtest(min(oa, ob), oa + ob).pvalue if oa + ob else 1.0
            auc_a, auc_b = models[i]["metrics"]["auc_macro"]["value"], models[j]["metrics"]["auc_macro"]["value"]
            acc_a, acc_b = float((preds[a] == y).mean()), float((preds[b] == y).mean())
            per_class = {}
            for c in CLASSES:
                if c == MISSING:
                    per_class[c] = {"auc_a": None, "auc_b": None, "diff": None, "ci_low": None, "ci_high": None,
                                    "se": None, "z": None, "p_value": None, "p_holm": None,
                                    "reason": f"no samples of class '{c}' in y_true"}
                    continue
                k = CLASSES.index(c)
                ca, cb = 0.8 - 0.01 * k, 0.78 + 0.02 * k
                per_class[c] = {"auc_a": ca, "auc_b": cb, "diff": ca - cb, "ci_low": ca - cb - 0.06,
                                "ci_high": ca - cb + 0.06, "se": 0.03, "z": (ca - cb) / 0.03,
                                "p_value": 0.2 + 0.1 * k, "p_holm": min(1.0, 3 * (0.2 + 0.1 * k)), "reason": None}
            recall = {c: ({"diff": None, "ci_low": None, "ci_high": None,
                           "reason": f"no samples of class '{c}' in y_true"} if c == MISSING else
                          {"diff": 0.05 - 0.04 * k, "ci_low": -0.1 - 0.04 * k, "ci_high": 0.2 - 0.04 * k, "reason": None})
                      for k, c in enumerate(CLASSES)}
            pairs.append({"a": a, "b": b, "both": both, "only_a": oa, "only_b": ob,
                          "jaccard": both / max(1, both + oa + ob), "jaccard_reason": None,
                          "relation": f"errors({a}) \u2229 errors({b}) partial", "relation_kind": "overlapping",
                          "relation_text": f"errors({a}) and errors({b}) overlap: {both} shared, {oa} {a}-only, "
                                           f"{ob} {b}-only",
                          "accuracy_a": acc_a, "accuracy_b": acc_b, "n_disagree": int((preds[a] != preds[b]).sum()),
                          "disagreement_rate": float((preds[a] != preds[b]).mean()),
                          "mcnemar": {"b01": oa, "b10": ob, "n_discordant": oa + ob, "p_value": float(p),
                                      "p_mid": float(p) / 2, "p_holm": min(1.0, float(p) * 2)},
                          "delong": {"auc_a": auc_a, "auc_b": auc_b, "diff": auc_a - auc_b, "ci_low": None,
                                     "ci_high": None, "se": None, "z": None, "p_value": None, "p_holm": None,
                                     "method": "delong one-vs-rest", "positive": None,
                                     "reason": "macro AUC (mean of one-vs-rest AUCs) has no DeLong test; see per_class",
                                     "per_class": per_class},
                          "bootstrap_diff": {"accuracy": {"diff": acc_a - acc_b, "ci_low": acc_a - acc_b - 0.04,
                                                          "ci_high": acc_a - acc_b + 0.04, "reason": None},
                                             "macro_f1": {"diff": 0.02, "ci_low": -0.04, "ci_high": 0.07, "reason": None},
                                             "recall": recall,
                                             "settings": {"confidence": 0.95, "n_bootstrap": 30, "seed": 0,
                                                          "method": "paired percentile bootstrap, stratified by true class"}},
                          "missed_disease": {"both": 3, "only_a": 2, "only_b": 1, "n_disease": int((y != 0).sum()),
                                             "jaccard": 0.5, "jaccard_reason": None, "relation": "partial overlap",
                                             "relation_kind": "overlapping",
                                             "relation_text": f"misses({a}) and misses({b}) overlap: 3 shared, "
                                                              f"2 {a}-only, 1 {b}-only"}})
    inter = {}
    for k in range(len(y)):
        key = tuple(n for n in names if wrong[n][k])
        if key:
            inter[key] = inter.get(key, 0) + 1
    n_tests = len(pairs)
    return {"models": names, "n": int(len(y)), "task": "multiclass", "negative_classes": NEG,
            "missed_sets": {k: {"n_missed": int((wrong[k] & (y != 0) & (preds[k] == 0)).sum()),
                                "ids": ids[wrong[k] & (y != 0) & (preds[k] == 0)].tolist()} for k in names},
            "multiple_testing": {"method": "holm", "mcnemar_tests": n_tests, "delong_tests": 3 * n_tests,
                                 "note": f"{n_tests} McNemar and {3 * n_tests} DeLong tests were made; p_holm controls "
                                         "the chance of any false positive within each family. Bootstrap intervals "
                                         "are not adjusted."},
            "error_sets": {k: {"n_errors": int(wrong[k].sum()), "ids": ids[wrong[k]].tolist()} for k in names},
            "pairs": pairs, "hard_samples": ids[np.logical_and.reduce([wrong[k] for k in names])].tolist(),
            "intersections": [{"models": list(k), "count": v} for k, v in sorted(inter.items(), key=lambda t: -t[1])]}


def write_cam_tiles(snapshot: dict, root: Path) -> dict[str, Path]:
    """Write small PNG tiles for every ``cam.tiles[].file`` under ``root``; return {relname: path}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(1)
    out = {}
    for m in snapshot["models"]:
        for t in (m.get("cam") or {}).get("tiles", []):
            p = Path(root) / t["file"]
            p.parent.mkdir(parents=True, exist_ok=True)
            img = rng.random((32, 32, 3))
            plt.imsave(p, img)
            out[t["file"]] = p
    return out


def with_copy(snapshot: dict) -> dict:
    """Deep copy (tests mutate snapshots)."""
    return copy.deepcopy(snapshot)


def minimal_snapshot() -> dict:
    """Schema-conformant snapshot with no models and every optional block null."""
    return {"schema_version": "2.0", "title": "Empty audit", "author": None, "notes_markdown": None,
            "dataset": {"spec": "synthetic:none", "fingerprint": "00" * 32, "task": "binary",
                        "class_names": ["normal", "disease"], "split_evaluated": "test", "splits": {},
                        "duplicates": None},
            "models": [], "comparisons": None, "findings": [], "settings": {}, "figures": {},
            "run": {"created": "2025-01-02T03:04:05+00:00", "command": "medaudit report", "duration_s": 0.1,
                    "host": "h", "versions": {}}}


# ---------------------------------------------------------------- gate snapshots
# Hand-built metrics with exact counts (not from predictions), so a gate test can say which
# number crosses which threshold: resnet18 recalls 48, 45, 50, 47 of 50 per class.

GATE_CLASSES = ["glioma", "meningioma", "no tumor", "pituitary"]
GATE_NEGATIVE = "no tumor"
N_PER_CLASS = 50


def mv(value, lo=None, hi=None, method=None, reason=None, **extra):
    """A metric value object as in docs/report-schema.md."""
    return {"value": value, "ci_low": lo, "ci_high": hi, "ci_method": method, "reason": reason, **extra}


def wilson(k, n, z=1.959963984540054):
    """Wilson score interval (hand formula; scipy/statsmodels-free) as a value object."""
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return mv(p, max(0.0, centre - half), min(1.0, centre + half), "wilson", k=k, n=n)


def build_model(name, hits, classes=GATE_CLASSES, negative=GATE_NEGATIVE, **overrides):
    """One model block; ``hits[i]`` of 50 samples of ``classes[i]`` are recalled.

    Half of each disease class's misses are predicted as the negative class (missed disease)."""
    per_class = {}
    missed_total = 0
    for cls, hit in zip(classes, hits, strict=True):
        missed = (N_PER_CLASS - hit) // 2
        if cls != negative:
            missed_total += missed
        per_class[cls] = {
            "support": N_PER_CLASS, "precision": mv(0.9, 0.85, 0.95, "wilson"), "recall": wilson(hit, N_PER_CLASS),
            "specificity": wilson(140, 150), "npv": wilson(145, 150), "f1": mv(0.9, 0.86, 0.94, "bootstrap"),
            "auc": mv(0.97, 0.95, 0.99, "bootstrap"), "ap": mv(0.93, 0.90, 0.96, "bootstrap"),
            "missed_disease_rate": None if cls == negative else wilson(missed, N_PER_CLASS)}
    n = N_PER_CLASS * len(classes)
    n_disease = N_PER_CLASS * sum(c != negative for c in classes)
    mean_recall = sum(hits) / n
    boot = lambda v: mv(v, v - 0.03, v + 0.03, "bootstrap")  # noqa: E731
    metrics = {
        "n": n, "accuracy": wilson(sum(hits), n), "balanced_accuracy": boot(mean_recall), "macro_f1": boot(0.9),
        "weighted_f1": boot(0.9), "macro_precision": boot(0.9), "macro_recall": boot(mean_recall),
        "macro_specificity": boot(0.95), "weighted_precision": boot(0.9), "weighted_recall": boot(mean_recall),
        "auc_macro": mv(0.97, 0.95, 0.985, "bootstrap"), "auc_micro": boot(0.96), "ap_macro": boot(0.93),
        "kappa": boot(0.85), "kappa_quadratic": None, "mcc": boot(0.86),
        "ece": mv(0.04, 0.02, 0.06, "bootstrap"), "brier": mv(0.12),  # brier: no interval on purpose
        "missed_disease_rate": wilson(missed_total, n_disease),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(classes), "counts": [], "normalized": []},
        "curves": {"roc": {}, "pr": {}},
        "calibration": {"n_bins": 15, "bin_edges": [], "bin_confidence": [], "bin_accuracy": [], "bin_count": []},
    }
    metrics.update(overrides)
    return {"name": name, "checkpoint": {"path": f"checkpoints/{name}.pt", "arch": name},
            "predictions": {"n": n}, "metrics": metrics, "fn_risk": None, "operating_points": None,
            "cam": None}


def build_snapshot(models=None, classes=GATE_CLASSES, fingerprint="ab" * 32, task="multiclass"):
    """A schema-2.0 snapshot: resnet18 (recall 48, 45, 50, 47 of 50) and vit_tiny (worse,
    with an undefined AUC for 'pituitary' and an undefined auc_micro)."""
    if models is None:
        vit = build_model("vit_tiny", [46, 44, 49, 45], auc_micro=mv(None, reason="only one class in y_true"))
        vit["metrics"]["per_class"]["pituitary"]["auc"] = mv(None, reason="no negatives for class 'pituitary'")
        models = [build_model("resnet18", [48, 45, 50, 47]), vit]
    return {"schema_version": "2.0", "title": "t", "author": None, "notes_markdown": None,
            "dataset": {"spec": "synthetic", "fingerprint": fingerprint, "task": task,
                        "class_names": list(classes), "split_evaluated": "test", "splits": {}, "duplicates": None},
            "models": models, "comparisons": None, "findings": [],
            "settings": {"split": "test", "bootstrap": 1000, "seed": 0, "ece_bins": 15,
                         "negative_classes": [GATE_NEGATIVE], "negative_classes_source": "auto"},
            "figures": {}, "run": {}}


# ---------------------------------------------------------------- subgroups (issue 18)

SUBGROUP_SALT = b"snapshot-factory-salt"
SUBGROUP_COLUMNS = ("sex", "site", "age")
AGE_EDGES = [0.0, 40.0, 65.0, 120.0]


class _StubSplit:
    """Just what :func:`medaudit.data.neardup.find_near_duplicates` and
    :func:`medaudit.data.inspect.patient_leakage` read from a split, from seeded arrays."""

    def __init__(self, ids, phashes, thumbs, metadata):
        self.sample_ids, self.metadata = list(ids), metadata
        self._sig = (phashes, thumbs)

    def perceptual_hashes(self):
        return self._sig

    def content_hashes(self):
        # Distinct per image: the planted near-duplicates are re-encoded copies, not pixel-identical.
        return [f"sha-{i}" for i in self.sample_ids]


def _subgroup_metadata(y, probs0, rng):
    """Seeded sex, site, age and raw patient ids of the test samples.

    Site B draws most of the disease cases model 0 misses, so its recall gap is real (the
    subgroup functions find it; nothing is planted in their output). Site C is small (too few to
    estimate some values); some sexes and ages are unknown.
    """
    n = len(y)
    missed = (y != 0) & (probs0.argmax(1) == 0)
    p_b = np.where(missed, 0.95, 0.2)
    u = rng.random(n)
    site = np.where(u < p_b, "B", np.where(u < p_b + 0.06, "C", "A"))
    # About two images per patient; a patient keeps one site, sex and age.
    raw = np.empty(n, dtype=object)
    for s in ("A", "B", "C"):
        idx = np.flatnonzero(site == s)
        raw[idx] = [f"MRN-{s}-{k // 2:04d}" for k in range(len(idx))]
    raw = raw.astype(str)
    people, person = np.unique(raw, return_inverse=True)
    sex = rng.choice(["F", "M"], size=len(people))
    sex[rng.random(len(people)) < 0.05] = ""
    age = rng.uniform(20, 90, len(people))
    age[rng.random(len(people)) < 0.04] = np.nan
    sex, age = sex[person], age[person]
    return {"sex": sex, "site": site, "age": age}, raw


def make_subgroup_snapshot(n_models: int = 2, n: int = 160, seed: int = 0, *, n_bootstrap: int = 1000,
                           min_group_n: int = 10, with_patients: bool = True, intersections: bool = True) -> dict:
    """:func:`make_snapshot` plus the issue-18 blocks, computed by the real functions.

    ``models[i].subgroups`` is :func:`medaudit.metrics.subgroups.subgroup_metrics` on the
    factory's seeded test predictions grouped by seeded ``sex``, ``site`` and ``age`` (banded with
    :func:`medaudit.metrics` edges ``AGE_EDGES``), clustered by hashed patient ids
    (``with_patients``); ``models[i].patient_level`` is ``compute_metrics`` on
    :func:`medaudit.metrics.clustered.patient_level`; ``comparisons.subgroup_differences`` is
    :func:`~medaudit.metrics.subgroups.subgroup_differences` per model pair;
    ``dataset.patients`` and ``dataset.near_duplicates`` are
    :func:`~medaudit.data.inspect.patient_leakage` and
    :func:`~medaudit.data.neardup.find_near_duplicates` on stub splits with planted shared
    patients and near-duplicate hashes; their findings come from :mod:`medaudit.findings`.
    Each call returns a fresh deep copy.
    """
    return copy.deepcopy(_cached_subgroups(n_models, n, seed, n_bootstrap, min_group_n, with_patients, intersections))


@functools.lru_cache(maxsize=8)
def _cached_subgroups(n_models, n, seed, n_bootstrap, min_group_n, with_patients, intersections) -> dict:
    from medaudit.metadata import bin_numeric
    from medaudit.metrics import compute_metrics
    from medaudit.metrics.clustered import patient_level
    from medaudit.metrics.risk import fn_risk
    from medaudit.metrics.subgroups import subgroup_differences, subgroup_metrics
    from medaudit.phi import hash_identifiers, salt_id

    snap = make_snapshot(n_models, n, seed)
    y, ids, probs = _SEEDED[(n_models, n, seed)]
    names = [m["name"] for m in snap["models"]]
    rng = np.random.default_rng(seed + 2000)
    meta, raw = _subgroup_metadata(y, probs[names[0]], rng)
    patients = hash_identifiers(raw.tolist(), SUBGROUP_SALT) if with_patients else None
    groups = {"sex": meta["sex"], "site": meta["site"], "age": bin_numeric(meta["age"], AGE_EDGES)}
    groups["age"] = np.where(groups["age"] == "unknown", "", groups["age"])
    inter = [("sex", "site")] if intersections else []
    kw = {"clusters": patients, "intersections": inter, "min_group_n": min_group_n, "n_bootstrap": n_bootstrap,
          "seed": seed}
    for m in snap["models"]:
        m["subgroups"] = subgroup_metrics(y, probs[m["name"]], CLASSES, NEG, groups, **kw)
        if with_patients:
            pl = patient_level(y, probs[m["name"]], patients, CLASSES, NEG, aggregate="max")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                met = compute_metrics(pl.y_true, pl.probs, pl.class_names, pl.task, n_bootstrap=n_bootstrap,
                                      seed=seed, positive_class="disease")
            # As audit._patient_level_entry: patients are the units of the missed-disease rate too.
            risk = fn_risk(pl.y_true, pl.probs.argmax(axis=1), pl.class_names, ["no disease"], pl.patient_ids)
            met["missed_disease_rate"] = risk["overall"]
            met["per_class"]["disease"]["missed_disease_rate"] = risk["per_class"]["disease"]["rate"]
            m["patient_level"] = {"available": True, "aggregate": "max", "view": "disease-vs-healthy",
                                  "rule": "a patient is a disease patient when any of its images is; its score is "
                                          "the max of its images' p(disease)",
                                  "n_patients": int(len(pl.y_true)), "n_images": int(pl.n_images.sum()),
                                  "n_unknown_patient_images": 0, "excluded": pl.excluded, "metrics": met}
        else:
            m["patient_level"] = None
    if snap["comparisons"] is not None:
        snap["comparisons"]["subgroup_differences"] = [
            {"a": a, "b": b, **subgroup_differences(y, probs[a], probs[b], CLASSES, NEG, groups, **kw)}
            for i, a in enumerate(names) for b in names[i + 1:]]
    snap["settings"]["subgroups"] = {
        "group_by": list(SUBGROUP_COLUMNS), "bins": {"age": AGE_EDGES}, "intersections": [list(p) for p in inter],
        "patient_column": "patient_id" if with_patients else None, "min_group_n": min_group_n, "level": "image",
        "aggregate": "max", "salt_id": salt_id(SUBGROUP_SALT) if with_patients else None}
    snap["dataset"]["patients"], snap["dataset"]["near_duplicates"] = _data_checks(ids, patients, rng)
    snap["findings"] = snap["findings"] + _subgroup_findings(snap)
    return json.loads(json.dumps(snap))


def _data_checks(test_ids, test_patients, rng) -> tuple[dict, dict]:
    """``dataset.patients`` and ``dataset.near_duplicates`` from the real functions on stub splits:
    3 test patients also in train, 1 in val; 2 test images re-encoded from train, 1 within train."""
    from medaudit.data.inspect import patient_leakage
    from medaudit.data.neardup import find_near_duplicates
    from medaudit.phi import hash_identifiers

    sizes = {"train": 60, "val": 20, "test": len(test_ids)}
    split_ids = {"train": [f"train/{k}" for k in range(60)], "val": [f"val/{k}" for k in range(20)],
                 "test": list(test_ids)}
    hashes = {s: rng.integers(0, 2**63, k, dtype=np.int64).astype(np.uint64) for s, k in sizes.items()}
    thumbs = {s: rng.integers(0, 256, (k, 256)).astype(np.uint8) for s, k in sizes.items()}

    def copy_of(src, i, dst, j, flips):
        h = int(hashes[src][i])
        for b in flips:
            h ^= 1 << b
        hashes[dst][j] = np.uint64(h)
        thumbs[dst][j] = np.clip(thumbs[src][i].astype(int) + rng.integers(-1, 2, 256), 0, 255).astype(np.uint8)

    copy_of("train", 5, "test", 3, [1, 9])
    copy_of("train", 17, "test", 40, [4])
    copy_of("train", 2, "train", 30, [7, 20, 33])
    if test_patients is None:
        meta = {s: None for s in sizes}
        column = None
    else:
        train_p = hash_identifiers([f"MRN-T-{k // 3:04d}" for k in range(60)], SUBGROUP_SALT)
        val_p = hash_identifiers([f"MRN-V-{k // 2:04d}" for k in range(20)], SUBGROUP_SALT)
        shared = sorted(set(test_patients.tolist()) - {""})[:4]
        train_p[:3], val_p[0] = shared[:3], shared[3]
        meta = {"train": {"patient_id": train_p}, "val": {"patient_id": val_p},
                "test": {"patient_id": np.asarray(test_patients)}}
        column = "patient_id"
    splits = {s: _StubSplit(split_ids[s], hashes[s], thumbs[s], meta[s]) for s in sizes}
    return patient_leakage(splits, column), find_near_duplicates(splits)


def _subgroup_findings(snap: dict) -> list[dict]:
    """The issue-18 findings, by the real :mod:`medaudit.findings` functions."""
    from medaudit.findings import (
        near_duplicate_findings,
        patient_findings,
        patient_level_findings,
        subgroup_findings,
    )

    out = near_duplicate_findings(snap["dataset"]) + patient_findings(snap["dataset"])
    for m in snap["models"]:
        out += subgroup_findings(m) + patient_level_findings(m)
    return out
