"""Figures: drawn only from snapshot data, one colour per model, UpSet for 3+ models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib
from PIL import Image

from medaudit.report.plots import PALETTE, STYLE, _curves, _training_curves, make_figures, model_colors
from tests.snapshot_factory import make_snapshot, minimal_snapshot

ROOT = Path(__file__).resolve().parents[1]


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


def _draw(fn, *args):
    with matplotlib.rc_context(STYLE):
        fig = fn(*args)
        fig.canvas.draw()
    return fig


def test_curve_legend_is_shared_below_panels():
    snap = make_snapshot(2)
    fig = _draw(_curves, snap["models"], model_colors(["resnet18", "vit_tiny"]), "roc")
    assert all(ax.get_legend() is None for ax in fig.axes)  # nothing drawn over the curves
    assert len(fig.legends) == 1
    leg = fig.legends[0]
    assert [t.get_text() for t in leg.get_texts()] == ["resnet18", "vit_tiny"]
    # the legend lies below every panel
    top = leg.get_window_extent().y1
    assert all(top <= ax.get_window_extent().y0 + 1 for ax in fig.axes if ax.axison)


def test_training_curves_single_epoch_has_markers_and_integer_ticks():
    snap = make_snapshot(2)
    m = snap["models"][0]
    m["checkpoint"]["history"] = m["checkpoint"]["history"][:1]
    fig = _draw(_training_curves, [m], model_colors([m["name"]]))
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks == [1.0]
        assert all(line.get_marker() == "o" for line in ax.get_lines())


def test_make_figures_leaves_the_callers_backend_and_style_alone(tmp_path):
    """A notebook or an application keeps its backend, its rcParams and its open figures.

    In a fresh interpreter (the backend is process-wide): the caller chose the SVG backend
    and opened a pyplot figure; drawing every figure of a report changes none of that.
    """
    code = (
        "import json, sys\n"
        "import matplotlib\n"
        "matplotlib.use('svg')\n"
        "import matplotlib.pyplot as plt\n"
        "mine = plt.figure()\n"
        "matplotlib.rcParams['font.size'] = 13.0\n"
        "from medaudit.report.plots import make_figures\n"
        "from tests.snapshot_factory import make_snapshot\n"
        "figs = make_figures(make_snapshot(3), sys.argv[1])\n"
        "print(json.dumps({'backend': matplotlib.get_backend(), 'font': matplotlib.rcParams['font.size'],\n"
        "                  'figures': plt.get_fignums(), 'current': plt.gcf() is mine, 'drawn': len(figs)}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "figures")], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert state == {"backend": "svg", "font": 13.0, "figures": [1], "current": True, "drawn": 10}
