"""The report's "Subgroups" section and the Data section's patient / near-duplicate parts, from the snapshot only.

The issue-18 blocks come from :func:`tests.snapshot_factory.make_subgroup_snapshot`, which runs the
real :func:`medaudit.metrics.subgroups.subgroup_metrics` / ``subgroup_differences``,
:func:`medaudit.metrics.clustered.patient_level` + ``compute_metrics``,
:func:`medaudit.data.inspect.patient_leakage` and :func:`medaudit.data.neardup.find_near_duplicates`
on seeded arrays, so every case they produce (too few to estimate, withheld intervals, unknown
groups, Holm-significant gaps) is rendered as it would be in a real report.
"""

from __future__ import annotations

import json
import re
from html import unescape

import numpy as np
import pytest
from click.testing import CliRunner

from medaudit.report.format import UNDEFINED, parse_metric_text
from medaudit.report.html import render_html
from medaudit.report.plots import forest_rows, make_figures, model_colors, subgroup_forest
from medaudit.report.subgroup_context import (
    DEMOGRAPHICS_MISSING,
    FOREST_METRICS,
    NOT_REQUESTED,
    OLD_SNAPSHOT,
    TOO_FEW,
    concerns,
    subgroup_section,
)
from medaudit.snapshot import measured_models
from tests.snapshot_factory import make_snapshot, make_subgroup_snapshot
from tests.test_report_clinical import _lookup, _overflowing_boxes


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def _section(html: str, sid: str = "subgroups") -> str:
    start = html.index(f'id="s-{sid}"')
    return html[start:html.index("</section>", start)]


def _ctx(snap: dict) -> dict:
    models = measured_models(snap)
    return subgroup_section(snap, models, {}, model_colors([m["name"] for m in models]))


@pytest.fixture(scope="module")
def snap2():
    return make_subgroup_snapshot(2)


@pytest.fixture(scope="module")
def html2(snap2, tmp_path_factory):
    return render_html(snap2, tmp_path_factory.mktemp("r"))


def _cells(sec: str) -> dict[str, str]:
    found = re.findall(r'data-key="([^"]+)">([^<]*)(?:<span class="ci">([^<]*)</span>)?', sec)
    cells: dict[str, str] = {}
    for k, v, ci in found:
        text = unescape(v).strip() + (" " + ci if ci else "")
        # The image-level overall values are shown twice (values table, images vs patients): alike.
        assert cells.setdefault(unescape(k), text) == text, k
    return cells


# -- what is shown -------------------------------------------------------------------------


def test_section_sits_after_clinical_use(html2):
    order = [m.group(1) for m in re.finditer(r'<section class="sec" id="s-([a-z]+)"', html2)]
    assert order.index("subgroups") == order.index("clinical") + 1
    toc = re.findall(r'<a href="#sec-([a-z]+)">', html2)
    assert toc.index("subgroups") == toc.index("clinical") + 1


def test_every_number_shown_is_the_snapshot_value(snap2, html2):
    """Each data-key cell prints its snapshot value (3 decimals) and interval; too-few values print
    "too few", never a number; p-values are the Holm-adjusted ones."""
    cells = _cells(_section(html2))
    checked = too_few = p_checked = 0
    for key, text in cells.items():
        value = _lookup(snap2, key)
        if key.endswith("p_adjusted"):
            assert text == "p " + ("< 0.001" if value < 0.001 else f"{value:.3f}"), key
            p_checked += 1
            continue
        mv = dict(value)
        if "diff" in mv:  # a gap or a model difference
            mv["value"] = mv["diff"]
        if mv["value"] is None:
            assert text == (TOO_FEW if mv.get("too_few") else UNDEFINED), key
            too_few += bool(mv.get("too_few"))
            continue
        v, lo, hi = parse_metric_text(text)
        assert v == pytest.approx(round(mv["value"], 3), abs=1e-9), key
        if mv.get("ci_low") is not None:
            assert (lo, hi) == (pytest.approx(round(mv["ci_low"], 3), abs=1e-9),
                                pytest.approx(round(mv["ci_high"], 3), abs=1e-9)), key
        else:
            assert lo is None and hi is None, key
        checked += 1
    parts = {k.split(".")[0] + "." + k.split(".")[2] for k in cells if k.startswith("models.")}
    assert parts == {"models.subgroups", "models.patient_level"}
    assert any(k.startswith("comparisons.subgroup_differences.0.columns.") for k in cells)
    # every group of every column of both models is in a table, every metric and gap
    n_groups = sum(len(c["groups"]) for m in snap2["models"] for c in m["subgroups"]["columns"].values())
    assert sum(".gap." in k and not k.endswith("p_adjusted") for k in cells) == 7 * n_groups
    assert checked > 300 and too_few > 50 and p_checked > 100


def test_too_few_values_carry_their_reason(snap2, html2):
    text = _text(_section(html2))
    c = snap2["models"][0]["subgroups"]["columns"]["site"]["groups"]["C"]
    assert c["recall"]["too_few"] and c["recall"]["reason"].startswith("too few to estimate")
    assert c["recall"]["reason"] in text and c["gap"]["recall"]["reason"] in text


def test_holm_significant_gaps_are_flagged_and_only_they(snap2, html2):
    sec = _section(html2)
    flagged = {unescape(k) for k in re.findall(r'<td class="num flag" data-key="([^"]+)"', sec)}
    expected = {f"models.{i}.subgroups.columns.{col}.groups.{lab}.gap.{k}"
                for i, m in enumerate(snap2["models"]) for col, cb in m["subgroups"]["columns"].items()
                for lab, g in cb["groups"].items() for k, gap in g["gap"].items()
                if gap["p_adjusted"] is not None and gap["p_adjusted"] < 0.05}
    expected |= {f"comparisons.subgroup_differences.0.columns.{col}.groups.{lab}.diff.{k}"
                 for col, cb in snap2["comparisons"]["subgroup_differences"][0]["columns"].items()
                 for lab, g in cb["groups"].items() for k, d in g["diff"].items()
                 if d["p_adjusted"] is not None and d["p_adjusted"] < 0.05}
    assert expected and flagged == expected


def test_findings_go_to_their_section(snap2, html2):
    sub, data = _text(_section(html2)), _text(_section(html2, "data"))
    levels = {f["level"] for f in snap2["findings"]}
    assert {"error", "warning", "info"} <= levels
    gaps = [f for f in snap2["findings"] if "Holm p" in f["text"]]
    leaks = [f for f in snap2["findings"] if "leakage" in f["text"]]
    assert gaps and leaks
    small = [f for f in snap2["findings"] if f["level"] == "info" and "too few" in f["text"]]
    assert small
    for f in gaps + small:
        assert f["text"] in sub and f["text"] not in data
    for f in leaks:
        assert f["text"] in data and f["text"] not in sub
    assert "selected on the test split" not in sub  # not a subgroup finding
    assert '<span class="badge error">error</span>' in _section(html2, "data")


def test_findings_with_a_topic_are_taken_at_their_word():
    f = {"level": "warning", "text": "site B: something", "model": None}
    assert concerns(f, "subgroups", ["site"]) and not concerns(f, "data", ["site"])
    assert not concerns({**f, "topic": "data"}, "subgroups", ["site"])
    assert concerns({**f, "topic": "data"}, "data", [])


def test_patient_level_beside_image_level(snap2, html2):
    cells = _cells(_section(html2))
    for i in range(len(snap2["models"])):
        for key in ("recall", "specificity", "auc"):
            assert f"models.{i}.subgroups.overall.{key}" in cells
            assert f"models.{i}.patient_level.metrics.per_class.disease.{key}" in cells
    text = _text(_section(html2))
    m0 = snap2["models"][0]
    assert f"{m0['metrics']['n']} images" in text and f"{m0['patient_level']['n_patients']} patients" in text
    assert m0["patient_level"]["rule"] in text


def test_consistency_of_model_differences_in_words(snap2, html2):
    text = _text(_section(html2))
    d = snap2["comparisons"]["subgroup_differences"][0]
    said = 0
    for cb in d["columns"].values():
        for c in cb["consistency"].values():
            if c["holds_in_every_group"] is False:
                assert f"better overall but not in {', '.join(c['groups_against'])}" in text
                said += 1
    assert said > 0


def test_forest_plot_draws_known_values_only(snap2):
    """Dots sit at the snapshot's values; a too-few value is text in its row, never a dot."""
    m = snap2["models"][0]
    rows = forest_rows(m["subgroups"])
    fig = subgroup_forest(m, "#0072B2")
    n = len(rows)
    for ax, (key, _) in zip(fig.axes, FOREST_METRICS, strict=True):
        dots = sorted((round(float(line.get_xdata()[0]), 9), round(float(line.get_ydata()[0]), 9))
                      for line in ax.get_lines() if line.get_marker() == "o")
        want, words = [], []
        for y, r in zip(range(n - 1, -1, -1), rows, strict=True):
            if r["kind"] != "group":
                continue
            col, label = _owner(rows, r)
            mv = m["subgroups"]["columns"][col]["groups"][label][key]
            if mv["value"] is None:
                words.append((y, TOO_FEW if mv.get("too_few") else UNDEFINED))
            else:
                want.append((round(mv["value"], 9), float(y)))
        assert dots == sorted(want), key
        texts = sorted((round(t.get_position()[1]), t.get_text()) for t in ax.texts)
        assert texts == sorted(words), key
        assert any(w == TOO_FEW for _, w in words) or key == "auc"
        overall = m["subgroups"]["overall"][key]["value"]
        assert any(line.get_xdata()[0] == overall and line.get_linestyle() == "--" for line in ax.get_lines())


def _owner(rows, row):
    """The column (header above) and group label of a forest row."""
    col = None
    for r in rows:
        if r["kind"] == "header":
            col = r["label"]
        if r is row:
            return col, row["label"].rsplit(" (n=", 1)[0]
    raise AssertionError


# -- Data section ------------------------------------------------------------------------------


def test_data_section_lists_hashed_patients_and_near_duplicate_pairs(snap2, html2):
    sec = _section(html2, "data")
    text = _text(sec)
    assert "MRN-" not in html2  # raw ids never reach the report
    pats = snap2["dataset"]["patients"]
    shared = [i for v in pats["across"].values() for i in v["examples"]]
    assert shared and all(re.fullmatch(r"p-[0-9a-f]{16}", i) for i in shared)
    for i in shared:
        assert i in text
    assert "Patient leakage" in text
    near = snap2["dataset"]["near_duplicates"]["across"]["train/test"]["examples"]
    assert near
    for e in near:
        assert re.search(rf"{e['a']} test {e['b']} {e['distance']} {e['correlation']:.4f}", text)


def test_demographics_missing_per_split_say_which_block(snap2, html2):
    text = _text(_section(html2, "data"))
    assert DEMOGRAPHICS_MISSING in text
    site = snap2["models"][0]["subgroups"]["columns"]["site"]["groups"]
    assert re.search(rf"site images patients disease A {site['A']['n']} {site['A']['n_patients']} "
                     rf"{site['A']['n_disease']} B {site['B']['n']}", text)


def test_demographics_per_split_when_the_snapshot_has_them(tmp_path):
    snap = make_subgroup_snapshot(2)
    snap["dataset"]["splits"]["train"]["groups"] = {"sex": {"F": 300, "M": 246}}
    snap["dataset"]["splits"]["test"]["groups"] = {"sex": {"F": 80, "M": 70, "unknown": 10}}
    text = _text(_section(render_html(snap, tmp_path), "data"))
    assert DEMOGRAPHICS_MISSING not in text
    assert "sex train val test F 300 not recorded 80 M 246 not recorded 70 unknown 0 not recorded 10" in text


# -- blocks that are not there ------------------------------------------------------------------


def test_old_snapshot_renders_and_says_not_available(tmp_path):
    snap = make_snapshot(2)  # before issue 18
    assert _ctx(snap) == {"reason": OLD_SNAPSHOT}
    html = render_html(snap, tmp_path)
    assert OLD_SNAPSHOT in _text(_section(html))
    data = _text(_section(html, "data"))
    assert "not available: this snapshot was written before the patient check" in data
    assert "not available: this snapshot was written before the near-duplicate check" in data
    assert not any(k.startswith("subgroups_m") for k in make_figures(snap, tmp_path / "f"))


def test_not_requested_and_unavailable_blocks(tmp_path):
    snap = make_subgroup_snapshot(2)
    snap["settings"]["subgroups"] = None
    for m in snap["models"]:
        m["subgroups"] = m["patient_level"] = None
    assert _ctx(snap) == {"reason": NOT_REQUESTED}
    snap = make_subgroup_snapshot(2)
    why = "no healthy class is known, so there is no disease-vs-healthy view"
    snap["models"][1]["subgroups"] = {"available": False, "reason": why}
    snap["models"][1]["patient_level"] = None
    ctx = _ctx(snap)
    assert ctx["per_model"][1]["reason"] == f"not available: {why}"
    assert ctx["per_model"][0]["columns"]
    assert ctx["patient_level"]["missing"] == [{"name": "vit_tiny", "reason": "not computed: no patient column"}]
    text = _text(_section(render_html(snap, tmp_path)))
    assert f"not available: {why}" in text


def test_without_patients(tmp_path):
    snap = make_subgroup_snapshot(2, with_patients=False)
    ctx = _ctx(snap)
    assert ctx["patient_level"]["reason"] == "not computed: no patient column"
    assert snap["dataset"]["patients"]["column"] is None
    html = render_html(snap, tmp_path)
    assert f"not checked: {snap['dataset']['patients']['reason']}" in _text(_section(html, "data"))
    assert "each image counts as its own patient" in _text(_section(html))


# -- escaping, figures, PDF -----------------------------------------------------------------------


def test_group_and_column_names_are_escaped(tmp_path):
    snap = make_subgroup_snapshot(2)
    bad, badcol = "<img src=x onerror=alert(1)>", "<b>site</b>"
    for m in snap["models"]:
        cols = m["subgroups"]["columns"]
        cols[badcol] = cols.pop("site")
        cols[badcol]["groups"][bad] = cols[badcol]["groups"].pop("C")
    snap["settings"]["subgroups"]["group_by"][1] = badcol
    html = render_html(snap, tmp_path)
    for sid in ("subgroups", "data"):
        sec = _section(html, sid)
        assert bad not in sec and badcol not in sec
    assert "&lt;img src=x onerror=alert(1)&gt;" in _section(html)
    assert "&lt;b&gt;site&lt;/b&gt;" in _section(html, "data")
    figs = make_figures(snap, tmp_path / "f")  # matplotlib draws the names as text
    assert "subgroups_m0" in figs


def test_figures_and_render_from_report_json_alone(snap2, tmp_path):
    from medaudit.cli import main
    from medaudit.report import write_report

    src = tmp_path / "src"
    write_report(snap2, src, formats=("json",))
    figs = json.loads((src / "report.json").read_text("utf-8"))["figures"]
    assert {"subgroups_m0", "subgroups_m1"} <= set(figs)
    (src / figs["subgroups_m0"]).unlink()
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["render", str(src / "report.json"), "-o", str(out), "--format", "html",
                                  "--redraw-figures"])
    assert r.exit_code == 0, r.output
    sec = _section((out / "report.html").read_text("utf-8"))
    srcs = re.findall(r'<img src="([^"]*)"', sec)
    assert len(srcs) == 2 and all(s.startswith("data:image/png;base64,") for s in srcs)


ONLY_OURS = """{% extends "medaudit/report.html.j2" %}
{% block summary_section %}{% endblock %}{% block models_section %}{% endblock %}
{% block performance_section %}{% endblock %}{% block risk_section %}{% endblock %}
{% block clinical_section %}{% endblock %}{% block comparison_section %}{% endblock %}
{% block gallery_section %}{% endblock %}{% block efficiency_section %}{% endblock %}
{% block appendix_section %}{% endblock %}
"""


def test_pdf_tables_fit_the_page(tmp_path):
    """Three models, a long model name, long group labels: nothing in the Subgroups or Data section runs off A4."""
    snap = make_subgroup_snapshot(3)
    long_name = "efficientnet_b0_finetuned_on_the_hospital_B_external_cohort"
    old = snap["models"][2]["name"]
    snap["models"][2]["name"] = long_name
    for d in snap["comparisons"]["subgroup_differences"]:
        d["a"], d["b"] = (long_name if d["a"] == old else d["a"]), (long_name if d["b"] == old else d["b"])
    long_label = "Hospital B, radiology department, portable unit"
    for m in snap["models"]:
        groups = m["subgroups"]["columns"]["site"]["groups"]
        groups[long_label] = groups.pop("B")
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "report.html.j2").write_text(ONLY_OURS, "utf-8")
    root = tmp_path / "rep"
    snap["figures"] = make_figures(snap, root / "figures")
    html = render_html(snap, root, template_dir=tmp_path / "tpl", target="pdf")
    assert 'id="sec-subgroups"' in html and 'id="sec-data"' in html and 'id="sec-performance"' not in html
    assert _overflowing_boxes(html) == []


def test_forest_height_is_bounded():
    """Many groups: the figure stays within an A4 page (CSS scales it, the labels stay short)."""
    groups = {f"g{k}": {"n": 20, "unknown": False, **{m: {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}
                                                       for m, _ in FOREST_METRICS}} for k in range(80)}
    fig = subgroup_forest({"name": "m", "subgroups": {"overall": {}, "columns": {"c": {"groups": groups}}}}, "#000")
    assert fig.get_size_inches()[1] <= 9.0
    assert len(forest_rows({"columns": {"c": {"groups": groups}}})) == 81
    assert np.isfinite(fig.axes[0].get_xlim()).all()


def test_near_duplicate_thumbnails_are_shown_and_only_png_data_uris_pass():
    from medaudit.report.subgroup_context import _safe_thumbnails

    ok = "data:image/png;base64,iVBORw0KGgo="
    assert _safe_thumbnails([ok, ok]) == [ok, ok]
    for bad in ([ok], [ok, "http://evil.example/x.png"], [ok, "data:image/svg+xml;base64,PHN2Zz4="],
                [ok, 'data:image/png;base64,AA" onerror="x'], "nope", None, [ok, ok + "A" * 5000]):
        assert _safe_thumbnails(bad) == [], bad



def test_near_duplicate_pairs_show_both_thumbnails(snap2, html2):
    near = snap2["dataset"]["near_duplicates"]["across"]["train/test"]["examples"]
    sec = _section(html2, "data")
    for e in near:
        for uri in e["thumbnails"]:
            assert f'<img class="nearthumb" src="{uri}"' in sec
