"""Writers for gate results: a stdout table, JUnit XML, Markdown (CI job summary), JSON.

They read only :class:`~medaudit.gate.result.GateReport` and ``GateResult`` (plain data), so
this module and :mod:`medaudit.gate.evaluate` do not import each other.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from medaudit.errors import MedauditError
from medaudit.gate.result import GateReport, GateResult

_BOUND_LABEL = {"point": "point", "lower": "lower 95% bound", "upper": "upper 95% bound"}
# Characters XML 1.0 cannot hold even escaped; a class name with one must still give valid XML.
_XML_INVALID = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.6g}"


def _value(r: GateResult) -> str:
    text = _num(r.value)
    if r.value is not None and r.on == "point" and isinstance(r.k, int) and isinstance(r.n, int):
        text += f" ({r.k}/{r.n})"
    return text


def _ci(r: GateResult) -> str:
    if r.ci_low is None or r.ci_high is None:
        return "—"
    return f"[{_num(r.ci_low)}, {_num(r.ci_high)}]" + (f" {r.ci_method}" if r.ci_method else "")


def _threshold(r: GateResult) -> str:
    if r.threshold is None:
        return "—"
    if r.kind == "max_drop":
        sign = "-" if r.op == ">=" else "+"
        return f"{r.op} {r.threshold:.6g} (baseline {_num(r.baseline)} {sign} {r.max_drop:g})"
    return f"{r.op} {r.threshold:g}"


def message(r: GateResult) -> str:
    """One line saying what was checked and, for a failure, why it failed."""
    status = "passed" if r.passed else "FAILED"
    head = f"{r.model}: {r.metric} ({_BOUND_LABEL.get(r.on, r.on)}) {status}"
    if r.value is None:
        return f"{head}: {r.reason}"
    line = f"{head}: {_num(r.value)} {'' if r.passed else 'not '}{_threshold(r)}"
    return line + (f" (note: {r.note})" if r.note else "")


def _rows(report: GateReport) -> list[list[str]]:
    return [["PASS" if r.passed else "FAIL", r.gate if r.kind == "require" else f"max-drop {r.gate}", r.model,
             r.metric, r.on, _value(r), _ci(r), _threshold(r), _note(r)] for r in report.results]


def _note(r: GateResult) -> str:
    """Why a check failed on an undefined value, else the value's caveat (an accepted partial average)."""
    if not r.passed and r.reason:
        return r.reason
    return f"note: {r.note}" if r.note else ""


_HEADER = ["RESULT", "GATE", "MODEL", "CHECKED", "ON", "VALUE", "95% CI", "THRESHOLD", "NOTE"]


def summary(report: GateReport) -> str:
    """``"gate passed: 3 of 3 checks"`` or ``"gate FAILED: 1 of 3 checks failed"``."""
    n = len(report.results)
    if report.passed:
        return f"gate passed: {n} of {n} checks passed"
    return f"gate FAILED: {report.n_failed} of {n} checks failed"


def format_table(report: GateReport) -> str:
    """The stdout form of a gate run.

    Parameters
    ----------
    report : GateReport

    Returns
    -------
    str
        A plain-text table (one row per check: result, gate, model, checked number, bound,
        value, 95% CI, threshold, note), then the notes, then the :func:`summary` line.
    """
    rows = [_HEADER, *_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines += [f"note: {n}" for n in report.notes]
    lines.append(summary(report))
    return "\n".join(lines)


def _write(path: str | Path, text: str, option: str) -> Path:
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise MedauditError(f"{option} {p}: cannot write ({exc.strerror or exc})") from None
    return p


def _xml(text: str) -> str:
    return _XML_INVALID.sub("\ufffd", text)


def junit_xml(report: GateReport) -> str:
    """The JUnit XML form of a gate run.

    Parameters
    ----------
    report : GateReport

    Returns
    -------
    str
        An XML document: one ``<testsuite>`` per model, one ``<testcase>`` per check, with a
        ``<failure>`` for each failed one; characters XML cannot hold are replaced by U+FFFD.
    """
    root = ET.Element("testsuites", name="medaudit gate", tests=str(len(report.results)),
                      failures=str(report.n_failed), errors="0", time="0")
    by_model: dict[str, list[GateResult]] = {}
    for r in report.results:
        by_model.setdefault(r.model, []).append(r)
    for model, results in by_model.items():
        suite = ET.SubElement(root, "testsuite", name=_xml(f"medaudit gate: {model}"), tests=str(len(results)),
                              failures=str(sum(not r.passed for r in results)), errors="0", skipped="0", time="0")
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="on", value=report.on)
        for note in report.notes:
            ET.SubElement(props, "property", name="note", value=_xml(note))
        for r in results:
            prefix = "max-drop " if r.kind == "max_drop" else ""
            name = f"{prefix}{r.gate}" if r.metric in r.gate else f"{prefix}{r.gate} [{r.metric}]"
            case = ET.SubElement(suite, "testcase", classname=_xml(f"medaudit.gate.{model}"), name=_xml(name),
                                 time="0")
            line = _xml(message(r))
            if not r.passed:
                ET.SubElement(case, "failure", message=line, type="GateFailure").text = line
            ET.SubElement(case, "system-out").text = _xml(f"value={_num(r.value)} ci={_ci(r)} on={r.on} "
                                                          f"threshold={_threshold(r)}"
                                                          + (f" note={r.note}" if r.note else ""))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(report: GateReport, path: str | Path) -> Path:
    """Write :func:`junit_xml` to ``path`` (readable by GitLab, Jenkins, GitHub reporters).

    Parameters
    ----------
    report : GateReport
    path : str or Path
        The file to write (overwritten; its folder is created).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    MedauditError
        When the file cannot be written.
    """
    return _write(path, junit_xml(report), "--junit")


def _md(text: str) -> str:
    """Escape a table cell: pipes split cells; &, <, > could start HTML."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(report: GateReport) -> str:
    """The Markdown form of a gate run, for ``$GITHUB_STEP_SUMMARY`` and merge-request comments.

    Parameters
    ----------
    report : GateReport

    Returns
    -------
    str
        A heading with the verdict, what was compared, a table (cells escaped) and the notes.
    """
    mark = "✅" if report.passed else "❌"
    lines = [f"### {mark} medaudit {summary(report)}", "",
             f"Compared: {_BOUND_LABEL.get(report.on, report.on)}"
             + (" (per check: the bound least favourable to passing)" if report.on == "conservative" else ""), "",
             "| | " + " | ".join(h.title() if h != "95% CI" else h for h in _HEADER[1:]) + " |",
             "|---" * len(_HEADER) + "|"]
    for row, r in zip(_rows(report), report.results, strict=True):
        lines.append("| " + ("✅" if r.passed else "❌") + " | " + " | ".join(_md(c) for c in row[1:]) + " |")
    lines += [""] + [f"> Note: {_md(n)}" for n in report.notes]
    return "\n".join(lines).rstrip() + "\n"


def write_markdown(report: GateReport, path: str | Path) -> Path:
    """Write :func:`markdown` to ``path`` (overwrites; append it to a summary file yourself).

    Parameters
    ----------
    report : GateReport
    path : str or Path
        The file to write (its folder is created).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    MedauditError
        When the file cannot be written.
    """
    return _write(path, markdown(report), "--markdown")


def write_json(report: GateReport, path: str | Path) -> Path:
    """Write ``report.to_dict()`` as sorted, indented UTF-8 JSON.

    Parameters
    ----------
    report : GateReport
    path : str or Path
        The file to write (overwritten; its folder is created).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    MedauditError
        When the file cannot be written.
    """
    text = json.dumps(report.to_dict(), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return _write(path, text + "\n", "--json")
