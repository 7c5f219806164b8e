"""Gates on the corruption sweep: ``max_drop(recall[glioma], robustness)<=0.1`` (docs/gates.md).

The largest paired drop (clean - corrupted) of a metric over every (corruption, severity) cell of
``snapshot["robustness"]`` must stay under a ceiling. It fails closed: a snapshot without the
sweep is an error naming the option that makes one, and a cell whose drop (or the compared
bound) is undefined makes the check fail, never pass.
"""

from __future__ import annotations

from medaudit.errors import MedauditError

AGGREGATE = "max_drop"
COLUMN = "robustness"
PER_CLASS = ("recall",)
SCALARS = ("balanced_accuracy", "accuracy")
ALIASES = {"sensitivity": "recall", "tpr": "recall", "acc": "accuracy"}
_FIELD = {"point": "value", "lower": "ci_low", "upper": "ci_high"}


def check_form(metric: str, cls: str | None, every: bool, op: str, threshold: float, column: str | None,
               where: str) -> str:
    """Parse-time checks of ``max_drop(METRIC[CLASS], robustness) OP VALUE``; returns the metric's name.

    Raises
    ------
    MedauditError
        Another column than ``robustness``, an unknown metric, a missing or extra [CLASS], an
        operator that passes when one cell meets it, a ceiling outside [0, 1].
    """
    name = ALIASES.get(metric, metric)
    if column != COLUMN:
        raise MedauditError(f"{where}: max_drop reads the corruption sweep: write max_drop({metric}[CLASS], "
                            f"{COLUMN})")
    if name not in PER_CLASS + SCALARS:
        raise MedauditError(f"{where}: {metric!r} has no drop in the sweep; valid: recall[CLASS], "
                            f"{', '.join(SCALARS)}")
    if name in PER_CLASS and cls is None and not every:
        raise MedauditError(f"{where}: recall drops are per class; write recall[CLASS] or recall[*]")
    if name in SCALARS and (cls is not None or every):
        raise MedauditError(f"{where}: {name} has no per-class value; drop the [CLASS]")
    if op not in ("<=", "<"):
        raise MedauditError(f"{where}: max_drop(...) {op} VALUE passes when a single cell meets it; a gate on "
                            "robustness asks for the largest drop at most a ceiling: max_drop(...)<=VALUE")
    if not 0.0 <= threshold <= 1.0:
        raise MedauditError(f"{where}: {threshold:g} is outside [0, 1] for a drop of {name}; write 0.1 or 10%")
    return name


def slots(snapshot: dict, model: dict, gate, bound: str, where: str) -> list[tuple[str, dict, str | None]]:
    """(label, value object, note) per class (or once) of a robustness check for one model.

    The value object is the drop of the cell whose compared ``bound`` is largest (the worst cell);
    one undefined cell makes it undefined with a reason (the check then fails).

    Raises
    ------
    MedauditError
        The snapshot has no sweep (``null`` or absent), the model is not in it, or the class is unknown.
    """
    block = snapshot.get(COLUMN)
    if not isinstance(block, dict):
        raise MedauditError(f"{where}: the report has no robustness sweep (robustness is "
                            f"{'missing' if COLUMN not in snapshot else 'null'}); rerun `medaudit report` with "
                            "--robustness (or run `medaudit robustness`)")
    entry = next((m for m in block.get("models") or [] if isinstance(m, dict) and m.get("name") == model["name"]),
                 None)
    if entry is None:
        raise MedauditError(f"{where}: model {model['name']!r} is not in the robustness sweep")
    cells = [c for c in entry.get("cells") or [] if isinstance(c, dict)]
    metric = ALIASES.get(gate.metric, gate.metric)
    if metric in PER_CLASS:
        known = list((entry.get("clean") or {}).get("recall") or {})
        classes = known if gate.every_class else [gate.cls]
        if gate.cls is not None and gate.cls not in known:
            raise MedauditError(f"{where}: unknown class {gate.cls!r}; valid: {', '.join(map(repr, known))}")
        targets = [(f"max_drop({metric}[{c}], {COLUMN})", lambda d, c=c: (d.get("recall") or {}).get(c))
                   for c in classes]
    else:
        targets = [(f"max_drop({metric}, {COLUMN})", lambda d: d.get(metric))]
    field = _FIELD[bound]
    out = []
    for label, pick in targets:
        if not cells:
            out.append((label, {"value": None, "reason": "the sweep has no cells"}, None))
            continue
        worst, worst_cell, missing = None, None, None
        for c in cells:
            d = pick(c.get("drop") or {}) or {}
            x = d.get(field)
            if not isinstance(x, int | float) or isinstance(x, bool):
                missing = (c, d)
                break
            if worst is None or x > worst[field]:
                worst, worst_cell = d, c
        if missing is not None:
            c, d = missing
            why = d.get("reason") or ("undefined" if field == "value" else "no interval")
            out.append((label, {"value": None, "reason": f"{c.get('corruption')} at severity {c.get('severity')}: "
                                                         f"{why}; an undefined cell fails the check"}, None))
            continue
        note = f"worst cell: {worst_cell.get('corruption')} at severity {worst_cell.get('severity')}"
        out.append((label, {k: worst.get(k) for k in ("value", "ci_low", "ci_high")}, note))
    return out
