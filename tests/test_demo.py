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
    assert all(p.is_file() for p in result.checkpoints)
    assert any(line.startswith("training resnet18") for line in logs)
    assert any(line.startswith("epoch 1/1") for line in logs)  # the training's epoch lines reach the same log
    written = {p: p.stat().st_mtime_ns for p in result.checkpoints}
    capsys.readouterr()
    run_demo(tmp_path / "report2", **kw)  # same data and settings: checkpoints are reused, not retrained
    assert {p: p.stat().st_mtime_ns for p in result.checkpoints} == written
    assert capsys.readouterr().out == ""  # no log given: the library prints nothing
