"""The snapshot contract: one version, one reader (gate and render read through it), the measured views."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from click.testing import CliRunner

import medaudit.snapshot as snapshot_mod
from medaudit.audit import AuditSettings, ModelResult, assemble_snapshot
from medaudit.cli import main
from medaudit.errors import MedauditError
from medaudit.predictions import Predictions
from medaudit.report import render_from_snapshot
from medaudit.snapshot import (
    SCHEMA_VERSION,
    check_snapshot,
    load_snapshot,
    measured_efficiency,
    measured_models,
)
from tests.snapshot_factory import build_snapshot, make_snapshot, minimal_snapshot


def _write(path, data):
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_load_snapshot_errors_name_the_file(tmp_path):
    with pytest.raises(MedauditError, match="missing.json: file not found"):
        load_snapshot(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    for text, fragment in [("{not json", "not valid JSON"), ("[1, 2]", "not a medaudit report.json"),
                           ('{"models": []}', "no schema_version")]:
        _write(bad, text)
        with pytest.raises(MedauditError, match=fragment) as exc:
            load_snapshot(bad)
        assert str(exc.value).startswith(str(bad))


def test_readable_versions():
    snap = build_snapshot()
    for version in ("1.0", "1.3", "2.0", "2.7", SCHEMA_VERSION):
        check_snapshot({**snap, "schema_version": version}, "report")
    for version in ("0.9", "3.0", "10"):
        with pytest.raises(MedauditError, match=f"schema_version '{version}' is not supported"):
            check_snapshot({**snap, "schema_version": version}, "report")


def test_the_version_written_is_one_the_reader_reads():
    preds = Predictions("m", ["normal", "sick"], "binary", ["a", "b", "c", "d"], np.array([0, 1, 1, 0]),
                        np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.9, 0.1]]))
    snap = assemble_snapshot([ModelResult(preds=preds, checkpoint={}, prediction_info={})],
                             dataset={"spec": "x"}, settings=AuditSettings(bootstrap=0), title="t")
    assert snap["schema_version"] == SCHEMA_VERSION
    check_snapshot(json.loads(json.dumps(snap)), "report")


def test_models_are_required_unless_the_reader_says_otherwise(tmp_path):
    empty = _write(tmp_path / "empty.json", minimal_snapshot())
    with pytest.raises(MedauditError, match="'models' is missing or empty"):
        load_snapshot(empty)
    assert load_snapshot(empty, require_models=False)["models"] == []
    broken = build_snapshot()
    broken["models"][0]["metrics"]["per_class"]["glioma"] = [0.9]
    with pytest.raises(MedauditError, match=r"models\[0\] needs"):
        check_snapshot(broken, "report")
    check_snapshot(broken, "report", require_models=False)
    with pytest.raises(MedauditError, match="not unique"):
        check_snapshot({**build_snapshot(), "models": [build_snapshot()["models"][0]] * 2}, "report")


def test_gate_and_render_refuse_an_unreadable_version_through_the_one_reader(tmp_path, monkeypatch):
    """Both commands read through load_snapshot: a change of the readable versions reaches both."""
    old = _write(tmp_path / "old.json", {**build_snapshot(), "schema_version": "1.0"})
    monkeypatch.setattr(snapshot_mod, "READABLE_MAJORS", ("2",))
    with pytest.raises(MedauditError, match="schema_version '1.0' is not supported"):
        render_from_snapshot(old, tmp_path / "out", formats=("json",))
    res = CliRunner().invoke(main, ["gate", str(old), "-r", "auc>=0.5"])
    assert res.exit_code == 2 and "schema_version '1.0' is not supported" in res.output


def test_render_reads_a_snapshot_without_models(tmp_path):
    src = _write(tmp_path / "report.json", minimal_snapshot())
    written = render_from_snapshot(src, tmp_path / "out", formats=("json",))
    assert json.loads(written["json"].read_text())["models"] == []


def test_measured_views_merge_run_into_models_without_changing_the_snapshot():
    snap = make_snapshot(3)
    before = copy.deepcopy(snap)
    models = measured_models(snap)
    assert snap == before
    assert models[0]["efficiency"] == snap["run"]["efficiency"]["models"]["resnet18"]
    assert models[2]["efficiency"] is None  # not benchmarked
    name = snap["models"][0]["name"]
    assert models[0]["predictions"] == {**snap["models"][0]["predictions"], **snap["run"]["predictions"][name]}
    assert measured_efficiency(snap) is snap["run"]["efficiency"]


def test_measured_views_read_schema_1_0_where_it_kept_them():
    snap = make_snapshot(2)
    run_eff = snap["run"].pop("efficiency")
    snap["schema_version"] = "1.0"
    snap["efficiency"] = {"environment": run_eff["environment"], "ratios": run_eff["ratios"]}
    for m in snap["models"]:
        m["efficiency"] = run_eff["models"].get(m["name"])
    assert [m["efficiency"] for m in measured_models(snap)] == [run_eff["models"][m["name"]] for m in snap["models"]]
    assert measured_efficiency(snap) is snap["efficiency"]


@pytest.mark.timeout(30)
def test_a_fifo_is_refused_instead_of_blocking(tmp_path):
    import os

    os.mkfifo(tmp_path / "report.json")
    with pytest.raises(MedauditError, match="not a regular file"):
        snapshot_mod.load_snapshot(tmp_path / "report.json")
