"""The robustness block and findings, its snapshot checks, report section, gate, CLI errors and sweep stage."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from click.testing import CliRunner

from medaudit.errors import MedauditError
from medaudit.gate import run_gates
from medaudit.predictions import Predictions
from medaudit.report.robustness_context import NOT_RUN, OLD, robustness_heatmap, robustness_section
from medaudit.robustness import robustness_block, robustness_findings
from medaudit.snapshot import check_snapshot
from medaudit.sweep import stratified_subsample
from tests.snapshot_factory import make_snapshot

CLASSES = ["glioma", "meningioma", "notumor"]
N = 150  # 50 per class


def _preds(name: str, y: np.ndarray, pred: np.ndarray) -> Predictions:
    probs = np.full((len(y), 3), 0.1)
    probs[np.arange(len(y)), pred] = 0.8
    return Predictions(model_name=name, class_names=CLASSES, task="multiclass",
                       sample_ids=[f"s{i}" for i in range(len(y))], y_true=y, probs=probs)


def _block(names=("resnet18", "vit_tiny"), glioma_lost=(0.4, 0.06)):
    """Model k misses ``glioma_lost[k]`` of the glioma images (called notumor) under contrast_down @ 3 only."""
    y = np.repeat(np.arange(3), N // 3)
    clean, corrupted = [], []
    for name, lost in zip(names, glioma_lost, strict=True):
        p0 = _preds(name, y, y)
        cells = {}
        for c, s in (("contrast_down", 1), ("contrast_down", 3), ("jpeg", 1), ("jpeg", 3)):
            pred = y.copy()
            if (c, s) == ("contrast_down", 3):
                pred[: int(round(lost * (N // 3)))] = 2
            cells[(c, s)] = _preds(name, y, pred)
        clean.append(p0)
        corrupted.append(cells)
    settings = {"corruptions": ["contrast_down", "jpeg"], "severities": [1, 3], "n_samples": N, "n_requested": 500,
                "n_available": N, "subsampled": False, "seed": 0}
    return robustness_block(clean, corrupted, settings=settings, negative_classes=["notumor"], n_bootstrap=200,
                            labels={"contrast_down": "contrast reduction", "jpeg": "JPEG compression"},
                            examples=[{"corruption": "none", "severity": 0, "image": "data:image/png;base64,AAAA"},
                                      {"corruption": "jpeg", "severity": 3, "image": "https://evil.example/x.png"}])


@pytest.fixture(scope="module")
def block():
    return _block()


def _snapshot(block):
    snap = copy.deepcopy(make_snapshot(n_models=2))
    for m, b in zip(snap["models"], block["models"], strict=True):
        b["name"] = m["name"]
    snap["robustness"] = block
    snap["findings"] = snap.get("findings", []) + robustness_findings(block)
    return snap


def test_block_cells_and_the_planted_drop(block):
    m = block["models"][0]
    assert m["clean"]["recall"] == {"glioma": 1.0, "meningioma": 1.0, "notumor": 1.0}
    cell = next(c for c in m["cells"] if (c["corruption"], c["severity"]) == ("contrast_down", 3))
    d = cell["drop"]["recall"]["glioma"]
    assert d["value"] == pytest.approx(20 / 50)
    assert 0 < d["ci_low"] <= d["value"] <= d["ci_high"]
    assert cell["flip_rate"] == pytest.approx(20 / N)
    assert cell["missed_disease_rate"] == pytest.approx(20 / 100)
    assert m["summary"]["worst"]["corruption"] == "contrast_down" and m["summary"]["worst"]["class"] == "glioma"


def test_findings_name_the_loss_and_the_other_model(block):
    found = robustness_findings(block)
    r18 = next(f for f in found if f["model"] == "resnet18")
    assert r18["level"] == "warning" and r18["topic"] == "robustness"
    assert "resnet18 loses 40 % recall of glioma under contrast reduction at severity 3" in r18["text"]
    assert "vit_tiny 6 %" in r18["text"]
    vit = next(f for f in found if f["model"] == "vit_tiny")
    assert vit["level"] == "info"  # 3 of 50: below the warning size
    assert robustness_findings(None) == []


def test_no_loss_is_said_as_such():
    found = robustness_findings(_block(glioma_lost=(0.0, 0.0)))
    assert all("no corruption lowered" in f["text"] for f in found)


def test_snapshot_accepts_the_block_and_refuses_edits(block):
    snap = _snapshot(block)
    check_snapshot(snap, "r.json")
    bad = copy.deepcopy(snap)
    bad["robustness"]["models"][0]["cells"][1]["drop"]["recall"]["glioma"]["ci_low"] = 0.9
    with pytest.raises(MedauditError, match=r"robustness\.models\[0\]\.cells\[1\]\.drop\.recall\.glioma has ci_low"):
        check_snapshot(bad, "r.json")
    bad = copy.deepcopy(snap)
    bad["robustness"]["models"][0]["cells"][0]["severity"] = 7
    with pytest.raises(MedauditError, match="not a severity"):
        check_snapshot(bad, "r.json")


def test_gate_max_drop_passes_fails_and_fails_closed(block):
    snap = _snapshot(block)
    r18, vit = (m["name"] for m in snap["models"])
    res = run_gates(snap, ["max_drop(recall[glioma], robustness)<=0.1"])
    by_model = {r.model: r for r in res.results}
    assert not by_model[r18].passed and by_model[r18].value == pytest.approx(0.4)
    assert by_model[vit].passed and "contrast_down at severity 3" in by_model[vit].note
    # The conservative side of <= is the upper bound.
    upper = run_gates(snap, [f"{vit}:max_drop(recall[glioma], robustness)<=0.1"], on="conservative").results[0]
    assert upper.value > 0.06
    # Meningioma never drops: its recall drop has a degenerate (withheld or zero) interval everywhere.
    everyone = run_gates(snap, ["max_drop(balanced_accuracy, robustness)<=0.5"]).results
    assert all(r.passed for r in everyone)
    no_block = copy.deepcopy(snap)
    no_block["robustness"] = None
    with pytest.raises(MedauditError, match="no robustness sweep.*--robustness"):
        run_gates(no_block, ["max_drop(recall[glioma], robustness)<=0.1"])
    undefined = copy.deepcopy(snap)
    undefined["robustness"]["models"][1]["cells"][2]["drop"]["recall"]["glioma"]["value"] = None
    r = [x for x in run_gates(undefined, ["max_drop(recall[glioma], robustness)<=0.9"]).results if x.model == vit][0]
    assert not r.passed and "undefined cell fails" in r.reason


@pytest.mark.parametrize("expr, fragment", [
    ("max_drop(recall, robustness)<=0.1", "per class"),
    ("max_drop(recall[glioma], robustness)>=0.1", "passes when a single cell"),
    ("max_drop(recall[glioma], site)<=0.1", "reads the corruption sweep"),
    ("max_drop(auc, robustness)<=0.1", "no drop in the sweep"),
    ("max_drop(recall[glioma], robustness)<=10", r"outside \[0, 1\]"),
    ("max_drop(recall[nope], robustness)<=0.1", "unknown class 'nope'"),
])
def test_gate_expression_errors(block, expr, fragment):
    with pytest.raises(MedauditError, match=fragment):
        run_gates(_snapshot(block), [expr])


def test_report_section_from_the_snapshot_only(block, tmp_path):
    snap = _snapshot(block)
    assert robustness_section({"models": []}, {}, {})["reason"] == OLD
    assert robustness_section({"robustness": None}, {}, {})["reason"] == NOT_RUN
    ctx = robustness_section(snap, {"robustness": "data:image/png;base64,AAAA"}, {})
    assert ctx["classes"] == ["glioma", "meningioma"]
    assert [t["caption"] for t in ctx["tiles"]] == ["clean"]  # the https URL never reaches an <img>
    assert [f["text"] for f in ctx["findings"]] == [f["text"] for f in robustness_findings(block)]
    row = next(r for r in ctx["per_model"][0]["rows"] if r["corruption"] == "contrast reduction" and r["severity"] == "3")
    assert row["drops"][1].text.startswith("+40.0 [")
    fig = robustness_heatmap(snap)
    assert fig is not None and len(fig.axes) == 3  # two models and the colour bar
    assert robustness_heatmap({"robustness": None}) is None
    from medaudit.report.html import render_html

    html = render_html(snap, tmp_path, target="html")
    assert "Robustness to image corruptions" in html and 'data-key="robustness.models[0].cells[1].drop.recall[glioma]"' in html
    html_old = render_html({k: v for k, v in snap.items() if k != "robustness"}, tmp_path, target="html")
    assert "written before medaudit" in html_old and "Robustness to image corruptions" in html_old


def test_stratified_subsample_keeps_class_shares():
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    idx = stratified_subsample(labels, 100, seed=0)
    assert len(idx) == 100 and np.all(np.diff(idx) > 0)
    assert np.bincount(labels[idx]).tolist() == [60, 30, 10]
    assert np.array_equal(stratified_subsample(labels, 100, seed=0), idx)
    rare = stratified_subsample(np.array([0] * 98 + [1, 2]), 10, seed=1)
    assert set(np.array([0] * 98 + [1, 2])[rare]) == {0, 1, 2} and len(rare) == 10
    assert len(stratified_subsample(labels, 5000, seed=0)) == 1000


@pytest.mark.parametrize("args, fragment", [
    (["report", "--robustness", "fog,jpeg"], "--robustness: unknown corruption(s) 'fog'; valid: default, gaussian_noise"),
    (["report", "--robustness", "--robustness-samples", "1"], "--robustness-samples"),
    (["robustness", "--corruptions", "fog"], "--corruptions: unknown corruption(s) 'fog'"),
    (["robustness", "--severities", "2,9"], "--severities"),
    (["robustness", "--severities", "two"], "--severities"),
])
def test_cli_bad_options_are_one_line_exit_2_before_any_work(tmp_path, args, fragment):
    from medaudit.cli import main

    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"not read")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, [*args, "--models", str(ckpt), "--data", str(tmp_path / "nodata"), "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert fragment in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1 and not out.exists()


def test_report_runs_the_sweep_and_the_gate_reads_it(tmp_path, tiny_checkpoint):
    """End to end on 12 tiny images: report --robustness writes the block, caches the passes, gates on it."""
    from PIL import Image

    from medaudit.audit import AuditSettings
    from medaudit.pipeline import ReportOptions, run_report

    rng = np.random.default_rng(0)
    for split, n in (("train", 1), ("test", 4)):
        for c in ("a", "b", "c"):
            (tmp_path / "data" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(tmp_path / "data" / split / c / f"{i}.png")

    def opts(out):
        return ReportOptions(checkpoints=[tiny_checkpoint], data_spec=str(tmp_path / "data"), out_dir=tmp_path / out,
                             settings=AuditSettings(bootstrap=50, negative_classes=["c"]), bench=False, cam=False,
                             formats=("json",), cache_dir=tmp_path / "cache", device="cpu",
                             robustness=("gaussian_noise",), robustness_severities=(1, 5), robustness_samples=9)

    snap, paths = run_report(opts("r1"))
    block = snap["robustness"]
    assert block["settings"]["n_samples"] == 9 and block["settings"]["subsampled"] is True
    assert [(c["corruption"], c["severity"]) for c in block["models"][0]["cells"]] == [("gaussian_noise", 1),
                                                                                       ("gaussian_noise", 5)]
    assert [e["corruption"] for e in block["examples"]] == ["none", "gaussian_noise"]
    saved = json.loads(paths["json"].read_text())
    assert saved["robustness"] == block
    res = run_gates(saved, ["max_drop(recall[a], robustness)<=1"])
    assert res.passed
