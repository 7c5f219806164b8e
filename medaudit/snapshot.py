"""The snapshot contract (``report.json``, docs/report-schema.md): its version, its reader, its views.

``medaudit report`` writes a snapshot; ``medaudit render`` and ``medaudit gate`` read one and need
nothing else. This module is the one place that knows which versions are readable and where a
version keeps what: :mod:`medaudit.audit` stamps :data:`SCHEMA_VERSION`, the report writer, the
renderer and the gates read through :func:`load_snapshot` and the ``measured_*`` views. It imports
nothing of medaudit but :mod:`medaudit.errors`, so the gate stays free of models and plotting.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from medaudit.errors import MedauditError
from medaudit.fileio import require_regular_file

# 2.0: the measurements of the machine (inference device/time/cache hit, efficiency) moved into
# `run`, so everything else is a pure function of the predictions. 1.0 snapshots still render.
SCHEMA_VERSION = "2.0"
# Major versions read; minor versions only add keys (docs/report-schema.md, "Compatibility").
READABLE_MAJORS = ("1", "2")

_WRITTEN_BY = "pass the report.json written by `medaudit report`"

# The range of each metric's value and bounds (the gate's threshold check reads it too).
# Rates and probabilities-type scores lie in [0, 1]; chance-corrected agreement in [-1, 1];
# Brier in [0, 2] (its multiclass form sums over classes). Not listed, hence unbounded here:
# counts (checked as counts), and whatever a newer snapshot adds (only checked to be finite
# numbers with ordered bounds). Differences of two rates (paired comparisons) lie in [-1, 1].
_UNIT = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall",
         "macro_specificity", "weighted_precision", "weighted_recall", "auc_macro", "auc_micro", "ap_macro",
         "ece", "missed_disease_rate", "precision", "recall", "specificity", "npv", "f1", "auc", "ap",
         "sensitivity")
METRIC_RANGES: dict[str, tuple[float, float]] = {
    **dict.fromkeys(_UNIT, (0.0, 1.0)), "kappa": (-1.0, 1.0), "kappa_quadratic": (-1.0, 1.0),
    "mcc": (-1.0, 1.0), "brier": (0.0, 2.0),
    # models[i].cam: localisation against lesion masks, and the predicted-class probability the
    # faithfulness check removes ("probability change": [-1, 1]); medaudit.explain.evidence.
    "pointing_game": (0.0, 1.0), "energy_inside": (0.0, 1.0), "probability": (0.0, 1.0)}
# Float32 sums leave ~1e-7 of rounding in a bootstrap bound; a tampered value is far outside.
_RANGE_TOL = 1e-6


def check_snapshot(data: object, source: str, *, require_models: bool = True) -> None:
    """Raise unless ``data`` is a snapshot of a readable version (and, by default, lists models).

    Parameters
    ----------
    data : object
        A parsed ``report.json``.
    source : str
        What the error messages call it: the file, or "report" / "baseline" for a dict.
    require_models : bool
        Also check what evaluating a snapshot needs: a non-empty ``models`` list whose
        entries have a ``name`` (unique) and a ``metrics`` object with ``per_class`` rows.
        A snapshot written by ``medaudit report`` always has them; renderers pass False
        and show a missing block as "not available".

    Raises
    ------
    MedauditError
        Naming ``source`` and what is wrong; for a number out of its range (a recall of 5.0,
        a negative count, ``ci_low > ci_high``, ``"NaN"`` or NaN) the key, as
        ``models[0].metrics.per_class["no tumor"].recall.value``.
    """
    if not isinstance(data, dict):
        raise MedauditError(f"{source}: not a medaudit report.json (top level is not an object)")
    version = data.get("schema_version")
    if version is None:
        raise MedauditError(f"{source}: no schema_version; {_WRITTEN_BY}")
    if str(version).split(".")[0] not in READABLE_MAJORS:
        raise MedauditError(f"{source}: schema_version {version!r} is not supported (this medaudit reads "
                            f"{' and '.join(m + '.x' for m in READABLE_MAJORS)}); re-create the report "
                            "with this version")
    if require_models:
        _check_models(data.get("models"), source)
    _check_values(data, source)


def _check_models(models: object, source: str) -> None:
    if not isinstance(models, list) or not models:
        raise MedauditError(f"{source}: 'models' is missing or empty")
    names = []
    for i, m in enumerate(models):
        if not (isinstance(m, dict) and isinstance(m.get("name"), str) and isinstance(m.get("metrics"), dict)
                and isinstance(m["metrics"].get("per_class") or {}, dict)
                and all(isinstance(row, dict) for row in (m["metrics"].get("per_class") or {}).values())):
            raise MedauditError(f"{source}: models[{i}] needs a 'name' and a 'metrics' object with "
                                "per_class rows; the snapshot is malformed")
        names.append(m["name"])
    if len(set(names)) != len(names):
        raise MedauditError(f"{source}: model names are not unique: {names}")


# -- value checks: a snapshot that was edited or corrupted is refused, not rendered or gated


class _Where:
    """A key path in the snapshot, written the way a reader finds it in the JSON."""

    _PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

    def __init__(self, source: str, parts: tuple[str, ...] = ()) -> None:
        self.source, self.parts = source, parts

    def __truediv__(self, key: object) -> _Where:
        if isinstance(key, int):
            part = f"[{key}]"
        elif isinstance(key, str) and self._PLAIN.fullmatch(key):
            part = f".{key}"
        else:
            part = f"[{json.dumps(key, ensure_ascii=False)}]"
        return _Where(self.source, (*self.parts, part))

    def fail(self, problem: str) -> MedauditError:
        return MedauditError(f"{self.source}: {''.join(self.parts).lstrip('.')} {problem}; the snapshot was edited "
                             "or is corrupt, re-create it with `medaudit report`")


def _finite(x: object, where: _Where) -> float | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise where.fail(f"= {x!r} is not a number (null marks an undefined value)")
    if not math.isfinite(x):
        raise where.fail(f"= {x!r} is not a finite number (null marks an undefined value)")
    return float(x)


def _count(x: object, where: _Where, *, optional: bool = True) -> int | None:
    if x is None and optional:
        return None
    if isinstance(x, bool) or not isinstance(x, int) or x < 0:
        raise where.fail(f"= {x!r} is not a count (a whole number >= 0)")
    return x


def _in_range(x: float | None, bounds: tuple[float, float] | None, where: _Where, what: str) -> None:
    if x is None or bounds is None:
        return
    lo, hi = bounds
    if not lo - _RANGE_TOL <= x <= hi + _RANGE_TOL:
        raise where.fail(f"= {x!r} is outside [{lo:g}, {hi:g}], the range of {what}")


def _check_value_object(v: dict, where: _Where, key: str) -> None:
    """A metric value object: finite numbers in the metric's range, ordered bounds, consistent counts."""
    bounds = _bounds(key)
    value = _finite(v.get("value"), where / "value")
    low, high = _finite(v.get("ci_low"), where / "ci_low"), _finite(v.get("ci_high"), where / "ci_high")
    for name, x in (("value", value), ("ci_low", low), ("ci_high", high)):
        _in_range(x, bounds, where / name, key)
    if low is not None and high is not None and low > high + 1e-9 * max(1.0, abs(high)):
        raise where.fail(f"has ci_low {low!r} > ci_high {high!r}")
    k, n = _count(v.get("k"), where / "k"), _count(v.get("n"), where / "n")
    if k is not None and n is not None and k > n:
        raise where.fail(f"has k = {k} > n = {n}")
    if v.get("ci_method") == "wilson" and value is not None:
        # A Wilson interval always holds its proportion, and the proportion is k / n.
        if k is not None and n and abs(value - k / n) > 1e-9:
            raise where.fail(f"has value {value!r} but k / n = {k}/{n}")
        if low is not None and high is not None and not low - 1e-9 <= value <= high + 1e-9:
            raise where.fail(f"has value {value!r} outside its Wilson interval [{low!r}, {high!r}]")
    defined, total = v.get("classes_defined"), v.get("classes_total")
    if defined is not None or total is not None:
        defined, total = _count(defined, where / "classes_defined"), _count(total, where / "classes_total")
        if defined is not None and total is not None and defined > total:
            raise where.fail(f"has classes_defined {defined} > classes_total {total}")


def _is_value_object(x: object) -> bool:
    return isinstance(x, dict) and "value" in x and ("ci_low" in x or "ci_high" in x)


# A ``change`` (after - before, e.g. of the Brier score under recalibration) is a difference of two
# values of its metric: [lo - hi, hi - lo], so it may be negative.
_CHANGE = " change"


def _bounds(key: str) -> tuple[float, float] | None:
    if key.endswith(_CHANGE) and key[:-len(_CHANGE)] in METRIC_RANGES:
        lo, hi = METRIC_RANGES[key[:-len(_CHANGE)]]
        return lo - hi, hi - lo
    return METRIC_RANGES.get(key)


def _walk_values(x: object, where: _Where, key: str) -> None:
    """Every value object under ``x``; ``key`` is the name its range is looked up by."""
    if _is_value_object(x):
        _check_value_object(x, where, key)
    elif isinstance(x, dict):
        for k, v in x.items():
            child = k if k in METRIC_RANGES else key + _CHANGE if k == "change" and key in METRIC_RANGES else key
            _walk_values(v, where / k, child)
    elif isinstance(x, list):
        for i, v in enumerate(x):
            _walk_values(v, where / i, key)


def _check_metrics(metrics: dict, where: _Where) -> None:
    _count(metrics.get("n"), where / "n")
    per_class = metrics.get("per_class")
    for name, row in (per_class.items() if isinstance(per_class, dict) else ()):
        if isinstance(row, dict):
            _count(row.get("support"), where / "per_class" / name / "support")
    cm = metrics.get("confusion_matrix")
    counts = cm.get("counts") if isinstance(cm, dict) else None
    for i, row in enumerate(counts if isinstance(counts, list) else ()):
        for j, c in enumerate(row if isinstance(row, list) else ()):
            _count(c, where / "confusion_matrix" / "counts" / i / j, optional=False)
    cal = metrics.get("calibration")
    for i, c in enumerate((cal.get("bin_count") or []) if isinstance(cal, dict) else ()):
        _count(c, where / "calibration" / "bin_count" / i, optional=False)
    for k, v in metrics.items():
        if k not in ("curves", "calibration", "confusion_matrix"):
            _walk_values(v, where / k, k)


def _check_comparisons(comparisons: object, where: _Where) -> None:
    pairs = comparisons.get("pairs") if isinstance(comparisons, dict) else None
    for i, pair in enumerate(pairs if isinstance(pairs, list) else ()):
        if not isinstance(pair, dict):
            continue
        at = where / "pairs" / i
        mc = pair.get("mcnemar") if isinstance(pair.get("mcnemar"), dict) else {}
        for k in ("b01", "b10", "n_discordant"):
            _count(mc.get(k), at / "mcnemar" / k)
        dl = pair.get("delong") if isinstance(pair.get("delong"), dict) else {}
        tests = [(at / "delong", dl)] + [(at / "delong" / "per_class" / c, t)
                                         for c, t in ((dl.get("per_class") or {}).items())
                                         if isinstance(t, dict)]
        for k in ("p_value", "p_mid", "p_holm"):
            _in_range(_finite(mc.get(k), at / "mcnemar" / k), (0.0, 1.0), at / "mcnemar" / k, "a p-value")
        for w, t in tests:
            for k in ("p_value", "p_holm"):
                _in_range(_finite(t.get(k), w / k), (0.0, 1.0), w / k, "a p-value")
            for k in ("diff", "ci_low", "ci_high"):
                _in_range(_finite(t.get(k), w / k), (-1.0, 1.0), w / k, "a difference of AUCs")
        _check_diffs(pair.get("bootstrap_diff"), at / "bootstrap_diff")


def _check_diffs(x: object, where: _Where) -> None:
    """Paired bootstrap differences ``{"diff", "ci_low", "ci_high"}``: of two rates, so in [-1, 1]."""
    if not isinstance(x, dict):
        return
    if "diff" in x:
        diff, low, high = (_finite(x.get(k), where / k) for k in ("diff", "ci_low", "ci_high"))
        for k, v in (("diff", diff), ("ci_low", low), ("ci_high", high)):
            _in_range(v, (-1.0, 1.0), where / k, "a difference of two rates")
        if low is not None and high is not None and low > high + 1e-9:
            raise where.fail(f"has ci_low {low!r} > ci_high {high!r}")
        return
    for k, v in x.items():
        if k != "settings":
            _check_diffs(v, where / k)


def _check_cam(cam: dict, where: _Where) -> None:
    """The value objects of a cam block: localisation rates in [0, 1], differences in [-1, 1]."""
    def rows(block):
        block = block if isinstance(block, dict) else {}
        per_class = block.get("per_class") if isinstance(block.get("per_class"), dict) else {}
        return [("overall", block.get("overall"))] + [(f"per_class/{c}", r) for c, r in per_class.items()]

    loc = cam.get("localisation")
    if isinstance(loc, dict):
        for name, row in rows(loc):
            for key in ("pointing_game", "energy_inside"):
                v = row.get(key) if isinstance(row, dict) else None
                if _is_value_object(v):
                    _check_value_object(v, where / "localisation" / name / key, key)
        paired = loc.get("paired") if isinstance(loc.get("paired"), dict) else {}
        for other, p in paired.items():
            for name, row in rows(p):
                v = row.get("energy_inside") if isinstance(row, dict) else None
                if _is_value_object(v):
                    _check_value_object(v, where / "localisation" / "paired" / other / name, "energy_inside change")
    faith = cam.get("faithfulness")
    for key in ("drop", "random_drop", "difference"):
        part = faith.get(key) if isinstance(faith, dict) else None
        for k, v in (part.items() if isinstance(part, dict) else ()):
            if _is_value_object(v):
                _check_value_object(v, where / "faithfulness" / key / k, "probability change")


def _check_values(data: dict, source: str) -> None:
    """Refuse numbers no medaudit run writes: out of range, non-finite, strings, negative counts."""
    root = _Where(source)
    models = data.get("models")
    for i, m in enumerate(models if isinstance(models, list) else ()):
        if not isinstance(m, dict):
            continue
        at = root / "models" / i
        if isinstance(m.get("metrics"), dict):
            _check_metrics(m["metrics"], at / "metrics")
        risk = m.get("fn_risk")
        if isinstance(risk, dict):
            _walk_values(risk, at / "fn_risk", "missed_disease_rate")
        for k, v in m.items():
            if k not in ("metrics", "fn_risk", "checkpoint", "cam", "predictions", "efficiency"):
                _walk_values(v, at / k, k)
        if isinstance(m.get("cam"), dict):
            _check_cam(m["cam"], at / "cam")
    _check_comparisons(data.get("comparisons"), root / "comparisons")
    _check_robustness(data.get("robustness"), root / "robustness")
    _check_external(data.get("external"), root / "external")


_ROBUST_RATES = ("accuracy", "balanced_accuracy", "missed_disease_rate", "auc", "flip_rate")


def _check_robustness(block: object, where: _Where) -> None:
    """The corruption sweep (docs/report-schema.md, "robustness"): rates in [0, 1], severities 1..5,
    drops (differences of two rates) in [-1, 1] with ordered bounds."""
    if block is None:
        return
    if not isinstance(block, dict) or not isinstance(block.get("models"), list):
        raise where.fail("is not an object with a 'models' list")
    for i, m in enumerate(block["models"]):
        at = where / "models" / i
        if not isinstance(m, dict) or not isinstance(m.get("cells"), list):
            raise at.fail("is not an object with a 'cells' list")
        for j, c in enumerate([m.get("clean")] + m["cells"]):
            cw = at / "clean" if j == 0 else at / "cells" / (j - 1)
            if not isinstance(c, dict):
                raise cw.fail("is not an object")
            if j and (isinstance(c.get("severity"), bool) or c.get("severity") not in (1, 2, 3, 4, 5)):
                raise (cw / "severity").fail(f"= {c.get('severity')!r} is not a severity (1 to 5)")
            for k in _ROBUST_RATES:
                _in_range(_finite(c.get(k), cw / k), (0.0, 1.0), cw / k, "a rate")
            for cls, v in (c.get("recall") or {}).items():
                _in_range(_finite(v, cw / "recall" / cls), (0.0, 1.0), cw / "recall" / cls, "a recall")
            drop = c.get("drop") or {}
            rows = [(cw / "drop" / "recall" / cls, v) for cls, v in (drop.get("recall") or {}).items()]
            rows += [(cw / "drop" / k, v) for k, v in drop.items() if k != "recall"]
            for w, v in rows:
                if not isinstance(v, dict):
                    raise w.fail("is not a value object")
                lo, val, hi = (_finite(v.get(k), w / k) for k in ("ci_low", "value", "ci_high"))
                for k, x in (("ci_low", lo), ("value", val), ("ci_high", hi)):
                    _in_range(x, (-1.0, 1.0), w / k, "a difference of two rates")
                if lo is not None and hi is not None and lo > hi + 1e-9:
                    raise w.fail(f"has ci_low {lo!r} > ci_high {hi!r}")


def _check_external(block: object, where: _Where) -> None:
    """External cohorts and sites (docs/report-schema.md, "External cohorts and dataset shift"):
    each cohort's metrics as ``models[i].metrics``, drops (internal - cohort) in the range of a
    difference, p-values and prevalences in [0, 1], counts whole numbers."""
    if block is None:
        return
    if not isinstance(block, dict) or not isinstance(block.get("cohorts"), list) or \
            not isinstance(block.get("sites"), list | type(None)):
        raise where.fail("is not an object with a 'cohorts' list and a 'sites' list or null")
    entries = [(where / "cohorts" / i, c) for i, c in enumerate(block["cohorts"])]
    entries += [(where / "sites" / i, c) for i, c in enumerate(block["sites"] or [])]
    for at, c in entries:
        if not (isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("models"), list)):
            raise at.fail("needs a 'name' and a 'models' list")
        _count(c.get("n"), at / "n")
        for cls, k in (c.get("class_counts") or {}).items():
            _count(k, at / "class_counts" / cls, optional=False)
        for j, m in enumerate(c["models"]):
            mw = at / "models" / j
            if not (isinstance(m, dict) and isinstance(m.get("name"), str) and isinstance(m.get("metrics"), dict)):
                raise mw.fail("needs a 'name' and a 'metrics' object")
            _check_metrics(m["metrics"], mw / "metrics")
            if isinstance(m.get("missed_disease"), dict):
                _walk_values(m["missed_disease"], mw / "missed_disease", "missed_disease_rate")
            for key, d in (m.get("drop") or {}).items():
                dw = mw / "drop" / key
                if not _is_value_object(d):
                    raise dw.fail("is not a value object")
                _check_value_object(d, dw, key + _CHANGE)
                for side in ("internal", "cohort"):
                    _in_range(_finite(d.get(side), dw / side), _bounds(key), dw / side, key)
                _in_range(_finite(d.get("p_value"), dw / "p_value"), (0.0, 1.0), dw / "p_value", "a p-value")
        shift = c.get("shift")
        if shift is None:
            continue
        sw = at / "shift"
        if not isinstance(shift, dict) or not isinstance(shift.get("verdict"), str):
            raise sw.fail("needs a 'verdict'")
        for test in ("bbsd", "mmd"):
            t = shift.get(test)
            if isinstance(t, dict):
                _in_range(_finite(t.get("p_value"), sw / test / "p_value"), (0.0, 1.0), sw / test / "p_value",
                          "a p-value")
                for cls, row in (t.get("per_class") or {}).items():
                    pw = sw / test / "per_class" / cls / "p_value"
                    _in_range(_finite((row or {}).get("p_value"), pw), (0.0, 1.0), pw, "a p-value")
        ls = shift.get("label_shift") if isinstance(shift.get("label_shift"), dict) else {}
        for key in ("prevalence", "reference_prevalence", "observed_prevalence"):
            for cls, v in (ls.get(key) or {}).items():
                _in_range(_finite(v, sw / "label_shift" / key / cls), (0.0, 1.0), sw / "label_shift" / key / cls,
                          "a prevalence")


def load_snapshot(path: str | Path, *, require_models: bool = True) -> dict:
    """Read a ``report.json`` and check it with :func:`check_snapshot`.

    Parameters
    ----------
    path : str or Path
        The snapshot file.
    require_models : bool
        See :func:`check_snapshot`; the gates keep the default, ``medaudit render`` passes False.

    Returns
    -------
    dict
        The parsed snapshot, as written.

    Raises
    ------
    MedauditError
        Naming ``path``: missing or unreadable file, invalid JSON, unreadable version, malformed models.
    """
    p = Path(path)
    if p.exists():
        require_regular_file(p)  # a FIFO would block the read forever
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MedauditError(f"{p}: file not found; {_WRITTEN_BY}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MedauditError(f"{p}: cannot read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MedauditError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno}); {_WRITTEN_BY}") from None
    check_snapshot(data, str(p), require_models=require_models)
    return data


def measured_models(snapshot: dict) -> list[dict]:
    """``snapshot["models"]`` with each model's measurements from ``run`` merged back in.

    Parameters
    ----------
    snapshot : dict
        A schema 1.x or 2.x snapshot; not modified.

    Returns
    -------
    list of dict, one per model
        Shallow copies of ``models[i]`` carrying ``efficiency`` (``run.efficiency.models[name]``,
        or where schema 1.0 kept it, ``models[i].efficiency``; None when not measured) and
        ``predictions`` extended by ``run.predictions[name]`` (device, wall_s, cached): the
        view the report sections read.
    """
    run = snapshot.get("run") or {}
    effs = (run.get("efficiency") or {}).get("models") or {}
    passes = run.get("predictions") or {}
    out = []
    for m in snapshot.get("models") or []:
        name = m.get("name")
        out.append({**m, "efficiency": effs.get(name, m.get("efficiency")),  # 1.0 kept it in the model
                    "predictions": {**(m.get("predictions") or {}), **(passes.get(name) or {})}})
    return out


def measured_efficiency(snapshot: dict) -> dict | None:
    """The shared efficiency block (environment, paired ratios) of a snapshot.

    Parameters
    ----------
    snapshot : dict
        A schema 1.x or 2.x snapshot.

    Returns
    -------
    dict or None
        ``run.efficiency`` (2.0) or the top-level ``efficiency`` (1.0); None when not measured.
    """
    return (snapshot.get("run") or {}).get("efficiency") or snapshot.get("efficiency")


# The note medaudit.metrics.summary writes on an average that skips classes (all versions so far).
_PARTIAL_NOTE = re.compile(r"over (\d+) of (\d+) classes")


def partial_average(entry: dict | None) -> tuple[int, int, str | None] | None:
    """Whether a value object is an average over only some of the classes, and over how many.

    Parameters
    ----------
    entry : dict or None
        A metric value object (``{"value", "ci_low", ...}``) of a snapshot.

    Returns
    -------
    (defined, total, undefined_for) or None
        None for a full average or a metric that is no average. Else the numbers of classes the
        average covers and has, and the classes left out in words (None when not known).

    Notes
    -----
    Read from ``classes_defined``/``classes_total``. A snapshot written before those keys (new
    within 2.0) has only the ``note`` "over k of c classes; undefined for: ...", which medaudit
    has written in that form on every partial average since averages skip classes: it is
    parsed. With neither, the average counts as full.
    """
    if not isinstance(entry, dict):
        return None
    note = entry.get("note") if isinstance(entry.get("note"), str) else None
    left_out = note.split("undefined for:", 1)[1].strip() if note and "undefined for:" in note else None
    defined, total = entry.get("classes_defined"), entry.get("classes_total")
    if isinstance(defined, int) and isinstance(total, int):
        return None if defined >= total else (defined, total, left_out)
    if note is None:
        return None
    m = _PARTIAL_NOTE.match(note)
    if m is None:
        return None
    defined, total = int(m.group(1)), int(m.group(2))
    return None if defined >= total else (defined, total, left_out)
