"""Figures: drawn only from snapshot data, one colour per model, UpSet for 3+ models."""

from __future__ import annotations

from PIL import Image

from medaudit.report.plots import PALETTE, make_figures, model_colors
from tests.snapshot_factory import make_snapshot, minimal_snapshot


def test_three_models_upset_and_sizes(tmp_path):
    snap = make_snapshot(3)
    figs = make_figures(snap, tmp_path / "figures")
    assert {"overlap", "roc", "pr", "calibration", "missed_disease", "training_curves", "class_distribution",
            "confusion_m0", "confusion_m1", "confusion_m2"} == set(figs)
    for rel in figs.values():
        p = tmp_path / rel
        w, h = Image.open(p).size
        assert 200 < w <= 1100 and h < 1400, (rel, w, h)  # A4-column width at 150 dpi
        assert p.stat().st_size < 400_000
    # UpSet layout is wider than the 2-model Venn
    assert Image.open(tmp_path / figs["overlap"]).size[0] > 700


def test_nothing_drawn_without_data(tmp_path):
    assert make_figures(minimal_snapshot(), tmp_path / "figures") == {}


def test_colours_stable_by_position():
    assert model_colors(["a", "b"]) == {"a": PALETTE[0], "b": PALETTE[1]}
    assert model_colors(["b", "a"])["b"] == PALETTE[0]
