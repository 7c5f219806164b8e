"""Averages over only some classes are undefined for a gate unless ``--allow-partial`` (issue 19).

The snapshots here come from :func:`compute_metrics` on real arrays (a test split without
positives, a single image), so the test covers what ``medaudit report`` writes, not a hand-made
note. Before this change ``macro_f1>=0.9`` passed on them at ``1 [1, 1]``.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import balanced_accuracy_score, f1_score

from medaudit.cli import main
from medaudit.gate import format_table, junit_xml, markdown, run_gates
from medaudit.metrics.summary import compute_metrics
from medaudit.snapshot import partial_average
from tests.snapshot_factory import build_model, build_snapshot

NAMES = ["normal", "disease"]


def _no_positives(n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """A split of ``n`` healthy images, each predicted healthy (p(disease) in [0.05, 0.4))."""
    rng = np.random.default_rng(1)
    p1 = rng.uniform(0.05, 0.4, n)
    return np.zeros(n, dtype=np.int64), np.c_[1 - p1, p1]


def _snapshot(y, probs, names=NAMES, task="binary") -> dict:
    model = build_model("m", [50, 50], classes=names, negative=names[0])
    model["metrics"] = compute_metrics(y, probs, names, task, n_bootstrap=200, seed=0)
    return build_snapshot(models=[model], classes=names, task="binary")


@pytest.fixture
def partial_snap():
    return _snapshot(*_no_positives())


@pytest.mark.filterwarnings("ignore:A single label was found")
def test_the_snapshot_records_partiality_machine_readably(partial_snap):
    y, probs = _no_positives()
    m = partial_snap["models"][0]["metrics"]
    pred = probs.argmax(1)
    # The values themselves agree with scikit-learn, which also averages over the classes present.
    assert m["balanced_accuracy"]["value"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["macro_f1"]["value"] == pytest.approx(f1_score(y, pred, labels=[0], average="macro"))
    for key in ("balanced_accuracy", "macro_f1", "macro_recall", "weighted_recall", "weighted_f1"):
        assert (m[key]["classes_defined"], m[key]["classes_total"]) == (1, 2), key
        assert partial_average(m[key]) == (1, 2, "disease")
    # Specificity of 'normal' needs diseased images and precision of 'disease' a disease
    # prediction: both missing, so those averages are over the other class only.
    assert partial_average(m["macro_specificity"]) == (1, 2, "normal")
    assert partial_average(m["macro_precision"]) == (1, 2, "disease")
    # Binary auc_macro is the positive class's own AUC (no average): undefined, not partial.
    assert m["auc_macro"]["value"] is None and "classes_defined" not in m["auc_macro"]


@pytest.mark.parametrize("on", ["point", "lower", "upper", "conservative"])
def test_partial_averages_fail_closed(partial_snap, on):
    rep = run_gates(partial_snap, ["macro_f1>=0.9", "balanced_accuracy>=0.9"], on=on)
    assert not rep.passed and rep.n_failed == 2
    f1, ba = rep.results
    assert f1.value is None and f1.point == 1.0
    assert f1.reason == "undefined: macro_f1 averages 1 of 2 classes (undefined for: disease); --allow-partial to accept"
    assert ba.reason.startswith("undefined: balanced_accuracy averages 1 of 2 classes")


def test_allow_partial_gates_the_value_and_keeps_the_note(partial_snap):
    rep = run_gates(partial_snap, ["macro_f1>=0.9", "balanced_accuracy>=0.9"], allow_partial=True)
    assert rep.passed
    assert all(r.note and "averages 1 of 2 classes" in r.note for r in rep.results)
    table = format_table(rep)
    assert "note: macro_f1 averages 1 of 2 classes (undefined for: disease)" in table
    assert "macro_f1 averages 1 of 2 classes" in junit_xml(rep)
    assert "macro_f1 averages 1 of 2 classes" in markdown(rep)
    assert rep.to_dict()["results"][0]["note"].startswith("macro_f1 averages 1 of 2")
    # Accepting the partial average does not lift the other guards: the interval of 20 samples
    # that all gave 1.0 is withheld, so the lower bound still cannot pass.
    low = run_gates(partial_snap, ["macro_f1>=0.9"], on="lower", allow_partial=True)
    assert not low.passed and "zero-width interval" in low.results[0].reason


def test_failed_partial_is_explained_in_every_output(partial_snap):
    rep = run_gates(partial_snap, ["macro_f1>=0.9"])
    why = "undefined: macro_f1 averages 1 of 2 classes (undefined for: disease); --allow-partial to accept"
    assert why in format_table(rep)
    assert why in junit_xml(rep)  # in <failure message=...>
    assert why in markdown(rep)


def test_one_image_split():
    snap = _snapshot(np.array([1]), np.array([[0.1, 0.9]]))
    rep = run_gates(snap, ["macro_f1>=0.9", "balanced_accuracy>=0.9"], on="lower")
    assert not rep.passed
    assert all("averages 1 of 2 classes (undefined for: normal)" in r.reason for r in rep.results)
    rep = run_gates(snap, ["macro_f1>=0.9"], on="lower", allow_partial=True)
    assert not rep.passed and "no bootstrap interval from 1 samples of class 'disease'" in rep.results[0].reason


def test_a_full_average_is_unaffected():
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1], 60)
    p1 = np.clip(y * 0.6 + rng.uniform(0, 0.4, y.size), 0, 1)
    snap = _snapshot(y, np.c_[1 - p1, p1])
    entry = snap["models"][0]["metrics"]["macro_f1"]
    assert (entry["classes_defined"], entry["classes_total"]) == (2, 2) and "note" not in entry
    rep = run_gates(snap, ["macro_f1>=0.5"], on="lower")
    assert rep.passed and rep.results[0].note is None


def test_older_snapshots_are_read_from_their_note(partial_snap):
    # Snapshots written before classes_defined/classes_total carry only the note: still partial.
    old = copy.deepcopy(partial_snap)
    for key in ("macro_f1", "balanced_accuracy"):
        del old["models"][0]["metrics"][key]["classes_defined"], old["models"][0]["metrics"][key]["classes_total"]
    rep = run_gates(old, ["macro_f1>=0.9"])
    assert not rep.passed and "averages 1 of 2 classes" in rep.results[0].reason
    # Neither field nor note: a full average (every medaudit version noted a partial one).
    del old["models"][0]["metrics"]["macro_f1"]["note"]
    assert run_gates(old, ["macro_f1>=0.9"]).passed


def test_the_fields_win_over_the_note(partial_snap):
    snap = copy.deepcopy(partial_snap)
    snap["models"][0]["metrics"]["macro_f1"]["note"] = "over 2 of 2 classes"
    assert not run_gates(snap, ["macro_f1>=0.9"]).passed


def test_report_gate_names_the_command_that_accepts(partial_snap):
    rep = run_gates(partial_snap, ["macro_f1>=0.9"], option="--gate")
    assert rep.results[0].reason.endswith("`medaudit gate --allow-partial` accepts it")


def test_baseline_drops_on_partial_averages(partial_snap):
    full = _snapshot(np.repeat([0, 1], 30), np.r_[np.tile([[0.9, 0.1]], (30, 1)), np.tile([[0.1, 0.9]], (30, 1))])
    # New report partial: undefined unless accepted.
    rep = run_gates(partial_snap, baseline=full, max_drops=["macro_f1=0.05"])
    assert not rep.passed and rep.results[0].reason.startswith("undefined: macro_f1 averages 1 of 2")
    assert run_gates(partial_snap, baseline=full, max_drops=["macro_f1=0.05"], allow_partial=True).passed
    # Baseline partial: the drop compares different class sets, so it fails with the baseline named.
    rep = run_gates(full, baseline=partial_snap, max_drops=["macro_f1=0.05"])
    assert not rep.passed and rep.results[0].reason.startswith("baseline undefined: macro_f1 averages 1 of 2")
    rep = run_gates(full, baseline=partial_snap, max_drops=["macro_f1=0.05"], allow_partial=True)
    assert rep.passed and rep.results[0].note.startswith("baseline: macro_f1 averages 1 of 2")


def test_cli_allow_partial(tmp_path, partial_snap):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(partial_snap), encoding="utf-8")
    js = tmp_path / "gate.json"
    res = CliRunner().invoke(main, ["gate", str(path), "-r", "macro_f1>=0.9", "--on", "lower", "--json", str(js)])
    assert res.exit_code == 1, res.output
    assert "undefined: macro_f1 averages 1 of 2 classes (undefined for: disease); --allow-partial to accept" in res.output
    assert json.loads(js.read_text(encoding="utf-8"))["results"][0]["note"].startswith("macro_f1 averages 1 of 2")
    res = CliRunner().invoke(main, ["gate", str(path), "-r", "macro_f1>=0.9", "--allow-partial"])
    assert res.exit_code == 0, res.output
    assert "note: macro_f1 averages 1 of 2 classes" in res.output
