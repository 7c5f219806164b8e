"""The measured CAM evidence in the snapshot: findings, the snapshot's range checks, the report's tables."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from medaudit.cam_findings import cam_findings
from medaudit.errors import MedauditError
from medaudit.metrics.localisation import compare_localisation, localisation_summary, mean_difference
from medaudit.snapshot import check_snapshot
from tests.snapshot_factory import build_snapshot

CLASSES = ["notumor", "glioma"]


def _per_image(rng, n, p_hit, energy):
    return rng.random(n) < p_hit, np.clip(rng.normal(energy, 0.05, n), 0, 1), np.ones(n, bool)


def _faith(rng, drop, random_drop, n=24):
    d, r = np.clip(rng.normal(drop, 0.05, n), -1, 1), np.clip(rng.normal(random_drop, 0.05, n), -1, 1)
    zero = np.zeros(n)
    return {"k": [0.2], "n": n, "removal": "blur", "drop": {"0.2": mean_difference(d, zero, n_bootstrap=200)},
            "random_drop": {"0.2": mean_difference(r, zero, n_bootstrap=200)},
            "difference": {"0.2": mean_difference(d, r, n_bootstrap=200)}}


@pytest.fixture
def snapshot():
    rng = np.random.default_rng(0)
    labels = np.ones(60, dtype=int)
    a, b = _per_image(rng, 60, 0.85, 0.5), _per_image(rng, 60, 0.4, 0.1)
    snap = build_snapshot()
    for m, per, faith in ((snap["models"][0], a, _faith(rng, 0.4, 0.05)), (snap["models"][1], b, _faith(rng, 0.05, 0.05))):
        loc = {"source": "masks", "method": "gradcam", "layer": "layer4.1", "n_missing": 0,
               **localisation_summary(*per, labels, CLASSES, n_bootstrap=200), "paired": {}}
        loc["overall"]["lesion_area"] = loc["per_class"]["glioma"]["lesion_area"] = 0.2
        m["cam"] = {"method": "gradcam", "layer": "layer4.1", "layer_reason": "family default; 7x7 map at 224x224 input",
                    "tiles": [], "n_invalid": 0, "reason": None, "faithfulness": faith, "localisation": loc}
    snap["models"][0]["cam"]["localisation"]["paired"]["vit_tiny"] = compare_localisation(a, b, labels, CLASSES,
                                                                                         n_bootstrap=200)
    return snap


def test_findings_say_what_the_intervals_allow(snapshot):
    found = cam_findings(snapshot["models"])
    faith = [(f["level"], f["model"], f["text"]) for f in found if "Grad-CAM maps" in f["text"]]
    assert [(lv, m) for lv, m, _ in faith] == [("info", "resnet18"), ("warning", "vit_tiny")]
    assert "mark evidence the model uses" in faith[0][2] and "no better than random" in faith[1][2]
    loc = [f for f in found if "points inside the lesion on" in f["text"]]
    assert [f["level"] for f in loc] == ["info", "warning"]  # vit: energy ~0.1 below the lesion's 0.2 area share
    pair = [f for f in found if "more often than" in f["text"]]
    assert len(pair) == 1 and pair[0]["text"].startswith("resnet18 points inside the lesion more often than vit_tiny")
    assert cam_findings(build_snapshot()["models"]) == []  # no measurements, no claims


def test_snapshot_checks_the_cam_value_objects(snapshot):
    check_snapshot(snapshot, "report")
    bad = copy.deepcopy(snapshot)
    bad["models"][0]["cam"]["localisation"]["per_class"]["glioma"]["energy_inside"]["value"] = 1.5
    with pytest.raises(MedauditError, match="energy_inside"):
        check_snapshot(bad, "report")
    ok_negative = copy.deepcopy(snapshot)  # a paired difference may be negative; a faithfulness drop too
    ok_negative["models"][1]["cam"]["faithfulness"]["drop"]["0.2"].update(value=-0.1, ci_low=-0.2, ci_high=0.0)
    check_snapshot(ok_negative, "report")
    bad = copy.deepcopy(snapshot)
    bad["models"][1]["cam"]["faithfulness"]["difference"]["0.2"]["ci_low"] = -3.0
    with pytest.raises(MedauditError, match="faithfulness"):
        check_snapshot(bad, "report")


def test_report_shows_the_tables_and_old_snapshots_render(snapshot, tmp_path):
    from medaudit.report.html import render_html

    html = render_html(snapshot, tmp_path)
    assert "Does the map point at the lesion?" in html and "Do the maps mark what the model uses?" in html
    assert 'data-key="models.0.cam.localisation.per_class.glioma.pointing_game"' in html
    assert "no better than random</span>" in html and "family default; 7x7 map" in html
    from medaudit.report.perf_context import gallery_section

    old = gallery_section(build_snapshot()["models"], lambda _f: None)  # a snapshot from before issue 16
    assert not old["localisation"]["available"] and not old["faithfulness"]["available"]
