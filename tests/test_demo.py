import json

from medaudit.demo import run_demo


def test_demo_end_to_end_and_reuse(tmp_path, capsys):
    logs = []
    kw = dict(work_dir=tmp_path / "work", img_size=32, n_train=3, n_val=2, n_test=2, epoch_scale=0.01, bench=False,
              formats=("json",))
    result = run_demo(tmp_path / "report", **kw, log=logs.append)
    snap = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [m["name"] for m in snap["models"]] == ["resnet18", "vit_tiny"]
    assert {m["checkpoint"]["family"] for m in snap["models"]} == {"cnn", "transformer"}
    assert snap["comparisons"] is not None and snap["settings"]["negative_classes"] == ["notumor"]
    # the demo audits its manifest: subgroups by site, sex and age band, per patient, no leakage
    sg = snap["settings"]["subgroups"]
    assert sg["group_by"] == ["site", "sex", "age"] and sg["bins"] == {"age": [18.0, 40.0, 60.0, 90.0]}
    assert sg["patient_column"] == "patient_id" and sg["level"] == "patient" and sg["salt_id"]
    assert snap["dataset"]["patients"]["leakage"] is False
    assert "DEMO-" not in (tmp_path / "report" / "report.json").read_text()  # raw patient ids never get there
    for m in snap["models"]:
        cols = m["subgroups"]["columns"]
        assert set(cols["site"]["groups"]) == {"A", "B"} and set(cols["sex"]["groups"]) == {"F", "M"}
        assert len(cols["age"]["groups"]) >= 2
        assert m["patient_level"]["n_patients"] == m["subgroups"]["overall"]["n_patients"] > 0
    assert all(p.is_file() for p in result.checkpoints)
    assert any(line.startswith("training resnet18") for line in logs)
    assert any(line.startswith("epoch 1/1") for line in logs)  # the training's epoch lines reach the same log
    written = {p: p.stat().st_mtime_ns for p in result.checkpoints}
    capsys.readouterr()
    run_demo(tmp_path / "report2", **kw)  # same data and settings: checkpoints are reused, not retrained
    assert {p: p.stat().st_mtime_ns for p in result.checkpoints} == written
    assert capsys.readouterr().out == ""  # no log given: the library prints nothing
