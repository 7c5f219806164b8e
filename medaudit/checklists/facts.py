"""The facts checklist items are filled from: one rule per fact, ``snapshot -> Part``.

Each rule reads one block of a parsed ``report.json`` (docs/report-schema.md) and says what it
found, or what is missing and how to get it (the option that adds the block). Rules are shared by
the three checklists, so CLAIM 19 and STARD-AI 25 state the split sizes the same way. The
snapshot is untrusted: every read tolerates absent keys and wrong types (a wrong type reads as
absent). Values are formatted here, in the checklist's own wording ("0.912 (95% CI
0.870-0.941)"), and never recomputed beyond simple arithmetic on stored bounds (a CI half-width).
"""

from __future__ import annotations

import math
from typing import Any

from medaudit.checklists.items import Part

_SPLIT_ORDER = {"train": 0, "val": 1, "validation": 1, "test": 2}
# Metadata columns that name an acquisition cluster (TRIPOD+AI 23b: heterogeneity across clusters).
SITE_COLUMNS = ("site", "centre", "center", "hospital", "institution", "scanner", "manufacturer", "country")
HEADLINE = (("balanced_accuracy", "balanced accuracy"), ("auc_macro", "AUC (macro)"),
            ("missed_disease_rate", "missed-disease rate"))


# ----------------------------------------------------------------------------- reading helpers


def _d(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def _l(x: Any) -> list:
    return x if isinstance(x, list) else []


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def _int(x: Any) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def _str(x: Any) -> str | None:
    return x if isinstance(x, str) and x else None


def fmt_number(x: Any, digits: int = 3) -> str:
    """A number as a checklist states it: ``3`` decimals, integers as they are, else "undefined"."""
    if _int(x) is not None:
        return str(x)
    v = _num(x)
    return "undefined" if v is None else f"{v:.{digits}f}"


def fmt_estimate(mv: Any) -> str | None:
    """A metric value object as ``"0.912 (95% CI 0.870-0.941)"``; None when the value is undefined.

    The interval is named by its method ("wilson", "bootstrap") when the snapshot records one;
    "(no CI)" when it has none (:func:`headline_intervals` says why, once).
    """
    mv = _d(mv)
    v = _num(mv.get("value"))
    if v is None:
        return None
    lo, hi = _num(mv.get("ci_low")), _num(mv.get("ci_high"))
    if lo is not None and hi is not None:
        method = _str(mv.get("ci_method"))
        return f"{v:.3f} (95% CI {lo:.3f}\u2013{hi:.3f}{', ' + method if method else ''})"
    return f"{v:.3f} (no CI)"


def models(snapshot: dict) -> list[dict]:
    """The snapshot's model entries that are dicts, each with a display name."""
    out = []
    for i, m in enumerate(_l(snapshot.get("models"))):
        if isinstance(m, dict):
            out.append({**m, "name": _str(m.get("name")) or f"model {i + 1}"})
    return out


def splits(snapshot: dict) -> dict[str, dict]:
    """``dataset.splits`` in train, val, test order (others after, by name)."""
    raw = _d(_d(snapshot.get("dataset")).get("splits"))
    names = sorted((k for k, v in raw.items() if isinstance(v, dict)), key=lambda s: (_SPLIT_ORDER.get(s, 9), s))
    return {k: raw[k] for k in names}


def evaluated_split(snapshot: dict) -> str:
    return (_str(_d(snapshot.get("settings")).get("split")) or _str(_d(snapshot.get("dataset")).get("split_evaluated"))
            or "test")


def _per_model(snapshot: dict, label: str, fn, missing: str) -> Part:
    """One part from every model: ``fn(model) -> str | None``; answered when every model answers."""
    ms = models(snapshot)
    if not ms:
        return Part(label, None, "the snapshot lists no models")
    got = [(m["name"], fn(m)) for m in ms]
    lacking = [n for n, v in got if v is None]
    if lacking:
        who = "" if len(lacking) == len(ms) else f" ({', '.join(lacking)})"
        return Part(label, None, missing + who)
    return Part(label, "; ".join(f"{n}: {v}" for n, v in got) if len(got) > 1 else got[0][1])


def _counts(counts: Any) -> str:
    return ", ".join(f"{k} {v}" for k, v in _d(counts).items() if _int(v) is not None)


def external(snapshot: dict) -> list[dict]:
    """``external.cohorts`` (helper B's block), dicts only."""
    return [c for c in _l(_d(snapshot.get("external")).get("cohorts")) if isinstance(c, dict)]


# ----------------------------------------------------------------------------- data


def partitions(snapshot: dict) -> Part:
    """Images (and patients) per split."""
    sp = splits(snapshot)
    if not sp:
        return Part("partitions", None, "the snapshot has no dataset.splits block")
    cells = []
    for name, v in sp.items():
        n, pts = _int(v.get("n")), _int(v.get("n_patients"))
        cells.append(f"{name} {fmt_number(n)} images" + (f" ({pts} patients)" if pts is not None else ""))
    return Part("partitions", ", ".join(cells))


def class_balance(snapshot: dict) -> Part:
    """Class counts per split."""
    sp = {k: v for k, v in splits(snapshot).items() if _counts(v.get("class_counts"))}
    if not sp:
        return Part("class balance", None, "no class counts per split in the snapshot")
    return Part("class balance", "; ".join(f"{k}: {_counts(v['class_counts'])}" for k, v in sp.items()))


def validation_split(snapshot: dict) -> Part:
    """The split thresholds and recalibration were chosen on (never test)."""
    for m in models(snapshot):
        val = _d(_d(m.get("clinical")).get("validation"))
        if _str(val.get("split")) and (_int(val.get("n")) or 0) > 0:
            return Part("validation split", f"'{val['split']}', {val['n']} images, used to choose thresholds and "
                                            "recalibrate; the evaluated split was not used for either")
    if "val" in splits(snapshot):
        return Part("validation split", f"'val', {fmt_number(splits(snapshot)['val'].get('n'))} images")
    return Part("validation split", None, "no validation split (give the data a val split, or train with "
                                          "medaudit train, which records its carve)")


def patient_disjointness(snapshot: dict) -> Part:
    """Patients shared between splits (dataset.patients)."""
    pat = _d(_d(snapshot.get("dataset")).get("patients"))
    if not pat:
        return Part("patient-level disjointness", None,
                    "no patient column in the data (add patient_id to the manifest, or --patient-col)")
    across = {k: _int(_d(v).get("n")) for k, v in _d(pat.get("across")).items()}
    shared = {k: n for k, n in across.items() if n}
    text = (f"patients shared between splits: {', '.join(f'{k} {n}' for k, n in shared.items())} (leakage)"
            if shared else f"no patient in more than one split ({', '.join(across) or 'splits'} checked)")
    return Part("patient-level disjointness", text)


def image_disjointness(snapshot: dict) -> Part:
    """Exact and near-duplicate images across splits."""
    ds = _d(snapshot.get("dataset"))
    dup, near = _d(ds.get("duplicates")), _d(ds.get("near_duplicates"))
    if not dup and not near:
        return Part("image-level disjointness", None, "no duplicate check in the snapshot")
    cells = []
    if dup:
        exact = {k: _int(v) for k, v in _d(dup.get("across")).items() if _int(v)}
        cells.append("exact duplicates across splits: " + (", ".join(f"{k} {n}" for k, n in exact.items()) or "none"))
    if near:
        nd = {k: _int(_d(v).get("n")) for k, v in _d(near.get("across")).items() if _int(_d(v).get("n"))}
        cells.append("near-duplicates across splits: " + (", ".join(f"{k} {n}" for k, n in nd.items()) or "none"))
    return Part("image-level disjointness", "; ".join(cells))


def demographics(snapshot: dict) -> Part:
    """Counts per metadata value and numeric summaries, per split (dataset.splits[s].groups)."""
    cells = []
    for name, v in splits(snapshot).items():
        groups = {col: _counts(c) for col, c in _d(v.get("groups")).items() if _counts(c)}
        numeric = []
        for col, s in _d(v.get("numeric")).items():
            s = _d(s)
            if _num(s.get("median")) is not None:
                numeric.append(f"{col} median {fmt_number(s['median'], 1)} (range {fmt_number(s.get('min'), 1)}"
                               f"\u2013{fmt_number(s.get('max'), 1)})")
        if groups or numeric:
            cells.append(f"{name}: " + ", ".join([f"{c} ({t})" for c, t in groups.items()] + numeric))
    if not cells:
        return Part("demographics per split", None,
                    "no metadata per split (a manifest with sex/age/site columns and --group-by)")
    return Part("demographics per split", "; ".join(cells))


def inclusion_counts(snapshot: dict) -> Part:
    """What was included; medaudit never drops an image silently (an unreadable one stops the run)."""
    sp = splits(snapshot)
    if not sp:
        return Part("images included", None, "the snapshot has no dataset.splits block")
    total = sum(_int(v.get("n")) or 0 for v in sp.values())
    text = (f"{total} images listed, all decoded and included (medaudit refuses unreadable or oversized images "
            "with an error instead of dropping them)")
    excluded = [(m["name"], _d(_d(m.get("patient_level")).get("excluded"))) for m in models(snapshot)]
    ex = [(n, _int(e.get("n_images"))) for n, e in excluded if _int(e.get("n_images"))]
    if ex:
        text += "; left out of the patient-level view: " + ", ".join(f"{n} {k} images" for n, k in ex)
    return Part("images included", text)


# ----------------------------------------------------------------------------- sample size


def test_size(snapshot: dict) -> Part:
    """Images, patients and disease cases in the evaluated split."""
    def fn(m):
        met = _d(m.get("metrics"))
        n = _int(met.get("n"))
        if n is None:
            return None
        dis = _int(_d(_d(m.get("fn_risk")).get("overall")).get("n"))
        pts = _int(met.get("n_patients"))
        return (f"{n} images" + (f", {pts} patients" if pts is not None else "")
                + (f", {dis} with disease" if dis is not None else ""))
    first = _per_model(snapshot, "evaluation sample", fn, "no metrics block")
    if first.value is not None and len({fn(m) for m in models(snapshot)}) == 1:  # same split for all: say once
        first = Part(first.label, f"{fn(models(snapshot)[0])} ({evaluated_split(snapshot)} split)")
    return first


def sensitivity_precision(snapshot: dict) -> Part:
    """Half-width of the sensitivity's 95% CI the test set gives (1 - missed-disease rate, Wilson)."""
    def fn(m):
        ov = _d(_d(m.get("fn_risk")).get("overall"))
        lo, hi, n = _num(ov.get("ci_low")), _num(ov.get("ci_high")), _int(ov.get("n"))
        if lo is None or hi is None:
            return None
        return f"sensitivity known to \u00b1{(hi - lo) / 2:.3f} (95% CI half-width, {n} disease cases)"
    return _per_model(snapshot, "precision of the test set", fn,
                      "no missed-disease analysis with an interval (needs a healthy class, --negative-class)")


# ----------------------------------------------------------------------------- performance


def headline_cis(snapshot: dict) -> Part:
    """Headline metrics with their intervals (as far as the snapshot has them)."""
    def fn(m):
        met = _d(m.get("metrics"))
        cells = [(label, fmt_estimate(met.get(k))) for k, label in HEADLINE]
        cells = [f"{label} {v}" for label, v in cells if v is not None]
        return ", ".join(cells) or None
    return _per_model(snapshot, "performance", fn, "no defined headline metric")


def headline_intervals(snapshot: dict) -> Part:
    """Whether every defined headline metric of every model has a 95% interval."""
    lacking, reasons = [], []
    for m in models(snapshot):
        met = _d(m.get("metrics"))
        for k, label in HEADLINE:
            v = _d(met.get(k))
            if _num(v.get("value")) is not None and (_num(v.get("ci_low")) is None or _num(v.get("ci_high")) is None):
                lacking.append(f"{m['name']} {label}")
                reason = _str(v.get("ci_reason")) or "no interval recorded"
                reasons += [reason] if reason not in reasons else []
    if not models(snapshot):
        return Part("95% CIs", None, "the snapshot lists no models")
    if lacking:
        return Part("95% CIs", None, f"withheld for {', '.join(lacking)} ({'; '.join(reasons)})")
    return Part("95% CIs", "every defined headline metric has one")


def ci_methods(snapshot: dict) -> Part:
    """How intervals were computed (the methods recorded in the metric values)."""
    methods: set[str] = set()
    for m in models(snapshot):
        for v in _d(m.get("metrics")).values():
            if _str(_d(v).get("ci_method")):
                methods.add(v["ci_method"])
        ov = _d(_d(m.get("fn_risk")).get("overall"))
        if _str(ov.get("ci_method")):
            methods.add(ov["ci_method"])
    if not methods:
        return Part("confidence intervals", None, "no interval in the snapshot (--bootstrap > 0, more samples)")
    boot = _int(_d(snapshot.get("settings")).get("bootstrap"))
    return Part("confidence intervals", "95% CIs by " + ", ".join(sorted(methods))
                + (f" ({boot} bootstrap resamples)" if boot and any("bootstrap" in m for m in methods) else ""))


def significance_tests(snapshot: dict) -> Part:
    """McNemar / DeLong between models, with the multiple-testing correction."""
    comp = _d(snapshot.get("comparisons"))
    pairs = [p for p in _l(comp.get("pairs")) if isinstance(p, dict)]
    if not pairs:
        return Part("significance tests", None, "one model only: no paired test (audit two or more models)")
    mt = _d(comp.get("multiple_testing"))
    cells = []
    for p in pairs:
        mc = _d(p.get("mcnemar"))
        ph = _num(mc.get("p_holm"))
        cells.append(f"{p.get('a')} vs {p.get('b')}: McNemar p={fmt_number(_num(mc.get('p_value')))}"
                     + (f" (Holm {ph:.3f})" if ph is not None else ""))
    n_tests = (_int(mt.get("mcnemar_tests")) or 0) + (_int(mt.get("delong_tests")) or 0)
    return Part("significance tests", "; ".join(cells) + (f"; {n_tests} tests, {mt.get('method')}-adjusted"
                                                           if n_tests and _str(mt.get("method")) else ""))


def roc_auc(snapshot: dict) -> Part:
    """ROC curves drawn and AUC with its interval."""
    def fn(m):
        met = _d(m.get("metrics"))
        if not _d(_d(met.get("curves")).get("roc")):
            return None
        auc = fmt_estimate(met.get("auc_macro")) or fmt_estimate(_d(_d(met.get("per_class")).get("disease")).get("auc"))
        return f"ROC curves per class{', AUC (macro) ' + auc if auc else ''}"
    return _per_model(snapshot, "ROC", fn, "no ROC curves in the snapshot")


def confusion(snapshot: dict) -> Part:
    """The confusion matrix (true class x predicted class)."""
    def fn(m):
        cm = _d(_d(m.get("metrics")).get("confusion_matrix"))
        counts, labels = _l(cm.get("counts")), _l(cm.get("labels"))
        if not counts or len(counts) != len(labels):
            return None
        rows = [f"{lab} \u2192 [{', '.join(str(c) for c in _l(row))}]" for lab, row in zip(labels, counts)]
        return "true \u2192 predicted (" + ", ".join(map(str, labels)) + "): " + "; ".join(rows)
    return _per_model(snapshot, "confusion matrix", fn, "no confusion matrix in the snapshot")


def error_analysis(snapshot: dict) -> Part:
    """Missed disease per class and the error gallery."""
    def fn(m):
        risk = _d(m.get("fn_risk"))
        ov = fmt_estimate(_d(risk.get("overall")))
        if ov is None:
            return None
        worst = []
        for cls, blk in _d(risk.get("per_class")).items():
            r = _d(_d(blk).get("rate"))
            if _int(r.get("k")):
                worst.append(f"{cls} {r['k']}/{r.get('n')}")
        tiles = [t for t in _l(_d(m.get("cam")).get("tiles")) if isinstance(t, dict)]
        wrong = sum(1 for t in tiles if t.get("group") in ("missed_disease", "error"))
        return (f"missed-disease rate {ov}" + (f", missed per class: {', '.join(worst)}" if worst else "")
                + (f"; {wrong} misclassified images shown with Grad-CAM" if wrong else ""))
    return _per_model(snapshot, "error analysis", fn, "no missed-disease analysis (needs a healthy class)")


def discrimination(snapshot: dict) -> Part:
    return _per_model(snapshot, "discrimination",
                      lambda m: (f"AUC (macro) {v}" if (v := fmt_estimate(_d(m.get("metrics")).get("auc_macro")))
                                 else None), "AUC undefined")


def calibration(snapshot: dict) -> Part:
    """ECE and, where the recalibration block ran, the calibration slope."""
    def fn(m):
        ece = fmt_estimate(_d(m.get("metrics")).get("ece"))
        if ece is None:
            return None
        slope = _d(_d(_d(_d(_d(m.get("clinical")).get("recalibration")).get("test")).get("metrics")).get("slope"))
        s = fmt_estimate(slope.get("before"))
        return f"ECE {ece}, reliability diagram" + (f", calibration slope {s}" if s else "")
    return _per_model(snapshot, "calibration", fn, "no calibration error in the snapshot")


def clinical_utility(snapshot: dict) -> Part:
    """Decision curves (net benefit against treat-all / treat-none)."""
    dc = _d(_d(snapshot.get("clinical")).get("decision_curves"))
    curves = _d(dc.get("models"))
    if not curves:
        reason = _str(dc.get("reason")) or "no decision curves (needs a healthy class)"
        return Part("clinical utility", None, reason)
    thr = [t for t in _l(dc.get("thresholds")) if _num(t) is not None]
    prev = _d(dc.get("prevalence"))
    rng = f" over threshold probabilities {thr[0]:.2f}\u2013{thr[-1]:.2f}" if thr else ""
    return Part("clinical utility", f"decision curves (net benefit) for {', '.join(curves)}{rng}"
                + (f", prevalence {fmt_number(prev.get('value'))} ({prev.get('source')})" if prev else ""))


def recalibration(snapshot: dict) -> Part:
    """Temperature scaling fitted on validation and measured on test."""
    def fn(m):
        rc = _d(_d(m.get("clinical")).get("recalibration"))
        if not _str(rc.get("method")):
            return None
        ece = _d(_d(_d(rc.get("test")).get("metrics")).get("ece"))
        before, after = fmt_estimate(ece.get("before")), fmt_estimate(ece.get("after"))
        return (f"{rc['method']} scaling fitted on '{rc.get('fitted_on')}'"
                + (f", test ECE {before} \u2192 {after}" if before and after else ""))
    return _per_model(snapshot, "recalibration", fn, "no recalibration (needs a validation split)")


def thresholds(snapshot: dict) -> Part:
    """Operating points and the split they were chosen on."""
    def fn(m):
        ops = [p for p in _l(_d(m.get("operating_points")).get("points")) if isinstance(p, dict)]
        if not ops:
            return None
        cells = []
        for p in ops:
            t = _num(p.get("threshold"))
            how = "fixed" if p.get("chosen_on") == "fixed" else f"chosen on {p.get('chosen_on')}"
            cells.append(f"{p.get('name')} {'undefined' if t is None else f'{t:.3f}'} ({how})")
        return ", ".join(cells)
    return _per_model(snapshot, "thresholds", fn, "no operating points (needs a healthy class)")


def threshold_rule(snapshot: dict) -> Part:
    """The guaranteed-sensitivity rule and its validation sample."""
    def fn(m):
        th = _d(_d(m.get("clinical")).get("thresholds"))
        if not _str(th.get("rule")):
            return None
        return (f"{th['rule']} on score {th.get('score')}; target {th.get('metric')} {fmt_number(th.get('target'))} "
                f"with \u03b4={fmt_number(th.get('delta'))}, chosen on validation")
    return _per_model(snapshot, "how thresholds were chosen", fn, "no guaranteed thresholds (needs a validation split)")


def imbalance_handling(snapshot: dict) -> Part:
    """Class weights, sampler and loss from the checkpoint's training record."""
    def fn(m):
        tr = _d(_d(m.get("checkpoint")).get("training"))
        if not _str(tr.get("loss")):
            return None
        return (f"loss {tr['loss']}, class weights {tr.get('class_weights')}, sampler {tr.get('sampler')}"
                + (f", focal gamma {tr.get('focal_gamma')}" if tr.get("loss") == "focal" else ""))
    return _per_model(snapshot, "imbalance handling in training", fn,
                      "no training record in the checkpoint (trained outside medaudit)")


def events_per_analysis(snapshot: dict) -> Part:
    """Participants and events (disease cases) of each analysis: test, validation, patient level."""
    def fn(m):
        met = _d(m.get("metrics"))
        n, dis = _int(met.get("n")), _int(_d(_d(m.get("fn_risk")).get("overall")).get("n"))
        if n is None:
            return None
        cells = [f"test {n} images" + (f" / {dis} disease" if dis is not None else "")]
        val = _d(_d(_d(m.get("clinical")).get("thresholds")).get("validation"))
        if _int(val.get("n_positive")) is not None:
            cells.append(f"validation {val['n_positive'] + (_int(val.get('n_negative')) or 0)} images / "
                         f"{val['n_positive']} disease")
        pl = _d(m.get("patient_level"))
        if _int(pl.get("n_patients")):
            cells.append(f"patient level {pl['n_patients']} patients")
        return ", ".join(cells)
    return _per_model(snapshot, "participants and events", fn, "no metrics block")


# ----------------------------------------------------------------------------- subgroups, sites, shift


def subgroup_cis(snapshot: dict) -> Part:
    """Sensitivity per subgroup with its interval (models[i].subgroups)."""
    def fn(m):
        sg = _d(m.get("subgroups"))
        cols = _d(sg.get("columns"))
        if not cols:
            return None
        cells = []
        for col, blk in cols.items():
            for g, v in _d(_d(blk).get("groups")).items():
                est = fmt_estimate(_d(v).get("recall"))
                cells.append((f"{col}={g} recall {est or 'too few to estimate'}", est is not None))
        return ", ".join(c for c, _ in cells) if any(ok for _, ok in cells) else None
    return _per_model(snapshot, "key subgroups", fn,
                      "no subgroup estimate (no --group-by COLUMN, or every group below --min-group-n)")


def subgroup_gaps(snapshot: dict) -> Part:
    """Gaps between each group and the rest, with Holm-adjusted p (fairness)."""
    def fn(m):
        cols = _d(_d(m.get("subgroups")).get("columns"))
        if not cols:
            return None
        flagged, tested = [], 0
        for col, blk in cols.items():
            for g, v in _d(_d(blk).get("groups")).items():
                for metric, gap in _d(_d(v).get("gap")).items():
                    p = _num(_d(gap).get("p_adjusted"))
                    if p is None:
                        continue
                    tested += 1
                    if p < 0.05:
                        flagged.append(f"{metric} {col}={g} ({fmt_number(_num(_d(gap).get('diff')))}, Holm p={p:.3f})")
        return (f"{tested} group-vs-rest gaps tested; " + ("flagged: " + ", ".join(flagged) if flagged
                                                           else "none below Holm p 0.05")) if tested else \
            "every group too small to test (see min_group_n)"
    return _per_model(snapshot, "fairness across groups", fn, "no subgroup analysis (--group-by COLUMN)")


def site_heterogeneity(snapshot: dict) -> Part:
    """Performance per site/hospital/scanner: a site-like subgroup column or external.sites."""
    ext = _d(snapshot.get("external"))
    sites = [s for s in _l(ext.get("sites")) if isinstance(s, dict)]
    if sites:  # each site against the other sites of the internal split (the external block)
        cells = []
        for site in sites:
            per = [f"{_d(m).get('name')} AUC {fmt_estimate(_d(_d(m).get('metrics')).get('auc_macro')) or 'undefined'}"
                   for m in _l(site.get("models"))]
            cells.append(f"{site.get('name')} ({fmt_number(site.get('n'))} images): {', '.join(per)}")
        return Part("heterogeneity across sites", "; ".join(cells))
    def fn(m):
        cols = _d(_d(m.get("subgroups")).get("columns"))
        hits = [c for c in cols if any(w in c.lower() for w in SITE_COLUMNS)]
        if not hits:
            return None
        cells = []
        for c in hits:
            for g, v in _d(_d(cols[c]).get("groups")).items():
                est = fmt_estimate(_d(v).get("auc"))
                cells.append((f"{c}={g} AUC {est or 'too few to estimate'}", est is not None))
        return ", ".join(c for c, _ in cells) if sum(ok for _, ok in cells) >= 2 else None
    return _per_model(snapshot, "heterogeneity across sites", fn,
                      "no two sites with an estimate: no site column among the subgroups (--group-by site), sites "
                      "below --min-group-n, and no multi-site external data")


def robustness(snapshot: dict) -> Part:
    """The corruption sweep (snapshot.robustness)."""
    rb = _d(snapshot.get("robustness"))
    ms = [m for m in _l(rb.get("models")) if isinstance(m, dict)]
    if not ms:
        return Part("robustness", None, "no corruption sweep (--robustness)")
    st = _d(rb.get("settings"))
    corr = _l(st.get("corruptions"))
    cells = []
    for m in ms:
        summ = _d(m.get("summary"))
        text = f"{m.get('name')}: mean relative balanced error {fmt_number(_num(summ.get('mean_relative_balanced_error')))}"
        worst = _d(summ.get("worst"))
        drop = fmt_estimate(worst.get("drop"))
        if drop:
            text += (f", largest recall drop {worst.get('class')} under {worst.get('corruption')} severity "
                     f"{worst.get('severity')}: {drop}")
        cells.append(text)
    return Part("robustness", f"{len(corr)} corruptions x {len(_l(st.get('severities')))} severities on "
                              f"{fmt_number(st.get('n_samples'))} images; " + "; ".join(cells))


def saliency(snapshot: dict) -> Part:
    """Grad-CAM method, layer and tiles (models[i].cam)."""
    def fn(m):
        cam = _d(m.get("cam"))
        tiles = [t for t in _l(cam.get("tiles")) if isinstance(t, dict)]
        if not _str(cam.get("method")) or not tiles:
            return None
        bad = _int(cam.get("n_invalid")) or 0
        return (f"{cam['method']} at layer {cam.get('layer')}, {len(tiles)} images"
                + (f" ({bad} without a valid map)" if bad else ""))
    return _per_model(snapshot, "saliency maps", fn, "no Grad-CAM gallery (drop --no-cam)")


def saliency_validity(snapshot: dict) -> Part:
    """How the maps were checked: localisation against masks/boxes, or a deletion (faithfulness) test.

    One pooled figure each (all lesion images; the middle removed share), so the cell stays
    readable; the per-class table is in the report section the item links to.
    """
    def fn(m):
        cam = _d(m.get("cam"))
        cells = []
        loc = _d(cam.get("localisation"))
        overall = _d(loc.get("overall"))
        pg = fmt_estimate(overall.get("pointing_game"))
        if pg:
            cells.append(f"pointing game {pg} on {_int(overall.get('n')) or '?'} lesion images "
                         f"({_str(loc.get('source')) or 'masks'})")
        else:
            for cls, v in _d(loc.get("per_class")).items():  # no pooled figure: one per class
                pg = fmt_estimate(_d(v).get("pointing_game"))
                if pg:
                    cells.append(f"pointing game {cls} {pg}")
        faith = _d(cam.get("faithfulness"))
        shares = sorted((k for k in _d(faith.get("drop")) if k.replace(".", "", 1).isdigit()), key=float)
        if shares:
            k = shares[len(shares) // 2]  # keyed by the removed share of pixels ("0.2")
            d, r = fmt_estimate(_d(faith.get("drop")).get(k)), fmt_estimate(_d(faith.get("random_drop")).get(k))
            if d:
                cells.append(f"removing the top {_num(float(k)) * 100:.0f}% of the map drops the score by {d}"
                             + (f" vs {r} for a random map" if r else ""))
        return "; ".join(cells) or None
    return _per_model(snapshot, "validity of the maps", fn,
                      "no localisation or faithfulness check of the maps (masks or boxes with medaudit cam)")


def internal_testing(snapshot: dict) -> list[Part]:
    """The evaluated split is held out: each model selected on validation, not on it.

    One part for the models tested on held-out data and one per model that was not (selected on
    the evaluated split itself, or without a training record to say).
    """
    split = evaluated_split(snapshot)
    ms = models(snapshot)
    if not ms:
        return [Part("internal testing", None, "the snapshot lists no models")]
    parts, held = [], []
    for m in ms:
        sel = _d(m.get("checkpoint")).get("selected_on")
        if sel == split:
            parts.append(Part(f"internal testing ({m['name']})", None,
                              f"selected on the '{split}' split itself, so '{split}' is not held out for it"))
        elif not _str(sel) or sel == "unknown":
            parts.append(Part(f"internal testing ({m['name']})", None,
                              f"the author's statement that '{split}' was held out (no training record)"))
        else:
            held.append(f"{m['name']} (selected on {sel})")
    if held:
        parts.insert(0, Part("internal testing", f"held-out '{split}' split for {', '.join(held)}"))
    return parts


def external_testing(snapshot: dict) -> Part:
    """External cohorts and each model's metrics there."""
    cohorts = external(snapshot)
    if not cohorts:
        return Part("external testing", None, "no external cohort (--external NAME=SPEC)")
    cells = []
    for c in cohorts:
        per = []
        for m in _l(c.get("models")):
            met = _d(_d(m).get("metrics"))
            key = next((k for k in ("balanced_accuracy", "auc_macro", "accuracy") if fmt_estimate(met.get(k))), None)
            if key:
                per.append(f"{_d(m).get('name')} {key.replace('_', ' ')} {fmt_estimate(met[key])}")
        cells.append(f"{c.get('name')} ({fmt_number(c.get('n'))} images" + (f"; {', '.join(per)}" if per else "") + ")")
    return Part("external testing", "; ".join(cells))


def external_shift(snapshot: dict) -> Part:
    """How each external cohort differs from the reference: shift verdict and label shift."""
    cohorts = external(snapshot)
    if not cohorts:
        return Part("difference from development data", None, "no external cohort (--external NAME=SPEC)")
    cells = []
    for c in cohorts:
        sh = _d(c.get("shift"))
        if not _str(sh.get("verdict")):
            return Part("difference from development data", None, f"cohort {c.get('name')} has no shift tests")
        ls = _d(sh.get("label_shift"))
        prev = _d(ls.get("prevalence"))
        cells.append(f"{c.get('name')}: {sh['verdict']}" + (f" ({sh['explanation']})" if _str(sh.get("explanation")) else "")
                     + (f"; estimated prevalence {', '.join(f'{k} {fmt_number(v, 2)}' for k, v in prev.items())}"
                        if prev and "label shift" in sh["verdict"] else "") + (f"; classes {_counts(c.get('class_counts'))}"
                                            if _counts(c.get("class_counts")) else ""))
    return Part("difference from development data", "; ".join(cells))


# ----------------------------------------------------------------------------- provenance


def data_fingerprint(snapshot: dict) -> Part:
    fp = _str(_d(snapshot.get("dataset")).get("fingerprint"))
    return (Part("data fingerprint", f"sha256 {fp}") if fp else
            Part("data fingerprint", None, "no dataset fingerprint in the snapshot"))


def checkpoint_hashes(snapshot: dict) -> Part:
    return _per_model(snapshot, "checkpoint hashes",
                      lambda m: (f"sha256 {h}" if (h := _str(_d(m.get("checkpoint")).get("sha256"))) else None),
                      "no checkpoint hash in the snapshot")


def prediction_files(snapshot: dict) -> Part:
    return _per_model(snapshot, "stored predictions",
                      lambda m: _str(_d(m.get("predictions")).get("file")), "no predictions file named")


def run_record(snapshot: dict) -> Part:
    run = _d(snapshot.get("run"))
    vers = _d(run.get("versions"))
    if not vers:
        return Part("software versions", None, "no run block (dropped, or an older snapshot)")
    text = ", ".join(f"{k} {v}" for k, v in vers.items())
    dist = _d(run.get("distributed"))
    if _int(dist.get("world_size")):
        text += f"; inference on {dist['world_size']} processes ({dist.get('backend')})"
    return Part("software versions", text)
