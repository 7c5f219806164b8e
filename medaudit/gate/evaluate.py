"""CI regression gates on a ``report.json`` snapshot (see ``docs/gates.md``).

A requirement is ``[MODEL:]METRIC[CLASS] OP VALUE`` (``OP`` in ``>= > <= <``), e.g.
``recall[glioma]>=0.95``, ``resnet18:auc>=0.9``, ``missed_disease_rate<=2%``. A baseline
check is ``[MODEL:]METRIC[CLASS]=MAX_DROP`` against an older snapshot. Every check yields
one :class:`GateResult` per model (and per class when it expands over classes); an
undefined value never passes. Everything here is a pure function of the snapshot dicts.
"""

from __future__ import annotations

import json
import math
import operator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from medaudit.errors import MedauditError
from medaudit.gate.output import format_table, write_json, write_junit, write_markdown
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

__all__ = [
    "Gate", "MaxDrop", "GateResult", "GateReport", "parse_gate", "parse_max_drop", "run_gates",
    "load_snapshot", "check_snapshot", "format_table", "write_junit", "write_markdown", "write_json",
]

# Major versions read (docs/report-schema.md: minor versions only add keys). 2.0 moved the
# measurements into `run`; gates read none of them.
SUPPORTED_SCHEMA_MAJORS = ("1", "2")
ON_CHOICES = ("point", "lower", "upper", "conservative")
OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
_STRUCTURAL = frozenset({"n", "per_class", "confusion_matrix", "curves", "calibration", "support"})
_FIELD = {"point": "value", "lower": "ci_low", "upper": "ci_high"}

# ---------------------------------------------------------------- snapshots


def check_snapshot(data: object, source: str) -> None:
    """Raise MedauditError unless ``data`` looks like a schema "1.0"/"2.0" snapshot with models."""
    if not isinstance(data, dict):
        raise MedauditError(f"{source}: not a medaudit report.json (top level is not an object)")
    version = data.get("schema_version")
    if version is None:
        raise MedauditError(f"{source}: no schema_version; pass the report.json written by `medaudit report`")
    if str(version).split(".")[0] not in SUPPORTED_SCHEMA_MAJORS:
        raise MedauditError(f"{source}: schema_version {version!r} is not supported (this medaudit reads "
                            f"{' and '.join(m + '.x' for m in SUPPORTED_SCHEMA_MAJORS)}); re-create the report "
                            "with this version")
    models = data.get("models")
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


def load_snapshot(path: str | Path) -> dict:
    """Read and validate a ``report.json`` (schema_version 1.x or 2.x); MedauditError otherwise."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MedauditError(f"{p}: file not found; pass the report.json written by `medaudit report`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MedauditError(f"{p}: cannot read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MedauditError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno}); "
                            "pass the report.json written by `medaudit report`") from None
    check_snapshot(data, str(p))
    return data


# ---------------------------------------------------------------- evaluation


@dataclass
class GateResult:
    """One check of one number of one model.

    ``value`` is the number compared (the point estimate or the CI bound named by ``on``);
    None when undefined, and then ``passed`` is False and ``reason`` says why. For
    ``kind == "max_drop"`` the threshold is ``baseline - max_drop`` (``op`` ">=") or, for
    lower-is-better metrics, ``baseline + max_drop`` (``op`` "<=")."""

    gate: str
    kind: str  # "require" | "max_drop"
    model: str
    metric: str  # resolved snapshot key, "recall[glioma]" for a class
    on: str  # bound compared: point | lower | upper
    value: float | None
    op: str
    threshold: float | None
    passed: bool
    reason: str | None = None
    point: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    ci_method: str | None = None
    k: int | None = None
    n: int | None = None
    baseline: float | None = None
    max_drop: float | None = None


@dataclass
class GateReport:
    """All results of one ``run_gates`` call; passes only if there is a result and all pass."""

    results: list[GateResult]
    on: str
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def n_failed(self) -> int:
        return sum(not r.passed for r in self.results)

    def to_dict(self) -> dict:
        return {"format": "medaudit.gate.evaluate/1", "passed": self.passed, "on": self.on, "n_checks": len(self.results),
                "n_failed": self.n_failed, "notes": list(self.notes), "results": [asdict(r) for r in self.results]}


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
            raise MedauditError(f"{where}: unknown metric {metric!r}; valid: {', '.join(valid)}")
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


def _read(slot: _Slot, bound: str, where: str) -> tuple[float | None, str | None, dict]:
    """(compared value, reason if undefined, fields for the result) for one slot and bound."""
    e = slot.entry
    if e is None:
        return None, f"{slot.label} is not computed for this model (null in the snapshot)", {}
    what = f"{where}: {slot.label}"
    info = {"point": _number(e.get("value"), what), "ci_low": _number(e.get("ci_low"), what),
            "ci_high": _number(e.get("ci_high"), what), "ci_method": e.get("ci_method"),
            "k": e.get("k"), "n": e.get("n")}
    if info["point"] is None:
        return None, e.get("reason") or f"{slot.label} is undefined (null)", info
    value = info["point"] if bound == "point" else info[_FIELD[bound]]
    if value is None:
        return None, (f"{slot.label} has no confidence interval, so its {bound} bound cannot be checked; "
                      "use --on point or recompute the report with intervals"), info
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


def _require(gate: Gate, snapshot: dict, on: str, option: str) -> list[GateResult]:
    out = []
    where = f"{option} {gate.text!r}"
    for model in _models(snapshot, gate.model, where):
        for slot in _resolve(model, gate.metric, gate.cls, gate.every_class, where):
            bound = _bound(on, gate.op in (">=", ">"))
            value, reason, info = _read(slot, bound, where)
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


def _drop(spec: MaxDrop, snapshot: dict, old: dict[str, dict], on: str) -> list[GateResult]:
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
            value, reason, info = _read(slot, bound, where)
            base, base_reason, _ = _read(_Slot(slot.metric, slot.cls, block[slot.metric]), "point", "--baseline")
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
              option: str = "--require") -> GateReport:
    """Evaluate requirements (and baseline drops) on a snapshot.

    Parameters
    ----------
    snapshot, baseline : dict
        Parsed ``report.json`` (schema "1.0" or "2.0"); ``baseline`` only with ``max_drops``.
    requires : list of str
        Expressions ``[MODEL:]METRIC[CLASS] OP VALUE``.
    on : {"point", "lower", "upper", "conservative"}
        What of the new snapshot is compared: the estimate, a 95% CI bound, or the bound
        least favourable to passing. Baseline values are always point estimates.
    max_drops : list of str
        ``[MODEL:]METRIC[CLASS]=MAX_DROP``; for lower-is-better metrics (ece, brier,
        missed_disease_rate) a drop is an increase.
    option : str
        Option name used in error messages (the ``report --gate`` command passes its own).

    Raises
    ------
    MedauditError
        Bad input: unparsable expression, unknown model/class/metric, schema mismatch,
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
    results = [r for g in gates for r in _require(g, snapshot, on, option)]
    notes: list[str] = []
    if drops:
        check_snapshot(baseline, "baseline")
        old = _match_baseline(snapshot, baseline, notes)
        results += [r for d in drops for r in _drop(d, snapshot, old, on)]
    return GateReport(results, on, notes)
