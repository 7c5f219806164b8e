"""`medaudit report` / `data inspect` with patients and subgroups, end to end from a CSV manifest (issue 18).

The snapshot's blocks must equal subgroup_metrics / patient_level + compute_metrics called directly on the
predictions the report wrote; a patient in train and test is an error finding; bad options fail before
inference with one line; no raw patient id reaches any file of the report folder.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from medaudit.cli import main
from medaudit.metadata import bin_numeric
from medaudit.metrics import compute_metrics
from medaudit.metrics.clustered import patient_level
from medaudit.metrics.subgroups import subgroup_metrics
from medaudit.predictions import Predictions

N_TEST_PATIENTS, PER = 14, 3
RAW = [f"MRN-{7000 + i}" for i in range(N_TEST_PATIENTS + 5)]
SHARED = RAW[0]  # in train and test


def _manifest(root, *, patient=True, site_values="ABC"):
    rng = np.random.default_rng(0)
    header = "path,label,split," + ("patient_id," if patient else "") + "sex,age,site"
    lines = [header]
    rows = [(p, "test") for p in range(N_TEST_PATIENTS) for _ in range(PER)]
    rows += [(p, "train") for p in [0] + list(range(N_TEST_PATIENTS, N_TEST_PATIENTS + 5)) for _ in range(2)]
    for i, (p, split) in enumerate(rows):
        f = root / "img" / f"{i}.png"
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(f)
        label = "abc"[(p + i) % 3]
        age = "" if i % 11 == 5 else str(20 + (p * 7) % 70)
        cols = [f"img/{i}.png", label, split] + ([RAW[p]] if patient else [])
        cols += ["FM"[p % 2], age, site_values[p % len(site_values)]]
        lines.append(",".join(cols))
    (root / "m.csv").write_text("\n".join(lines) + "\n")
    return str(root / "m.csv")


def _run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


BASE = ["--negative-class", "a", "--no-bench", "--no-cam", "--device", "cpu", "--bootstrap", "60"]


def test_report_with_subgroups_and_patients_end_to_end(tiny_checkpoint, tmp_path):
    spec = _manifest(tmp_path)
    out = tmp_path / "rep"
    res = _run(["report", "--models", str(tiny_checkpoint), "--data", spec, "-o", str(out), *BASE,
                "--format", "json,html", "--group-by", "site", "--group-by", "Age", "--bins", "age=0,50,120",
                "--intersect", "sex,site", "--level", "patient", "--aggregate", "mean", "--min-group-n", "3"])
    assert res.exit_code == 0, res.output
    snap = json.loads((out / "report.json").read_text())
    s = snap["settings"]["subgroups"]
    assert s["group_by"] == ["site", "age", "sex"] and s["bins"] == {"age": [0.0, 50.0, 120.0]}
    assert s["intersections"] == [["sex", "site"]] and s["patient_column"] == "patient_id"
    assert s["level"] == "patient" and s["aggregate"] == "mean" and s["min_group_n"] == 3
    assert isinstance(s["salt_id"], str) and len(s["salt_id"]) == 12

    preds = Predictions.load(out / "predictions" / "tiny.npz")
    ids = preds.metadata["patient_id"]
    age = bin_numeric(preds.metadata["age"], [0, 50, 120])
    groups = {"site": preds.metadata["site"], "age": np.where(age == "unknown", "", age), "sex": preds.metadata["sex"]}
    direct = subgroup_metrics(preds.y_true, preds.probs, preds.class_names, ["a"], groups, clusters=ids,
                              intersections=[("sex", "site")], min_group_n=3, n_bootstrap=60, seed=0)
    model = snap["models"][0]
    assert model["subgroups"] == json.loads(json.dumps(direct))
    assert model["subgroups"]["overall"]["n_patients"] == N_TEST_PATIENTS
    assert model["metrics"]["n_patients"] == N_TEST_PATIENTS
    assert model["metrics"]["accuracy"]["ci_method"] in ("cluster-bootstrap", None)

    pl = patient_level(preds.y_true, preds.probs, ids, preds.class_names, ["a"], aggregate="mean")
    expected = compute_metrics(pl.y_true, pl.probs, pl.class_names, pl.task, n_bootstrap=60, positive_class="disease")
    block = model["patient_level"]
    assert block["n_patients"] == N_TEST_PATIENTS and block["n_images"] == N_TEST_PATIENTS * PER
    assert block["metrics"]["auc_macro"] == pytest.approx(json.loads(json.dumps(expected))["auc_macro"])

    # the shared patient: an error finding naming its hash, never the raw id
    hashed = ids[0]
    assert hashed.startswith("p-")
    errors = [f for f in snap["findings"] if f["level"] == "error"]
    assert len(errors) == 1 and "1 patient(s) of the evaluated 'test' split also have images in 'train'" in \
        errors[0]["text"]
    assert snap["dataset"]["patients"]["across"]["train/test"]["examples"] == [hashed]

    # no raw patient id in any byte of any file written (npz members are compressed: read them too)
    import zipfile
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} >= {".json", ".html", ".npz", ".csv"}
    for p in files:
        blobs = [p.read_bytes()]
        if p.suffix == ".npz":
            with zipfile.ZipFile(p) as z:
                blobs += [z.read(n) for n in z.namelist()]
        for blob in blobs:
            for raw in RAW:
                assert raw.encode() not in blob and raw.encode("utf-32-le") not in blob, (p, raw)


def test_data_inspect_patient_col(tmp_path):
    spec = _manifest(tmp_path)
    res = _run(["data", "inspect", spec, "--patient-col", "PATIENT_ID", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["patients"]["leakage"] is True and summary["patients"]["across"]["train/test"]["n"] == 1
    assert not any(raw in res.output for raw in RAW)
    res = _run(["data", "inspect", spec, "--patient-col", "mrn"])
    assert res.exit_code == 2 and "--patient-col 'mrn'" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("extra, words", [
    (["--group-by", "scanner"], ["--group-by 'scanner'", "'sex', 'age', 'site'"]),
    (["--group-by", "age"], ["--bins age=", "numeric"]),
    (["--group-by", "age", "--bins", "age=50,20"], ["--bins", "increasing"]),
    (["--group-by", "age", "--bins", "age=0,x"], ["--bins", "not a finite number"]),
    (["--group-by", "site", "--intersect", "sex"], ["--intersect", "two columns"]),
    (["--group-by", "sex", "--bins", "sex=0,1"], ["--bins", "categorical"]),
    (["--patient-col", "mrn"], ["--patient-col 'mrn'"]),
])
def test_bad_options_are_one_line_errors_before_inference(tiny_checkpoint, tmp_path, extra, words, monkeypatch):
    import medaudit.predict as predict

    monkeypatch.setattr(predict, "run_inference", lambda *a, **k: pytest.fail("inference ran"))
    spec = _manifest(tmp_path)
    res = _run(["report", "--models", str(tiny_checkpoint), "--data", spec, "-o", str(tmp_path / "r"), *BASE,
                "--format", "json", *extra])
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert "\n" not in line and "Traceback" not in line
    for w in words:
        assert w in line, line


def test_one_valued_column_and_patient_level_without_patients_fail_before_inference(tiny_checkpoint, tmp_path,
                                                                                    monkeypatch):
    import medaudit.predict as predict

    monkeypatch.setattr(predict, "run_inference", lambda *a, **k: pytest.fail("inference ran"))
    spec = _manifest(tmp_path, site_values="A")
    res = _run(["report", "--models", str(tiny_checkpoint), "--data", spec, "-o", str(tmp_path / "r"), *BASE,
                "--format", "json", "--group-by", "site"])
    assert res.exit_code == 2 and "one group ('A')" in res.output and "drop --group-by site" in res.output
    spec = _manifest(tmp_path, patient=False)
    res = _run(["report", "--models", str(tiny_checkpoint), "--data", spec, "-o", str(tmp_path / "r"), *BASE,
                "--format", "json", "--level", "patient"])
    assert res.exit_code == 2 and "--level 'patient'" in res.output and "--patient-col" in res.output
