"""Matplotlib figures drawn from a snapshot (only reads it; never computes a metric).

Every figure uses the same colour per model (:func:`model_colors`), is sized for an
A4 column (about 17 cm wide) and saved as PNG at :data:`DPI`. A figure whose input
is ``null`` in the snapshot is simply not drawn; the template then says why.

Figures are drawn with matplotlib's object API, each on its own Agg canvas: no pyplot state
and no global backend switch, so a caller's backend (a notebook's, an application's) and its
open figures are left as they were.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from matplotlib.ticker import MaxNLocator

from medaudit.report.format import ordered_splits
from medaudit.report.robustness_context import robustness_heatmap
from medaudit.report.subgroup_context import FOREST_METRICS

DPI = 150
WIDTH_IN = 6.7  # ~17 cm: the text width of an A4 page with 2 cm margins
# Colour-blind-safe (Okabe-Ito), in the order models appear in the snapshot.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
MAX_CURVE_PANELS = 8


def model_colors(names: list[str]) -> dict[str, str]:
    """Model name -> hex colour, stable by position in ``snapshot["models"]``."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def _label(s: Any) -> str:
    """Matplotlib text: escape ``$`` so a class name is never parsed as mathtext."""
    return str(s).replace("$", r"\$")


def _short(s: Any, n: int = 18) -> str:
    s = _label(s)
    return s if len(s) <= n else s[: n - 1] + "\u2026"


# Applied with matplotlib.rc_context while the figures are drawn, so the caller's rcParams stay as they are.
STYLE = {
    "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.color": "#e5e5e5", "grid.linewidth": 0.6, "font.family": "DejaVu Sans",
}


def _figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **kwargs: Any) -> tuple[Figure, Any]:
    """A figure on its own Agg canvas and its axes (``Figure.subplots`` arguments)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def make_figures(snapshot: dict, fig_dir: Path, *, dpi: int = DPI) -> dict[str, str]:
    """Draw every figure the snapshot has data for into ``fig_dir``.

    Parameters
    ----------
    snapshot : dict
        A schema-2.0 snapshot (docs/report-schema.md).
    fig_dir : Path
        Output folder (created); files are named ``<key>.png``.
    dpi : int
        Raster resolution; 150 keeps a whole report at a few MB.

    Returns
    -------
    dict
        ``{key: "figures/<key>.png"}`` for the figures drawn (relative to the report folder).
    """
    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    models = snapshot.get("models") or []
    colors = model_colors([m["name"] for m in models])
    builders: list[tuple[str, Callable[[], Figure | None]]] = [
        ("class_distribution", lambda: _class_distribution(snapshot.get("dataset") or {})),
        ("training_curves", lambda: _training_curves(models, colors)),
        ("roc", lambda: _curves(models, colors, "roc")),
        ("pr", lambda: _curves(models, colors, "pr")),
        ("calibration", lambda: _calibration(models, colors)),
        ("missed_disease", lambda: _missed_disease(models, colors)),
        ("overlap", lambda: _overlap(snapshot.get("comparisons"), colors)),
    ]
    for i, m in enumerate(models):
        builders.append((f"confusion_m{i}", lambda m=m: _confusion(m)))
    builders += [("decision_curves", lambda: _decision_curves(snapshot.get("clinical"), colors)),
                 ("risk_coverage", lambda: _risk_coverage(models, colors))]
    for i, m in enumerate(models):
        builders.append((f"recalibration_m{i}", lambda m=m: _recalibration(m, colors)))
    for i, m in enumerate(models):
        builders.append((f"subgroups_m{i}", lambda m=m: subgroup_forest(m, colors.get(m["name"], "#0072B2"))))
    builders.append(("robustness", lambda: robustness_heatmap(snapshot)))
    out: dict[str, str] = {}
    with matplotlib.rc_context(STYLE):
        for key, build in builders:
            fig = build()
            if fig is None:
                continue
            fig.savefig(fig_dir / f"{key}.png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
            out[key] = f"figures/{key}.png"
    return out


def _class_distribution(dataset: dict) -> Figure | None:
    splits = dataset.get("splits") or {}
    classes = dataset.get("class_names") or []
    if not splits or not classes:
        return None
    names = ordered_splits(splits)
    fig, ax = _figure(figsize=(WIDTH_IN, 2.4))
    x = np.arange(len(classes))
    w = 0.8 / len(names)
    greys = ["#4d4d4d", "#8c8c8c", "#bdbdbd", "#d9d9d9"]
    for j, s in enumerate(names):
        counts = [(splits[s].get("class_counts") or {}).get(c, 0) for c in classes]
        bars = ax.bar(x + (j - (len(names) - 1) / 2) * w, counts, w, label=f"{_label(s)} (n={splits[s].get('n')})",
                      color=greys[j % len(greys)], edgecolor="white", linewidth=0.5)
        ax.bar_label(bars, fontsize=6, padding=1)
    ax.set_xticks(x, [_short(c, 22) for c in classes])
    ax.set_ylabel("samples")
    ax.grid(axis="x", visible=False)
    # Below the axes: inside, the legend covers the tallest bars.
    ax.legend(frameon=False, ncols=len(names), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    ax.set_title("Class distribution per split")
    return fig


def _training_curves(models: list[dict], colors: dict) -> Figure | None:
    hist = [(m["name"], (m.get("checkpoint") or {}).get("history")) for m in models]
    hist = [(n, h) for n, h in hist if h]
    if not hist:
        return None
    fig, (a1, a2) = _figure(1, 2, figsize=(WIDTH_IN, 2.9))
    n_epochs = max(len(h) for _, h in hist)
    # With few epochs a line is invisible (one point) or misleading; show the points.
    marker = "o" if n_epochs <= 10 else None
    for name, h in hist:
        ep = [r.get("epoch") for r in h]
        for ax, key, ls, lab in ((a1, "train_loss", "-", "train loss"), (a1, "val_loss", "--", "val loss"),
                                 (a2, "val_auc", "-", "val AUC"), (a2, "val_acc", ":", "val accuracy")):
            ys = [r.get(key) for r in h]
            if any(v is not None for v in ys):
                ax.plot(ep, [float("nan") if v is None else v for v in ys], ls, color=colors[name], marker=marker,
                        ms=3.5, label=f"{_label(name)} {lab}", lw=1.3)
    a1.set(xlabel="epoch", ylabel="loss", title="Loss")
    a2.set(xlabel="epoch", ylabel="validation metric", title="Validation AUC / accuracy")
    epochs = sorted({r.get("epoch") for _, h in hist for r in h if r.get("epoch") is not None})
    for a in (a1, a2):
        a.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(8, max(1, len(epochs)))))
        if len(epochs) == 1:
            a.set_xlim(epochs[0] - 1, epochs[0] + 1)
            a.set_xticks(epochs)
    handles, labels = [], []
    for a in (a1, a2):
        for h, lab in zip(*a.get_legend_handles_labels(), strict=True):
            handles.append(h)
            labels.append(lab)
    # Shared legend below both panels: inside an axis it would cover the curves.
    fig.tight_layout(rect=(0, 0.06 + 0.05 * -(-len(labels) // 4), 1, 1))
    fig.legend(handles, labels, loc="lower center", ncols=4, frameon=False, fontsize=6.5)
    return fig


def _confusion(model: dict) -> Figure | None:
    cm = ((model.get("metrics") or {}).get("confusion_matrix")) or None
    if not cm or not cm.get("counts"):
        return None
    labels = [_short(c, 14) for c in cm["labels"]]
    counts = np.asarray(cm["counts"], dtype=float)
    norm_rows = cm.get("normalized") or [None] * len(counts)
    norm = np.array([r if r is not None else [np.nan] * len(counts) for r in norm_rows], dtype=float)
    k = len(labels)
    size = min(3.3, 1.4 + 0.35 * k)
    fig, axes = _figure(1, 2, figsize=(min(WIDTH_IN, 2 * size + 0.6), size))
    for ax, mat, title, fmt in ((axes[0], counts, "Counts", "{:.0f}"), (axes[1], norm, "Normalised by true class", "{:.2f}")):
        # Shade counts by row so a rare class is as readable as a common one.
        scale = mat.max(axis=1, keepdims=True) if title == "Counts" else np.ones((k, 1))
        shown = np.divide(mat, scale, out=np.zeros_like(mat), where=(scale > 0) & ~np.isnan(mat))
        ax.imshow(shown, cmap="Blues", vmin=0, vmax=1)
        ax.grid(False)
        for i in range(k):
            for j in range(k):
                v = mat[i, j]
                txt = "n/a" if np.isnan(v) else fmt.format(v)
                ax.text(j, i, txt, ha="center", va="center", fontsize=6.5,
                        color="white" if shown[i, j] > 0.6 else "#222222")
        ax.set_xticks(range(k), labels, rotation=35, ha="right")
        ax.set_yticks(range(k), labels)
        ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.suptitle(_label(model["name"]), fontsize=9)
    fig.tight_layout()
    return fig


def _curves(models: list[dict], colors: dict, kind: str) -> Figure | None:
    per_model = [(m["name"], ((m.get("metrics") or {}).get("curves") or {}).get(kind) or {}) for m in models]
    classes: list[str] = []
    for _, c in per_model:
        classes += [k for k, v in c.items() if v and k not in classes and k != "micro"]
    if not classes:
        return None
    classes = classes[:MAX_CURVE_PANELS]
    ncol = min(4, len(classes))
    nrow = -(-len(classes) // ncol)
    fig, axes = _figure(nrow, ncol, figsize=(WIDTH_IN, 1.9 * nrow + 0.7), squeeze=False)
    xk, yk = ("fpr", "tpr") if kind == "roc" else ("recall", "precision")
    for ax, cname in zip(axes.flat, classes, strict=False):
        for name, curves in per_model:
            c = curves.get(cname)
            if c:
                ax.plot(c[xk], c[yk], color=colors[name], lw=1.2, label=_label(name),
                        drawstyle="steps-post" if kind == "pr" else "default")
        if kind == "roc":
            ax.plot([0, 1], [0, 1], color="#999999", lw=0.7, ls=":")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), title=_short(cname, 24), xlabel=xk.upper() if kind == "roc" else xk,
               ylabel=yk.upper() if kind == "roc" else yk)
        ax.set_aspect("equal", adjustable="box")
    for ax in list(axes.flat)[len(classes):]:
        ax.axis("off")
    # One legend for the whole figure, below the panels, so it never hides a curve.
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.suptitle("ROC curves (one-vs-rest)" if kind == "roc" else "Precision-recall curves (one-vs-rest)", fontsize=9)
    fig.tight_layout(rect=(0, 0.08 if nrow == 1 else 0.05, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncols=min(len(labels), 4), frameon=False)
    return fig


def _calibration(models: list[dict], colors: dict) -> Figure | None:
    cal = [(m["name"], (m.get("metrics") or {}).get("calibration")) for m in models]
    cal = [(n, c) for n, c in cal if c and c.get("bin_edges")]
    if not cal:
        return None
    fig, (a1, a2) = _figure(2, 1, figsize=(3.6, 3.8), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    a1.plot([0, 1], [0, 1], color="#999999", lw=0.7, ls=":", label="perfect calibration")
    w = 1.0 / max(1, len(cal))
    for j, (name, c) in enumerate(cal):
        conf, acc, cnt = c.get("bin_confidence") or [], c.get("bin_accuracy") or [], c.get("bin_count") or []
        pts = [(x, y) for x, y in zip(conf, acc, strict=False) if x is not None and y is not None]
        if pts:
            a1.plot(*zip(*pts, strict=False), "o-", ms=3, lw=1.2, color=colors[name], label=_label(name))
        edges = c["bin_edges"]
        lefts = edges[:-1]
        widths = [(edges[i + 1] - edges[i]) for i in range(len(lefts))]
        a2.bar([lo + wd * w * j for lo, wd in zip(lefts, widths, strict=False)], cnt, [wd * w for wd in widths], align="edge",
               color=colors[name], alpha=0.85)
    a1.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed accuracy", title="Reliability diagram")
    a1.legend(frameon=False, loc="upper left")
    a2.set(xlabel="predicted confidence (max probability)", ylabel="samples")
    fig.tight_layout()
    return fig


def _missed_disease(models: list[dict], colors: dict) -> Figure | None:
    rows = [(m["name"], (m.get("fn_risk") or {}).get("per_class") or {}) for m in models if m.get("fn_risk")]
    classes: list[str] = []
    for _, pc in rows:
        classes += [c for c in pc if c not in classes]
    if not classes:
        return None
    fig, ax = _figure(figsize=(WIDTH_IN, 0.28 * len(classes) * len(rows) + 0.8))
    h = 0.8 / len(rows)
    y = np.arange(len(classes))
    for j, (name, pc) in enumerate(rows):
        for i, c in enumerate(classes):
            rate = (pc.get(c) or {}).get("rate") or {}
            yy = y[i] + (j - (len(rows) - 1) / 2) * h
            if rate.get("value") is None:
                ax.text(0.005, yy, "undefined", va="center", fontsize=6, color="#777777", style="italic")
                continue
            lo, hi = rate.get("ci_low"), rate.get("ci_high")
            # Bootstrap bounds need not bracket the estimate; matplotlib rejects negative bars.
            err = ([[max(0.0, rate["value"] - lo)], [max(0.0, hi - rate["value"])]]
                   if lo is not None and hi is not None else None)
            ax.barh(yy, rate["value"], h * 0.9, color=colors[name], xerr=err, ecolor="#333333",
                    error_kw={"lw": 0.8, "capsize": 2}, label=_label(name) if i == 0 else None)
    ax.set_yticks(y, [_short(c, 22) for c in classes])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("missed-disease rate (disease predicted as a negative class), 95% CI")
    ax.grid(axis="y", visible=False)
    ax.legend(frameon=False, loc="lower right")
    fig.tight_layout()
    return fig


def _overlap(comp: dict | None, colors: dict) -> Figure | None:
    if not comp or len(comp.get("models") or []) < 2:
        return None
    names = comp["models"]
    if len(names) == 2 and comp.get("pairs"):
        return _venn(comp["pairs"][0], colors)
    inter = [r for r in comp.get("intersections") or [] if r.get("count")]
    if not inter:
        return None
    return _upset(names, inter, colors)


def _venn(pair: dict, colors: dict) -> Figure:
    fig, ax = _figure(figsize=(4.8, 1.9))
    a, b = pair["a"], pair["b"]
    for x, name in ((-0.45, a), (0.45, b)):
        ax.add_patch(Circle((x, 0), 0.8, facecolor=colors.get(name, "#888888"), alpha=0.25,
                            edgecolor=colors.get(name, "#888888"), lw=1.5))
    for x, v in ((-0.75, pair.get("only_a")), (0, pair.get("both")), (0.75, pair.get("only_b"))):
        ax.text(x, 0, "n/a" if v is None else str(v), ha="center", va="center", fontsize=11, weight="bold")
    # Names sit outside their circles so long model names never collide.
    ax.text(-1.32, 0, _short(a, 20), ha="right", va="center", color=colors.get(a), fontsize=8)
    ax.text(1.32, 0, _short(b, 20), ha="left", va="center", color=colors.get(b), fontsize=8)
    ax.set(xlim=(-2.7, 2.7), ylim=(-0.9, 0.9), aspect="equal", title="Misclassified test samples")
    ax.axis("off")
    return fig


def _upset(names: list[str], inter: list[dict], colors: dict) -> Figure:
    inter = sorted(inter, key=lambda r: -r["count"])[:20]
    fig, (top, bot) = _figure(2, 1, figsize=(WIDTH_IN, 1.8 + 0.25 * len(names)), sharex=True,
                              gridspec_kw={"height_ratios": [2.2, 0.35 * len(names)]})
    x = list(range(len(inter)))
    bars = top.bar(x, [r["count"] for r in inter], color="#4d4d4d", width=0.6)
    top.bar_label(bars, fontsize=6, padding=1)
    top.set(ylabel="samples", title="Misclassified samples: exclusive intersections (UpSet)")
    top.grid(axis="x", visible=False)
    for j, name in enumerate(names):
        for i, r in enumerate(inter):
            on = name in r["models"]
            bot.scatter(i, j, s=28, color=colors.get(name, "#333333") if on else "#dddddd", zorder=3)
    for i, r in enumerate(inter):
        ys = [names.index(n) for n in r["models"] if n in names]
        if len(ys) > 1:
            bot.plot([i, i], [min(ys), max(ys)], color="#555555", lw=1, zorder=2)
    bot.set_yticks(range(len(names)), [_short(n, 20) for n in names])
    bot.set_ylim(len(names) - 0.5, -0.5)
    bot.set_xticks([])
    bot.grid(False)
    for s in ("left", "bottom"):
        bot.spines[s].set_visible(False)
    fig.tight_layout()
    return fig


# -- clinical use ---------------------------------------------------------------------------


def _values(xs: Any) -> np.ndarray:
    """A snapshot list with nulls -> float array with NaN."""
    return np.array([np.nan if v is None else v for v in xs or []], dtype=float)


def _clinical(model: dict, key: str) -> dict | None:
    block = (model.get("clinical") or {}).get(key)
    return block if isinstance(block, dict) and block.get("available") is not False else None


def decision_ylim(curves: dict) -> tuple[float, float]:
    """y-range of the decision-curve plot: the models' curves and bands and treat all where it helps.

    Treat all falls to ``-(1 - p) t / (1 - t)`` and, at a low prevalence, dwarfs every model curve;
    it is cut at the bottom, the models' own curves are kept down to ``-top`` (a model that does
    harm stays visible), and 0 (treat none) is always in range.
    """
    models = [_values(v.get(k)) for v in (curves.get("models") or {}).values()
              for k in ("net_benefit", "ci_low", "ci_high")]
    allv = _values((curves.get("treat_all") or {}).get("net_benefit"))
    finite = [a[np.isfinite(a)] for a in [*models, allv] if np.isfinite(a).any()]
    top = max([float(a.max()) for a in finite] + [0.0])
    if top <= 0:
        top = float((curves.get("prevalence") or {}).get("value") or 0.1)
    model_pts = [a[np.isfinite(a)] for a in models if np.isfinite(a).any()]
    low = min([float(a.min()) for a in model_pts] + [0.0])
    low = max(low, -top)
    span = top - min(low, -0.1 * top)
    return min(low, -0.1 * top) - 0.05 * span, top + 0.08 * span


def _decision_curves(clinical: dict | None, colors: dict) -> Figure | None:
    curves = (clinical or {}).get("decision_curves") if (clinical or {}).get("available") is not False else None
    if not curves or not curves.get("thresholds") or not curves.get("models"):
        return None
    t = 100 * _values(curves["thresholds"])
    fig, ax = _figure(figsize=(WIDTH_IN, 3.2))
    lo, hi = decision_ylim(curves)
    ax.axhline(0.0, color="#333333", lw=1.0, label="treat no one")
    allc = curves.get("treat_all") or {}
    ax.plot(t, _values(allc.get("net_benefit")), color="#777777", lw=1.2, ls="--", label="treat everyone")
    for name, c in curves["models"].items():
        color = colors.get(name, "#333333")
        ax.fill_between(t, _values(c.get("ci_low")), _values(c.get("ci_high")), color=color, alpha=0.18, lw=0)
        ax.plot(t, _values(c.get("net_benefit")), color=color, lw=1.5, label=_label(name))
    ax.set_ylim(lo, hi)
    ax.set_xlim(float(np.nanmin(t)), float(np.nanmax(t)))
    prev = curves.get("prevalence") or {}
    at = "deployment" if str(prev.get("source", "")).startswith("deployment") else "test-sample"
    ax.set(xlabel="threshold probability (%): treat when p(disease) \u2265 threshold",
           ylabel=f"net benefit ({at} prevalence {100 * (prev.get('value') or float('nan')):.3g}%)",
           title="Decision curves" + (" (shaded: 95% bootstrap band)" if curves.get("band") else ""))
    # Below the axes: inside, the legend would cover the curves near 0.
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncols=min(6, 2 + len(curves["models"])),
               frameon=False)
    return fig


def _risk_coverage(models: list[dict], colors: dict) -> Figure | None:
    rows = [(m["name"], blk) for m in models
            if (blk := _clinical(m, "selective")) and (blk.get("curve") or {}).get("coverage")]
    if not rows:
        return None
    fig, ax = _figure(figsize=(4.6, 3.2))
    for name, blk in rows:
        curve, color = blk["curve"], colors.get(name, "#333333")
        aurc = (blk.get("aurc") or {}).get("value")
        label = _label(name) + (f" (AURC {aurc:.3f})" if aurc is not None else " (AURC undefined)")
        ax.plot(_values(curve["coverage"]), _values(curve.get("selective_risk")), color=color, lw=1.4, label=label,
                drawstyle="steps-post")
        pts = [((p.get("coverage") or {}).get("value"), (p.get("selective_risk") or {}).get("value"))
               for p in blk.get("operating_points") or []]
        pts = [(x, y) for x, y in pts if x is not None and y is not None]
        if pts:
            ax.scatter(*zip(*pts, strict=True), s=18, color=color, edgecolor="white", zorder=3)
    ax.set(xlim=(0, 1.0), ylim=(0, None), xlabel="coverage (share answered by the model; the rest are referred)",
           ylabel="selective risk (error rate when answered)",
           title="Risk-coverage (dots: thresholds chosen on validation)")
    ax.legend(frameon=False, loc="upper left", fontsize=6.5)
    fig.tight_layout()
    return fig


def _recalibration(model: dict, colors: dict) -> Figure | None:
    blk = _clinical(model, "recalibration")
    rel = (blk or {}).get("reliability") or {}
    if not rel.get("before") or not rel.get("after"):
        return None
    color = colors.get(model["name"], "#0072B2")
    fig, (a1, a2) = _figure(2, 1, figsize=(3.6, 3.8), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    a1.plot([0, 1], [0, 1], color="#999999", lw=0.7, ls=":", label="perfect calibration")
    after = f"after ({blk.get('variant') or blk.get('method') or 'recalibrated'})"
    series = [("before", rel["before"], "#777777", "o--"), (after, rel["after"], color, "s-")]
    platt = (_clinical(model, "recalibration_platt") or {}).get("reliability") or {}  # two-class tasks only
    if platt.get("after"):
        series.append(("after (Platt-scaled)", platt["after"], color, "^:"))
    for j, (when, c, col, mk) in enumerate(series):
        conf, acc = _values(c.get("bin_confidence")), _values(c.get("bin_accuracy"))
        ok = np.isfinite(conf) & np.isfinite(acc)
        if ok.any():
            a1.plot(conf[ok], acc[ok], mk, ms=3, lw=1.2, color=col, label=when)
        edges = _values(c.get("bin_edges"))
        if edges.size >= 2:
            widths = np.diff(edges) / len(series)
            a2.bar(edges[:-1] + widths * j, _values(c.get("bin_count")), widths, align="edge", color=col,
                   alpha=0.85 if j < 2 else 0.45)
    a1.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed accuracy", title=_short(model["name"], 30) + ": reliability")
    a1.legend(frameon=False, loc="upper left")
    a2.set(xlabel="predicted confidence (max probability)", ylabel="test samples")
    fig.tight_layout()
    return fig


FOREST_ROW_IN = 0.17  # inches per group row: 7-pt labels without overlap
FOREST_MAX_IN = 9.0  # taller would not fit an A4 page beside its caption


def forest_rows(block: dict) -> list[dict]:
    """The rows of a subgroup forest plot, top to bottom: a header per column, then its groups.

    Parameters
    ----------
    block : dict
        ``models[i].subgroups`` (:func:`medaudit.metrics.subgroups.subgroup_metrics`).

    Returns
    -------
    list of dict
        ``{"kind": "header", "label"}`` or ``{"kind": "group", "label", "unknown", "values":
        {metric: (value, ci_low, ci_high) or None}, "missing": {metric: "too few" or "undefined"}}``.
    """
    rows = []
    for col, cb in (block.get("columns") or {}).items():
        rows.append({"kind": "header", "label": str(col)})
        for label, g in (cb.get("groups") or {}).items():
            values, missing = {}, {}
            for key, _ in FOREST_METRICS:
                mv = g.get(key) if isinstance(g.get(key), dict) else {}
                if mv.get("value") is None:
                    missing[key] = "too few" if mv.get("too_few") else "undefined"
                else:
                    values[key] = (mv["value"], mv.get("ci_low"), mv.get("ci_high"))
            rows.append({"kind": "group", "label": f"{label} (n={g.get('n')})", "unknown": bool(g.get("unknown")),
                         "values": values, "missing": missing})
    return rows


def subgroup_forest(model: dict, color: str) -> Figure | None:
    """Forest plot of one model's subgroups: a panel per metric of ``FOREST_METRICS``, a row per group.

    Each known value is a dot with its interval; the whole test set is the dashed line and its
    interval the band. A value that is too few to estimate (or undefined) is written out in the
    row, never drawn as a point. ``None`` when the model has no subgroup columns.
    """
    block = model.get("subgroups")
    if not isinstance(block, dict) or block.get("available") is False or not block.get("columns"):
        return None
    rows = forest_rows(block)
    n = len(rows)
    height = min(FOREST_MAX_IN, 0.75 + FOREST_ROW_IN * n)
    fig, axes = _figure(1, len(FOREST_METRICS), figsize=(WIDTH_IN, height), sharey=True)
    ys = np.arange(n)[::-1].astype(float)
    overall = block.get("overall") or {}
    for ax, (key, label) in zip(axes, FOREST_METRICS, strict=True):
        ov = overall.get(key) if isinstance(overall.get(key), dict) else {}
        lims = []
        if ov.get("value") is not None:
            if ov.get("ci_low") is not None and ov.get("ci_high") is not None:
                ax.axvspan(ov["ci_low"], ov["ci_high"], color="#999999", alpha=0.15, lw=0)
                lims += [ov["ci_low"], ov["ci_high"]]
            ax.axvline(ov["value"], color="#555555", lw=0.9, ls="--")
            lims.append(ov["value"])
        for y, r in zip(ys, rows, strict=True):
            if r["kind"] == "header":
                ax.axhline(y - 0.5, color="#cccccc", lw=0.5)  # under the header: the column's groups follow
                continue
            if key in r["values"]:
                v, lo, hi = r["values"][key]
                if lo is not None and hi is not None:
                    ax.errorbar(v, y, xerr=[[v - lo], [hi - v]], fmt="o", ms=3.2, color=color, ecolor=color,
                                elinewidth=1.1, capsize=1.5)
                    lims += [lo, hi]
                else:
                    ax.plot(v, y, "o", ms=3.2, color=color, mfc="white")
                lims.append(v)
            else:
                # In axes x-coordinates: the text stays inside the panel whatever the data range.
                ax.text(0.03, y, r["missing"][key], transform=ax.get_yaxis_transform(), fontsize=6,
                        color="#777777", style="italic", va="center",
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.4, "alpha": 0.85})
        lo, hi = (min(lims), max(lims)) if lims else (0.0, 1.0)
        pad = max(0.05, 0.08 * (hi - lo))
        ax.set_xlim(max(-0.02, lo - pad), min(1.02, hi + pad))
        ax.set_title(label)
        ax.grid(axis="y", visible=False)
        ax.tick_params(axis="y", length=0)
        ax.xaxis.set_major_locator(MaxNLocator(4))
    axes[0].set_yticks(ys, [_short(r["label"], 28) for r in rows])
    axes[0].set_ylim(-0.7, n - 0.3)
    for tick, r in zip(axes[0].get_yticklabels(), rows, strict=True):
        if r["kind"] == "header":
            tick.set_fontweight("bold")
        elif r["unknown"]:
            tick.set_color("#777777")
            tick.set_fontstyle("italic")
    fig.suptitle(_short(model.get("name", ""), 40) + ": per group (dot and bar: value, 95% interval; open dot: no interval; dashed: all samples)",
                 fontsize=8.5)
    fig.tight_layout()
    return fig
