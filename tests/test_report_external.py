"""The External cohorts section: drawn from the snapshot's ``external`` block only (real block from
medaudit.external on seeded predictions); older snapshots say not available, null says not run."""

from __future__ import annotations

import re

import numpy as np

from medaudit.external import cohort_entry, external_block, external_findings
from medaudit.predictions import Predictions
from medaudit.report.context import build_context
from medaudit.report.external_context import NOT_RUN, OLD
from medaudit.report.html import render_html
from medaudit.snapshot import check_snapshot
from tests.snapshot_factory import CLASSES, make_snapshot


def _preds(name, n, acc, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), size=n)
    pred = np.where(rng.random(n) < acc, y, (y + 1) % len(CLASSES))
    logits = rng.normal(0, 0.4, size=(n, len(CLASSES)))
    logits[np.arange(n), pred] += 2.5
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return Predictions(model_name=name, class_names=CLASSES, task="multiclass",
                       sample_ids=[f"{seed}-{i}" for i in range(n)], y_true=y, probs=p)


def _snapshot():
    snap = make_snapshot(2)
    names = [m["name"] for m in snap["models"]]
    neg = snap["settings"]["negative_classes"]
    entry = cohort_entry("site_b", "data/<b>", [_preds(n, 200, 0.9, 1) for n in names],
                         [_preds(n, 160, 0.55, 2) for n in names], neg, n_bootstrap=100)
    snap["external"] = external_block("test", [entry], None)
    snap["findings"] = snap["findings"] + external_findings(snap["external"])
    return snap


def _section(html: str) -> str:
    return html[html.index('id="s-external"'):html.index('id="s-comparison"')]


def test_section_shows_the_cohort_table_drops_and_verdict(tmp_path):
    snap = _snapshot()
    check_snapshot(snap, "report")
    html = _section(render_html(snap, tmp_path))
    text = re.sub(r"<[^>]+>", " ", html)
    m = snap["external"]["cohorts"][0]["models"][0]
    d = m["drop"]["balanced_accuracy"]
    assert re.search(re.escape(f"{d['value']:+.3f}") + r"\s+" + re.escape(f"[{d['ci_low']:+.3f}"), text)  # + interval
    assert snap["external"]["cohorts"][0]["shift"]["verdict"] in text
    assert "loses" in text and "balanced accuracy on site_b" in text  # the finding
    assert "data/&lt;b&gt;" in html and "data/<b>" not in html  # escaped
    assert 'data-key="external.cohorts[0].models[0].drop.balanced_accuracy"' in html
    assert "Missed disease on site_b" in text


def test_old_and_not_run_snapshots(tmp_path):
    snap = make_snapshot(1)
    snap.pop("external", None)
    assert build_context(snap, lambda rel: None)["external"] == {"reason": OLD}
    snap["external"] = None
    assert build_context(snap, lambda rel: None)["external"] == {"reason": NOT_RUN}
    assert "not run: give medaudit report --external NAME=SPEC" in render_html(snap, tmp_path)
