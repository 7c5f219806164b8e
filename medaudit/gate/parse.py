"""Parser for gate expressions: ``[MODEL:]METRIC[CLASS] OP VALUE`` and ``...=MAX_DROP``.

The grammar, aliases and metric directions are documented in ``docs/gates.md``. Parsing
knows no snapshot; :mod:`medaudit.gate.evaluate` resolves the names against one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medaudit.errors import MedauditError
from medaudit.gate.clinical import NAMES as CLINICAL_NAMES
from medaudit.gate.clinical import PER_CLASS, RULES, VERSUS
from medaudit.gate.clinical import RANGES as CLINICAL_RANGES
from medaudit.gate.robustness import AGGREGATE as ROBUST_AGGREGATE
from medaudit.gate.robustness import check_form as robust_check_form
from medaudit.gate.subgroups import AGGREGATES, check_form
from medaudit.snapshot import METRIC_RANGES

# Names without a class that mean a global (macro) metric; documented in docs/gates.md.
GLOBAL_ALIASES = {"auc": "auc_macro", "auroc": "auc_macro", "roc_auc": "auc_macro", "ap": "ap_macro",
                  "auprc": "ap_macro", "f1": "macro_f1", "f1_macro": "macro_f1", "acc": "accuracy"}
CLASS_ALIASES = {"sensitivity": "recall", "tpr": "recall", "ppv": "precision", "tnr": "specificity",
                 "auroc": "auc", "roc_auc": "auc", "auprc": "ap"}
# For --max-drop a "drop" of these is an increase.
LOWER_IS_BETTER = frozenset({"ece", "brier", "missed_disease_rate"})
HIGHER_IS_BETTER = frozenset({
    "accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall",
    "macro_specificity", "weighted_precision", "weighted_recall", "auc_macro", "auc_micro", "ap_macro",
    "kappa", "kappa_quadratic", "mcc", "precision", "recall", "specificity", "npv", "f1", "auc", "ap"})
# A threshold outside its metric's range (medaudit.snapshot.METRIC_RANGES, the same table that
# refuses such a value in a snapshot) is a typo (0.95 written as 95), not a gate.
_FORM = ("form: [MODEL:]METRIC[CLASS][@QUALIFIER] OP VALUE, e.g. recall[glioma]>=0.95 or net_benefit@0.1>treat_all; "
         "subgroups: recall{site=B}>=0.9, min_group(recall, site)>=0.85, max_gap(recall, sex)<=0.05")
# What may follow '@': a threshold probability (net benefit) or a deployment prevalence (PPV/NPV).
_AT_METRICS = "net_benefit@T (a threshold probability, e.g. net_benefit@0.1) and ppv@prev=P / npv@prev=P"


@dataclass(frozen=True)
class Gate:
    """A parsed requirement ``[MODEL:]METRIC[CLASS] OP VALUE``.

    ``cls`` None with ``every_class`` False means "global metric, else every class".
    Clinical-use checks (docs/gates.md) also carry ``at`` (``net_benefit@T``), ``prevalence`` and
    ``rule`` (``ppv@prev=P,naive``) and ``versus`` (``... > treat_all``: then ``threshold`` is 0
    and the difference to that policy is compared). Subgroup checks (docs/gates.md) carry
    ``groups`` (``recall{site=B}``: ``(("site", "B"),)``) or ``aggregate`` (``min_group``,
    ``max_group``, ``max_gap``) with its ``column`` (``"site"``, ``"sex & site"``)."""

    text: str
    metric: str
    op: str
    threshold: float
    model: str | None = None
    cls: str | None = None
    every_class: bool = False
    at: float | None = None
    prevalence: float | None = None
    rule: str | None = None
    versus: str | None = None
    groups: tuple[tuple[str, str], ...] = ()
    aggregate: str | None = None
    column: str | None = None

    @property
    def clinical(self) -> bool:
        """Read from the clinical-use blocks (not from ``models[i].metrics``)."""
        return not self.subgroup and (self.metric in CLINICAL_NAMES or self.prevalence is not None)

    @property
    def subgroup(self) -> bool:
        """Read from the subgroup blocks (``models[i].subgroups``)."""
        return bool(self.groups) or (self.aggregate is not None and not self.robustness)

    @property
    def robustness(self) -> bool:
        """Read from the corruption sweep (``max_drop(recall[glioma], robustness)``, ``snapshot.robustness``)."""
        return self.aggregate == ROBUST_AGGREGATE


@dataclass(frozen=True)
class MaxDrop:
    """A parsed baseline check ``[MODEL:]METRIC[CLASS]=MAX_DROP`` (``MAX_DROP`` >= 0)."""

    text: str
    metric: str
    max_drop: float
    model: str | None = None
    cls: str | None = None
    every_class: bool = False


_BARE_MODEL = re.compile(r"([^\s:\[\]<>=!\"']+)\s*:")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OP = re.compile(r">=|<=|>|<")
# ASCII digits only: in a str pattern \d also matches Arabic-Indic or fullwidth digits, which
# float() then accepts, so a threshold could read differently from what a reviewer sees.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?%?")


class _Cursor:
    """Left-to-right scanner over one expression; errors name the option and position."""

    def __init__(self, text: str, option: str, form: str) -> None:
        self.text, self.option, self.form, self.pos = text, option, form, 0

    def error(self, expected: str) -> MedauditError:
        rest = self.text[self.pos:] or "end of text"
        return MedauditError(f"{self.option} {self.text!r}: expected {expected} at position {self.pos} "
                             f"(found {rest!r}); {self.form}")

    def ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def match(self, regex: re.Pattern[str]) -> re.Match[str] | None:
        m = regex.match(self.text, self.pos)
        if m:
            self.pos = m.end()
        return m

    def quoted(self) -> str:
        """A '...' or "..." string; backslash escapes the quote and itself."""
        quote, out = self.text[self.pos], []
        self.pos += 1
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            self.pos += 1
            if ch == quote:
                return "".join(out)
            out.append(ch)
        raise self.error(f"a closing {quote}")

    def number(self, what: str) -> float:
        start = self.pos
        m = self.match(_NUMBER)
        # A digit of another script in the number token (٠.٩, fullwidth ０.９, 1e٣) would
        # otherwise surface as "expected a number" or "end of expression"; name it instead.
        end = start
        while end < len(self.text) and not self.text[end].isspace():
            end += 1
        bad = next((i for i in range(start, end) if not self.text[i].isascii() and self.text[i].isnumeric()), None)
        if bad is not None:
            ch = self.text[bad]
            raise MedauditError(f"{self.option} {self.text!r}: {ch!r} (U+{ord(ch):04X}) at position {bad} "
                                "is not an ASCII digit; write numbers with the digits 0-9")
        if not m:
            self.pos = start
            raise self.error(what)
        s = m.group(0)
        return float(s[:-1]) / 100.0 if s.endswith("%") else float(s)


def _parse_target(cur: _Cursor) -> tuple[str | None, str, str | None, bool]:
    """``[MODEL:]METRIC[CLASS]`` -> (model, metric, class, every_class)."""
    cur.ws()
    model = None
    if cur.peek() in ("'", '"'):
        model = cur.quoted()
        cur.ws()
        if cur.peek() != ":":
            raise cur.error("':' after the quoted model name")
        cur.pos += 1
    else:
        m = _BARE_MODEL.match(cur.text, cur.pos)
        if m:
            model, cur.pos = m.group(1), m.end()
    metric, cls, every = _parse_metric(cur)
    return model, metric, cls, every


def _parse_metric(cur: _Cursor) -> tuple[str, str | None, bool]:
    """``METRIC[CLASS]`` -> (metric, class, every_class)."""
    cur.ws()
    m = cur.match(_IDENT)
    if not m:
        raise cur.error("a metric name")
    metric, cls, every = m.group(0).lower(), None, False
    cur.ws()
    if cur.peek() == "[":
        cur.pos += 1
        cur.ws()
        if cur.peek() in ("'", '"'):
            cls = cur.quoted()
        else:
            end = cur.text.find("]", cur.pos)
            if end < 0:
                raise cur.error("']' to close the class name")
            bare = cur.text[cur.pos:end].strip()
            if not bare or any(c in bare for c in "[\"'"):
                raise cur.error("a class name (quote names with brackets or quotes: recall[\"a]b\"])")
            cur.pos = end
            cls, every = (None, True) if bare == "*" else (bare, False)
        cur.ws()
        if cur.peek() != "]":
            raise cur.error("']'")
        cur.pos += 1
        cur.ws()
    return metric, cls, every


def _parse_name(cur: _Cursor, stops: str, what: str) -> str:
    """A quoted name, or bare text up to one of ``stops`` (stripped, not empty)."""
    cur.ws()
    if cur.peek() in ("'", '"'):
        name = cur.quoted()
        cur.ws()
        return name
    end = next((i for i in range(cur.pos, len(cur.text)) if cur.text[i] in stops), len(cur.text))
    bare = cur.text[cur.pos:end].strip()
    if not bare or any(c in bare for c in "\"'{}()"):
        raise cur.error(what + " (quote names with brackets, braces, commas or quotes: {site=\"a,b\"})")
    cur.pos = end
    return bare


def _parse_groups(cur: _Cursor) -> tuple[tuple[str, str], ...]:
    """``{COLUMN=GROUP[, COLUMN=GROUP]}`` -> the pairs (two: a group of an intersection)."""
    cur.pos += 1  # the '{'
    pairs = []
    while True:
        column = _parse_name(cur, "=}", "a column name")
        if cur.peek() != "=":
            raise cur.error("'=' after the column name (recall{site=B})")
        cur.pos += 1
        pairs.append((column, _parse_name(cur, ",}", "a group name")))
        if cur.peek() == "}":
            cur.pos += 1
            cur.ws()
            break
        if cur.peek() != ",":
            raise cur.error("',' or '}'")
        cur.pos += 1
    if len(pairs) > 2 or len({c for c, _ in pairs}) != len(pairs):
        raise MedauditError(f"{cur.option} {cur.text!r}: a group is one column's value or a group of the intersection "
                            "of two different columns, e.g. {site=B} or {sex=F, site=B}")
    return tuple(pairs)


def _parse_aggregate(cur: _Cursor) -> tuple[str, str | None, bool, str]:
    """``(METRIC[CLASS], COLUMN)`` after min_group/max_group/max_gap -> (metric, class, every, column)."""
    cur.pos += 1  # the '('
    metric, cls, every = _parse_metric(cur)
    if cur.peek() != ",":
        raise cur.error("',' and a column name (min_group(recall, site))")
    cur.pos += 1
    column = _parse_name(cur, ")", "a column name")
    if cur.peek() != ")":
        raise cur.error("')'")
    cur.pos += 1
    cur.ws()
    return metric, cls, every, column


def _parse_qualifier(cur: _Cursor) -> tuple[float | None, float | None, str | None]:
    """``@T`` or ``@prev=P[,RULE]`` after the target -> (at, prevalence, rule); nothing: Nones."""
    if cur.peek() != "@":
        return None, None, None
    cur.pos += 1
    cur.ws()
    m = cur.match(_IDENT)
    if m is None:
        at = cur.number("a threshold probability (net_benefit@0.1) or prev=P")
        cur.ws()
        return at, None, None
    if m.group(0).lower() != "prev":
        cur.pos = m.start()
        raise cur.error("a threshold probability (net_benefit@0.1) or prev=P (ppv@prev=0.02)")
    cur.ws()
    if cur.peek() != "=":
        raise cur.error("'=' after prev")
    cur.pos += 1
    cur.ws()
    prevalence, rule = cur.number("a prevalence, e.g. 0.02 or 2%"), None
    cur.ws()
    if cur.peek() == ",":
        cur.pos += 1
        cur.ws()
        m = cur.match(_IDENT)
        if m is None or m.group(0).lower() not in RULES:
            raise cur.error(f"an operating point: {' or '.join(RULES)}")
        rule = m.group(0).lower()
        cur.ws()
    return None, prevalence, rule


def _check_qualifier(metric: str, cls: str | None, every: bool, at: float | None, prevalence: float | None,
                     cur: _Cursor) -> None:
    """Which names take '@', and that T and P are probabilities."""
    where = f"{cur.option} {cur.text!r}"
    if metric == "net_benefit":
        if at is None:
            raise MedauditError(f"{where}: net_benefit needs a threshold probability, e.g. net_benefit@0.1>treat_all")
        if cls is not None or every:
            raise MedauditError(f"{where}: net benefit is of disease against the healthy classes as a whole; "
                                "drop the [CLASS]")
    elif metric in CLINICAL_NAMES and metric not in PER_CLASS and (cls is not None or every):
        raise MedauditError(f"{where}: {metric} has no per-class value; drop the [CLASS]")
    elif metric in ("ppv", "npv") and at is not None:
        raise MedauditError(f"{where}: {metric} takes a deployment prevalence, {metric}@prev=P (e.g. @prev=0.02)")
    elif (at is not None or prevalence is not None) and metric not in ("ppv", "npv"):
        raise MedauditError(f"{where}: only {_AT_METRICS} take '@'")
    for name, x in (("threshold probability", at), ("prevalence", prevalence)):
        if x is not None and not 0.0 < x < 1.0:
            raise MedauditError(f"{where}: the {name} {x:g} must be in (0, 1); write 0.1 or 10%")


def _check_range(metric: str, value: float, cur: _Cursor) -> None:
    if metric in CLINICAL_RANGES:
        lo, hi = CLINICAL_RANGES[metric]
        if not lo <= value <= hi:
            raise MedauditError(f"{cur.option} {cur.text!r}: {value:g} is outside [{lo:g}, {hi:g}] for {metric}; "
                                "write proportions as fractions (0.95) or percentages (95%)")
        return
    canonical = GLOBAL_ALIASES.get(metric) or CLASS_ALIASES.get(metric) or metric
    if canonical not in HIGHER_IS_BETTER | LOWER_IS_BETTER:
        return
    lo, hi = METRIC_RANGES[canonical]
    if not lo <= value <= hi:
        raise MedauditError(f"{cur.option} {cur.text!r}: {value:g} is outside [{lo:g}, {hi:g}] for {metric}; "
                            "write proportions as fractions (0.95) or percentages (95%)")


def parse_gate(text: str, option: str = "--require") -> Gate:
    """Parse a requirement ``[MODEL:]METRIC[CLASS] OP VALUE``.

    Names may be quoted ('a]b', "no tumor") with backslash escapes; ``[*]`` means every
    class; ``VALUE`` may end in ``%``. Whitespace between tokens is ignored. Names are not
    checked against a snapshot here (:func:`medaudit.gate.evaluate.run_gates` does).
    Clinical-use checks add a qualifier and a policy on the right: ``net_benefit@0.1>treat_all``,
    ``ppv@prev=0.02>=0.3``, ``npv@prev=2%,naive>=0.99`` (docs/gates.md).

    Parameters
    ----------
    text : str
        The expression, e.g. ``"resnet18:recall[glioma]>=0.95"``.
    option : str
        How error messages name where the expression came from.

    Returns
    -------
    Gate

    Raises
    ------
    MedauditError
        Naming ``option``, the expression and the position of the first unexpected character,
        or a threshold outside the metric's range (95 written for 0.95).
    """
    cur = _Cursor(text, option, _FORM)
    model, metric, cls, every = _parse_target(cur)
    groups, aggregate, column = (), None, None
    if (metric in AGGREGATES or metric == ROBUST_AGGREGATE) and cur.peek() == "(" and cls is None and not every:
        aggregate = metric
        metric, cls, every, column = _parse_aggregate(cur)
    elif cur.peek() == "{":
        groups = _parse_groups(cur)
    if (groups or aggregate) and cur.peek() == "@":
        raise MedauditError(f"{option} {text!r}: subgroup checks take no '@' qualifier")
    at, prevalence, rule = _parse_qualifier(cur)
    m = cur.match(_OP)
    if not m:
        raise cur.error("an operator (>=, >, <=, <)")
    cur.ws()
    versus = cur.match(_IDENT)
    if versus is not None:
        versus = versus.group(0).lower()
        if metric != "net_benefit" or versus not in VERSUS:
            cur.pos -= len(versus)
            raise cur.error("a number" + (" or treat_all / treat_none" if metric == "net_benefit" else ""))
        threshold = 0.0  # the difference to the policy is compared with 0
    else:
        threshold = cur.number("a number" + (" or treat_all / treat_none" if metric == "net_benefit" else ""))
    cur.ws()
    if cur.pos != len(text):
        raise cur.error("end of expression")
    if aggregate == ROBUST_AGGREGATE:
        metric = robust_check_form(metric, cls, every, m.group(0), threshold, column, f"{option} {text!r}")
        return Gate(text.strip(), metric, m.group(0), threshold, model, cls, every, aggregate=aggregate, column=column)
    if groups or aggregate:
        # The subgroup metric set (disease vs healthy) is its own; checked there, not as a metric of the classes.
        metric = check_form(metric, aggregate, m.group(0), threshold, every, f"{option} {text!r}")
        return Gate(text.strip(), metric, m.group(0), threshold, model, cls, every, groups=groups,
                    aggregate=aggregate, column=column)
    _check_qualifier(metric, cls, every, at, prevalence, cur)
    _check_range(metric, threshold, cur)
    return Gate(text.strip(), metric, m.group(0), threshold, model, cls, every, at, prevalence, rule, versus)


def parse_max_drop(text: str, option: str = "--max-drop") -> MaxDrop:
    """Parse a baseline check ``[MODEL:]METRIC[CLASS]=MAX_DROP``, e.g. ``recall=0.02`` or ``auc=1%``.

    Parameters
    ----------
    text : str
        The expression.
    option : str
        How error messages name where the expression came from.

    Returns
    -------
    MaxDrop

    Raises
    ------
    MedauditError
        As :func:`parse_gate`; also for a negative drop.
    """
    cur = _Cursor(text, option, "form: [MODEL:]METRIC[CLASS]=MAX_DROP, e.g. recall=0.02")
    model, metric, cls, every = _parse_target(cur)
    if cur.peek() in ("{", "(") and (cur.peek() == "{" or metric in AGGREGATES):
        raise MedauditError(f"{option} {text!r}: subgroup checks are made with --require only "
                            "(a baseline drop of them is not supported)")
    if metric in CLINICAL_NAMES or cur.peek() == "@":
        raise MedauditError(f"{option} {text!r}: the clinical-use numbers are checked with --require only "
                            "(a baseline drop of them is not supported)")
    if cur.peek() != "=":
        raise cur.error("'='")
    cur.pos += 1
    cur.ws()
    drop = cur.number("a non-negative number")
    cur.ws()
    if cur.pos != len(text):
        raise cur.error("end of expression")
    if drop < 0:
        raise MedauditError(f"{option} {text!r}: the allowed drop must be >= 0")
    _check_range(metric, drop, cur)
    return MaxDrop(text.strip(), metric, drop, model, cls, every)
