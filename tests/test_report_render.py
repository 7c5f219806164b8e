"""End-to-end rendering of a synthetic snapshot: HTML content, numbers, escaping, PDF text.

The report (figures + HTML + PDF) is rendered once per module; WeasyPrint takes seconds.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from medaudit.report import write_report
from medaudit.report.format import UNDEFINED, parse_metric_text
from tests.snapshot_factory import CLASSES, MISSING, make_snapshot, write_cam_tiles

SCRIPT = "<script>alert(1)</script>"
SECTION_TITLES = ["Summary", "Data", "Models", "Performance", "Missed-disease risk and operating points",
                  "Model comparison", "Grad-CAM and prediction galleries", "Efficiency", "Reproducibility appendix",
                  "Reviewer sign-off"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    snap = make_snapshot()
    tiles = write_cam_tiles(snap, src)
    out = tmp_path_factory.mktemp("rep") / "report"
    written = write_report(snap, out, extra_files=tiles)
    return {"snap": snap, "out": out, "written": written, "html": (out / "report.html").read_text("utf-8"),
            "json": json.loads((out / "report.json").read_text("utf-8"))}


class _Cells(HTMLParser):
    """Collects the text of every element carrying data-key (footnote <sup> excluded)."""

    def __init__(self):
        super().__init__()
        self.cells: dict[str, str] = {}
        self._stack: list[tuple[str, str | None]] = []
        self._sup = 0

    def handle_starttag(self, tag, attrs):
        if tag == "sup":
            self._sup += 1
        key = dict(attrs).get("data-key")
        self._stack.append((tag, key))
        if key is not None:
            self.cells[key] = ""

    def handle_endtag(self, tag):
        if tag == "sup":
            self._sup -= 1
        while self._stack:
            t, _ = self._stack.pop()
            if t == tag:
                break

    def handle_data(self, data):
        if self._sup:
            return
        for _, key in reversed(self._stack):
            if key is not None:
                self.cells[key] += data
                break


def _lookup(doc, key: str):
    node = doc
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def test_files_written_and_json_contract(report):
    out, js = report["out"], report["json"]
    for name in ("report.html", "report.pdf", "report.json"):
        assert (out / name).stat().st_size > 1000
    text = (out / "report.json").read_text("utf-8")
    assert text == json.dumps(js, sort_keys=True, indent=2) + "\n"
    assert js["figures"], "figures must be filled by the writer"
    for rel in js["figures"].values():
        assert rel.startswith("figures/") and (out / rel).is_file()
    assert {"roc", "pr", "calibration", "overlap", "confusion_m0", "confusion_m1"} <= set(js["figures"])
    # apart from figures, the snapshot is written unchanged
    assert {k: v for k, v in js.items() if k != "figures"} == {k: v for k, v in report["snap"].items() if k != "figures"}
    # the CAM tiles were copied in, and the whole folder stays small
    assert (out / "cams" / "resnet18_000.png").is_file()
    assert sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) < 5e6


def test_html_is_self_contained(report):
    html = report["html"]
    srcs = re.findall(r'\ssrc="([^"]*)"', html)
    assert len(srcs) >= 10 and all(s.startswith("data:image/") for s in srcs)
    assert "<link" not in html and "@import" not in html
    assert not re.search(r"url\((?!\s*['\"]?data:)", html), "CSS must not reference external resources"
    assert "<script" not in html.lower()


def test_script_class_name_is_escaped(report):
    html = report["html"]
    assert SCRIPT not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # reviewer notes: raw HTML shown as text, javascript: link not turned into a link
    assert "<b>raw html</b>" not in html and "&lt;b&gt;raw html&lt;/b&gt;" in html
    assert 'href="javascript:' not in html.lower()


def test_numbers_in_html_equal_json(report):
    parser = _Cells()
    parser.feed(report["html"])
    cells = parser.cells
    assert len(cells) > 60
    checked = 0
    for key, text in cells.items():
        mv = _lookup(report["json"], key)
        parsed = parse_metric_text(text)
        if mv.get("value") is None:
            assert parsed is None and text.strip() == UNDEFINED, key
            continue
        v, lo, hi = parsed
        assert v == pytest.approx(round(mv["value"], 3), abs=1e-9), key
        if mv.get("ci_low") is not None:
            assert (lo, hi) == (pytest.approx(round(mv["ci_low"], 3), abs=1e-9),
                                pytest.approx(round(mv["ci_high"], 3), abs=1e-9)), key
        else:
            assert lo is None and hi is None, key
        checked += 1
    assert checked > 50
    # every headline metric of every model is shown
    for i in range(2):
        for k in ("accuracy", "balanced_accuracy", "macro_f1", "auc_macro", "missed_disease_rate", "ece"):
            assert f"models.{i}.metrics.{k}" in cells


def test_missing_class_shows_undefined_with_reason(report):
    parser = _Cells()
    parser.feed(report["html"])
    for k in ("recall", "f1", "auc"):
        assert parser.cells[f"models.0.metrics.per_class.{MISSING}.{k}"].strip() == UNDEFINED
    assert f"no samples of class &#39;{MISSING}&#39; in y_true" in report["html"]
    # vit_tiny has converted weights: training curves are declared unavailable, not faked
    assert "training curves not available: converted weights" in report["html"]
    assert "selected on the test split" in report["html"]


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) not installed")
def test_pdf_has_sections_toc_and_page_numbers(report):
    pdf = report["out"] / "report.pdf"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    assert pages >= 9  # each section starts a page
    for title in SECTION_TITLES:
        assert title in text, title
    assert f"Page 1 of {pages}" in text and f"Page {pages} of {pages}" in text
    # TOC lines end with the page number of their section
    assert re.search(r"1\s+Summary\s*\.+\s*2\b", text)
    assert "Pneumonia classifier audit" in text and "synthetic:chest4" in text  # running header
    assert SCRIPT in text  # shown literally as text, never executed
    last_page = text.split("\f")[pages - 1]
    assert "Reviewer sign-off" in last_page and "Decision" in last_page
    assert CLASSES[0] in text


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) not installed")
def test_pdf_headings_are_not_orphaned(report):
    """A heading shares its page with the start of its content (tables split, headings do not)."""
    pdf = report["out"] / "report.pdf"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    pages = text.split("\f")
    from medaudit.report.context import SECTIONS

    number = {sid: i + 1 for i, (sid, _) in enumerate(SECTIONS)}  # new sections shift the numbers
    for heading, follower in [(f"{number['efficiency']} Efficiency", "Parameters (M)"),
                              ("Training set-up", "Initialisation"),
                              (f"{number['gallery']} Grad-CAM and prediction galleries", "true:"),
                              ("Measurement environment", "Device"), ("All training settings", "class_weights_used"),
                              ("Bootstrap differences", "Macro-F1")]:
        page = next(p for p in pages[1:] if re.search(rf"^\s*{re.escape(heading)}", p, re.M))  # [1:]: not the TOC
        assert follower in page.split(heading, 1)[1], heading
