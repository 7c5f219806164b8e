"""The report's "Clinical use" section: context, HTML, figures and PDF layout, from the snapshot only.

The clinical blocks come from :func:`tests.snapshot_factory.make_clinical_snapshot`, which runs the
real :mod:`medaudit.clinical` on the factory's seeded predictions, so every case the analyses can
produce (a guaranteed threshold that validation is too small for, a class absent from test) is
rendered as it would be in a real report.
"""

from __future__ import annotations

import json
import re
from html import unescape

import numpy as np
import pytest
from click.testing import CliRunner

from medaudit.clinical import NO_VALIDATION
from medaudit.report.clinical_context import NOT_REQUESTED, OLD_SNAPSHOT, clinical_section
from medaudit.report.format import UNDEFINED, parse_metric_text
from medaudit.report.html import render_html
from medaudit.report.plots import _decision_curves, decision_ylim, make_figures, model_colors
from medaudit.snapshot import measured_models
from tests.snapshot_factory import CLASSES, MISSING, make_clinical_snapshot, make_snapshot

SCRIPT = CLASSES[3]  # "<script>alert(1)</script>"


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def _section(html: str) -> str:
    start = html.index('id="s-clinical"')
    return html[start:html.index("</section>", start)]


def _ctx(snap: dict) -> dict:
    models = measured_models(snap)
    return clinical_section(snap, models, {}, model_colors([m["name"] for m in models]))


def _lookup(doc, key: str):
    """Follow a data-key path; a dict key may itself hold dots ("naive_sensitivity_0.95")."""
    node, parts = doc, key.split(".")
    while parts:
        if isinstance(node, list):
            node = node[int(parts.pop(0))]
            continue
        n = next(n for n in range(1, len(parts) + 1) if ".".join(parts[:n]) in node)
        node, parts = node[".".join(parts[:n])], parts[n:]
    return node


@pytest.fixture(scope="module")
def snap2():
    return make_clinical_snapshot(2, with_cost_matrix=True)


@pytest.fixture(scope="module")
def html2(snap2, tmp_path_factory):
    return render_html(snap2, tmp_path_factory.mktemp("r"))


# -- what is shown -----------------------------------------------------------------------


def test_section_sits_after_the_risk_section(html2):
    order = [m.group(1) for m in re.finditer(r'<section class="sec" id="s-([a-z]+)"', html2)]
    assert order.index("clinical") == order.index("risk") + 1
    toc = re.findall(r'<a href="#sec-([a-z]+)">', html2)
    assert toc.index("clinical") == toc.index("risk") + 1


def test_every_number_shown_is_the_snapshot_value(snap2, html2):
    """Each data-key cell of the section prints its snapshot value (3 decimals) and interval."""
    sec = _section(html2)
    found = re.findall(r'data-key="([^"]+)">([^<]*)(?:<span class="ci">([^<]*)</span>)?', sec)
    cells = {unescape(k): v.strip() + (" " + ci if ci else "") for k, v, ci in found}
    assert len(cells) == len(found)  # each key shown once
    assert len(cells) > 80
    keys = {k.split(".clinical.")[1].split(".")[0] for k in cells}
    assert keys == {"cost", "cost_matrix", "prevalence", "thresholds", "recalibration", "conformal", "selective"}
    checked = undefined = 0
    for key, text in cells.items():
        value = _lookup(snap2, key)
        if key.endswith("best_trivial"):
            assert text == value
            continue
        mv = value if isinstance(value, dict) else {"value": value}
        parsed = parse_metric_text(unescape(text))
        if mv.get("value") is None:
            assert parsed is None and text.strip() == UNDEFINED, key
            undefined += 1
            continue
        digits = 2 if key.endswith("mean_set_size") else 3
        v, lo, hi = parsed
        assert v == pytest.approx(round(mv["value"], digits), abs=1e-9), key
        if mv.get("ci_low") is not None:
            assert (lo, hi) == (pytest.approx(round(mv["ci_low"], digits), abs=1e-9),
                                pytest.approx(round(mv["ci_high"], digits), abs=1e-9)), key
        else:
            assert lo is None and hi is None, key
        checked += 1
    assert checked > 80 and undefined >= 4  # the guaranteed threshold (38 val positives < 59) and covid


def test_undefined_values_carry_their_reason(snap2, html2):
    text = _text(_section(html2))
    m0 = snap2["models"][0]["clinical"]
    guaranteed = m0["thresholds"]["points"][1]
    assert guaranteed["threshold"] is None  # validation holds 38 disease samples; 95% needs 59
    assert guaranteed["on_validation"]["reason"] in text
    assert m0["conformal"]["lac"]["coverage_per_class"][MISSING]["reason"] in text
    # the prevalence point without a threshold is a sentence, not a row of zeros
    assert m0["prevalence"]["points"][guaranteed["name"]]["available"] is False
    assert f"not available: {m0['prevalence']['points'][guaranteed['name']]['reason']}" in text


def test_decision_findings_and_settings_are_shown(snap2, html2):
    text = _text(_section(html2))
    for f in snap2["clinical"]["findings"]:
        assert f["text"] in text
    assert "at the deployment prevalence 2% (test sample: " in text
    assert "missed disease (FN) = 10, false alarm (FP) = 1" in text
    assert "90% coverage for every class" in text


def test_class_names_are_escaped(html2):
    sec = _section(html2)
    assert SCRIPT not in sec and "<script" not in sec.lower()
    assert sec.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 2  # both models' conformal tables


def test_model_names_are_escaped(tmp_path):
    snap = make_clinical_snapshot(2)
    bad = "<img src=x onerror=alert(1)>"
    old = snap["models"][0]["name"]
    snap["models"][0]["name"] = bad
    snap["clinical"]["decision_curves"]["models"][bad] = snap["clinical"]["decision_curves"]["models"].pop(old)
    for f in snap["clinical"]["findings"]:
        f["text"], f["model"] = f["text"].replace(old, bad), bad if f["model"] == old else f["model"]
    sec = _section(render_html(snap, tmp_path))
    assert bad not in sec and "&lt;img src=x onerror=alert(1)&gt;" in sec


# -- blocks that are not there ------------------------------------------------------------


def test_options_not_given_say_so(tmp_path):
    snap = make_clinical_snapshot(2, prevalence=None, cost=None)
    ctx = _ctx(snap)
    assert ctx["prevalence"]["reason"] == NOT_REQUESTED["prevalence"]
    assert ctx["cost"]["reason"] == NOT_REQUESTED["cost"]
    assert ctx["prevalence"]["rows"] == [] and ctx["cost"]["groups"] == []
    text = _text(_section(render_html(snap, tmp_path)))
    assert NOT_REQUESTED["prevalence"] in text and NOT_REQUESTED["cost"] in text
    assert NOT_REQUESTED["cost_matrix"] in text
    assert "at the test sample's prevalence" in text  # decision curves then use the test mix


def test_without_validation_every_choice_shows_the_reason(tmp_path):
    snap = make_clinical_snapshot(2, with_validation=False)
    ctx = _ctx(snap)
    for part in ("thresholds", "cost", "prevalence", "recalibration", "conformal"):
        assert ctx[part]["reason"] == f"not available: {NO_VALIDATION}", part
    assert len(ctx["warnings"]) == 2
    sel = ctx["selective"]
    assert sel["reason"] is None and sel["points"] == [] and len(sel["summary"]) == 2  # the curve needs no choice
    assert all(r["reason"].startswith("not available: no validation predictions") for r in sel["point_reasons"])
    text = _text(_section(render_html(snap, tmp_path)))
    assert text.count(NO_VALIDATION) >= 5


def test_one_model_without_a_block_is_named_with_its_reason(tmp_path):
    snap = make_clinical_snapshot(2)
    snap["models"][1]["clinical"]["cost"] = {"available": False, "reason": "a reason only this model has"}
    snap["models"][1]["clinical"]["conformal"] = None
    ctx = _ctx(snap)
    assert [g["models"][0]["name"] for g in ctx["cost"]["groups"]] == ["resnet18"]
    assert ctx["cost"]["missing"] == [{"name": "vit_tiny", "reason": "not available: a reason only this model has"}]
    assert [m["name"] for m in ctx["conformal"]["per_model"]] == ["resnet18"]
    assert ctx["conformal"]["missing"][0]["name"] == "vit_tiny"
    text = _text(_section(render_html(snap, tmp_path)))
    assert "vit_tiny: not available: a reason only this model has" in text


def test_unavailable_across_models_and_multilabel(tmp_path):
    snap = make_clinical_snapshot(2)
    why = "clinical-use analyses cover single-label tasks; a multilabel task has no single decision"
    for m in snap["models"]:
        m["clinical"] = {"available": False, "reason": why}
    snap["clinical"] = {"available": False, "reason": "decision curves cover single-label tasks"}
    ctx = _ctx(snap)
    for part in ("thresholds", "cost", "cost_matrix", "prevalence", "recalibration", "conformal", "selective"):
        assert ctx[part]["reason"] == f"not available: {why}", part
    assert ctx["decision"] == {"reason": "not available: decision curves cover single-label tasks"}
    sec = _section(render_html(snap, tmp_path))
    assert "<table class=\"metrics" not in sec and "<img" not in sec
    assert "not available: decision curves cover single-label tasks" in _text(sec)
    assert make_figures(snap, tmp_path / "figs").keys().isdisjoint({"decision_curves", "risk_coverage",
                                                                    "recalibration_m0", "recalibration_m1"})


def test_old_snapshot_renders_with_the_section_unavailable(tmp_path):
    snap = make_snapshot(2)  # no clinical blocks: a snapshot from before issue 20
    assert "clinical" not in snap and not any("clinical" in m for m in snap["models"])
    assert _ctx(snap) == {"reason": OLD_SNAPSHOT}
    sec = _section(render_html(snap, tmp_path))
    assert "not available in this snapshot" in _text(sec)
    assert not make_figures(snap, tmp_path / "figs").keys() & {"decision_curves", "risk_coverage", "recalibration_m0"}


def test_schema_1_snapshot_still_renders(tmp_path):
    snap = make_snapshot(2)
    snap["schema_version"] = "1.0"
    snap.pop("run")
    assert "not available in this snapshot" in _text(_section(render_html(snap, tmp_path)))


# -- figures and render --------------------------------------------------------------------


def test_decision_curve_axis_keeps_models_and_cuts_treat_all(snap2):
    curves = snap2["clinical"]["decision_curves"]
    t = np.array(curves["thresholds"])
    pi = 0.02
    # treat all at a deployment prevalence, closed form: pi - (1 - pi) t / (1 - t)
    np.testing.assert_allclose(curves["treat_all"]["net_benefit"], pi - (1 - pi) * t / (1 - t), atol=1e-12)
    lo, hi = decision_ylim(curves)
    best = max(max(v for v in c["ci_high"] if v is not None) for c in curves["models"].values())
    assert lo < 0 < hi and hi >= best and hi >= max(curves["treat_all"]["net_benefit"])  # 0 = treat none
    assert min(curves["treat_all"]["net_benefit"]) < lo  # the plunge of treat all is cut off
    assert lo >= -1.2 * hi  # ... so the useful range is not squashed into a sliver
    fig = _decision_curves(snap2["clinical"], model_colors(list(curves["models"])))
    ax = fig.axes[0]
    assert ax.get_ylim() == pytest.approx((lo, hi))
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["treat no one", "treat everyone", "resnet18", "vit_tiny"]


def test_decision_curve_axis_without_any_benefit():
    curves = {"thresholds": [0.1, 0.2], "prevalence": {"value": 0.05}, "treat_all": {"net_benefit": [-0.5, -1.0]},
              "models": {"m": {"net_benefit": [None, None], "ci_low": [None, None], "ci_high": [None, None]}}}
    lo, hi = decision_ylim(curves)
    assert lo < 0 < hi and hi >= 0.05  # no curve above 0: the range still reaches the prevalence, NB's ceiling


def test_figures_and_render_from_report_json_alone(snap2, tmp_path):
    from medaudit.cli import main
    from medaudit.report import write_report

    src = tmp_path / "src"
    write_report(snap2, src, formats=("json",))
    figs = json.loads((src / "report.json").read_text("utf-8"))["figures"]
    assert {"decision_curves", "risk_coverage", "recalibration_m0", "recalibration_m1"} <= set(figs)
    for key in ("decision_curves", "risk_coverage", "recalibration_m0"):
        (src / figs[key]).unlink()  # render must redraw them from the numbers
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["render", str(src / "report.json"), "-o", str(out), "--format", "html",
                                  "--redraw-figures"])
    assert r.exit_code == 0, r.output
    sec = _section((out / "report.html").read_text("utf-8"))
    srcs = re.findall(r'<img src="([^"]*)" alt="([^"]*)"', sec)
    assert len(srcs) == 4 and all(s.startswith("data:image/png;base64,") for s, _ in srcs)  # 1 + 1 + 2 models
    assert "figure &ldquo;" not in sec  # no "figure has no data" placeholder


# -- PDF layout ------------------------------------------------------------------------------

ONLY_CLINICAL = """{% extends "medaudit/report.html.j2" %}
{% block summary_section %}{% endblock %}{% block data_section %}{% endblock %}
{% block models_section %}{% endblock %}{% block performance_section %}{% endblock %}
{% block risk_section %}{% endblock %}{% block comparison_section %}{% endblock %}
{% block gallery_section %}{% endblock %}{% block efficiency_section %}{% endblock %}
{% block appendix_section %}{% endblock %}
"""


def _overflowing_boxes(html: str) -> list[str]:
    """Tables, images and lines of text that reach past the right margin of their PDF page."""
    import weasyprint
    from weasyprint.formatting_structure import boxes

    def walk(box):
        yield box
        for child in getattr(box, "children", None) or []:
            yield from walk(child)

    out = []
    for n, page in enumerate(weasyprint.HTML(string=html).render().pages, 1):
        right = page._page_box.content_box_x() + page._page_box.width
        for b in walk(page._page_box):
            if isinstance(b, (boxes.TableBox, boxes.ReplacedBox, boxes.LineBox)):
                excess = b.position_x + b.margin_width() - right
                if excess > 0.5:
                    el = b.element
                    out.append(f"page {n}: {type(b).__name__} <{getattr(el, 'tag', '?')} "
                               f"class={el.get('class') if el is not None else None}> {excess:.0f}px too wide")
    return out


def test_pdf_tables_fit_the_page(tmp_path):
    """Three models, a long model name, every optional table: nothing in the section runs off an A4 page."""
    snap = make_clinical_snapshot(3, with_cost_matrix=True)
    long_name = "efficientnet_b0_finetuned_on_the_hospital_B_external_cohort"
    old = snap["models"][2]["name"]
    snap["models"][2]["name"] = long_name
    dc = snap["clinical"]["decision_curves"]["models"]
    dc[long_name] = dc.pop(old)
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "report.html.j2").write_text(ONLY_CLINICAL, "utf-8")
    root = tmp_path / "rep"
    snap["figures"] = make_figures(snap, root / "figures")
    html = render_html(snap, root, template_dir=tmp_path / "tpl", target="pdf")
    assert 'id="sec-clinical"' in html and 'id="sec-performance"' not in html
    assert _overflowing_boxes(html) == []


def test_overflow_check_catches_a_wide_table():
    """The layout check above can fail: a table wider than the page is reported."""
    wide = "<table>" + "<tr>" + "".join(f"<td>{'x' * 30}</td>" for _ in range(8)) + "</tr></table>"
    html = f"<html><head><style>@page {{ size: A4; margin: 20mm 16mm }} td {{ white-space: nowrap }}</style></head>" \
           f"<body>{wide}</body></html>"
    assert any("TableBox" in line for line in _overflowing_boxes(html))


# -- PPV/NPV per disease class and Platt scaling (real audits, tests.test_gate_clinical) --------------------


def _shown_cells(html: str) -> dict[str, str]:
    found = re.findall(r'data-key="([^"]+)">([^<]*)(?:<span class="ci">([^<]*)</span>)?', _section(html))
    return {unescape(k): v.strip() + (" " + ci if ci else "") for k, v, ci in found}


def _assert_shown_as_in_snapshot(snap: dict, cells: dict[str, str]) -> int:
    for key, text in cells.items():
        mv = _lookup(snap, key)
        parsed = parse_metric_text(unescape(text))
        if mv.get("value") is None:
            assert parsed is None and text == UNDEFINED, key
            continue
        v, lo, hi = parsed
        assert v == pytest.approx(round(mv["value"], 3), abs=1e-9), key
        if mv.get("ci_low") is not None:
            assert (lo, hi) == (pytest.approx(round(mv["ci_low"], 3), abs=1e-9),
                                pytest.approx(round(mv["ci_high"], 3), abs=1e-9)), key
    return len(cells)


@pytest.fixture(scope="module")
def per_class_snap():
    from tests.test_gate_clinical import clinical_snapshot

    return clinical_snapshot(prevalence=0.1, cost=None, bootstrap=40, per_class={"glioma": 0.02, "pituitary": 0.005})[0]


def test_the_ppv_table_shows_a_row_per_class_and_rule(per_class_snap, tmp_path):
    html = render_html(per_class_snap, tmp_path)
    cells = _shown_cells(html)
    per_class = {k: v for k, v in cells.items() if ".clinical.prevalence_per_class." in k}
    # 2 models x 2 classes x 2 rules x (sensitivity, specificity, PPV, NPV), each its snapshot value
    assert _assert_shown_as_in_snapshot(per_class_snap, per_class) == 2 * 2 * 2 * 4
    assert {k.split(".points.")[1].split(".")[-1] for k in per_class} == {"sensitivity", "specificity", "ppv", "npv"}
    text = _text(_section(html))
    assert "glioma vs the rest at 2%" in text and "pituitary vs the rest at 0.5%" in text
    assert "disease (not notumor) at 10%" in text, "the disease-as-a-whole rows stay beside them"
    assert "Outcome, prevalence" in text
    assert "Deployment prevalence per class glioma 2%, pituitary 0.5% (each class against the rest)" in text
    ctx = _ctx(per_class_snap)["prevalence"]
    assert [(r["model"], r["outcome"].split(" ")[0], r["point"]) for r in ctx["rows"]][:6] == [
        ("a", "disease", "Naive"), ("a", "disease", "Guaranteed"), ("a", "glioma", "Naive"),
        ("a", "glioma", "Guaranteed"), ("a", "pituitary", "Naive"), ("a", "pituitary", "Guaranteed")]
    assert [r["first"] for r in ctx["rows"]].count(True) == 2  # the model's name once per model


def test_only_per_class_prevalences_still_give_the_table(tmp_path):
    from tests.test_gate_clinical import clinical_snapshot

    snap, _ = clinical_snapshot(prevalence=None, cost=None, bootstrap=0, per_class={"glioma": 0.02})
    ctx = _ctx(snap)["prevalence"]
    assert ctx["reason"] is None and ctx["missing"] == [] and ctx["per_class"]
    assert {r["outcome"] for r in ctx["rows"]} == {"glioma vs the rest at 2%"}
    text = _text(_section(render_html(snap, tmp_path)))
    assert NOT_REQUESTED["prevalence"] not in text and "glioma vs the rest at 2%" in text


def test_per_class_without_validation_is_a_sentence(tmp_path):
    from tests.test_gate_clinical import clinical_snapshot

    snap, _ = clinical_snapshot(val=0, prevalence=None, cost=None, bootstrap=0, per_class={"glioma": 0.02})
    text = _text(_section(render_html(snap, tmp_path)))
    assert f"glioma vs the rest at 2% not available: {NO_VALIDATION}" in text


def test_without_per_class_the_table_keeps_its_columns(snap2):
    ctx = _ctx(snap2)["prevalence"]
    assert ctx["per_class"] is False and ctx["prevalence"] == "2%"
    assert all(r["outcome"] is None for r in ctx["rows"])


@pytest.fixture(scope="module")
def binary_snap():
    from tests.test_gate_clinical import clinical_snapshot

    return clinical_snapshot(classes=["normal", "pneumonia"], prevalence=None, cost=None, bootstrap=40)[0]


def test_a_binary_snapshot_shows_platt_beside_temperature(binary_snap, tmp_path):
    html = render_html(binary_snap, tmp_path)
    cells = _shown_cells(html)
    platt = {k: v for k, v in cells.items() if ".clinical.recalibration_platt." in k}
    temperature = {k: v for k, v in cells.items() if ".clinical.recalibration.test." in k}
    assert len(platt) == len(temperature) > 0
    _assert_shown_as_in_snapshot(binary_snap, platt)
    text = _text(_section(html))
    p = binary_snap["models"][0]["clinical"]["recalibration_platt"]["parameters"]
    assert f"Platt scaling of p(pneumonia): intercept {p['intercept']:.3f}, slope {p['slope']:.3f}" in text
    assert text.index("temperature scaling") < text.index("Beside it, Platt scaling")
    # The reliability figure draws Platt's curve beside temperature scaling's.
    from medaudit.report.plots import _recalibration

    fig = _recalibration(binary_snap["models"][0], {})
    assert fig.axes[0].get_legend_handles_labels()[1] == ["perfect calibration", "before",
                                                          "after (temperature-scaled)", "after (Platt-scaled)"]


def test_an_older_binary_snapshot_without_platt_renders_as_before(binary_snap, tmp_path):
    import copy

    old = copy.deepcopy(binary_snap)
    for m in old["models"]:
        del m["clinical"]["recalibration_platt"]
    text = _text(_section(render_html(old, tmp_path)))
    assert "Platt" not in text and "temperature scaling" in text
    assert all("platt" not in m for m in _ctx(old)["recalibration"]["per_model"])


def test_multiclass_snapshots_show_no_platt(snap2, html2):
    assert "Platt" not in _text(_section(html2))


def test_pdf_per_class_table_fits_the_page(per_class_snap, tmp_path):
    snap = json.loads(json.dumps(per_class_snap))
    long_name = "efficientnet_b0_finetuned_on_the_hospital_B_external_cohort"
    snap["models"][1]["name"] = long_name
    dc = snap["clinical"]["decision_curves"]["models"]
    dc[long_name] = dc.pop("b")
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "report.html.j2").write_text(ONLY_CLINICAL, "utf-8")
    html = render_html(snap, tmp_path / "rep", template_dir=tmp_path / "tpl", target="pdf")
    assert "glioma vs the rest" in html and _overflowing_boxes(html) == []
