"""Section content of the report: efficiency, training set-up, comparison, data, architecture.

HTML only (no figures, no PDF), so these run in about a second each; the PDF layout is
checked in test_report_render.py.
"""

from __future__ import annotations

import re
from html import unescape

import pytest

from medaudit.report.compare_context import comparison_section
from medaudit.report.context import build_context
from medaudit.report.eff_context import NOT_MEASURED, efficiency_section
from medaudit.report.html import render_html
from medaudit.report.train_context import training_rows
from medaudit.snapshot import measured_models
from tests.snapshot_factory import MISSING, make_snapshot


def _text(html: str) -> str:
    """Visible text, tags dropped and whitespace collapsed."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def _section(html: str, sid: str) -> str:
    start = html.index(f'id="s-{sid}"')
    end = html.index("</section>", start)
    return html[start:end]


@pytest.fixture(scope="module")
def html3(tmp_path_factory):
    return render_html(make_snapshot(3), tmp_path_factory.mktemp("r"))


@pytest.fixture(scope="module")
def html2(tmp_path_factory):
    return render_html(make_snapshot(2), tmp_path_factory.mktemp("r"))


# -- efficiency ----------------------------------------------------------------------


def test_efficiency_is_compact_and_shows_environment_once(html3):
    sec = _section(html3, "efficiency")
    text = _text(sec)
    assert "environment \u00b7" not in text and "batch ms" not in text  # no flattened dump
    rows = re.findall(r'<th class="text" scope="row">([^<]+)</th>', sec)
    assert len(rows) <= 16, rows
    assert "Parameters (M)" in rows and "Batch-1 latency, median [IQR] (ms)" in rows
    assert "Throughput at batch 1 (images/s)" in rows and "Throughput at batch 32 (images/s)" in rows
    assert text.count("AMD EPYC") == 1 and text.count("interleaved") >= 1
    assert "depend on the machine" in text
    # the third model was not benchmarked: said so, and its static counts still come from the checkpoint
    assert NOT_MEASURED in text
    assert "efficientnet_b0: timings not measured (--no-bench)" in text


def test_efficiency_values_match_snapshot():
    snap = make_snapshot(2)
    models = measured_models(snap)
    ctx = efficiency_section(models, snap["run"]["efficiency"])
    rows = {r["label"]: [c.text for c in r["values"]] for r in ctx["rows"]}
    e0 = snap["run"]["efficiency"]["models"]["resnet18"]
    assert rows["Parameters (M)"][0] == f"{e0['params_total'] / 1e6:.2f}"
    lat = e0["latency_ms"]
    assert rows["Batch-1 latency, median [IQR] (ms)"][0] == f"{lat['median']:.2f} [{lat['q25']:.2f}\u2013{lat['q75']:.2f}]"
    assert rows["Batch-1 latency, p95 (ms)"][0] == f"{lat['p95']:.2f}"
    assert rows["Batch-1 latency, min (ms)"][0] == f"{lat['min']:.2f}"
    assert rows["Throughput at batch 32 (images/s)"][1] == f"{models[1]['efficiency']['throughput']['32']:.1f}"
    assert rows["Peak memory added by a forward (MB)"][0].startswith("54.91 (batch 32; process RSS peak growth)")
    assert rows["Memory format, dtype"][0] == "contiguous (NCHW), float32"


def test_ratio_sentences(html2):
    snap = make_snapshot(2)
    r = snap["run"]["efficiency"]["ratios"][0]
    t = r["time_ratio"]["1"]
    expected = (f"resnet18 takes {t['median']:.2f}\u00d7 [IQR {t['q25']:.2f}\u2013{t['q75']:.2f}] "
                f"the time of vit_tiny at batch 1")
    text = _text(_section(html2, "efficiency"))
    assert expected in text
    assert f"resnet18 has {r['params_ratio']:.2f}\u00d7 the parameters and {r['flops_ratio']:.2f}\u00d7 the FLOPs" in text


def test_efficiency_null_everywhere():
    snap = make_snapshot(2)
    snap["run"]["efficiency"] = None
    ctx = efficiency_section(measured_models(snap), None)
    labels = [r["label"] for r in ctx["rows"]]
    # only the static counts and the evaluation pass remain; no row of "not measured"
    assert labels == ["Parameters (M)", "FLOPs per image (G)", "MACs per image (G)",
                      "Evaluation pass (images/s, whole split)"]
    from medaudit.report.eff_context import num

    pred = {**snap["models"][0]["predictions"], **snap["run"]["predictions"]["resnet18"]}
    assert ctx["rows"][-1]["values"][0].text == f"{num(pred['n'] / pred['wall_s'])} (cpu)"
    assert ctx["missing"] == ["resnet18", "vit_tiny"] and ctx["env_rows"] == [] and ctx["ratios"] == []
    assert ctx["ratios_reason"].startswith("not available:")


def test_schema_1_0_snapshot_still_renders_its_efficiency():
    """1.0 kept the measurements in the models and at the top level; render reads them there."""
    snap = make_snapshot(2)
    run = snap["run"]
    for m in snap["models"]:
        m["efficiency"] = run["efficiency"]["models"][m["name"]]
        m["predictions"].update(run["predictions"][m["name"]])
    snap["efficiency"] = {k: run["efficiency"][k] for k in ("environment", "ratios")}
    del run["efficiency"], run["predictions"]
    snap["schema_version"] = "1.0"
    old = build_context(snap, lambda rel: None)["efficiency"]
    new = build_context(make_snapshot(2), lambda rel: None)["efficiency"]
    assert old == new and old["any_measured"]


def test_ratio_verdict_when_iqr_spans_one():
    top = {"environment": {}, "ratios": [{"a": "a", "b": "b", "params_ratio": None, "flops_ratio": None,
                                          "time_ratio": {"1": {"median": 1.02, "q25": 0.97, "q75": 1.08, "n": 9}}}]}
    ctx = efficiency_section([{"name": "a", "efficiency": None}, {"name": "b", "efficiency": None}], top)
    assert len(ctx["ratios"]) == 1  # no params/FLOPs sentence when both ratios are null
    assert "no clear difference" in ctx["ratios"][0]["verdict"]


# -- training set-up -----------------------------------------------------------------


def test_training_table_is_curated(html2):
    sec = _section(html2, "models")
    text = _text(sec)
    for label in ("Initialisation", "Loss", "Class balancing", "Scheduler", "Epochs run / planned",
                  "Checkpoint selected by", "Validation data", "Early stopping", "Seed, device"):
        assert label in text, label
    assert "focal (\u03b3 = 2)" in text
    assert "multistep (milestones 4, 6)" in text
    assert "6 / 8 (stopped early)" in text
    assert "val_auc; best epoch 5 (score 0.8125)" in text
    # raw config keys stay out of section 3 ...
    for raw in ("class_weights_used", "num_workers", "torch_version", "small_stem"):
        assert raw not in sec, raw
    # ... and are all in the appendix
    app = _section(html2, "appendix")
    assert "All training settings" in app
    for raw in ("class_weights_used", "num_workers", "torch_version", "small_stem"):
        assert f"<th>{raw}</th>" in app, raw


def test_training_rows_converted_and_missing():
    rows = training_rows([{"source": "converted", "weights_file": "w.safetensors"}, None])
    assert rows == [{"label": "Source", "values": ["converted weights (w.safetensors)", "not available"]}]


# -- comparison ----------------------------------------------------------------------


def test_bootstrap_columns_and_recall_table(html2):
    sec = _section(html2, "comparison")
    heads = [_text(h).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", sec)]
    assert "Accuracy" in heads and "Macro-F1" in heads
    assert "settings" not in [h.lower() for h in heads] and "recall" not in heads
    text = _text(sec)
    boot = text[text.index("Bootstrap differences"):text.index("Recall (sensitivity) difference per class")]
    assert "undefined" not in boot and "not available" not in boot
    assert "Recall (sensitivity) difference per class" in text
    assert "paired percentile bootstrap, stratified by true class; 30 resamples; 95% percentile intervals; seed 0" in text
    # the class without test samples: recall difference undefined with its reason
    assert f"no samples of class '{MISSING}' in y_true" in text


def test_comparison_values_and_reasons():
    snap = make_snapshot(2)
    comp = snap["comparisons"]
    ctx = comparison_section(comp, 2, {}, {})
    p = ctx["pairs"][0]
    boot = comp["pairs"][0]["bootstrap_diff"]
    assert ctx["boot_columns"] == ["Accuracy", "Macro-F1"]
    acc = boot["accuracy"]
    sign = "+" if acc["diff"] > 0 else ""
    assert p["boot"][0].text == f"{sign}{acc['diff']:.3f} [{acc['ci_low']:.3f}\u2013{acc['ci_high']:.3f}]"
    assert ctx["recall_classes"] == list(boot["recall"])
    # overall DeLong p is null: undefined with the compare module's reason as footnote
    assert p["delong"]["p"].text == "undefined"
    assert ctx["notes"][p["delong"]["p"].note - 1].startswith("macro AUC (mean of one-vs-rest AUCs)")
    assert [r["name"] for r in p["delong_per_class"]] == list(comp["pairs"][0]["delong"]["per_class"])
    assert p["delong_per_class"][0]["p_holm"].text == f"{comp['pairs'][0]['delong']['per_class']['normal']['p_holm']:.3f}"
    assert p["n_discordant"] == str(comp["pairs"][0]["mcnemar"]["n_discordant"])
    assert p["relation_text"] == comp["pairs"][0]["relation_text"]
    assert ctx["multiple_testing"]["note"] == comp["multiple_testing"]["note"]


def test_comparison_html_shows_sentences(html2):
    text = _text(_section(html2, "comparison"))
    comp = make_snapshot(2)["comparisons"]
    assert comp["pairs"][0]["relation_text"] in text
    assert comp["pairs"][0]["missed_disease"]["relation_text"] in text
    assert comp["multiple_testing"]["note"] in text
    assert "DeLong per class" in text


# -- data and architecture -----------------------------------------------------------


def test_data_sizes_and_modes(html2):
    text = _text(_section(html2, "data"))
    assert "Image size (W\u00d7H px)" in text
    assert "64\u2013512 \u00d7 64\u2013480 (3 sizes; most common 64\u00d764, n = 540)" in text
    assert "L: 544, RGB: 2" in text


def test_architecture_flops_from_checkpoint():
    snap = make_snapshot(2)
    snap["run"]["efficiency"] = None  # --no-bench: the checkpoint still has the counts
    snap["models"][1]["checkpoint"]["flops"] = None  # only MACs: FLOPs = 2 x MACs
    ctx = build_context(snap, lambda rel: None)
    row = next(r for r in ctx["models"]["arch"] if r["label"].startswith("FLOPs"))
    assert row["values"][0] == "1.82 G / 910.00 M"
    assert row["values"][1] == "1.26 G / 630.00 M"


def test_risk_section_says_how_negative_classes_were_chosen(html2):
    text = _text(_section(html2, "risk"))
    assert "Negative classes: auto-detected from the class names; pass --negative-class to choose others." in text


def test_gallery_marks_samples_every_model_gets_wrong_and_notes_vit_gradcam(tmp_path):
    from medaudit.report.perf_context import VIT_GRADCAM_NOTE, gallery_section

    snap = make_snapshot(2)
    for m in snap["models"]:
        m["cam"]["tiles"][0]["hard"] = True
    ctx = gallery_section(snap["models"], lambda rel: "data:image/png;base64,AAAA")
    assert [r["hard"] for r in ctx["rows"]] == [True, False, False, False]
    notes = {m["name"]: m["note"] for m in ctx["per_model"]}
    assert notes == {"resnet18": None, "vit_tiny": VIT_GRADCAM_NOTE}
    text = _text(_section(render_html(snap, tmp_path), "gallery"))
    assert text.count("wrong in every model") == 1 and "consider --cam-method layercam" in text


def test_gallery_of_three_models_keeps_two_per_table_so_tiles_keep_half_the_column(tmp_path, html2):
    import copy

    snap = make_snapshot(3)
    snap["models"][2]["cam"] = copy.deepcopy(snap["models"][0]["cam"])
    gal3 = _section(render_html(snap, tmp_path), "gallery")
    tables = re.findall(r'<table class="gallery cols-(\d)">(.*?)</table>', gal3, flags=re.S)
    assert [n for n, _ in tables] == ["2", "1"]
    heads = [re.findall(r"<thead>.*?</thead>", body, flags=re.S)[0] for _, body in tables]
    assert [h.count("<th>") for h in heads] == [2, 1] and "efficientnet_b0" in heads[1]
    rows = [body.count('scope="row"') for _, body in tables]
    assert rows[0] == rows[1] > 0  # every sample in both tables
    assert re.findall(r'<table class="gallery cols-(\d)">', _section(html2, "gallery")) == ["2"]
