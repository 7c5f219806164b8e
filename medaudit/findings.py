"""Plain-language findings from the snapshot: what a reader should notice, never overstated.

A finding is ``{"level": "info|warning|error|critical", "text": str, "model": str|None}``
(``error``: the evaluation itself is compromised, e.g. test patients seen in training).
Rules: a difference is called significant only when its Holm-adjusted p-value is below
:data:`ALPHA`; every claim carries the numbers it rests on; set relations between error
sets are described as what they are (counts on this test set), not as dominance.
"""

from __future__ import annotations

import math
import re
from statistics import NormalDist

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


# Selection noise: a "swing" is a change between consecutive epochs larger than swing_threshold(E) standard errors
# of the difference (at least SWING_SE); the selected score's lower end is TIE_Z SEs below it (95% Wald interval).
SWING_SE, SWING_ALPHA, TIE_Z = 2.0, 0.05, NormalDist().inv_cdf(0.975)
_RECALL = re.compile(r"^val_recall\[(.+)\]$")


def swing_threshold(n_epochs: int) -> float:
    """Standard errors a change between consecutive epochs must exceed to count as a swing.

    ``max(2, z)`` with ``z`` the two-sided Bonferroni quantile over the ``n_epochs - 1`` changes,
    ``Phi^-1(1 - 0.05 / (2 (n_epochs - 1)))``: with noise alone, a run of any length shows even one
    swing in at most about 5% of runs (2.69 SE for 8 epochs, 3.48 for 100).

    Parameters
    ----------
    n_epochs : int

    Returns
    -------
    float
    """
    k = max(1, n_epochs - 1)
    return max(SWING_SE, NormalDist().inv_cdf(1 - SWING_ALPHA / (2 * k)))


def _hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float | None:
    """Hanley & McNeil (1982) standard error of an AUC from ``n_pos`` positives and ``n_neg`` negatives."""
    if n_pos < 1 or n_neg < 1:
        return None
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def _score_se(select_by: str, value: float, training: dict) -> tuple[float | None, int | None]:
    """(standard error, validation sample size behind it) of one epoch's selection score, or (None, None)."""
    n_val = training.get("n_val")
    cc = training.get("val_class_counts") or {}
    classes, counts = cc.get("classes"), cc.get("counts")
    if select_by == "val_acc":
        if not isinstance(n_val, int) or n_val < 1:
            return None, None
        return math.sqrt(value * (1 - value) / n_val), n_val
    m = _RECALL.match(select_by)
    if m:
        if not classes or m.group(1) not in classes or not counts:
            return None, None
        n = counts[classes.index(m.group(1))]
        return (math.sqrt(value * (1 - value) / n), n) if n else (None, None)
    if select_by == "val_auc" and isinstance(n_val, int) and counts and len(counts) >= 2:
        # Binary: the AUC of label 1 (train.state.val_metrics); otherwise the one-vs-rest/per-label macro mean,
        # with each term's SE taken at the mean AUC and the terms treated as independent (an approximation).
        binary = len(counts) == 2 and not cc.get("multilabel")
        pairs = [(counts[1], counts[0])] if binary else [(k, n_val - k) for k in counts if 0 < k < n_val]
        ses = [_hanley_mcneil_se(value, a, b) for a, b in pairs]
        if not ses or any(se is None for se in ses):
            return None, None
        return math.sqrt(sum(se * se for se in ses)) / len(ses), n_val
    return None, None  # val_loss: its per-image spread is not recorded


def selection_noise(training: dict | None, history: list[dict] | None) -> dict | None:
    """How the selected epoch's validation score compares with the noise of that score.

    The rule (each epoch's score is treated as an estimate from the ``n_val`` validation images):

    * standard error ``SE_e`` of epoch ``e``'s score ``s_e``: binomial ``sqrt(s(1-s)/n)`` for
      ``val_acc`` (``n = n_val``) and ``val_recall[C]`` (``n`` = validation images of ``C``);
      Hanley–McNeil for ``val_auc`` from the per-class counts (binary: AUC of the second class;
      multiclass/multi-label: the macro mean's SE from per-class SEs taken at the mean AUC, as if
      independent). ``val_loss`` has none recorded, so it is not judged.
    * **swing**: consecutive epochs whose scores differ by more than ``SWING_SE = 2`` standard
      errors of the difference, ``|s_{e+1} - s_e| > 2 sqrt(SE_e^2 + SE_{e+1}^2)``. The two scores
      come from the same images, whose paired noise is smaller than this independent-samples
      SE, so a swing exceeds even the generous noise estimate: the *model* changed that much.
    * **oscillation** (the selection may be chance): the swings change direction at least twice
      (up, down, up...), or the selected epoch is an isolated peak (a swing up into it and a
      swing down right after it). A steadily rising curve has swings of one sign and is not
      flagged; with noise alone (a flat true curve) the rule fires in a few per cent of runs
      (tests/test_findings.py simulates it).
    * **ties**: other epochs whose score reaches the lower end of the selected score's 95% Wald
      interval, ``s_e >= s_b - 1.96 SE_b``: this validation set does not tell them apart from
      the selected one.

    Parameters
    ----------
    training : dict or None
        ``checkpoint.training`` (``select_by``, ``best_epoch``, ``n_val``, ``val_class_counts``,
        ``task``, ``ema``).
    history : list of dict or None
        ``checkpoint.history``, one entry per epoch (``epoch``, ``val_acc``, ``val_auc``,
        ``val_recall``).

    Returns
    -------
    dict or None
        None when there is nothing to judge (no training record or history, fewer than 3
        epochs, an undefined or unjudgeable score). Otherwise ``select_by``, ``epoch`` (the
        selected one), ``score``, ``se``, ``n``, ``swings`` (list of ``{"from", "to", "diff",
        "se"}``), ``reversals`` (int), ``peak`` (bool), ``oscillates`` (bool), ``ties``
        (list of epochs) and ``scores`` (``{epoch: score}``).
    """
    if not isinstance(training, dict) or not history or len(history) < 3:
        return None
    select_by, best = training.get("select_by"), training.get("best_epoch")
    if not isinstance(select_by, str) or not isinstance(best, int):
        return None
    m = _RECALL.match(select_by)

    def score(h: dict) -> float | None:
        v = (h.get("val_recall") or {}).get(m.group(1)) if m else h.get(select_by)
        return float(v) if isinstance(v, int | float) and math.isfinite(v) else None

    scores = {h.get("epoch"): score(h) for h in history}
    if scores.get(best) is None:
        return None
    se = {e: _score_se(select_by, s, training)[0] for e, s in scores.items() if s is not None}
    if se.get(best) is None:
        return None
    epochs = sorted(e for e in scores if isinstance(e, int))
    z_swing = swing_threshold(len(epochs))
    swings = []
    for a, b in zip(epochs, epochs[1:], strict=False):
        if b != a + 1 or se.get(a) is None or se.get(b) is None:
            continue
        diff, se_d = scores[b] - scores[a], math.sqrt(se[a] ** 2 + se[b] ** 2)
        if abs(diff) > z_swing * se_d:
            swings.append({"from": a, "to": b, "diff": diff, "se": se_d})
    reversals = sum((p["diff"] > 0) != (q["diff"] > 0) for p, q in zip(swings, swings[1:], strict=False))
    ups = {w["to"] for w in swings if w["diff"] > 0}
    downs = {w["from"] for w in swings if w["diff"] < 0}
    peak = best in ups and best in downs
    low = scores[best] - TIE_Z * se[best]
    ties = [e for e in epochs if e != best and scores[e] is not None and scores[e] >= low]
    return {"select_by": select_by, "epoch": best, "score": scores[best], "se": se[best],
            "n": _score_se(select_by, scores[best], training)[1], "swings": swings, "reversals": reversals,
            "peak": peak, "oscillates": reversals >= 2 or peak, "ties": ties, "scores": scores, "z_swing": z_swing}


def _score_label(select_by: str) -> str:
    m = _RECALL.match(select_by)
    if m:
        return f"val recall of '{m.group(1)}'"
    return {"val_acc": "val accuracy", "val_auc": "val AUC"}.get(select_by, select_by)


def _epoch_list(epochs: list[int]) -> str:
    shown = ", ".join(map(str, epochs[:8])) + (f" and {len(epochs) - 8} more" if len(epochs) > 8 else "")
    return f"epoch{'s' if len(epochs) > 1 else ''} {shown}"


def _selection_noise(name: str, entry: dict) -> list[dict]:
    """A warning when the selected epoch sits on a curve that swings beyond its noise; else an info on ties."""
    ckpt = entry.get("checkpoint") or {}
    training = ckpt.get("training")
    r = selection_noise(training, ckpt.get("history"))
    if r is None or not (r["oscillates"] or r["ties"]):
        return []
    label = _score_label(r["select_by"])
    head = (f"{name}'s selected epoch {r['epoch']} ({label} {r['score']:.2f}, standard error {r['se']:.2f} "
            f"with {r['n']} validation images)")
    tie_text = ""
    if r["ties"]:
        vals = [r["scores"][e] for e in r["ties"]]
        rng = f"{min(vals):.2f}" if len(vals) == 1 else f"{min(vals):.2f}–{max(vals):.2f}"
        tie_text = (f"{_epoch_list(r['ties'])} ({rng}) reach the lower end of its 95% interval "
                    f"({r['score'] - TIE_Z * r['se']:.2f})")
    if r["oscillates"]:
        moves = ", ".join(f"{w['from']}→{w['to']} {w['diff']:+.2f}" for w in r["swings"][:6])
        more = f" and {len(r['swings']) - 6} more" if len(r["swings"]) > 6 else ""
        why = ("the selected epoch is an isolated peak" if r["peak"] and r["reversals"] < 2
               else f"the curve changes direction {r['reversals']} times")
        remedy = ("lower the learning rate or use more validation data" if training.get("ema")
                  else "consider --ema (weight averaging), a lower learning rate or more validation data")
        text = (f"{head} is not clearly better than chance fluctuations: between epochs its {label} moves by more "
                f"than {r['z_swing']:.1f} standard errors {len(r['swings'])} time{'s' if len(r['swings']) > 1 else ''} ({moves}{more}) and {why}, so which "
                f"epoch was saved is partly luck and its validation score is optimistic"
                f"{'; ' + tie_text if tie_text else ''}. Do not read much into the selected epoch; {remedy}.")
        return [_f("warning", text, name)]
    return [_f("info", f"{head} is not resolved from other epochs by this validation set: {tie_text}. Any of "
                       "them could have been selected, and the selected score, the best of several noisy ones, "
                       "is optimistic.", name)]


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
        One finding per pair of splits sharing images, in the pairs' sorted order, then the
        near-duplicates (:func:`near_duplicate_findings`) and patients (:func:`patient_findings`)
        shared between splits.
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
    return out + near_duplicate_findings(dataset) + patient_findings(dataset)


def near_duplicate_findings(dataset: dict) -> list[dict]:
    """Near-identical (re-encoded, resized, relevelled) images shared between splits.

    Pixel-identical copies are left to the duplicate findings; this counts the others. A pair
    with the evaluated split is a warning (its metrics may be optimistic), other pairs are information.

    Parameters
    ----------
    dataset : dict
        ``report.json["dataset"]`` (``near_duplicates.across`` and ``split_evaluated`` are read).

    Returns
    -------
    list of dict
    """
    near = dataset.get("near_duplicates") or {}
    evaluated = dataset.get("split_evaluated")
    out = []
    for pair, v in sorted((near.get("across") or {}).items()):
        n = int(v.get("n") or 0) - int(v.get("n_pixel_identical") or 0)
        if n <= 0:
            continue
        a, _, b = pair.partition("/")
        eg = "; ".join(f"{e['a']} ~ {e['b']}" for e in (v.get("examples") or [])[:3])
        eg = f" (e.g. {eg})" if eg else ""
        if evaluated in (a, b):
            other = b if a == evaluated else a
            out.append(_f("warning", f"{n} image(s) of '{b}' are near-identical (not pixel-identical) to images in "
                                     f"'{a}'{eg}: the evaluated '{evaluated}' split shares near-copies with "
                                     f"'{other}', so its metrics may be optimistic (leakage).", None))
        else:
            out.append(_f("info", f"{n} image(s) of '{b}' are near-identical to images in '{a}'{eg} (not the "
                                  "evaluated split; model selection may be optimistic).", None))
    return out


def patient_findings(dataset: dict) -> list[dict]:
    """Patients whose images are in two splits (hashed ids only).

    A test patient whose other images were trained on is not a new patient: every test metric
    overstates performance on new patients, so a pair with the evaluated split is an ``error``;
    between two other splits (train/val) it is a warning (model selection is optimistic).

    Parameters
    ----------
    dataset : dict
        ``report.json["dataset"]`` (``patients.across`` and ``split_evaluated`` are read).

    Returns
    -------
    list of dict
    """
    patients = dataset.get("patients") or {}
    evaluated = dataset.get("split_evaluated")
    out = []
    for pair, v in sorted((patients.get("across") or {}).items()):
        if not v.get("n"):
            continue
        a, _, b = pair.partition("/")
        shown = ", ".join((v.get("examples") or [])[:3])
        eg = f" (e.g. {shown}{' …' if v['n'] > 3 else ''})" if shown else ""
        if evaluated in (a, b):
            other = b if a == evaluated else a
            out.append(_f("error", f"{v['n']} patient(s) of the evaluated '{evaluated}' split also have images in "
                                   f"'{other}'{eg}; {v['n_samples']} image(s) of '{b}' belong to them. Metrics on "
                                   "them overstate performance on new patients (patient leakage): split by patient.",
                          None))
        else:
            out.append(_f("warning", f"{v['n']} patient(s) have images in both '{a}' and '{b}'{eg} (not the evaluated "
                                     "split; model selection may be optimistic): split by patient.", None))
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
        test split, how noisy the choice of epoch was (:func:`selection_noise`), calibration,
        undefined metrics, small classes.
    """
    name = model_entry.get("name")
    metrics = model_entry.get("metrics") or {}
    out = []
    if model_entry.get("fn_risk"):
        out += _missed_disease(name, model_entry["fn_risk"], settings)
    out += _selection(name, model_entry)
    out += _selection_noise(name, model_entry)
    out += _calibration(name, metrics)
    out += _undefined(name, metrics)
    small = sorted(c for c, e in (metrics.get("per_class") or {}).items()
                   if e.get("support") is not None and 0 < e["support"] < SMALL_SUPPORT)
    if small:
        out.append(_f("info", f"Classes with fewer than {SMALL_SUPPORT} test samples ({', '.join(small)}): "
                              "their per-class metrics have wide intervals.", name))
    return out + subgroup_findings(model_entry) + patient_level_findings(model_entry)


# Subgroup metrics in words, and whether a higher value is worse.
_SUBGROUP_WORDS = {"recall": "Recall (sensitivity)", "specificity": "Specificity", "ppv": "PPV", "npv": "NPV",
                   "auc": "AUC (disease vs healthy)", "missed_disease_rate": "Missed-disease rate",
                   "ece": "Calibration error (ECE)"}
_HIGHER_IS_WORSE = frozenset({"missed_disease_rate", "ece"})


def _num(x: float) -> str:
    return f"{x:.2f}"


def _holm(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def subgroup_findings(model_entry: dict) -> list[dict]:
    """Subgroups where the model does significantly worse than on the rest, and groups too small to judge.

    A gap (group - every other sample) is a warning only when its Holm-adjusted p-value is below
    :data:`ALPHA` and it points the worse way (lower recall, higher missed-disease rate ...): the
    rest doing worse shows up as its own group's gap, so each disparity is said once per group.

    Parameters
    ----------
    model_entry : dict
        One entry of ``report.json["models"]``; ``subgroups`` (the dict of
        :func:`medaudit.metrics.subgroups.subgroup_metrics`) is read.

    Returns
    -------
    list of dict
        Warnings in column, group and metric order, then one ``info`` per column with groups
        too small to estimate some values.
    """
    sub = model_entry.get("subgroups")
    name = model_entry.get("name")
    if not sub or not sub.get("columns"):
        return []
    unit = "patients" if (sub.get("settings") or {}).get("clusters") else "images"
    min_n = (sub.get("settings") or {}).get("min_group_n")
    out, small = [], []
    for col, block in sub["columns"].items():
        too_few = []
        for label, g in block["groups"].items():
            for metric, gap in (g.get("gap") or {}).items():
                p, diff = gap.get("p_adjusted"), gap.get("diff")
                if p is None or diff is None or p >= ALPHA or gap.get("ci_low") is None:
                    continue
                worse = diff > 0 if metric in _HIGHER_IS_WORSE else diff < 0
                if not worse:
                    continue
                lo, hi = _ci_of_gap(gap)
                direction = "higher" if diff > 0 else "lower"
                count = f"{g['n']} images" + (f", {g['n_patients']} patients" if g.get("n_patients") is not None else "")
                out.append(_f("warning", f"{_SUBGROUP_WORDS.get(metric, metric)} is {direction} for {col} = {label} "
                                         f"than for the other samples by {_num(abs(diff))}, 95% CI {_num(lo)}–{_num(hi)}, "
                                         f"Holm p {_holm(p)} ({count}).", name))
            if any(isinstance(v, dict) and v.get("too_few") for v in g.values()):
                too_few.append(label)
        if too_few:
            small.append(_f("info", f"{col}: group(s) {', '.join(too_few)} have too few {unit} to estimate some "
                                    f"metrics (fewer than min_group_n={min_n}); those values are left out, not "
                                    "shown as numbers.", name))
    return out + small


def patient_level_findings(model_entry: dict) -> list[dict]:
    """Patients left out of the patient-level metrics (their images disagree on the class)."""
    pl = model_entry.get("patient_level") or {}
    ex = pl.get("excluded") or {}
    if not pl.get("available") or not ex.get("n_patients"):
        return []
    return [_f("info", f"Patient-level metrics leave out {ex['n_patients']} patient(s) ({ex['n_images']} images): "
                       f"{ex['reason']}.", model_entry.get("name"))]


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
