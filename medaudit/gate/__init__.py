"""CI gates on a snapshot: parse expressions, evaluate them, write JUnit/Markdown/JSON.

``parse`` reads expressions, ``evaluate`` checks them against a snapshot read by
:mod:`medaudit.snapshot`, ``result`` holds the verdicts and ``output`` writes them. The gate
imports nothing of medaudit but the snapshot reader and the error type: no model, no plotting.

Example
-------
>>> from medaudit.gate import format_table, load_snapshot, run_gates
>>> report = run_gates(load_snapshot("report.json"), ["recall[glioma]>=0.95"], on="lower")  # doctest: +SKIP
"""

from medaudit.gate.evaluate import ON_CHOICES, run_gates
from medaudit.gate.output import (
    format_table,
    junit_xml,
    markdown,
    summary,
    write_json,
    write_junit,
    write_markdown,
)
from medaudit.gate.parse import Gate, MaxDrop, parse_gate, parse_max_drop
from medaudit.gate.result import GateReport, GateResult
from medaudit.snapshot import check_snapshot, load_snapshot

__all__ = [
    "Gate", "MaxDrop", "GateResult", "GateReport", "ON_CHOICES", "parse_gate", "parse_max_drop", "run_gates",
    "load_snapshot", "check_snapshot", "format_table", "summary", "junit_xml", "markdown", "write_junit",
    "write_markdown", "write_json",
]
