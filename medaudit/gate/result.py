"""What a gate run produces: one :class:`GateResult` per checked number, gathered in a :class:`GateReport`.

Plain data shared by :mod:`medaudit.gate.evaluate` (which makes them) and
:mod:`medaudit.gate.output` (which writes them); neither imports the other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# The version of GateReport.to_dict(), the JSON of `medaudit gate --json` (docs/gates.md).
JSON_FORMAT = "medaudit.gate/1"


@dataclass
class GateResult:
    """One check of one number of one model.

    ``value`` is the number compared (the point estimate or the CI bound named by ``on``);
    None when undefined, and then ``passed`` is False and ``reason`` says why. For
    ``kind == "max_drop"`` the threshold is ``baseline - max_drop`` (``op`` ">=") or, for
    lower-is-better metrics, ``baseline + max_drop`` (``op`` "<=").

    Attributes
    ----------
    gate : str
        The expression as given (stripped).
    kind : {"require", "max_drop"}
    model : str
        The model's name in the snapshot.
    metric : str
        Resolved snapshot key, ``"recall[glioma]"`` for a class.
    on : {"point", "lower", "upper"}
        The bound compared.
    value, threshold : float or None
    op : {">=", ">", "<=", "<"}
    passed : bool
    reason : str or None
        Why ``value`` is undefined.
    point, ci_low, ci_high, ci_method, k, n
        The metric value object as read from the snapshot.
    note : str or None
        A caveat of the value: an average over only some classes ("macro_f1 averages 1 of 2
        classes ..."), shown whether the check passed (``allow_partial``) or failed.
    baseline, max_drop : float or None
        The baseline's point estimate and the allowed drop (``kind == "max_drop"`` only).
    """

    gate: str
    kind: str
    model: str
    metric: str
    on: str
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
    note: str | None = None


@dataclass
class GateReport:
    """All results of one ``run_gates`` call; passes only if there is a result and all pass.

    Attributes
    ----------
    results : list of GateResult
    on : {"point", "lower", "upper", "conservative"}
        What was asked for (per result, ``GateResult.on`` says which bound was compared).
    notes : list of str
        Caveats of the whole run (e.g. the baseline was computed on other data).
    """

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
        """The JSON form (:data:`JSON_FORMAT`): verdict, counts, notes and every result's fields."""
        return {"format": JSON_FORMAT, "passed": self.passed, "on": self.on, "n_checks": len(self.results),
                "n_failed": self.n_failed, "notes": list(self.notes), "results": [asdict(r) for r in self.results]}
