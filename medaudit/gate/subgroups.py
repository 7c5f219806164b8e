"""Gate names for the subgroup numbers of a snapshot (issue 18), and where each one lives.

``medaudit report --group-by COLUMN`` writes, per model, ``models[i].subgroups``: the block of
:func:`medaudit.metrics.subgroups.subgroup_metrics` (per column, per group, a value object per
metric and the gap of the group against the rest). The grammar is parsed in
:mod:`medaudit.gate.parse` and documented in ``docs/gates.md``, "Subgroup checks":

- ``recall{site=B}``: one group's value (``{sex=F, site=B}``: a group of an intersection);
- ``min_group(recall, site)`` / ``max_group(missed_disease_rate, site)``: the lowest / highest
  value over the groups of a column (with ``--on lower``: the lowest lower bound);
- ``max_gap(recall, sex)``: the largest ``|value(group) - value(rest)|`` over the groups, with
  the interval of ``|gap|`` taken from the gap's interval (``--on upper``: its upper end).

Rules it owns:

- the numbers are disease vs healthy (one outcome), so a ``[CLASS]`` is accepted only when it
  names the one disease class of the task; else bad input (exit 2) saying why;
- a group whose value is undefined ("too few to estimate", or no such samples) fails the check
  with its reason; ``min_group``/``max_group``/``max_gap`` fail closed on any such group unless
  ``allow_partial``, which leaves them out and names them in the note;
- the ``unknown`` bucket (samples with no value in the column) is not a subgroup: the
  aggregates leave it out, as the report's worst group does, and say so in the note; gate it
  by name, ``recall{site=unknown}``;
- a report made without ``--group-by``, an unknown column, group or metric is bad input (exit
  2) listing the valid ones; a subgroup block the report skipped (``available: false``) fails.
"""

from __future__ import annotations

import re

from medaudit.errors import MedauditError

# The metrics of medaudit.metrics.subgroups.METRICS (the gate may not import metrics; a test keeps
# the two equal) and the ones with a gap (GAP_METRICS: prevalence differs by nature, not by model).
NAMES = ("prevalence", "recall", "specificity", "ppv", "npv", "auc", "missed_disease_rate", "ece")
GAP_NAMES = NAMES[1:]
ALIASES = {"sensitivity": "recall", "tpr": "recall", "tnr": "specificity", "precision": "ppv",
           "auroc": "auc", "roc_auc": "auc"}
LOWER_IS_BETTER = frozenset({"missed_disease_rate", "ece"})
# min_group: every group at least (>=, >); max_group / max_gap: every group at most (<=, <).
AGGREGATES = {"min_group": (">=", ">"), "max_group": ("<=", "<"), "max_gap": ("<=", "<")}
BOUND_FIELD = {"point": "value", "lower": "ci_low", "upper": "ci_high"}
_BOUND_WORDS = {"point": "value", "lower": "lower bound", "upper": "upper bound"}


def canonical(metric: str) -> str | None:
    """The subgroup metric a name means (``sensitivity`` -> ``recall``), None when it is none."""
    name = ALIASES.get(metric, metric)
    return name if name in NAMES else None


def join_column(parts: list[str]) -> str:
    """``["sex", "site"]`` -> ``"sex & site"``, the name subgroup_metrics gives an intersection."""
    return " & ".join(parts)


def split_column(name: str) -> list[str]:
    """``"sex&site"`` or ``"sex & site"`` -> ``["sex", "site"]``; a plain column -> ``[name]``."""
    return [p.strip() for p in re.split(r"\s*&\s*", name)]


def check_form(metric: str, aggregate: str | None, op: str, threshold: float, every: bool, where: str) -> str:
    """Parse-time checks of a subgroup expression; returns the canonical metric name.

    Raises
    ------
    MedauditError
        An unknown subgroup metric, ``[*]``, ``prevalence`` in a gap, an aggregate compared the
        way that passes when one group meets it, a threshold outside [0, 1].
    """
    name = canonical(metric)
    if name is None:
        raise MedauditError(f"{where}: {metric!r} is not a subgroup metric; valid: {', '.join(NAMES)} "
                            f"(aliases: {', '.join(f'{a}={b}' for a, b in ALIASES.items())})")
    if every:
        raise MedauditError(f"{where}: subgroup metrics are of disease against healthy as a whole (one outcome), "
                            "not per class; drop the [*]")
    if aggregate is not None:
        if name not in GAP_NAMES and aggregate == "max_gap":
            raise MedauditError(f"{where}: prevalence has no gap (groups differ in prevalence by nature, not by the "
                                f"model); valid in max_gap: {', '.join(GAP_NAMES)}")
        if op not in AGGREGATES[aggregate]:
            every_way = {"min_group": "every group at least a floor: min_group(...)>=VALUE (or max_group for "
                                      "the highest value)",
                         "max_group": "every group at most a ceiling: max_group(...)<=VALUE (or min_group for "
                                      "the lowest value)",
                         "max_gap": "the largest gap at most a ceiling: max_gap(...)<=VALUE"}[aggregate]
            raise MedauditError(f"{where}: {aggregate}(...) {op} VALUE passes when a single group meets it; a gate "
                                f"on subgroups asks {every_way}")
    if not 0.0 <= threshold <= 1.0:
        what = "an absolute difference of two rates" if aggregate == "max_gap" else name
        raise MedauditError(f"{where}: {threshold:g} is outside [0, 1] for {what}; write proportions as fractions "
                            "(0.95) or percentages (95%)")
    return name


def _block(snapshot: dict, model: dict, where: str) -> tuple[dict | None, str | None]:
    sg = model.get("subgroups")
    if sg is None:
        made = (snapshot.get("settings") or {}).get("subgroups") or {}
        why = ("the report was made without --group-by" if not made.get("group_by")
               else "the snapshot has no subgroup block for this model")
        raise MedauditError(f"{where}: model {model['name']!r} has no subgroup analysis (models[i].subgroups): "
                            f"{why}; rerun `medaudit report` with --group-by COLUMN (e.g. --group-by site)")
    if not isinstance(sg, dict):
        raise MedauditError(f"{where}: models[i].subgroups of model {model['name']!r} is not an object; the snapshot "
                            "is malformed, re-create it with `medaudit report`")
    if sg.get("available") is False:
        return None, f"the subgroup analysis was skipped: {sg.get('reason') or 'no reason recorded'}"
    if not isinstance(sg.get("columns"), dict):
        raise MedauditError(f"{where}: models[i].subgroups of model {model['name']!r} has no columns; the snapshot "
                            "is malformed, re-create it with `medaudit report`")
    return sg, None


def _check_class(snapshot: dict, model: dict, sg: dict | None, metric: str, cls: str, where: str) -> None:
    """A [CLASS] must be the one disease class: the numbers are of disease vs healthy."""
    negatives = list(((sg or {}).get("settings") or {}).get("negative_classes")
                     or (snapshot.get("settings") or {}).get("negative_classes") or ())
    classes = list(model["metrics"].get("per_class") or (snapshot.get("dataset") or {}).get("class_names") or ())
    disease = [c for c in classes if c not in negatives]
    if disease == [cls]:
        return
    raise MedauditError(f"{where}: subgroup metrics are of disease ({', '.join(disease) or 'none'}) against healthy "
                        f"({', '.join(negatives) or 'none'}) as a whole, not of one class; write {metric} without "
                        f"[{cls}]" + ("" if cls in classes else f" (and {cls!r} is not a class of the task)"))


def _column(sg: dict, parts: list[str], where: str) -> tuple[str, list[int]]:
    """(column name in the snapshot, the order of ``parts`` in it); MedauditError listing the valid ones."""
    cols = sg["columns"]
    wanted = join_column(parts)
    if wanted in cols:
        return wanted, list(range(len(parts)))
    if len(parts) == 2 and join_column(parts[::-1]) in cols:
        return join_column(parts[::-1]), [1, 0]
    rerun = (f"rerun `medaudit report` with the intersection of {' and '.join(parts)}" if len(parts) > 1
             else f"rerun `medaudit report` with --group-by {parts[0]}")
    raise MedauditError(f"{where}: no subgroup column {wanted!r} in the report; valid: "
                        f"{', '.join(map(repr, cols)) or 'none'}; {rerun}")


def _metric_entry(group: dict, metric: str, column: str, label: str, where: str) -> dict | None:
    if metric not in group:
        valid = [k for k in NAMES if k in group]
        raise MedauditError(f"{where}: group {column}={label} has no {metric!r}; valid: {', '.join(valid)}")
    return group[metric]


def _size(group: dict) -> str:
    """``"40 images, 20 disease"`` (``"; 12 patients, 6 disease"`` with patient ids)."""
    text = f"{group.get('n')} images, {group.get('n_disease')} disease"
    if group.get("n_patients") is not None:
        text += f"; {group['n_patients']} patients, {group.get('n_disease_patients')} with disease"
    return text


def _undefined(reason: str) -> dict:
    return {"value": None, "ci_low": None, "ci_high": None, "ci_method": None, "reason": reason}


def _abs_gap(gap: dict | None) -> dict:
    """The value object of ``|diff|`` from a gap entry: its interval is the image of the gap's.

    For ``diff`` in ``[lo, hi]``, ``|diff|`` lies in ``[0 if lo <= 0 <= hi else min(|lo|, |hi|),
    max(|lo|, |hi|)]``: an interval that covers the gap gives one that covers ``|gap|``.
    """
    if not isinstance(gap, dict) or gap.get("diff") is None:
        return _undefined((gap or {}).get("reason") or "the gap is not in the snapshot")
    diff, lo, hi = gap["diff"], gap.get("ci_low"), gap.get("ci_high")
    out = {"value": abs(diff), "ci_low": None, "ci_high": None, "ci_method": None, "reason": None}
    if lo is None or hi is None:
        out["ci_reason"] = gap.get("reason") or "the gap has no interval"
        return out
    out.update(ci_low=0.0 if lo <= 0.0 <= hi else min(abs(lo), abs(hi)), ci_high=max(abs(lo), abs(hi)),
               ci_method=gap.get("ci_method"))
    return out


def _gap_text(metric: str, gap: dict) -> str:
    text = f"{metric}(group) - {metric}(rest) = {gap['diff']:+.3g}"
    if gap.get("ci_low") is not None and gap.get("ci_high") is not None:
        text += f", 95% CI {gap['ci_low']:+.3g} to {gap['ci_high']:+.3g}"
    if gap.get("p_adjusted") is not None:
        text += f", Holm p = {gap['p_adjusted']:.3g}"
    return text


def slots(snapshot: dict, model: dict, gate, bound: str, allow_partial: bool, partial_hint: str,
          where: str) -> list[tuple[str, dict, str | None]]:
    """(label, value object, note) of a subgroup check for one model.

    Parameters
    ----------
    snapshot : dict
        The whole snapshot.
    model : dict
        ``snapshot["models"][i]``.
    gate : medaudit.gate.parse.Gate
        A parsed subgroup expression (``gate.subgroup`` is True).
    bound : {"point", "lower", "upper"}
        What will be compared; the aggregates pick the group by it.
    allow_partial : bool
        Leave groups without a value out of an aggregate (named in the note) instead of failing.
    partial_hint : str
        How the failure message names the option that allows it.
    where : str
        How errors name the expression.

    Returns
    -------
    list of one (str, dict, str or None)
        The value object the check reads (for ``max_gap`` the one of ``|gap|``); undefined with a
        reason where the check must fail.

    Raises
    ------
    MedauditError
        A report without subgroups, an unknown column, group or metric, a [CLASS] that is not
        the one disease class.
    """
    metric = canonical(gate.metric)
    sg, why = _block(snapshot, model, where)
    if gate.cls is not None:
        _check_class(snapshot, model, sg, metric, gate.cls, where)
    if gate.aggregate is None:
        parts = [c for c, _ in gate.groups]
        values = [v for _, v in gate.groups]
        label = f"{metric}{{{', '.join(f'{c}={v}' for c, v in gate.groups)}}}"
        if sg is None:
            return [(label, _undefined(why), None)]
        column, order = _column(sg, parts, where)
        wanted = join_column([values[i] for i in order])
        groups = sg["columns"][column].get("groups") or {}
        if wanted not in groups:
            raise MedauditError(f"{where}: column {column!r} has no group {wanted!r}; valid: "
                                f"{', '.join(map(repr, groups)) or 'none'}")
        group = groups[wanted]
        entry = _metric_entry(group, metric, column, wanted, where)
        note = f"disease vs healthy in {column}={wanted} ({_size(group)})"
        if group.get("unknown"):
            note += f", the samples with no {column}"
        return [(label, entry if entry is not None else _undefined(f"{metric} is not computed for this group"),
                 note)]
    label = f"{gate.aggregate}({metric}, {gate.column})"
    if sg is None:
        return [(label, _undefined(why), None)]
    raw = [gate.column] if gate.column in sg["columns"] else split_column(gate.column)
    column, _ = _column(sg, raw, where)
    label = f"{gate.aggregate}({metric}, {column})"
    groups = sg["columns"][column].get("groups") or {}
    known = {lab: g for lab, g in groups.items() if not g.get("unknown")}
    left_bucket = [f"{lab} ({g.get('n')} images with no {column})" for lab, g in groups.items() if g.get("unknown")]
    if gate.aggregate == "max_gap":
        entries = {lab: (_abs_gap((g.get("gap") or {}).get(metric)), (g.get("gap") or {}).get(metric))
                   for lab, g in known.items()}
    else:
        entries = {lab: (_metric_entry(g, metric, column, lab, where) or _undefined(f"{metric} is not computed"),
                         None) for lab, g in known.items()}
    undefined = {lab: e.get("reason") or "undefined" for lab, (e, _) in entries.items() if e.get("value") is None}
    defined = {lab: pair for lab, pair in entries.items() if lab not in undefined}
    left = "; ".join(f"{column}={lab}: {r}" for lab, r in undefined.items())
    if not known:
        return [(label, _undefined(f"column {column!r} has no known group"), None)]
    if undefined and (not allow_partial or not defined):
        reason = f"{len(undefined)} of {len(known)} groups of {column} have no value ({left})"
        return [(label, _undefined(reason + (f"; {partial_hint}" if defined else "")), None)]
    field = BOUND_FIELD[bound]
    no_bound = [lab for lab, (e, _) in defined.items() if e.get(field) is None]
    pick = no_bound[0] if no_bound else (min if gate.aggregate == "min_group" else max)(
        defined, key=lambda lab: defined[lab][0][field])
    entry, gap = defined[pick]
    side = {"min_group": "lowest", "max_group": "highest", "max_gap": "largest"}[gate.aggregate]
    what = "|gap|" if gate.aggregate == "max_gap" else metric
    note = (f"{side} {what} {_BOUND_WORDS[bound]}: {column}={pick} ({_size(known[pick])}"
            + (f"; {_gap_text(metric, gap)}" if gap is not None else "") + f"); {len(defined)} of {len(known)} "
            "groups compared" + (", disease vs healthy" if gate.aggregate != "max_gap" else ", each group against "
                                 "the rest, disease vs healthy"))
    if undefined:
        note += f"; left out (no value, allowed by --allow-partial): {left}"
    if left_bucket:
        note += f"; not a group: {', '.join(left_bucket)}"
    if no_bound:
        note += f"; {column}={pick} has no interval"
    return [(label, entry, note)]
