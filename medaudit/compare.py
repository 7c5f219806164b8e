"""Comparing models on the same samples: who gets what wrong, and is a difference real.

:func:`compare_models` builds the ``comparisons`` block of ``report.json``
(docs/report-schema.md): exact error-set overlap for every pair (and restricted to missed
disease), UpSet-style exclusive intersections, McNemar and DeLong tests with Holm
adjustment, and paired-bootstrap CIs of metric differences.
:func:`format_comparison_table` renders it as plain text for ``medaudit compare``.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import numpy as np

from medaudit.errors import MedauditError
from medaudit.metrics.paired import paired_bootstrap_diff
from medaudit.metrics.risk import missed_disease_mask
from medaudit.metrics.significance import delong_test, holm, mcnemar_exact
from medaudit.predictions import Predictions, align

# With more tests than this in a report, the multiple-testing note is written (one pair of
# models gives one McNemar and one DeLong test: no note).
MANY_TESTS = 2


def overlap(set_a: set, set_b: set, name_a: str, name_b: str, what: str = "errors") -> dict:
    """Exact overlap of two sets of sample ids, with the relation stated plainly.

    Parameters
    ----------
    set_a, set_b : set of str
        Sample ids (e.g. misclassified samples) of models A and B.
    name_a, name_b : str
        Model names used in the relation text.
    what : str
        Word for the sets in the text ("errors", "misses").

    Returns
    -------
    dict
        ``both``, ``only_a``, ``only_b`` (counts), ``jaccard`` (|A∩B| / |A∪B|, None with
        ``jaccard_reason`` when both sets are empty), ``relation_kind`` (one of
        ``both_empty, equal, a_subset_b, b_subset_a, disjoint, overlapping``; subset means
        proper subset), ``relation`` (short, e.g. ``"errors(b) ⊇ errors(a)"``) and
        ``relation_text`` (one plain sentence with the counts).
    """
    both, only_a, only_b = len(set_a & set_b), len(set_a - set_b), len(set_b - set_a)
    union = both + only_a + only_b
    fa, fb = f"{what}({name_a})", f"{what}({name_b})"
    counts = f"{both} shared, {only_a} {name_a}-only, {only_b} {name_b}-only"
    if union == 0:
        kind, rel, text = "both_empty", f"{fa} = {fb} = ∅", f"neither {name_a} nor {name_b} has any {what}"
    elif only_a == 0 and only_b == 0:
        kind, rel, text = "equal", f"{fa} = {fb}", f"{fa} = {fb}: yes — {counts}"
    elif only_a == 0:
        kind, rel = "a_subset_b", f"{fb} ⊇ {fa}"
        text = f"{rel}: yes — {counts}" + (f" ({name_a} has no {what})" if both == 0 else "")
    elif only_b == 0:
        kind, rel = "b_subset_a", f"{fa} ⊇ {fb}"
        text = f"{rel}: yes — {counts}" + (f" ({name_b} has no {what})" if both == 0 else "")
    elif both == 0:
        kind, rel, text = "disjoint", f"{fa} ∩ {fb} = ∅", f"{fa} and {fb} are disjoint — {counts}"
    else:
        kind, rel = "overlapping", f"{fa} and {fb} overlap partially"
        text = f"neither {fa} ⊇ {fb} nor {fb} ⊇ {fa} — {counts}"
    return {
        "both": both, "only_a": only_a, "only_b": only_b,
        "jaccard": both / union if union else None,
        "jaccard_reason": None if union else f"both models have no {what}",
        "relation_kind": kind, "relation": rel, "relation_text": text,
    }


def exclusive_intersections(sets: dict[str, set]) -> list[dict]:
    """UpSet-style exclusive intersections: each id counted once, under the exact set of models holding it.

    Parameters
    ----------
    sets : dict of model name -> set of ids (insertion order = model order)

    Returns
    -------
    list of ``{"models": [names in model order], "count": int}``, largest count first
    (ties: fewer models first, then model order). Ids in no set are not counted.
    """
    order = list(sets)
    members: Counter = Counter()
    for sid in set().union(*sets.values()) if sets else ():
        members[tuple(name for name in order if sid in sets[name])] += 1
    rank = {name: i for i, name in enumerate(order)}
    keys = sorted(members, key=lambda k: (-members[k], len(k), [rank[x] for x in k]))
    return [{"models": list(k), "count": members[k]} for k in keys]


def _missed_mask(p: Predictions, negative_idx: list[int]) -> np.ndarray | None:
    """(N,) bool of missed disease (:func:`~medaudit.metrics.risk.missed_disease_mask`); None when undefined."""
    if p.multilabel or not negative_idx:
        return None
    return missed_disease_mask(p.y_true, p.y_pred, negative_idx)


def _positive_index(p: Predictions, negative_idx: list[int]) -> int:
    """Column scored as 'positive' for a binary task: the non-negative class, else column 1."""
    rest = [i for i in range(2) if i not in negative_idx]
    return rest[0] if len(rest) == 1 else 1


def _delong_pair(pa: Predictions, pb: Predictions, negative_idx: list[int]) -> dict:
    """DeLong block of one pair: binary → one test; otherwise one-vs-rest per class/label."""
    y = pa.y_true
    if pa.task == "binary":
        k = _positive_index(pa, negative_idx)
        res = delong_test(y == k, pa.probs[:, k], pb.probs[:, k])
        return {**res, "method": "delong", "positive": pa.class_names[k], "p_holm": None, "per_class": None}
    per_class = {}
    for k, name in enumerate(pa.class_names):
        truth = y[:, k] == 1 if pa.multilabel else y == k
        per_class[name] = {**delong_test(truth, pa.probs[:, k], pb.probs[:, k]), "p_holm": None}
    defined = [r for r in per_class.values() if r["auc_a"] is not None]
    auc_a = float(np.mean([r["auc_a"] for r in defined])) if defined else None
    auc_b = float(np.mean([r["auc_b"] for r in defined])) if defined else None
    return {
        "method": "delong one-vs-rest", "positive": None,
        "auc_a": auc_a, "auc_b": auc_b,
        "diff": auc_a - auc_b if defined else None,
        "se": None, "ci_low": None, "ci_high": None, "z": None, "p_value": None, "p_holm": None,
        "reason": "macro AUC (mean of one-vs-rest AUCs) has no DeLong test; see per_class"
        if defined else "no class has both positive and negative samples",
        "per_class": per_class,
    }


def _check_inputs(preds: list[Predictions], negative_classes: list[str]) -> list[int]:
    """Indices of the negative classes, after checking that the models can be compared at all."""
    if len(preds) < 2:
        raise MedauditError(f"comparison needs at least 2 models, got {len(preds)}")
    names = [p.model_name for p in preds]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise MedauditError(f"model names must be unique to compare them; duplicated: {', '.join(dup)}")
    tasks = {p.task for p in preds}
    if len(tasks) > 1:
        raise MedauditError(f"models have different tasks ({', '.join(sorted(tasks))}); they cannot be compared")
    classes = preds[0].class_names
    unknown = [c for c in negative_classes if c not in classes]
    if unknown:
        raise MedauditError(f"negative class(es) {unknown} are not among the class names {classes}",
                            param="negative_classes")
    return [classes.index(c) for c in negative_classes]


def compare_models(
    preds: list[Predictions], *, negative_classes: list[str], n_bootstrap: int = 1000, seed: int = 0
) -> dict:
    """Build the ``comparisons`` block of the snapshot for 2+ models on the same samples.

    Parameters
    ----------
    preds : list of Predictions
        At least two, with unique model names, the same class names, task and sample set
        (any order; they are aligned to the first model's order).
    negative_classes : list of str
        Classes that mean "no disease"; a missed disease is a sample whose true class is
        not negative but whose predicted class is. Empty (or multilabel) → no
        missed-disease overlap (``missed_disease`` is None).
    n_bootstrap : int
        Resamples of the paired bootstrap.
    seed : int
        Seed of the bootstrap (each pair uses ``seed`` so results do not depend on order).

    Returns
    -------
    dict
        See docs/report-schema.md, ``comparisons``. Extra keys: ``task``,
        ``negative_classes``, ``missed_sets``, ``multiple_testing``; per pair
        ``relation_kind``, ``relation_text``, ``n_disagree``, ``accuracy_a/b``.

    Raises
    ------
    MedauditError
        Fewer than two models, duplicate names, different tasks/classes/samples/labels,
        or unknown negative classes.
    """
    negative_idx = _check_inputs(preds, negative_classes)
    preds = align(preds)
    ids = preds[0].sample_ids
    n = int(ids.shape[0])
    names = [p.model_name for p in preds]
    wrong = {p.model_name: ~p.correct for p in preds}
    error_sets = {name: set(ids[wrong[name]].tolist()) for name in names}
    missed = {p.model_name: _missed_mask(p, negative_idx) for p in preds}
    has_missed = missed[names[0]] is not None
    missed_sets = {name: set(ids[missed[name]].tolist()) for name in names} if has_missed else None

    pairs = []
    for pa, pb in combinations(preds, 2):
        a, b = pa.model_name, pb.model_name
        ov = overlap(error_sets[a], error_sets[b], a, b)
        disagree = np.any(pa.y_pred != pb.y_pred, axis=1) if pa.multilabel else pa.y_pred != pb.y_pred
        mc = mcnemar_exact(pa.correct, pb.correct)
        md = None
        if has_missed:
            md = overlap(missed_sets[a], missed_sets[b], a, b, what="misses")
            md["n_disease"] = int(np.sum(~np.isin(pa.y_true, negative_idx)))
        pairs.append({
            "a": a, "b": b, **ov,
            "accuracy_a": 1.0 - len(error_sets[a]) / n if n else None,
            "accuracy_b": 1.0 - len(error_sets[b]) / n if n else None,
            "n_disagree": int(disagree.sum()),
            "disagreement_rate": float(disagree.mean()) if n else None,
            "mcnemar": {**mc, "p_holm": None},
            "delong": _delong_pair(pa, pb, negative_idx),
            "bootstrap_diff": paired_bootstrap_diff(
                pa.y_true, pa.y_pred, pb.y_pred, pa.class_names, negative_classes=negative_classes,
                n_bootstrap=n_bootstrap, seed=seed,
            ),
            "missed_disease": md,
        })

    # Holm across all pairs (McNemar) and across pairs x classes (DeLong).
    for pair, adj in zip(pairs, holm([p["mcnemar"]["p_value"] for p in pairs]), strict=True):
        pair["mcnemar"]["p_holm"] = adj
    delong_tests = [p["delong"] for p in pairs if p["delong"]["per_class"] is None]
    delong_tests += [r for p in pairs if p["delong"]["per_class"] for r in p["delong"]["per_class"].values()]
    for test, adj in zip(delong_tests, holm([t["p_value"] for t in delong_tests]), strict=True):
        test["p_holm"] = adj
    n_mc = len(pairs)
    n_dl = sum(t["p_value"] is not None for t in delong_tests)
    note = None
    if n_mc + n_dl > MANY_TESTS:
        note = (f"{n_mc} McNemar and {n_dl} DeLong tests were made; p_holm controls the chance of any false "
                "positive within each family. Bootstrap intervals are not adjusted.")

    hard = ids[np.all(np.vstack(list(wrong.values())), axis=0)].tolist()
    return {
        "models": names,
        "n": n,
        "task": preds[0].task,
        "negative_classes": list(negative_classes),
        "error_sets": {
            name: {"n_errors": int(wrong[name].sum()), "ids": ids[wrong[name]].tolist()} for name in names
        },
        "missed_sets": {name: {"n_missed": int(missed[name].sum()), "ids": ids[missed[name]].tolist()}
                        for name in names} if has_missed else None,
        "pairs": pairs,
        "hard_samples": hard,
        "intersections": exclusive_intersections(error_sets),
        "multiple_testing": {"method": "holm", "mcnemar_tests": n_mc, "delong_tests": n_dl, "note": note},
    }


# -- text table ----------------------------------------------------------------------
def _num(x: float | None, fmt: str = "{:.3f}") -> str:
    return "—" if x is None else fmt.format(x)


def _pp(x: float | None) -> str:
    """A difference of proportions in percentage points."""
    return "—" if x is None else f"{100 * x:+.2f} pp"


def _pval(p: float | None) -> str:
    if p is None:
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _grid(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def format_comparison_table(comparisons: dict) -> str:
    """Plain-text summary of a ``comparisons`` block (models, pairs, tests, intervals).

    Parameters
    ----------
    comparisons : dict
        As returned by :func:`compare_models`.

    Returns
    -------
    str
        Several aligned tables separated by blank lines; "—" marks undefined values.
    """
    n = comparisons["n"]
    models = comparisons["models"]
    es = comparisons["error_sets"]
    ms = comparisons.get("missed_sets")
    rows = []
    for m in models:
        k = es[m]["n_errors"]
        row = [m, str(k), _num(1 - k / n if n else None, "{:.2%}")]
        if ms:
            row.append(str(ms[m]["n_missed"]))
        rows.append(row)
    head = ["model", "errors", "accuracy"] + (["missed disease"] if ms else [])
    parts = [f"{len(models)} models on {n} samples", _grid(head, rows)]

    rows = []
    for p in comparisons["pairs"]:
        mc, dl, bd = p["mcnemar"], p["delong"], p["bootstrap_diff"]["accuracy"]
        rows.append([
            f"{p['a']} vs {p['b']}", str(p["both"]), str(p["only_a"]), str(p["only_b"]), _num(p["jaccard"], "{:.2f}"),
            f"{mc['b01']}/{mc['b10']}", f"{_pval(mc['p_value'])} ({_pval(mc['p_holm'])})",
            f"{_pp(bd['diff'])} [{_pp(bd['ci_low'])}, {_pp(bd['ci_high'])}]",
            _num(dl["diff"], "{:+.3f}"), f"{_pval(dl['p_value'])} ({_pval(dl['p_holm'])})",
        ])
    head = ["pair (A vs B)", "both wrong", "A-only", "B-only", "Jaccard", "b01/b10", "McNemar p (Holm)",
            "Δaccuracy A−B [95% CI]", "ΔAUC A−B", "DeLong p (Holm)"]
    parts.append(_grid(head, rows))
    rel = [f"  {p['relation_text']}" for p in comparisons["pairs"]]
    rel += [f"  missed disease: {p['missed_disease']['relation_text']}"
            for p in comparisons["pairs"] if p["missed_disease"]]
    parts.append("Overlap:\n" + "\n".join(rel))
    hard = comparisons["hard_samples"]
    shown = ", ".join(hard[:10]) + (" …" if len(hard) > 10 else "")
    parts.append(f"Wrong for every model: {len(hard)}" + (f" ({shown})" if hard else ""))
    if len(models) > 2 and comparisons["intersections"]:
        parts.append("Exclusive error intersections:\n" + "\n".join(
            f"  {' & '.join(i['models'])}: {i['count']}" for i in comparisons["intersections"]))
    note = comparisons["multiple_testing"]["note"]
    if note:
        parts.append(f"Note: {note}")
    return "\n\n".join(parts) + "\n"
