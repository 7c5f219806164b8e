"""Gate writers: JUnit XML parsed back with xml.etree, Markdown escaping, JSON, the table."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from medaudit.gate import format_table, junit_xml, run_gates, write_json, write_junit, write_markdown
from tests.snapshot_factory import build_model, build_snapshot, mv

NASTY = ["a|b", '<x y="1">&amp;', "ctl\x01\x1f", "ü类 ]["]


@pytest.fixture
def report():
    """Mixed results: passes, a failure, an undefined value, classes that need escaping."""
    models = [build_model(name, hits, classes=NASTY, negative="a|b")
              for name, hits in (("m<1>", [48, 45, 50, 47]), ("m2", [40, 45, 50, 47]))]
    for m in models:
        m["metrics"]["per_class"]["ü类 ]["]["auc"] = mv(None, reason="no <negatives> & no luck")
    snap = build_snapshot(models=models, classes=NASTY)
    return run_gates(snap, ["recall>=0.85", 'auc["ü类 ]["]>=0.5'], on="point")


def test_junit_counts_and_failures(report, tmp_path):
    path = write_junit(report, tmp_path / "ci" / "gate.xml")
    root = ET.parse(path).getroot()  # valid XML despite <, &, quotes and control characters
    assert root.tag == "testsuites"
    cases = root.findall("./testsuite/testcase")
    failures = root.findall("./testsuite/testcase/failure")
    assert len(cases) == int(root.get("tests")) == len(report.results) == 2 * 4 + 2
    assert len(failures) == int(root.get("failures")) == report.n_failed == 3
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["medaudit gate: m<1>", "medaudit gate: m2"]
    assert sum(int(s.get("tests")) for s in suites) == len(cases)
    names = [(c.get("classname"), c.get("name")) for c in cases]
    assert len(set(names)) == len(names)  # every check is its own test case
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {"recall>=0.85 [recall[a|b]]", 'auc["ü类 ]["]>=0.5 [auc[ü类 ][]]'}
    undefined = [f.get("message") for f in failures if "no <negatives>" in f.get("message")]
    assert len(undefined) == 2  # both models, reason kept verbatim
    assert "ctl\ufffd\ufffd" in ET.tostring(root, encoding="unicode")  # control chars replaced, not dropped


def test_junit_all_pass_has_no_failure_elements(report):
    snap = build_snapshot()
    root = ET.fromstring(junit_xml(run_gates(snap, ["accuracy>=0.5"])).encode())
    assert root.get("failures") == "0" and root.findall(".//failure") == []
    assert len(root.findall(".//testcase")) == 2


def test_markdown_escapes_cells(report, tmp_path):
    text = write_markdown(report, tmp_path / "gate.md").read_text(encoding="utf-8")
    assert text.startswith("### ❌ medaudit gate FAILED: 3 of 10 checks failed")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + len(report.results)
    # every row splits into the same number of cells once escaped pipes are ignored
    counts = {line.replace("\\|", "").count("|") for line in rows}
    assert counts == {10}
    assert "&lt;x y=\"1\"&gt;&amp;amp;" in text and "<x" not in text


def test_json_roundtrip(report, tmp_path):
    data = json.loads(write_json(report, tmp_path / "g.json").read_text(encoding="utf-8"))
    assert data == json.loads(json.dumps(report.to_dict()))
    assert data["format"] == "medaudit.gate/1" and data["passed"] is False and data["n_failed"] == 3
    undefined = [r for r in data["results"] if r["value"] is None]
    assert {r["reason"] for r in undefined} == {"no <negatives> & no luck"}


def test_table_lists_every_check(report):
    lines = format_table(report).splitlines()
    assert len(lines) == 1 + len(report.results) + 1
    assert sum(line.startswith("FAIL") for line in lines) == 3
    assert lines[-1] == "gate FAILED: 3 of 10 checks failed"


def test_writer_errors_name_the_option(report, tmp_path):
    from medaudit.errors import MedauditError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(MedauditError, match="^--junit .*cannot write"):
        write_junit(report, blocker / "gate.xml")


def test_gates_on_the_shared_snapshot_factory():
    """The report engineers' factory (real sklearn numbers) must be gateable as is."""
    factory = pytest.importorskip("tests.snapshot_factory")
    snap = factory.make_snapshot(n_models=2, n=60)
    rep = run_gates(snap, ["recall[pneumonia]>=0", "recall[covid]>=0", "auc>=0", "missed_disease_rate<=1"],
                    on="lower")
    covid = [r for r in rep.results if r.metric == "recall[covid]"]
    assert [r.passed for r in covid] == [False, False] and "no samples" in covid[0].reason
    assert all(r.passed for r in rep.results if r.metric != "recall[covid]")
    root = ET.fromstring(junit_xml(run_gates(snap, ["recall>=0"])).encode())
    assert any("&lt;script&gt;" in ET.tostring(c, encoding="unicode") for c in root.iter("testcase"))
