"""CI regression gates on a ``report.json`` snapshot (see ``docs/gates.md``).

A requirement is ``[MODEL:]METRIC[CLASS] OP VALUE`` (``OP`` in ``>= > <= <``), e.g.
``recall[glioma]>=0.95``, ``resnet18:auc>=0.9``, ``missed_disease_rate<=2%``. A baseline
check is ``[MODEL:]METRIC[CLASS]=MAX_DROP`` against an older snapshot. Every check yields
one :class:`GateResult` per model (and per class when it expands over classes); an
undefined value never passes. Everything here is a pure function of the snapshot dicts.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from medaudit.errors import MedauditError
from medaudit.gate.clinical import FORMS as CLINICAL_FORMS
from medaudit.gate.clinical import model_slots, net_benefit_slot, prevalence_slot
from medaudit.gate.parse import (
    CLASS_ALIASES,
    GLOBAL_ALIASES,
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    Gate,
    MaxDrop,
    parse_gate,
    parse_max_drop,
)
from medaudit.gate.result import GateReport, GateResult
from medaudit.gate.robustness import slots as robustness_slots
from medaudit.gate.subgroups import BOUND_FIELD
from medaudit.gate.subgroups import slots as subgroup_slots
from medaudit.snapshot import check_snapshot, partial_average

ON_CHOICES = ("point", "lower", "upper", "conservative")
OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
_STRUCTURAL = frozenset({"n", "per_class", "confusion_matrix", "curves", "calibration", "support"})
_FIELD = BOUND_FIELD


@dataclass(frozen=True)
class _Slot:
    """A concrete number in a model's metrics block: key, class, value object (None: n/a)."""

    metric: str
    cls: str | None
    entry: dict | None

    @property
    def label(self) -> str:
        return self.metric if self.cls is None else f"{self.metric}[{self.cls}]"


def _value_keys(block: dict) -> list[str]:
    return sorted(k for k, v in block.items()
                  if k not in _STRUCTURAL and (v is None or (isinstance(v, dict) and "value" in v)))


def _class_key(row: dict, metric: str, where: str) -> str:
    for key in (metric, CLASS_ALIASES.get(metric)):
        if key in _value_keys(row):
            return key
    raise MedauditError(f"{where}: unknown per-class metric {metric!r}; valid: {', '.join(_value_keys(row))}")


def _resolve(model: dict, metric: str, cls: str | None, every: bool, where: str) -> list[_Slot]:
    """Map a parsed target onto slots of one model; MedauditError for unknown names."""
    metrics = model["metrics"]
    per_class = metrics.get("per_class") or {}
    where = f"{where} (model {model['name']!r})"
    if cls is not None:
        if cls not in per_class:
            raise MedauditError(f"{where}: unknown class {cls!r}; valid: {', '.join(map(repr, per_class))}")
        key = _class_key(per_class[cls], metric, where)
        return [_Slot(key, cls, per_class[cls][key])]
    if not every:
        for key in (metric, GLOBAL_ALIASES.get(metric)):
            if key in _value_keys(metrics):
                return [_Slot(key, None, metrics[key])]
        per_class_names = set().union(*(_value_keys(r) for r in per_class.values())) | set(CLASS_ALIASES)
        if metric not in per_class_names:
            valid = sorted(set(_value_keys(metrics)) | set(GLOBAL_ALIASES) | per_class_names)
            raise MedauditError(f"{where}: unknown metric {metric!r}; valid: {', '.join(valid)}; "
                                f"clinical use: {', '.join(CLINICAL_FORMS)}")
    if not per_class:
        raise MedauditError(f"{where}: {metric!r} is a per-class metric but the snapshot has no per_class block")
    # Expanding over classes skips entries that are null (not applicable, e.g. the
    # missed-disease rate of a negative class); a null *value* inside an entry still fails.
    slots = [_Slot(key, c, row[key]) for c, row in per_class.items() for key in [_class_key(row, metric, where)]]
    applicable = [s for s in slots if s.entry is not None]
    return applicable or slots


def _number(x: object, what: str) -> float | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise MedauditError(f"{what}: expected a number or null, got {x!r}; the snapshot is malformed")
    return None if math.isnan(x) else float(x)


def _partial_text(slot: _Slot, entry: dict) -> str | None:
    """"macro_f1 averages 1 of 2 classes (undefined for: pos)" for a partial average, else None."""
    partial = partial_average(entry)
    if partial is None:
        return None
    defined, total, left_out = partial
    return f"{slot.label} averages {defined} of {total} classes" + (f" (undefined for: {left_out})" if left_out else "")


def _read(slot: _Slot, bound: str, where: str, allow_partial: bool = False,
          accept_hint: str = "--allow-partial to accept") -> tuple[float | None, str | None, dict]:
    """(compared value, reason if undefined, fields for the result) for one slot and bound.

    An average over only some classes is undefined for a gate unless ``allow_partial``: a
    macro F1 of 1.0 over the one class present is not a macro F1 of the model. Accepted, it
    still carries its ``note``.
    """
    e = slot.entry
    if e is None:
        return None, f"{slot.label} is not computed for this model (null in the snapshot)", {}
    what = f"{where}: {slot.label}"
    partial = _partial_text(slot, e)
    info = {"point": _number(e.get("value"), what), "ci_low": _number(e.get("ci_low"), what),
            "ci_high": _number(e.get("ci_high"), what), "ci_method": e.get("ci_method"),
            "k": e.get("k"), "n": e.get("n"), "note": partial}
    if info["point"] is None:
        return None, e.get("reason") or f"{slot.label} is undefined (null)", info
    if partial is not None and not allow_partial:
        return None, f"undefined: {partial}; {accept_hint}", info
    value = info["point"] if bound == "point" else info[_FIELD[bound]]
    if value is None:
        why = e.get("ci_reason")
        return None, (f"{slot.label} has no confidence interval" + (f" ({why})" if why else "")
                      + f", so its {bound} bound cannot be checked; "
                      + ("use --on point to gate the estimate alone" if why else
                         "use --on point or recompute the report with intervals")), info
    return value, None, info


def _bound(on: str, higher_side: bool) -> str:
    """``conservative`` compares the bound least favourable to passing."""
    if on != "conservative":
        return on
    return "lower" if higher_side else "upper"


def _models(snapshot: dict, name: str | None, where: str) -> list[dict]:
    models = snapshot["models"]
    if name is None:
        return models
    chosen = [m for m in models if m["name"] == name]
    if not chosen:
        raise MedauditError(f"{where}: unknown model {name!r}; valid: {', '.join(repr(m['name']) for m in models)}")
    return chosen


def _clinical_slots(gate: Gate, snapshot: dict, model: dict, where: str) -> list[tuple[_Slot, str | None]]:
    """The slots of a clinical-use check (medaudit.gate.clinical knows where each number lives)."""
    if gate.metric == "net_benefit":
        found = [net_benefit_slot(snapshot, model, gate.at, gate.versus, where)]
    elif gate.prevalence is not None:
        found = [prevalence_slot(snapshot, model, gate.metric, gate.cls, gate.every_class, gate.prevalence,
                                 gate.rule, where)]
    else:
        found = model_slots(snapshot, model, gate.metric, gate.cls, gate.every_class, where)
    return [(_Slot(label, None, entry), note or None) for label, entry, note in found]


def _require(gate: Gate, snapshot: dict, on: str, option: str, allow_partial: bool) -> list[GateResult]:
    out = []
    where = f"{option} {gate.text!r}"
    # `report --gate` has no --allow-partial of its own: name the command that has.
    hint = "--allow-partial to accept" if option == "--require" else "`medaudit gate --allow-partial` accepts it"
    bound = _bound(on, gate.op in (">=", ">"))
    for model in _models(snapshot, gate.model, where):
        if gate.robustness:
            slots = [(_Slot(label, None, entry), note) for label, entry, note in
                     robustness_slots(snapshot, model, gate, bound, where)]
        elif gate.subgroup:
            groups_hint = ("--allow-partial leaves them out" if option == "--require"
                           else "`medaudit gate --allow-partial` leaves them out")
            slots = [(_Slot(label, None, entry), note or None) for label, entry, note in
                     subgroup_slots(snapshot, model, gate, bound, allow_partial, groups_hint, where)]
        elif gate.clinical:
            slots = _clinical_slots(gate, snapshot, model, where)
        else:
            slots = [(s, None) for s in _resolve(model, gate.metric, gate.cls, gate.every_class, where)]
        for slot, note in slots:
            value, reason, info = _read(slot, bound, where, allow_partial, hint)
            # What a clinical value is of (operating point, method, prevalence) travels as its note.
            info["note"] = info.get("note") or note
            passed = value is not None and OPS[gate.op](value, gate.threshold)
            out.append(GateResult(gate.text, "require", model["name"], slot.label, bound, value, gate.op,
                                  gate.threshold, passed, reason, **info))
    return out


def _direction(metric: str, where: str) -> bool:
    """True when higher is better; MedauditError for a metric of unknown direction."""
    if metric in HIGHER_IS_BETTER:
        return True
    if metric in LOWER_IS_BETTER:
        return False
    raise MedauditError(f"{where}: no known direction for {metric!r}, so a drop is undefined")


def _match_baseline(snapshot: dict, baseline: dict, notes: list[str]) -> dict[str, dict]:
    """Baseline models by name; class sets, task and model names must agree (else MedauditError)."""
    new = {m["name"]: m for m in snapshot["models"]}
    old = {m["name"]: m for m in baseline["models"]}
    if set(new) != set(old):
        raise MedauditError(f"--baseline: model names differ (report: {sorted(new)}, baseline: {sorted(old)}); "
                            "gate against a baseline made with the same model names")
    nd, od = snapshot.get("dataset") or {}, baseline.get("dataset") or {}
    if nd.get("task") != od.get("task"):
        raise MedauditError(f"--baseline: task differs (report: {nd.get('task')}, baseline: {od.get('task')})")
    for name, m in new.items():
        a, b = set(m["metrics"].get("per_class") or {}), set(old[name]["metrics"].get("per_class") or {})
        if a != b:
            raise MedauditError(f"--baseline: classes of model {name!r} differ (only in report: {sorted(a - b)}, "
                                f"only in baseline: {sorted(b - a)})")
    if nd.get("fingerprint") != od.get("fingerprint"):
        notes.append("the baseline was computed on a different dataset (fingerprint differs); "
                     "drops mix model change and test-set change")
    return old


def _drop(spec: MaxDrop, snapshot: dict, old: dict[str, dict], on: str, allow_partial: bool) -> list[GateResult]:
    out = []
    where = f"--max-drop {spec.text!r}"
    for model in _models(snapshot, spec.model, where):
        for slot in _resolve(model, spec.metric, spec.cls, spec.every_class, where):
            higher = _direction(slot.metric, where)
            base_metrics = old[model["name"]]["metrics"]
            block = base_metrics if slot.cls is None else (base_metrics.get("per_class") or {}).get(slot.cls, {})
            if slot.metric not in block:
                raise MedauditError(f"{where}: the baseline has no {slot.label} for model {model['name']!r}")
            bound = _bound(on, higher)
            value, reason, info = _read(slot, bound, where, allow_partial)
            base, base_reason, base_info = _read(_Slot(slot.metric, slot.cls, block[slot.metric]), "point",
                                                 "--baseline", allow_partial)
            if base_info.get("note") and not info.get("note"):
                info["note"] = f"baseline: {base_info['note']}"
            threshold = None if base is None else (base - spec.max_drop if higher else base + spec.max_drop)
            passed = False
            if value is not None and base is None:
                reason = f"baseline {base_reason}"
            elif value is not None:
                drop = base - value if higher else value - base
                passed = drop <= spec.max_drop + 1e-12  # tolerance for the subtraction only
            out.append(GateResult(spec.text, "max_drop", model["name"], slot.label, bound, value,
                                  ">=" if higher else "<=", threshold, passed, reason, **info,
                                  baseline=base, max_drop=spec.max_drop))
    return out


def run_gates(snapshot: dict, requires: list[str] | tuple[str, ...] = (), *, on: str = "point",
              baseline: dict | None = None, max_drops: list[str] | tuple[str, ...] = (),
              option: str = "--require", allow_partial: bool = False) -> GateReport:
    """Evaluate requirements (and baseline drops) on a snapshot.

    Parameters
    ----------
    snapshot, baseline : dict
        Parsed ``report.json`` (schema 1.x or 2.x, see :func:`medaudit.snapshot.load_snapshot`);
        ``baseline`` only with ``max_drops``.
    requires : list of str
        Expressions ``[MODEL:]METRIC[CLASS] OP VALUE``; the clinical-use and subgroup forms
        (``recall{site=B}>=0.9``, ``min_group(recall, site)>=0.85``, ``max_gap(recall, sex)<=0.05``)
        of ``docs/gates.md``.
    on : {"point", "lower", "upper", "conservative"}
        What of the new snapshot is compared: the estimate, a 95% CI bound, or the bound
        least favourable to passing. Baseline values are always point estimates.
    max_drops : list of str
        ``[MODEL:]METRIC[CLASS]=MAX_DROP``; for lower-is-better metrics (ece, brier,
        missed_disease_rate) a drop is an increase.
    option : str
        Option name used in error messages (the ``report --gate`` command passes its own).
    allow_partial : bool
        Compare averages taken over only some classes (``classes_defined < classes_total``,
        e.g. a macro F1 on a split without positives) on their value, and let
        ``min_group``/``max_group``/``max_gap`` leave out groups without a value; by default
        both are undefined and fail. Either way the result carries the note.

    Returns
    -------
    GateReport
        One :class:`GateResult` per model (and class) a check expands to, requirements
        first, then the drops; ``passed`` only if there is a result and every one passed.

    Raises
    ------
    MedauditError
        Bad input: unparsable expression, unknown model/class/metric/subgroup column/group, a
        subgroup check on a report without subgroups, schema mismatch,
        baseline models or classes that do not match, nothing to check.
    """
    check_snapshot(snapshot, "report")
    if on not in ON_CHOICES:
        raise MedauditError(f"--on {on!r}: choose one of {', '.join(ON_CHOICES)}")
    gates = [parse_gate(t, option) for t in requires]
    drops = [parse_max_drop(t) for t in max_drops]
    if not gates and not drops:
        raise MedauditError(f"nothing to check: give {option} EXPR and/or --baseline OLD.json with --max-drop SPEC")
    if drops and baseline is None:
        raise MedauditError("--max-drop needs --baseline OLD.json")
    if baseline is not None and not drops:
        raise MedauditError("--baseline needs at least one --max-drop SPEC, e.g. --max-drop recall=0.02")
    results = [r for g in gates for r in _require(g, snapshot, on, option, allow_partial)]
    notes: list[str] = []
    if drops:
        check_snapshot(baseline, "baseline")
        old = _match_baseline(snapshot, baseline, notes)
        results += [r for d in drops for r in _drop(d, snapshot, old, on, allow_partial)]
    return GateReport(results, on, notes)
