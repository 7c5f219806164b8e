"""Scale benchmark: ``compute_metrics`` on 100,000 synthetic predictions x 10 classes.

Run: ``.venv/bin/python benchmarks/audit_scale.py [--n 100000] [--classes 10] [--bootstrap 1000]``.
``--subgroups``: the subgroup section instead (``subgroup_metrics`` with the cluster bootstrap on
3 group columns, issue 18; target < 10 s for 100k predictions and 1000 resamples).
Prints wall time, process CPU time (the machine is shared, so wall time also shows contention;
load average printed) and peak memory (tracemalloc peak of Python/numpy allocations, and the
process's max RSS from ``resource.getrusage``). Targets: < 10 s and < 1 GB on 2 cores.

Baseline in the same run: the loop a notebook writes, one scikit-learn call per metric per
resample (stratified resample, then ``roc_auc_score`` one-vs-rest macro, ``f1_score`` macro,
``balanced_accuracy_score``, per-class ``precision_score``/``recall_score``), timed for
``--baseline-resamples`` resamples and scaled to ``--bootstrap``. It computes fewer metrics
than medaudit (no AP, kappa, MCC, ECE, Brier, per-class AUC/F1/specificity/NPV), so the
ratio understates medaudit's advantage.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
import tracemalloc

import numpy as np
from _machine import machine_info, print_machine


def synthetic(n: int, c: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Imbalanced labels and softmax probabilities of a moderately good, float32 classifier."""
    rng = np.random.default_rng(seed)
    prior = np.linspace(1.0, 3.0, c)
    y = rng.choice(c, size=n, p=prior / prior.sum())
    logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[y]
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return y, probs.astype(np.float32)


def naive_bootstrap(y: np.ndarray, probs: np.ndarray, n_resamples: int, seed: int = 0) -> float:
    """Seconds for ``n_resamples`` resamples of a per-metric scikit-learn loop."""
    from sklearn.metrics import balanced_accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    rng = np.random.default_rng(seed)
    strata = [np.flatnonzero(y == k) for k in np.unique(y)]
    pred = probs.argmax(axis=1)
    t = time.perf_counter()
    for _ in range(n_resamples):
        idx = np.concatenate([s[rng.integers(0, s.size, s.size)] for s in strata])
        yi, pi, qi = y[idx], probs[idx], pred[idx]
        roc_auc_score(yi, pi, multi_class="ovr", average="macro")
        f1_score(yi, qi, average="macro")
        balanced_accuracy_score(yi, qi)
        precision_score(yi, qi, average=None, zero_division=0)
        recall_score(yi, qi, average=None)
    return time.perf_counter() - t


def subgroup_section(n: int, n_bootstrap: int) -> None:
    """Time ``subgroup_metrics``: N predictions of ~N/3 patients, 3 columns (sex, site, age band), clusters."""
    from medaudit.metrics.subgroups import subgroup_metrics

    rng = np.random.default_rng(0)
    patient = rng.integers(0, max(n // 3, 1), n)  # ~3 images per patient
    y, probs = synthetic(n, 3)
    groups = {"sex": np.array(["F", "M"])[patient % 2], "site": np.array(list("ABCDE"))[patient % 5],
              "age": np.array(["<40", "40-64", "65+", ""])[patient % 4]}
    groups["sex"][rng.random(n) < 0.05] = ""  # some unknowns
    ids = np.char.add("p-", np.char.zfill(patient.astype(str), 16))
    names = ["normal", "pneumonia", "covid"]
    subgroup_metrics(y[:500], probs[:500], names, ["normal"], {"sex": groups["sex"][:500]}, n_bootstrap=10)
    t0, c0 = time.perf_counter(), time.process_time()
    out = subgroup_metrics(y, probs, names, ["normal"], groups, clusters=ids, n_bootstrap=n_bootstrap, seed=0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print_machine(machine_info())
    print(json.dumps({
        "section": "subgroups", "n": n, "patients": out["settings"]["n_clusters"], "columns": len(groups),
        "groups": sum(len(c["groups"]) for c in out["columns"].values()), "bootstrap": n_bootstrap,
        "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "load_avg_1min": os.getloadavg()[0],
        "max_rss_mb": round(rss_mb, 1), "target_wall_s": 10,
    }, indent=1))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--baseline-resamples", type=int, default=10, help="resamples timed for the sklearn loop")
    ap.add_argument("--subgroups", action="store_true", help="time the subgroup section instead")
    args = ap.parse_args()
    if args.subgroups:
        subgroup_section(args.n, args.bootstrap)
        return

    from medaudit.metrics import compute_metrics

    y, probs = synthetic(args.n, args.classes)
    names = [f"class_{i}" for i in range(args.classes)]
    compute_metrics(y[:500], probs[:500], names, "multiclass", n_bootstrap=10)  # warm imports
    tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    m = compute_metrics(y, probs, names, "multiclass", n_bootstrap=args.bootstrap, seed=0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    naive = naive_bootstrap(y, probs, args.baseline_resamples) * args.bootstrap / args.baseline_resamples
    print_machine(machine_info())  # after the RSS reading: machine_info imports torch
    print(
        json.dumps(
            {
                "n": args.n, "classes": args.classes, "bootstrap": args.bootstrap,
                "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "load_avg_1min": os.getloadavg()[0], "tracemalloc_peak_mb": round(peak / 2**20, 1), "max_rss_mb": round(rss_mb, 1),
                "naive_sklearn_loop_s (scaled)": round(naive, 1), "speedup_vs_naive": round(naive / wall, 1),
                "auc_macro": m["auc_macro"], "macro_f1": m["macro_f1"], "json_kb": round(len(json.dumps(m)) / 1024, 1),
            },
            indent=1,
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
