"""Plain-language findings from the snapshot: what a reader should notice, never overstated.

A finding is ``{"level": "info|warning|critical", "text": str, "model": str|None}``.
Rules: a difference is called significant only when its Holm-adjusted p-value is below
:data:`ALPHA`; every claim carries the numbers it rests on; set relations between error
sets are described as what they are (counts on this test set), not as dominance.
"""

from __future__ import annotations

ALPHA = 0.05
# ECE above these is worth a note / a warning (probabilities off by 5 / 10 points on average).
ECE_INFO, ECE_WARN = 0.05, 0.10
# Classes with fewer test samples than this get a "wide interval" note.
SMALL_SUPPORT = 30
# Below this many discordant samples, bootstrap intervals of a difference are coarse.
FEW_DISCORDANT = 10


def _f(level: str, text: str, model: str | None = None) -> dict:
    return {"level": level, "text": text, "model": model}


def _pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def _p(p: float | None) -> str:
    """'= 0.052', '< 0.001' or '= n/a': reads after 'p'."""
    if p is None:
        return "= n/a"
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def _ci(v: dict, digits: int = 1) -> str:
    if v.get("ci_low") is None or v.get("ci_high") is None:
        return ""
    return f", 95% CI {_pct(v['ci_low'], digits)}–{_pct(v['ci_high'], digits)}"


# -- one model -----------------------------------------------------------------------
def settings_findings(settings: dict) -> list[dict]:
    """Say so when the negative ("healthy") classes were guessed rather than given.

    Parameters
    ----------
    settings : dict
        ``report.json["settings"]`` (``negative_classes``, ``negative_classes_source`` and its note).

    Returns
    -------
    list of dict
        One finding (``info`` when auto-detected from the names, ``warning`` when a binary
        task's first class was assumed), or none when the classes were given.
    """
    source, negs = settings.get("negative_classes_source"), settings.get("negative_classes") or []
    if source in ("auto", "binary-default") and negs:
        level = "info" if source == "auto" else "warning"
        names = ", ".join(f"'{c}'" for c in negs)
        return [_f(level, f"Missed-disease rates treat {names} as healthy: {settings.get('negative_classes_note')}.")]
    return []


def _missed_disease(name: str, fn: dict, settings: dict) -> list[dict]:
    out = []
    overall = fn.get("overall") or {}
    k, n, rate = overall.get("k"), overall.get("n"), overall.get("value")
    if rate is None:
        if overall.get("reason"):
            out.append(_f("info", f"Missed-disease rate is undefined: {overall['reason']}.", name))
        return out
    target = settings.get("target_sensitivity") or 0.95
    allowed = 1.0 - target
    negs = ", ".join(f"'{c}'" for c in fn.get("negative_classes", []))
    text = (f"{name} predicted {negs} for {k} of {n} disease images "
            f"(missed-disease rate {_pct(rate)}{_ci(overall)}).")
    low = overall.get("ci_low")
    if low is not None and low > allowed:
        out.append(_f("critical", f"{text} Even the lower CI bound exceeds {_pct(allowed, 0)} "
                                  f"(target sensitivity {_pct(target, 0)}).", name))
    elif rate > allowed:
        out.append(_f("warning", f"{text} This is above {_pct(allowed, 0)} (target sensitivity "
                                 f"{_pct(target, 0)}), though the interval includes it.", name))
    elif k:
        out.append(_f("info", text, name))
    for cls, entry in sorted((fn.get("per_class") or {}).items()):
        r = entry.get("rate") or {}
        if r.get("value") is not None and r["value"] > allowed and r.get("k"):
            out.append(_f("warning", f"{name} missed {r['k']} of {r['n']} '{cls}' images "
                                     f"({_pct(r['value'])}{_ci(r)}).", name))
    return out


def _undefined(name: str, metrics: dict) -> list[dict]:
    bad = []
    for key, v in sorted(metrics.items()):
        if isinstance(v, dict) and "value" in v and v["value"] is None and v.get("reason"):
            bad.append(f"{key} ({v['reason']})")
    for cls, entry in sorted((metrics.get("per_class") or {}).items()):
        for key, v in sorted(entry.items()):
            if isinstance(v, dict) and "value" in v and v["value"] is None and v.get("reason"):
                bad.append(f"{key}[{cls}] ({v['reason']})")
    if not bad:
        return []
    shown = "; ".join(bad[:6]) + (f"; and {len(bad) - 6} more" if len(bad) > 6 else "")
    return [_f("info", f"{len(bad)} metric(s) of {name} are undefined: {shown}.", name)]


def _calibration(name: str, metrics: dict) -> list[dict]:
    ece = metrics.get("ece") or {}
    value = ece.get("value")
    if value is None or value <= ECE_INFO:
        return []
    direction = ""
    cal = metrics.get("calibration") or {}
    conf, acc, cnt = cal.get("bin_confidence"), cal.get("bin_accuracy"), cal.get("bin_count")
    if conf and acc and cnt:
        bins = [(c, a, k) for c, a, k in zip(conf, acc, cnt, strict=True) if c is not None and a is not None]
        total = sum(k for _, _, k in bins)
        if total:
            gap = sum((c - a) * k for c, a, k in bins) / total
            direction = " (overconfident on average)" if gap > 0 else " (underconfident on average)"
    level = "warning" if value > ECE_WARN else "info"
    ci = ""
    if ece.get("ci_low") is not None and ece.get("ci_high") is not None:
        ci = f", 95% CI {ece['ci_low']:.3f}–{ece['ci_high']:.3f}"
    return [_f(level, f"{name}'s probabilities are miscalibrated: ECE = {value:.3f}{ci}{direction}; "
                      "treat its scores as rankings, not risks, or recalibrate on validation data.", name)]


def _selection(name: str, entry: dict) -> list[dict]:
    out = []
    ckpt = entry.get("checkpoint") or {}
    sel = ckpt.get("selected_on")
    if sel == "test":
        out.append(_f("warning", f"{name} was selected (early stopping / checkpoint choice) on the test split, "
                                 "so its test metrics are optimistic; select on validation data.", name))
    elif sel == "unknown":
        out.append(_f("info", f"It is not recorded which split {name}'s checkpoint was selected on.", name))
    ops = entry.get("operating_points") or {}
    for pt in ops.get("points") or []:
        if pt.get("chosen_on") == "test":
            out.append(_f("warning", f"The '{pt['name']}' threshold of {name} was chosen on the test split; "
                                     "its sensitivity/specificity there are optimistic.", name))
        if pt.get("reached_on_choice_split") is False:
            out.append(_f("warning", f"{name} could not reach the target sensitivity "
                                     f"{_pct(pt.get('target'), 0)} on the split used to choose the threshold.",
                          name))
    return out


def dataset_findings(dataset: dict) -> list[dict]:
    """Findings about the data: images shared between the evaluated split and another split.

    A test image that also sits in train makes every test metric optimistic, so that is a
    warning; sharing between two splits that are not evaluated (train/val) is information.

    Parameters
    ----------
    dataset : dict
        ``report.json["dataset"]`` (``duplicates.across`` and ``split_evaluated`` are read).

    Returns
    -------
    list of dict
        One finding per pair of splits sharing images, in the pairs' sorted order.
    """
    dup = dataset.get("duplicates") or {}
    evaluated = dataset.get("split_evaluated")
    out = []
    for pair, count in sorted((dup.get("across") or {}).items()):
        if not count:
            continue
        a, _, b = pair.partition("/")
        if evaluated in (a, b):
            other = b if a == evaluated else a
            out.append(_f("warning", f"{count} image(s) of the evaluated '{evaluated}' split are pixel-identical to "
                                     f"image(s) in '{other}': metrics on them may be optimistic (leakage).", None))
        else:
            out.append(_f("info", f"{count} image(s) are pixel-identical between '{a}' and '{b}' "
                                  "(not the evaluated split; model selection may be optimistic).", None))
    return out


def model_findings(model_entry: dict, settings: dict) -> list[dict]:
    """Findings about one model from its ``models[i]`` snapshot entry.

    Parameters
    ----------
    model_entry : dict
        One entry of ``report.json["models"]`` (docs/report-schema.md).
    settings : dict
        ``report.json["settings"]`` (``target_sensitivity`` sets the tolerated miss rate).

    Returns
    -------
    list of dict
        Findings in this order: missed-disease risk, checkpoint/threshold selection on the
        test split, calibration, undefined metrics, small classes.
    """
    name = model_entry.get("name")
    metrics = model_entry.get("metrics") or {}
    out = []
    if model_entry.get("fn_risk"):
        out += _missed_disease(name, model_entry["fn_risk"], settings)
    out += _selection(name, model_entry)
    out += _calibration(name, metrics)
    out += _undefined(name, metrics)
    small = sorted(c for c, e in (metrics.get("per_class") or {}).items()
                   if e.get("support") is not None and 0 < e["support"] < SMALL_SUPPORT)
    if small:
        out.append(_f("info", f"Classes with fewer than {SMALL_SUPPORT} test samples ({', '.join(small)}): "
                              "their per-class metrics have wide intervals.", name))
    return out


# -- comparisons ---------------------------------------------------------------------
def _accuracy_finding(p: dict) -> dict:
    a, b, mc = p["a"], p["b"], p["mcnemar"]
    acc_a, acc_b = p.get("accuracy_a"), p.get("accuracy_b")
    sig = mc.get("p_holm") is not None and mc["p_holm"] < ALPHA
    test = (f"McNemar exact p {_p(mc['p_value'])}, Holm-adjusted p {_p(mc.get('p_holm'))}; "
            f"only {b} wrong on {mc['b10']}, only {a} wrong on {mc['b01']} samples")
    if mc["b01"] == mc["b10"]:
        return _f("info", f"{a} and {b} have the same accuracy ({_pct(acc_a)}); "
                          f"each is right where the other is wrong on {mc['b10']} samples.")
    better, worse = (a, b) if mc["b10"] > mc["b01"] else (b, a)
    acc_hi, acc_lo = (acc_a, acc_b) if better == a else (acc_b, acc_a)
    head = f"{better} is more accurate than {worse} ({_pct(acc_hi)} vs {_pct(acc_lo)})"
    if sig:
        return _f("info", f"{head}, and the difference is significant ({test}).")
    return _f("info", f"{head}, but the difference is not significant ({test}).")


def _auc_findings(p: dict) -> list[dict]:
    dl = p.get("delong")
    if not dl:
        return []
    a, b = p["a"], p["b"]
    out = []
    if dl.get("per_class") is None and dl.get("p_value") is not None:
        sig = dl.get("p_holm") is not None and dl["p_holm"] < ALPHA
        verdict = "significant" if sig else "not significant"
        out.append(_f("info", f"AUC {a} {dl['auc_a']:.3f} vs {b} {dl['auc_b']:.3f} (difference {dl['diff']:+.3f}, "
                              f"95% CI {dl['ci_low']:+.3f} to {dl['ci_high']:+.3f}; DeLong p {_p(dl['p_value'])}, "
                              f"Holm-adjusted p {_p(dl['p_holm'])}): {verdict}."))
    for cls, r in sorted((dl.get("per_class") or {}).items()):
        if r.get("p_holm") is not None and r["p_holm"] < ALPHA:
            hi = a if r["diff"] > 0 else b
            out.append(_f("info", f"For '{cls}' vs rest, {hi} has the higher AUC ({a} {r['auc_a']:.3f} vs "
                                  f"{b} {r['auc_b']:.3f}; DeLong Holm-adjusted p {_p(r['p_holm'])})."))
    return out


def _ci_of_gap(d: dict) -> tuple[float, float]:
    """CI of |A - B| in the direction a sentence states it ("X is higher than Y by ..."):
    the interval of A - B, negated when B is the larger."""
    return (d["ci_low"], d["ci_high"]) if d["diff"] > 0 else (-d["ci_high"], -d["ci_low"])


def _recall_findings(p: dict) -> list[dict]:
    out = []
    for cls, d in sorted(p["bootstrap_diff"].get("recall", {}).items()):
        if d.get("ci_low") is None or d.get("diff") is None:
            continue
        if d["ci_low"] > 0 or d["ci_high"] < 0:
            hi, lo = (p["a"], p["b"]) if d["diff"] > 0 else (p["b"], p["a"])
            c_lo, c_hi = _ci_of_gap(d)
            out.append(_f("info", f"Recall of '{cls}': {hi} is higher than {lo} by {_pct(abs(d['diff']))} "
                                  f"(paired bootstrap 95% CI {_pct(c_lo)} to {_pct(c_hi)}, "
                                  "not adjusted for multiple classes)."))
    return out


def _missed_diff_finding(p: dict) -> list[dict]:
    """The missed-disease rate difference, when its paired bootstrap interval excludes 0."""
    d = (p.get("bootstrap_diff") or {}).get("missed_disease_rate") or {}
    if d.get("ci_low") is None or d.get("diff") is None or d["ci_low"] <= 0 <= d["ci_high"]:
        return []
    worse, better = (p["a"], p["b"]) if d["diff"] > 0 else (p["b"], p["a"])
    c_lo, c_hi = _ci_of_gap(d)
    return [_f("warning", f"{worse} misses more disease than {better}: missed-disease rate higher by "
                          f"{_pct(abs(d['diff']))} (paired bootstrap 95% CI {_pct(c_lo)} to {_pct(c_hi)}).")]


def _overlap_findings(p: dict) -> list[dict]:
    out = []
    n_err = p["both"] + p["only_a"] + p["only_b"]
    text = f"Errors of {p['a']} and {p['b']}: {p['relation_text']}."
    if p["relation_kind"] in ("a_subset_b", "b_subset_a") and n_err < 2 * FEW_DISCORDANT:
        text += (f" With {n_err} errors in all, this describes this test set only; it is not evidence "
                 "that one model is better on every case.")
    out.append(_f("info", text))
    md = p.get("missed_disease")
    if md and (md["both"] + md["only_a"] + md["only_b"]):
        extra = ""
        if md["only_a"] and md["only_b"]:
            extra = " Each model misses disease the other catches."
        elif md["only_a"] or md["only_b"]:
            worse = p["a"] if md["only_a"] else p["b"]
            extra = f" {worse} misses {md['only_a'] or md['only_b']} disease image(s) the other catches."
        # info: each model's own miss rate is judged in model_findings; this is who misses what.
        out.append(_f("info", f"Missed disease ({md['n_disease']} disease images): {md['relation_text']}.{extra}"))
    return out


def comparison_findings(comparisons: dict | None, models: list[dict]) -> list[dict]:
    """Findings from the ``comparisons`` block, one group per pair, then overall notes.

    Parameters
    ----------
    comparisons : dict or None
        ``report.json["comparisons"]``; None (fewer than two models) gives no findings.
    models : list of dict
        ``report.json["models"]``; used to warn when models were selected on different splits.

    Returns
    -------
    list of dict
        Accuracy difference with McNemar, AUC difference with DeLong, recall differences
        whose bootstrap interval excludes 0, error/missed-disease overlap, hard samples,
        multiple-testing note.
    """
    if not comparisons:
        return []
    out = []
    for p in comparisons["pairs"]:
        out.append(_accuracy_finding(p))
        out += _auc_findings(p)
        out += _recall_findings(p)
        out += _missed_diff_finding(p)
        out += _overlap_findings(p)
        if 0 < p["mcnemar"]["n_discordant"] < FEW_DISCORDANT:
            out.append(_f("info", f"{p['a']} and {p['b']} differ in correctness on only {p['mcnemar']['n_discordant']} "
                                  "sample(s); "
                                  "bootstrap intervals of their difference are coarse."))
    hard = comparisons.get("hard_samples") or []
    if hard:
        shown = ", ".join(hard[:5]) + (" …" if len(hard) > 5 else "")
        out.append(_f("info", f"{len(hard)} sample(s) are misclassified by every model ({shown}); "
                              "review them for label errors or genuinely hard cases."))
    selected = {m.get("name"): (m.get("checkpoint") or {}).get("selected_on") for m in models}
    if len(set(selected.values()) - {None}) > 1:
        parts = ", ".join(f"{k}: {v}" for k, v in selected.items())
        out.append(_f("warning", f"The models were selected on different splits ({parts}); "
                                 "the comparison is not like for like."))
    note = (comparisons.get("multiple_testing") or {}).get("note")
    if note:
        out.append(_f("info", note))
    return out
